//! `{{secret:NAME}}` placeholders: a component writes one into a header value,
//! a query value or a body, and the host substitutes the secret on the way out,
//! so the component never holds the plaintext.
//!
//! Parsing is strict about anything that starts like a placeholder: an
//! unterminated `{{secret:` or a bad name is an error, so a typo is never sent
//! to a vendor verbatim. Any other `{{...}}` text is left alone. Everything
//! works on bytes because bodies may be binary.
//!
//! `{{secret:NAME|base64}}` substitutes the value base64-encoded (standard
//! alphabet, padded): HTTP Basic auth is `Basic {{secret:CREDS|base64}}` with
//! a secret holding `user:password`.
//!
//! Substitution is a single pass: a substituted value is never scanned for
//! placeholders again. Encoding the value for its context (header validity,
//! JSON escaping, URL encoding) is the caller's job.

use std::ops::Range;

const OPEN: &[u8] = b"{{secret:";
const CLOSE: &[u8] = b"}}";
/// `{{secret:` + a 128-byte name + `|base64` + `}}` is 146 bytes; the close must end within this.
const MAX_PLACEHOLDER_BYTES: usize = 150;
/// Longest secret name.
const MAX_NAME_LEN: usize = 128;

/// Is `name` a valid secret name: `^[A-Za-z_][A-Za-z0-9_]{0,127}$`?
pub fn is_valid_secret_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        _ => return false,
    }
    bytes.len() <= MAX_NAME_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// How a substituted value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As stored.
    Raw,
    /// Base64, standard alphabet, padded (`|base64`).
    Base64,
}

impl Encoding {
    /// Apply the encoding to a value.
    pub fn apply(self, value: Vec<u8>) -> Vec<u8> {
        use base64::Engine;
        match self {
            Encoding::Raw => value,
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .encode(value)
                .into_bytes(),
        }
    }
}

/// One `{{secret:NAME}}` occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The secret's name.
    pub name: String,
    /// How its value is written.
    pub encoding: Encoding,
    /// Byte range of the whole placeholder, braces included.
    pub range: Range<usize>,
}

/// A malformed placeholder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {message}")]
pub struct TemplateError {
    /// Byte offset of the offending `{{secret:`.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Why [`substitute`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError<E> {
    /// The text has a malformed placeholder.
    #[error("{0}")]
    Template(TemplateError),
    /// The value callback failed (e.g. unknown or ungranted secret).
    #[error("{0}")]
    Value(E),
}

