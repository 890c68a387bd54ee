//! A small YAML tree with a position on every key and value.
//!
//! Built from `saphyr-parser`'s event stream by an explicit stack (no recursion), so the depth
//! and size limits are enforced before anything deep is built. Anchors, aliases and tags are
//! refused: a playbook never needs them, and refusing aliases makes alias bombs impossible.

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::{Number, Value};

use crate::limits::{MAX_DEPTH, MAX_NODES};

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    fn of(marker: &saphyr_parser::Marker) -> Pos {
        Pos {
            line: u32::try_from(marker.line()).unwrap_or(u32::MAX),
            col: u32::try_from(marker.col().saturating_add(1)).unwrap_or(u32::MAX),
        }
    }
}

/// A mapping key: always a scalar.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub text: String,
    pub pos: Pos,
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

/// What a node holds.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A scalar's value under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl Node {
    /// The scalar's resolved value, if this is a scalar.
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        match &self.kind {
            Kind::Scalar { text, plain: false } => Some(Scalar::Str(text)),
            Kind::Scalar { text, plain: true } => Some(resolve(text)),
            _ => None,
        }
    }

    /// How this node's type is described in messages ("a list", "a number").
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Scalar { .. } => match self.scalar() {
                Some(Scalar::Null) => "nothing (null)",
                Some(Scalar::Bool(_)) => "true/false",
                Some(Scalar::Int(_)) | Some(Scalar::Float(_)) => "a number",
                _ => "a string",
            },
        }
    }

    /// The node at a JSON pointer below this one (for positions of schema errors).
    pub fn at_pointer(&self, pointer: &str) -> Option<&Node> {
        let mut node = self;
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            node = match &node.kind {
                Kind::Map(entries) => &entries.iter().find(|(k, _)| k.text == token)?.1,
                Kind::Seq(items) => items.get(token.parse::<usize>().ok()?)?,
                Kind::Scalar { .. } => return None,
            };
        }
        Some(node)
    }

    /// The key of `name` in this mapping.
    pub fn key(&self, name: &str) -> Option<&Key> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().map(|(k, _)| k).find(|k| k.text == name),
            _ => None,
        }
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
fn resolve(text: &str) -> Scalar<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        _ => {}
    }
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(hex) = text.strip_prefix("0x") {
        if digits(hex, 16) {
            return i128::from_str_radix(hex, 16).map_or(Scalar::Str(text), Scalar::Int);
        }
    } else if let Some(oct) = text.strip_prefix("0o")
        && digits(oct, 8)
    {
        return i128::from_str_radix(oct, 8).map_or(Scalar::Str(text), Scalar::Int);
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits(unsigned, 10) {
        return match text.parse::<i128>() {
            Ok(n) => Scalar::Int(n),
            // Too long for any integer: still a number in YAML's eyes.
            Err(_) => text.parse::<f64>().map_or(Scalar::Str(text), Scalar::Float),
        };
    }
    if is_float(unsigned)
        && let Ok(f) = text.parse::<f64>()
    {
        return Scalar::Float(f);
    }
    Scalar::Str(text)
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without a sign.
fn is_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match frac {
        Some(f) => all_digits(int) && all_digits(f) && (!int.is_empty() || !f.is_empty()),
        None => !int.is_empty() && all_digits(int),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok && (frac.is_some() || exponent.is_some())
}

/// A problem found while reading the text, at a position.
pub(crate) type LoadError = (Pos, String);

/// One open collection while building the tree.
enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Key, Node)>, Option<Key>),
}

/// Reads one YAML document into a tree.
pub(crate) fn load(source: &str) -> Result<Node, LoadError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    let mut documents = 0usize;
    for item in Parser::new_from_str(source) {
        let (event, span) = item.map_err(|e| {
            let message = if e.info().contains("recursion limit") {
                // The scanner's own guard, met before ours when it looks ahead.
                nesting_message()
            } else {
                e.info().to_string()
            };
            (Pos::of(e.marker()), message)
        })?;
        let pos = Pos::of(&span.start);
        let done = match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => None,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err((
                        pos,
                        "a playbook file holds one YAML document; remove this `---` and what follows, or move it to its own file"
                            .into(),
                    ));
                }
                None
            }
            Event::Alias(_) => {
                return Err((
                    pos,
                    "YAML aliases (`*name`) are not supported in playbooks: write the value out"
                        .into(),
                ));
            }
            Event::Scalar(text, style, anchor, tag) => {
                refuse_extras(pos, anchor, tag.is_some())?;
                let plain = matches!(style, ScalarStyle::Plain);
                Some(Node {
                    pos,
                    kind: Kind::Scalar {
                        text: text.into_owned(),
                        plain,
                    },
                })
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                refuse_extras(pos, anchor, tag.is_some())?;
                if stack.len() >= MAX_DEPTH {
                    return Err((
                        pos,
                        format!(
                            "nesting is deeper than {MAX_DEPTH} levels; a playbook never needs that"
                        ),
                    ));
                }
                let frame = if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq(pos, Vec::new())
                } else {
                    Frame::Map(pos, Vec::new(), None)
                };
                stack.push(frame);
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(pos, items)) => Some(Node {
                    pos,
                    kind: Kind::Seq(items),
                }),
                Some(Frame::Map(pos, entries, _)) => Some(Node {
                    pos,
                    kind: Kind::Map(entries),
                }),
                None => return Err((pos, "unbalanced YAML structure".into())),
            },
        };
        let Some(node) = done else { continue };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err((
                node.pos,
                format!(
                    "the document has more than {MAX_NODES} values; a playbook never needs that"
                ),
            ));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let Kind::Scalar { text, .. } = node.kind else {
                        return Err((node.pos, "mapping keys must be plain strings".into()));
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.text == text) {
                        return Err((
                            node.pos,
                            format!(
                                "duplicate key `{text}` (first at line {}, column {})",
                                first.pos.line, first.pos.col
                            ),
                        ));
                    }
                    *pending = Some(Key {
                        text,
                        pos: node.pos,
                    });
                }
            },
        }
    }
    Ok(root.unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        kind: Kind::Scalar {
            text: String::new(),
            plain: true,
        },
    }))
}

