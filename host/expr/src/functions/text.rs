//! Strings and regexes.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value as Cel;
use cel::objects::Key;

use super::{
    Def, count, def, int, list, list_value, map_value, regex, str_list, str_value, string,
    too_long, too_many,
};
use crate::convert::cel_to_json;
use crate::limits::{MAX_LIST_ITEMS, MAX_STRING_BYTES};

pub(super) fn defs() -> Vec<Def> {
    vec![
        def!("lower", 1, lower, "lower(s: string) -> string",
            "Lower-cases (Unicode).", "lower('Evil.COM')" => r#""evil.com""#),
        def!("upper", 1, upper, "upper(s: string) -> string",
            "Upper-cases (Unicode).", "'cve-2024-1'.upper()" => r#""CVE-2024-1""#),
        def!("trim", 1, trim, "trim(s: string) -> string",
            "Removes leading and trailing whitespace.", "'  a b '.trim()" => r#""a b""#),
        def!("trimStart", 1, trim_start, "trimStart(s: string) -> string",
            "Removes leading whitespace.", "'  a '.trimStart()" => r#""a ""#),
        def!("trimEnd", 1, trim_end, "trimEnd(s: string) -> string",
            "Removes trailing whitespace.", "'  a '.trimEnd()" => r#""  a""#),
        def!("trimPrefix", 2, trim_prefix, "trimPrefix(s: string, prefix: string) -> string",
            "Removes `prefix` once, if `s` starts with it.",
            "'DOMAIN\\\\alice'.trimPrefix('DOMAIN\\\\')" => r#""alice""#),
        def!("trimSuffix", 2, trim_suffix, "trimSuffix(s: string, suffix: string) -> string",
            "Removes `suffix` once, if `s` ends with it.",
            "'host.corp.local'.trimSuffix('.local')" => r#""host.corp""#),
        def!("split", 2, split, "split(s: string, sep: string) -> list(string)",
            "Splits on every `sep` (an empty `sep` splits into characters).",
            "'a,b,,c'.split(',')" => r#"["a","b","","c"]"#),
        def!("split", 3, split_n, "split(s: string, sep: string, n: int) -> list(string)",
            "Splits into at most `n` parts (the last holds the rest; n < 0: no limit).",
            "'k=v=w'.split('=', 2)" => r#"["k","v=w"]"#),
        def!("join", 1, join, "join(l: list) -> string",
            "Concatenates the elements (strings, numbers, bools).",
            "['a', 'b', 1].join()" => r#""ab1""#),
        def!("join", 2, join_sep, "join(l: list, sep: string) -> string",
            "Concatenates the elements with `sep` between them.",
            "['10.0.0.1', '10.0.0.2'].join(', ')" => r#""10.0.0.1, 10.0.0.2""#),
        def!("replace", 3, replace, "replace(s: string, old: string, new: string) -> string",
            "Replaces every occurrence of `old`.",
            "'a-b-c'.replace('-', '_')" => r#""a_b_c""#),
        def!("replace", 4, replace_n,
            "replace(s: string, old: string, new: string, n: int) -> string",
            "Replaces the first `n` occurrences (n < 0: all).",
            "'a-b-c'.replace('-', '_', 1)" => r#""a_b-c""#),
        def!("substring", 2, substring, "substring(s: string, start: int) -> string",
            "The characters from `start` (a character index) to the end.",
            "'hello'.substring(1)" => r#""ello""#),
        def!("substring", 3, substring_range,
            "substring(s: string, start: int, end: int) -> string",
            "The characters from `start` up to (not including) `end`.",
            "'hello'.substring(1, 3)" => r#""el""#),
        def!("indexOf", 2, index_of, "indexOf(s: string|list, x) -> int",
            "Character index of the first `x` in a string, or index of the first element equal \
             to `x` in a list; -1 when absent.",
            "'a.b.c'.indexOf('.')" => "1"),
        def!("lastIndexOf", 2, last_index_of, "lastIndexOf(s: string|list, x) -> int",
            "Like `indexOf`, from the end.", "[1, 2, 1].lastIndexOf(1)" => "2"),
        def!("charAt", 2, char_at, "charAt(s: string, i: int) -> string",
            "The character at index `i` (`\"\"` at the end).", "'abc'.charAt(1)" => r#""b""#),
        def!("padStart", 2, pad_start, "padStart(s: string, width: int) -> string",
            "Pads with spaces on the left to `width` characters.",
            "'7'.padStart(3)" => r#""  7""#),
        def!("padStart", 3, pad_start_with,
            "padStart(s: string, width: int, pad: string) -> string",
            "Pads with `pad` on the left to `width` characters.",
            "'7'.padStart(3, '0')" => r#""007""#),
        def!("padEnd", 2, pad_end, "padEnd(s: string, width: int) -> string",
            "Pads with spaces on the right to `width` characters.",
            "'ab'.padEnd(4) + '|'" => r#""ab  |""#),
        def!("padEnd", 3, pad_end_with, "padEnd(s: string, width: int, pad: string) -> string",
            "Pads with `pad` on the right to `width` characters.",
            "'ab'.padEnd(4, '.')" => r#""ab..""#),
        def!("repeat", 2, repeat, "repeat(s: string, n: int) -> string",
            "`s` repeated `n` times (refused past the string size cap).",
            "'ab'.repeat(3)" => r#""ababab""#),
        def!("reverse", 1, reverse, "reverse(x: string|list) -> string|list",
            "Characters or elements in reverse order.", "reverse([1, 2, 3])" => "[3,2,1]"),
        def!("capitalize", 1, capitalize, "capitalize(s: string) -> string",
            "Upper-cases the first character.", "'critical'.capitalize()" => r#""Critical""#),
        def!("truncate", 2, truncate, "truncate(s: string, n: int) -> string",
            "The first `n` characters.", "'a long summary'.truncate(6)" => r#""a long""#),
        def!("lines", 1, lines, "lines(s: string) -> list(string)",
            "Splits into lines (`\\n` or `\\r\\n`).", "'a\\r\\nb\\n'.lines()" => r#"["a","b"]"#),
        def!("format", 2, format, "format(fmt: string, args: list) -> string",
            "printf-style: `%s` (any value; strings raw, others as JSON), `%d`, `%f`, `%.Nf`, \
             `%x`, `%X`, `%%`.",
            "'%s has %d hits (%.1f%%)'.format(['evil.com', 3, 42.857])"
                => r#""evil.com has 3 hits (42.9%)""#),
        def!("matches", 2, matches, "matches(s: string, re: string) -> bool",
            "Whether the regex matches anywhere in `s` (RE2 syntax, linear time).",
            "'INV-2024-001'.matches('^INV-\\\\d{4}-')" => "true"),
        def!("find", 2, find, "find(s: string, re: string) -> string",
            "The first match of the regex, or `\"\"`.",
            "'user=alice id=7'.find('id=\\\\d+')" => r#""id=7""#),
        def!("findAll", 2, find_all, "findAll(s: string, re: string) -> list(string)",
            "Every match of the regex.", "'a1 b22 c333'.findAll('\\\\d+')" => r#"["1","22","333"]"#),
        def!("findAll", 3, find_all_n, "findAll(s: string, re: string, n: int) -> list(string)",
            "At most `n` matches (n < 0: all).",
            "'a1 b22 c333'.findAll('\\\\d+', 2)" => r#"["1","22"]"#),
        def!("regexReplace", 3, regex_replace,
            "regexReplace(s: string, re: string, replacement: string) -> string",
            "Replaces every match; `$1`, `${name}` insert capture groups.",
            "'alice@corp.com'.regexReplace('^([^@]+)@.*$', '$1')" => r#""alice""#),
        def!("captures", 2, captures, "captures(s: string, re: string) -> list",
            "The first match's groups: `[whole, group1, …]` (null for a group that did not \
             take part), or `[]` without a match.",
            "'src=10.0.0.1:443'.captures('([\\\\d.]+):(\\\\d+)')"
                => r#"["10.0.0.1:443","10.0.0.1","443"]"#),
        def!("namedCaptures", 2, named_captures, "namedCaptures(s: string, re: string) -> map",
            "The first match's named groups (`(?P<name>…)`), or `{}` without a match.",
            "'user=bob'.namedCaptures('user=(?P<user>\\\\w+)')" => r#"{"user":"bob"}"#),
    ]
}

fn s1(args: &[Cel], f: impl FnOnce(&str) -> String) -> Result<Cel, String> {
    str_value(f(string(args, 0)?))
}

fn lower(args: &[Cel]) -> Result<Cel, String> {
    s1(args, str::to_lowercase)
}

fn upper(args: &[Cel]) -> Result<Cel, String> {
    s1(args, str::to_uppercase)
}

fn trim(args: &[Cel]) -> Result<Cel, String> {
    s1(args, |s| s.trim().to_owned())
}

fn trim_start(args: &[Cel]) -> Result<Cel, String> {
    s1(args, |s| s.trim_start().to_owned())
}

fn trim_end(args: &[Cel]) -> Result<Cel, String> {
    s1(args, |s| s.trim_end().to_owned())
}

fn trim_prefix(args: &[Cel]) -> Result<Cel, String> {
    let (s, p) = (string(args, 0)?, string(args, 1)?);
    str_value(s.strip_prefix(p).unwrap_or(s))
}

fn trim_suffix(args: &[Cel]) -> Result<Cel, String> {
    let (s, p) = (string(args, 0)?, string(args, 1)?);
    str_value(s.strip_suffix(p).unwrap_or(s))
}

fn split_parts(s: &str, sep: &str, limit: Option<usize>) -> Result<Cel, String> {
    let limit = limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Ok(list_value(Vec::new()));
    }
    let parts: Vec<String> = if sep.is_empty() {
        let chars: Vec<char> = s.chars().collect();
        if chars.len() > MAX_LIST_ITEMS && limit > MAX_LIST_ITEMS {
            return Err(too_many(chars.len()));
        }
        let mut out: Vec<String> = chars.iter().take(limit - 1).map(char::to_string).collect();
        if chars.len() >= limit {
            out.push(chars[limit - 1..].iter().collect());
        }
        out
    } else {
        let mut out = Vec::new();
        for part in s.splitn(limit, sep) {
            if out.len() >= MAX_LIST_ITEMS {
                return Err(too_many(out.len() + 1));
            }
            out.push(part.to_owned());
        }
        out
    };
    Ok(str_list(parts))
}

fn split(args: &[Cel]) -> Result<Cel, String> {
    split_parts(string(args, 0)?, string(args, 1)?, None)
}

fn split_n(args: &[Cel]) -> Result<Cel, String> {
    let n = int(args, 2)?;
    let limit = usize::try_from(n).ok();
    split_parts(string(args, 0)?, string(args, 1)?, limit)
}

/// An element as text for `join`: strings raw, numbers and bools written out.
fn join_item(v: &Cel, i: usize) -> Result<String, String> {
    match v {
        Cel::String(s) => Ok(s.as_str().to_owned()),
        Cel::Int(_) | Cel::UInt(_) | Cel::Float(_) | Cel::Bool(_) => {
            Ok(cel_to_json(v)?.to_string())
        }
        other => Err(format!(
            "element {i} is a {}; only strings, numbers and bools can be joined",
            crate::convert::type_name(other)
        )),
    }
}

fn join_with(items: &[Cel], sep: &str) -> Result<Cel, String> {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(&join_item(item, i)?);
        if out.len() > MAX_STRING_BYTES {
            return Err(too_long(out.len()));
        }
    }
    str_value(out)
}

fn join(args: &[Cel]) -> Result<Cel, String> {
    join_with(list(args, 0)?, "")
}

fn join_sep(args: &[Cel]) -> Result<Cel, String> {
    join_with(list(args, 0)?, string(args, 1)?)
}

fn replace_limited(args: &[Cel], limit: Option<usize>) -> Result<Cel, String> {
    let (s, old, new) = (string(args, 0)?, string(args, 1)?, string(args, 2)?);
    let limit = limit.unwrap_or(usize::MAX);
    // Count first, so an expansion past the cap is refused before it is built.
    let occurrences = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    }
    .min(limit);
    let len =
        (s.len() + occurrences.saturating_mul(new.len())).saturating_sub(occurrences * old.len());
    if len > MAX_STRING_BYTES {
        return Err(too_long(len));
    }
    str_value(s.replacen(old, new, limit))
}

fn replace(args: &[Cel]) -> Result<Cel, String> {
    replace_limited(args, None)
}

fn replace_n(args: &[Cel]) -> Result<Cel, String> {
    replace_limited(args, usize::try_from(int(args, 3)?).ok())
}

/// The byte offset of character index `i` in `s`, or an error past the end.
fn char_boundary(s: &str, i: i64, what: &str) -> Result<usize, String> {
    let len = s.chars().count();
    let at = usize::try_from(i)
        .ok()
        .filter(|&i| i <= len)
        .ok_or_else(|| format!("{what} {i} is out of range for a string of {len} characters"))?;
    Ok(s.char_indices().nth(at).map_or(s.len(), |(b, _)| b))
}

fn substring(args: &[Cel]) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let start = char_boundary(s, int(args, 1)?, "start")?;
    str_value(&s[start..])
}

fn substring_range(args: &[Cel]) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let (a, b) = (int(args, 1)?, int(args, 2)?);
    if b < a {
        return Err(format!("end {b} is before start {a}"));
    }
    let start = char_boundary(s, a, "start")?;
    let end = char_boundary(s, b, "end")?;
    str_value(&s[start..end])
}

fn char_index(s: &str, byte: usize) -> i64 {
    s[..byte].chars().count() as i64
}

fn index_of(args: &[Cel]) -> Result<Cel, String> {
    match args.first() {
        Some(Cel::List(items)) => {
            let x = &args[1];
            Ok(Cel::Int(
                items.iter().position(|v| v == x).map_or(-1, |i| i as i64),
            ))
        }
        _ => {
            let (s, sub) = (string(args, 0)?, string(args, 1)?);
            Ok(Cel::Int(s.find(sub).map_or(-1, |b| char_index(s, b))))
        }
    }
}

fn last_index_of(args: &[Cel]) -> Result<Cel, String> {
    match args.first() {
        Some(Cel::List(items)) => {
            let x = &args[1];
            Ok(Cel::Int(
                items.iter().rposition(|v| v == x).map_or(-1, |i| i as i64),
            ))
        }
        _ => {
            let (s, sub) = (string(args, 0)?, string(args, 1)?);
            Ok(Cel::Int(s.rfind(sub).map_or(-1, |b| char_index(s, b))))
        }
    }
}

fn char_at(args: &[Cel]) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let at = char_boundary(s, int(args, 1)?, "index")?;
    str_value(s[at..].chars().next().map(String::from).unwrap_or_default())
}

fn pad(args: &[Cel], pad: &str, left: bool) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let width = count(args, 1, MAX_STRING_BYTES)?;
    if pad.is_empty() {
        return Err("the padding must not be empty".into());
    }
    let have = s.chars().count();
    if have >= width {
        return str_value(s);
    }
    let fill: String = pad.chars().cycle().take(width - have).collect();
    if fill.len() + s.len() > MAX_STRING_BYTES {
        return Err(too_long(fill.len() + s.len()));
    }
    str_value(if left { fill + s } else { format!("{s}{fill}") })
}

fn pad_start(args: &[Cel]) -> Result<Cel, String> {
    pad(args, " ", true)
}

fn pad_start_with(args: &[Cel]) -> Result<Cel, String> {
    pad(args, string(args, 2)?, true)
}

fn pad_end(args: &[Cel]) -> Result<Cel, String> {
    pad(args, " ", false)
}

fn pad_end_with(args: &[Cel]) -> Result<Cel, String> {
    pad(args, string(args, 2)?, false)
}

fn repeat(args: &[Cel]) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let n = count(args, 1, MAX_STRING_BYTES)?;
    let len = s.len().saturating_mul(n);
    if len > MAX_STRING_BYTES {
        return Err(too_long(len));
    }
    str_value(s.repeat(n))
}

fn reverse(args: &[Cel]) -> Result<Cel, String> {
    match args.first() {
        Some(Cel::List(items)) => Ok(list_value(items.iter().rev().cloned().collect())),
        _ => s1(args, |s| s.chars().rev().collect()),
    }
}

fn capitalize(args: &[Cel]) -> Result<Cel, String> {
    s1(args, |s| {
        let mut chars = s.chars();
        match chars.next() {
            Some(c) => c.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    })
}

fn truncate(args: &[Cel]) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let n = count(args, 1, usize::MAX)?;
    str_value(s.chars().take(n).collect::<String>())
}

fn lines(args: &[Cel]) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let lines: Vec<String> = s.lines().map(str::to_owned).collect();
    if lines.len() > MAX_LIST_ITEMS {
        return Err(too_many(lines.len()));
    }
    Ok(str_list(lines))
}

/// `%s` text of a value: strings raw, everything else as compact JSON.
fn text_of(v: &Cel) -> Result<String, String> {
    match v {
        Cel::String(s) => Ok(s.as_str().to_owned()),
        other => Ok(cel_to_json(other)?.to_string()),
    }
}

fn format(args: &[Cel]) -> Result<Cel, String> {
    let fmt = string(args, 0)?;
    let values = list(args, 1)?;
    let mut next = values.iter();
    let mut take = |spec: &str| {
        next.next()
            .ok_or_else(|| format!("`{spec}` has no matching value in the list"))
    };
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Optional precision: `%.2f`.
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            let p: usize = digits
                .parse()
                .map_err(|_| "`%.` must be followed by a precision, e.g. `%.2f`".to_owned())?;
            if p > 20 {
                return Err("a precision above 20 is not supported".into());
            }
            precision = Some(p);
        }
        let verb = chars
            .next()
            .ok_or_else(|| "the format ends with a lone `%`".to_owned())?;
        let spec = format!("%{verb}");
        match verb {
            '%' => out.push('%'),
            's' | 'v' => out.push_str(&text_of(take(&spec)?)?),
            'd' => match take(&spec)? {
                Cel::Int(n) => out.push_str(&n.to_string()),
                Cel::UInt(n) => out.push_str(&n.to_string()),
                Cel::Float(f) if f.fract() == 0.0 => out.push_str(&format!("{f:.0}")),
                other => {
                    return Err(format!(
                        "`%d` needs an int, got {}",
                        crate::convert::type_name(other)
                    ));
                }
            },
            'f' => {
                let v = take(&spec)?;
                let f = match v {
                    Cel::Int(n) => *n as f64,
                    Cel::UInt(n) => *n as f64,
                    Cel::Float(f) => *f,
                    other => {
                        return Err(format!(
                            "`%f` needs a number, got {}",
                            crate::convert::type_name(other)
                        ));
                    }
                };
                out.push_str(&format!("{f:.*}", precision.unwrap_or(6)));
            }
            'x' | 'X' => {
                let hex = match take(&spec)? {
                    Cel::Int(n) => format!("{n:x}"),
                    Cel::UInt(n) => format!("{n:x}"),
                    Cel::String(s) => hex::encode(s.as_bytes()),
                    Cel::Bytes(b) => hex::encode(b.as_slice()),
                    other => {
                        return Err(format!(
                            "`%x` needs an int, string or bytes, got {}",
                            crate::convert::type_name(other)
                        ));
                    }
                };
                out.push_str(&if verb == 'X' { hex.to_uppercase() } else { hex });
            }
            other => return Err(format!("`%{other}` is not a supported format verb")),
        }
        if out.len() > MAX_STRING_BYTES {
            return Err(too_long(out.len()));
        }
    }
    str_value(out)
}

fn matches(args: &[Cel]) -> Result<Cel, String> {
    let (s, re) = (string(args, 0)?, regex(string(args, 1)?)?);
    Ok(Cel::Bool(re.is_match(s)))
}

fn find(args: &[Cel]) -> Result<Cel, String> {
    let (s, re) = (string(args, 0)?, regex(string(args, 1)?)?);
    str_value(re.find(s).map(|m| m.as_str()).unwrap_or(""))
}

fn find_limited(args: &[Cel], limit: Option<usize>) -> Result<Cel, String> {
    let (s, re) = (string(args, 0)?, regex(string(args, 1)?)?);
    let mut out = Vec::new();
    for m in re.find_iter(s).take(limit.unwrap_or(usize::MAX)) {
        if out.len() >= MAX_LIST_ITEMS {
            return Err(too_many(out.len() + 1));
        }
        out.push(m.as_str().to_owned());
    }
    Ok(str_list(out))
}

fn find_all(args: &[Cel]) -> Result<Cel, String> {
    find_limited(args, None)
}

fn find_all_n(args: &[Cel]) -> Result<Cel, String> {
    find_limited(args, usize::try_from(int(args, 2)?).ok())
}

/// Expands replacements into the output, stopping (and remembering) at the size cap.
struct Capped<'r> {
    replacement: &'r str,
    overflow: bool,
}

impl regex::Replacer for &mut Capped<'_> {
    fn replace_append(&mut self, caps: &regex::Captures<'_>, dst: &mut String) {
        if self.overflow {
            return;
        }
        caps.expand(self.replacement, dst);
        if dst.len() > MAX_STRING_BYTES {
            self.overflow = true;
        }
    }
}

fn regex_replace(args: &[Cel]) -> Result<Cel, String> {
    let (s, re, replacement) = (string(args, 0)?, regex(string(args, 1)?)?, string(args, 2)?);
    let mut capped = Capped {
        replacement,
        overflow: false,
    };
    let out = re.replace_all(s, &mut capped).into_owned();
    if capped.overflow || out.len() > MAX_STRING_BYTES {
        return Err(too_long(out.len().max(MAX_STRING_BYTES + 1)));
    }
    str_value(out)
}

fn captures(args: &[Cel]) -> Result<Cel, String> {
    let (s, re) = (string(args, 0)?, regex(string(args, 1)?)?);
    let Some(caps) = re.captures(s) else {
        return Ok(list_value(Vec::new()));
    };
    Ok(list_value(
        caps.iter()
            .map(|g| match g {
                Some(m) => Cel::String(Arc::new(m.as_str().to_owned())),
                None => Cel::Null,
            })
            .collect(),
    ))
}

fn named_captures(args: &[Cel]) -> Result<Cel, String> {
    let (s, re) = (string(args, 0)?, regex(string(args, 1)?)?);
    let mut out = HashMap::new();
    if let Some(caps) = re.captures(s) {
        for name in re.capture_names().flatten() {
            let value = caps
                .name(name)
                .map_or(Cel::Null, |m| Cel::String(Arc::new(m.as_str().to_owned())));
            out.insert(Key::String(Arc::new(name.to_owned())), value);
        }
    }
    Ok(map_value(out))
}