/// Position of the next `{{secret:` at or after `from`.
fn find_open(text: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < text.len() {
        let at = i + text[i..].iter().position(|&b| b == b'{')?;
        if text[at..].starts_with(OPEN) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// All placeholders in `text`, in order. An opening `{{secret:` with no
/// closing `}}` within 140 bytes, or with an invalid name, is an error (so a
/// typo is never sent verbatim). Other `{{...}}` text is left alone.
pub fn find_placeholders(text: &[u8]) -> Result<Vec<Placeholder>, TemplateError> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = find_open(text, from) {
        let name_start = start + OPEN.len();
        let window_end = (start + MAX_PLACEHOLDER_BYTES).min(text.len());
        let window = &text[name_start..window_end];
        let Some(name_len) = window.windows(CLOSE.len()).position(|w| w == CLOSE) else {
            return Err(TemplateError {
                offset: start,
                message: format!(
                    "`{{{{secret:` is not closed by `}}}}` within {MAX_PLACEHOLDER_BYTES} \
                     bytes; write `{{{{secret:NAME}}}}`"
                ),
            });
        };
        let inner = &text[name_start..name_start + name_len];
        let (raw, encoding) = match inner.iter().position(|&b| b == b'|') {
            None => (inner, Encoding::Raw),
            Some(bar) if &inner[bar + 1..] == b"base64" => (&inner[..bar], Encoding::Base64),
            Some(bar) => {
                return Err(TemplateError {
                    offset: start,
                    message: format!(
                        "unknown encoding `{}` in a secret placeholder; the only one is `|base64`",
                        crate::display_snippet(&String::from_utf8_lossy(&inner[bar + 1..]))
                    ),
                });
            }
        };
        let name = match std::str::from_utf8(raw) {
            Ok(name) if is_valid_secret_name(name) => name,
            _ => {
                return Err(TemplateError {
                    offset: start,
                    message: format!(
                        "`{}` is not a valid secret name: use letters, digits and `_`, not \
                         starting with a digit, at most {MAX_NAME_LEN} characters",
                        crate::display_snippet(&String::from_utf8_lossy(raw))
                    ),
                });
            }
        };
        let end = name_start + name_len + CLOSE.len();
        found.push(Placeholder {
            name: name.to_owned(),
            encoding,
            range: start..end,
        });
        from = end;
    }
    Ok(found)
}

/// Replace every placeholder by `value(name)` and return the new bytes. The
/// first error, from parsing or from `value`, stops substitution.
pub fn substitute<E>(
    text: &[u8],
    mut value: impl FnMut(&str) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, SubstituteError<E>> {
    let placeholders = find_placeholders(text).map_err(SubstituteError::Template)?;
    let mut out = Vec::with_capacity(text.len());
    let mut copied = 0;
    for p in placeholders {
        out.extend_from_slice(&text[copied..p.range.start]);
        let v = value(&p.name).map_err(SubstituteError::Value)?;
        out.extend_from_slice(&p.encoding.apply(v));
        copied = p.range.end;
    }
    out.extend_from_slice(&text[copied..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encoding_for_basic_auth() {
        let out = substitute(b"Basic {{secret:CREDS|base64}}", |_| {
            Ok::<_, ()>(b"me@corp.com:t0ken".to_vec())
        })
        .unwrap();
        assert_eq!(out, b"Basic bWVAY29ycC5jb206dDBrZW4=");
        let p = find_placeholders(b"{{secret:A|base64}} {{secret:A}}").unwrap();
        assert_eq!(
            (p[0].encoding, p[1].encoding),
            (Encoding::Base64, Encoding::Raw)
        );
        assert_eq!(p[0].name, "A");
        for bad in [
            "{{secret:A|hex}}",
            "{{secret:A|}}",
            "{{secret:A|base64|base64}}",
            "{{secret:|base64}}",
        ] {
            assert!(find_placeholders(bad.as_bytes()).is_err(), "{bad}");
        }
        let long = format!("{{{{secret:{}|base64}}}}", "A".repeat(128));
        assert_eq!(
            find_placeholders(long.as_bytes()).unwrap()[0].encoding,
            Encoding::Base64
        );
    }

    fn names(text: &str) -> Vec<String> {
        find_placeholders(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .map(|p| p.name)
            .collect()
    }

    fn lookup(name: &str) -> Result<Vec<u8>, String> {
        match name {
            "A" => Ok(b"alpha".to_vec()),
            "TOKEN" => Ok(b"t0k3n".to_vec()),
            "EMPTY" => Ok(Vec::new()),
            "NESTED" => Ok(b"{{secret:A}}".to_vec()),
            other => Err(format!("secret `{other}` is not granted")),
        }
    }

    fn sub(text: &str) -> Result<String, SubstituteError<String>> {
        substitute(text.as_bytes(), lookup).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn secret_names() {
        for ok in [
            "A",
            "_",
            "_1",
            "VT_API_KEY",
            "a",
            "abc_DEF_123",
            &"A".repeat(128),
        ] {
            assert!(is_valid_secret_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1A",
            "9",
            "A-B",
            "A B",
            "A.B",
            "A:B",
            "ÄB",
            "A\n",
            "A\0",
            "{A}",
            &"A".repeat(129),
        ] {
            assert!(!is_valid_secret_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn finds_placeholders_in_order() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("no placeholders here", &[]),
            ("{{secret:A}}", &["A"]),
            ("Bearer {{secret:TOKEN}}", &["TOKEN"]),
            ("{{secret:A}}{{secret:TOKEN}}", &["A", "TOKEN"]),
            ("a={{secret:A}}&b={{secret:A}}", &["A", "A"]),
            ("{{{secret:A}}}", &["A"]),
            ("{{ secret:A }}", &[]), // not the exact form: left alone
            ("{{SECRET:A}}", &[]),   // case matters
            ("{{secrets:A}}", &[]),  // different word
            ("{{name}} {{secret:A}}", &["A"]),
            ("{{env:HOME}}", &[]),
            ("{{secret", &[]), // no colon: not an opening
            ("{secret:A}", &[]),
            ("}}{{secret:A}}{{", &["A"]),
            ("{{secret:A}}}}", &["A"]),
        ];
        for (text, want) in cases {
            assert_eq!(names(text), *want, "{text:?}");
        }
    }

    #[test]
    fn ranges_are_byte_ranges() {
        let text = "héllo {{secret:A}} x";
        let p = find_placeholders(text.as_bytes()).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(&text[p[0].range.clone()], "{{secret:A}}");
        assert_eq!(p[0].range, 7..19);
    }

    #[test]
    fn malformed_placeholders_are_errors() {
        let long_name = format!("{{{{secret:{}}}}}", "A".repeat(129));
        let cases: &[(&str, usize, &str)] = &[
            ("{{secret:", 0, "not closed"),
            ("{{secret:A", 0, "not closed"),
            ("{{secret:A}", 0, "not closed"),
            ("{{secret:A} }", 0, "not closed"),
            ("x {{secret:}}", 2, "not a valid secret name"),
            ("{{secret:1A}}", 0, "`1A` is not a valid secret name"),
            ("{{secret:A-B}}", 0, "`A-B`"),
            ("{{secret: A}}", 0, "not a valid secret name"),
            ("{{secret:A }}", 0, "not a valid secret name"),
            ("{{secret:A}} {{secret:B C}}", 13, "`B C`"),
            ("{{secret:{{secret:A}}", 0, "not a valid secret name"),
            ("{{secret:ключ}}", 0, "`ключ`"),
            ("{{secret:A\nB}}", 0, "`A\\nB`"),
            (&long_name, 0, "not a valid secret name"),
        ];
        for &(text, offset, fragment) in cases {
            let e = find_placeholders(text.as_bytes()).expect_err(text);
            assert_eq!(e.offset, offset, "{text:?}: {e}");
            assert!(e.message.contains(fragment), "{text:?}: {e}");
            assert!(!e.to_string().contains('\n'), "{text:?}: {e}");
        }
        let e = find_placeholders(b"{{secret:").unwrap_err();
        assert_eq!(
            e.to_string(),
            "at byte 0: `{{secret:` is not closed by `}}` within 150 bytes; write `{{secret:NAME}}`"
        );
    }

    #[test]
    fn close_must_be_within_window() {
        // 128-character name: the longest valid placeholder, 139 bytes.
        let max = format!("{{{{secret:{}}}}}", "B".repeat(128));
        assert_eq!(max.len(), 139);
        let p = find_placeholders(max.as_bytes()).unwrap();
        assert_eq!(p[0].name.len(), 128);
        // A far-away `}}` does not close an opening.
        let far = format!("{{{{secret:A{}}}}}", " ".repeat(200));
        assert!(find_placeholders(far.as_bytes()).is_err());
    }

    #[test]
    fn binary_bodies() {
        let mut body = vec![0u8, 0xff, 0xfe, b'{'];
        body.extend_from_slice(b"{{secret:A}}");
        body.extend_from_slice(&[0x80, 0x00, b'}', b'}']);
        let p = find_placeholders(&body).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].range, 4..16);
        let out = substitute(&body, lookup).unwrap();
        assert_eq!(
            out,
            [
                &[0u8, 0xff, 0xfe, b'{'][..],
                b"alpha",
                &[0x80, 0, b'}', b'}']
            ]
            .concat()
        );
        // Invalid UTF-8 inside a placeholder is an invalid name.
        let e = find_placeholders(b"{{secret:\xff\xfe}}").unwrap_err();
        assert!(e.message.contains("not a valid secret name"), "{e}");
    }

    #[test]
    fn huge_inputs() {
        // Many braces, no placeholders: linear scan, nothing found.
        let braces = "{".repeat(1 << 20);
        assert_eq!(find_placeholders(braces.as_bytes()).unwrap(), vec![]);
        // Many placeholders.
        let many = "{{secret:A}},".repeat(100_000);
        let out = substitute(many.as_bytes(), lookup).unwrap();
        assert_eq!(out.len(), "alpha,".len() * 100_000);
        // An opening at the very end.
        let mut tail = "x".repeat(1 << 20);
        tail.push_str("{{secret:");
        let e = find_placeholders(tail.as_bytes()).unwrap_err();
        assert_eq!(e.offset, 1 << 20);
    }

    #[test]
    fn substitution() {
        let cases = [
            ("", ""),
            ("plain", "plain"),
            ("Bearer {{secret:TOKEN}}", "Bearer t0k3n"),
            ("{{secret:A}}:{{secret:TOKEN}}", "alpha:t0k3n"),
            ("[{{secret:EMPTY}}]", "[]"),
            ("{{name}} {{secret:A}}", "{{name}} alpha"),
            // Values are not re-scanned: no recursive expansion.
            ("{{secret:NESTED}}", "{{secret:A}}"),
        ];
        for (text, want) in cases {
            assert_eq!(sub(text).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn substitution_errors() {
        assert_eq!(
            sub("x {{secret:MISSING}}"),
            Err(SubstituteError::Value(
                "secret `MISSING` is not granted".to_owned()
            ))
        );
        let e = sub("{{secret:A").unwrap_err();
        assert!(matches!(
            e,
            SubstituteError::Template(TemplateError { offset: 0, .. })
        ));
        assert!(e.to_string().contains("not closed"));
        // A template error is found before any value is looked up.
        let mut calls = 0;
        let r = substitute(b"{{secret:A}} {{secret:", |_| {
            calls += 1;
            Ok::<_, String>(Vec::new())
        });
        assert!(r.is_err());
        assert_eq!(calls, 0);
        // The first value error stops substitution.
        let mut seen = Vec::new();
        let r = substitute(b"{{secret:A}}{{secret:B}}{{secret:C}}", |n| {
            seen.push(n.to_owned());
            if n == "B" {
                Err("no")
            } else {
                Ok(b"v".to_vec())
            }
        });
        assert_eq!(r, Err(SubstituteError::Value("no")));
        assert_eq!(seen, ["A", "B"]);
        let boxed: Box<dyn std::error::Error> =
            Box::new(SubstituteError::<String>::Value("v".into()));
        assert_eq!(boxed.to_string(), "v");
    }

    #[test]
    fn json_body_round_trip() {
        let body = serde_json::json!({
            "auth": {"key": "{{secret:TOKEN}}"},
            "note": "{{not a placeholder}}",
            "list": ["{{secret:A}}", 1, null],
        });
        let text = serde_json::to_vec(&body).unwrap();
        let out = substitute(&text, lookup).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["auth"]["key"], "t0k3n");
        assert_eq!(back["note"], "{{not a placeholder}}");
        assert_eq!(back["list"][0], "alpha");
    }
}