fn nesting_message() -> String {
    format!("nesting is deeper than {MAX_DEPTH} levels; a playbook never needs that")
}

fn refuse_extras(pos: Pos, anchor: usize, tagged: bool) -> Result<(), LoadError> {
    if anchor != 0 {
        return Err((
            pos,
            "YAML anchors (`&name`) are not supported in playbooks: write the value out".into(),
        ));
    }
    if tagged {
        return Err((
            pos,
            "YAML tags (`!tag`) are not supported in playbooks".into(),
        ));
    }
    Ok(())
}

/// Converts a node to JSON; `errors` gets every value JSON cannot hold (NaN, infinities).
pub(crate) fn to_json(node: &Node, errors: &mut Vec<(Pos, String)>) -> Value {
    match &node.kind {
        Kind::Seq(items) => Value::Array(items.iter().map(|n| to_json(n, errors)).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.text.clone(), to_json(v, errors)))
                .collect(),
        ),
        Kind::Scalar { .. } => match node.scalar() {
            Some(Scalar::Null) | None => Value::Null,
            Some(Scalar::Bool(b)) => Value::Bool(b),
            Some(Scalar::Int(i)) => {
                if let Ok(n) = i64::try_from(i) {
                    Value::Number(n.into())
                } else if let Ok(n) = u64::try_from(i) {
                    Value::Number(n.into())
                } else {
                    float(node, i as f64, errors)
                }
            }
            Some(Scalar::Float(f)) => float(node, f, errors),
            Some(Scalar::Str(s)) => Value::String(s.to_string()),
        },
    }
}

fn float(node: &Node, f: f64, errors: &mut Vec<(Pos, String)>) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None => {
            errors.push((
                node.pos,
                "infinity and NaN cannot be represented in JSON; quote the value if it is text"
                    .into(),
            ));
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema_resolution() {
        assert_eq!(resolve("~"), Scalar::Null);
        assert_eq!(resolve(""), Scalar::Null);
        assert_eq!(resolve("True"), Scalar::Bool(true));
        assert_eq!(resolve("yes"), Scalar::Str("yes"));
        assert_eq!(resolve("-12"), Scalar::Int(-12));
        assert_eq!(resolve("0x1F"), Scalar::Int(31));
        assert_eq!(resolve("0o17"), Scalar::Int(15));
        assert_eq!(resolve("1.5e3"), Scalar::Float(1500.0));
        assert_eq!(resolve(".5"), Scalar::Float(0.5));
        assert_eq!(resolve("1."), Scalar::Float(1.0));
        assert_eq!(resolve("1e"), Scalar::Str("1e"));
        assert_eq!(resolve("."), Scalar::Str("."));
        assert_eq!(resolve("1.2.3"), Scalar::Str("1.2.3"));
        assert_eq!(resolve("30s"), Scalar::Str("30s"));
        assert!(matches!(resolve("1".repeat(60).as_str()), Scalar::Float(_)));
    }

    #[test]
    fn positions_of_keys_and_values() {
        let node = load("a: 1\nb:\n  - x\n  - 'y'\n").unwrap();
        let Kind::Map(entries) = &node.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[1].0.pos, Pos { line: 2, col: 1 });
        let Kind::Seq(items) = &entries[1].1.kind else {
            panic!("not a seq")
        };
        assert_eq!(items[1].pos, Pos { line: 4, col: 5 });
        assert_eq!(items[1].scalar(), Some(Scalar::Str("y")));
        assert_eq!(node.at_pointer("/b/1").map(|n| n.pos), Some(items[1].pos));
    }

    #[test]
    fn refuses_anchors_aliases_tags_and_documents() {
        for (src, needle) in [
            ("a: &x 1\nb: *x\n", "anchors"),
            ("a: *x\n", ""),
            ("a: !!str 1\n", "tags"),
            ("a: 1\n---\nb: 2\n", "one YAML document"),
            ("a: 1\na: 2\n", "duplicate key `a`"),
            ("? [a]\n: 1\n", "plain strings"),
        ] {
            let err = load(src).unwrap_err();
            assert!(err.1.contains(needle), "{src:?}: {err:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let src = "[".repeat(100_000);
        let err = load(&src).unwrap_err();
        assert!(err.1.contains("nesting is deeper"), "{err:?}");
        let src = format!("a: {}1{}", "[".repeat(40), "]".repeat(40));
        assert!(load(&src).is_ok());
    }
}
