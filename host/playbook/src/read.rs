//! Typed reads of tree nodes, each reporting what was wrong and where.

use std::time::Duration;

use crate::diag::{Sink, did_you_mean, field, index};
use crate::yaml::{Key, Kind, Node, Pos, Scalar};

/// The entries of a mapping node; reports a non-mapping and every unknown key.
pub(crate) fn mapping<'n>(
    sink: &mut Sink,
    node: &'n Node,
    path: &str,
    known: &[&str],
) -> Option<Fields<'n>> {
    let Kind::Map(entries) = &node.kind else {
        sink.err(
            node.pos,
            path,
            format!("expected a mapping, found {}", node.describe()),
        );
        return None;
    };
    for (key, _) in entries {
        if !known.contains(&key.text.as_str()) {
            sink.err(
                key.pos,
                &field(path, &key.text),
                unknown_field(&key.text, known),
            );
        }
    }
    Some(Fields { node, entries })
}

/// The message for an unknown field.
pub(crate) fn unknown_field(name: &str, known: &[&str]) -> String {
    let hint = did_you_mean(name, known.iter().copied());
    let name = crate::analyze::clip(name);
    if known.is_empty() {
        format!("unknown field `{name}`: this takes no settings")
    } else if hint.is_empty() {
        format!(
            "unknown field `{name}`; expected one of: {}",
            known.join(", ")
        )
    } else {
        format!("unknown field `{name}`{hint}")
    }
}

/// A mapping's entries.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'n> {
    pub node: &'n Node,
    pub entries: &'n [(Key, Node)],
}

impl<'n> Fields<'n> {
    /// The value of `name`. A null value (`timeout:` with nothing after it) counts as absent,
    /// as it does for serde and the JSON Schema.
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, v)| k.text == name && v.scalar() != Some(Scalar::Null))
            .map(|(_, v)| v)
    }

    /// The key of `name`, if its value is not null.
    pub fn key(&self, name: &str) -> Option<&'n Key> {
        self.entries
            .iter()
            .find(|(k, v)| k.text == name && v.scalar() != Some(Scalar::Null))
            .map(|(k, _)| k)
    }

    /// The value of `name`, reporting its absence.
    pub fn require(&self, sink: &mut Sink, path: &str, name: &str) -> Option<&'n Node> {
        let value = self.get(name);
        if value.is_none() {
            sink.err(self.node.pos, path, format!("missing `{name}`"));
        }
        value
    }
}

/// The text of a scalar (any scalar but null).
pub(crate) fn text(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    match (&node.kind, node.scalar()) {
        (Kind::Scalar { text, .. }, Some(s)) if s != Scalar::Null => Some(text.clone()),
        _ => {
            sink.err(
                node.pos,
                path,
                format!("expected a string, found {}", node.describe()),
            );
            None
        }
    }
}

/// A whole number in `min..=max`.
pub(crate) fn uint(sink: &mut Sink, node: &Node, path: &str, min: u32, max: u32) -> Option<u32> {
    match node.scalar() {
        Some(Scalar::Int(n)) if (i128::from(min)..=i128::from(max)).contains(&n) => {
            u32::try_from(n).ok()
        }
        Some(Scalar::Int(n)) => {
            sink.err(
                node.pos,
                path,
                format!("{n} is out of range: expected {min} to {max}"),
            );
            None
        }
        _ => {
            sink.err(
                node.pos,
                path,
                format!("expected a whole number, found {}", node.describe()),
            );
            None
        }
    }
}

/// `true` or `false`.
pub(crate) fn boolean(sink: &mut Sink, node: &Node, path: &str) -> Option<bool> {
    match node.scalar() {
        Some(Scalar::Bool(b)) => Some(b),
        _ => {
            sink.err(
                node.pos,
                path,
                format!("expected true or false, found {}", node.describe()),
            );
            None
        }
    }
}

/// One of the named options.
pub(crate) fn choice<T: Copy>(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    options: &[(&str, T)],
) -> Option<T> {
    let name = text(sink, node, path)?;
    if let Some((_, value)) = options.iter().find(|(n, _)| *n == name) {
        return Some(*value);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    sink.err(
        node.pos,
        path,
        format!(
            "`{}` is not one of: {}{}",
            crate::analyze::clip(&name),
            names.join(", "),
            did_you_mean(&name, names.iter().copied())
        ),
    );
    None
}

/// A string with where it was written.
pub(crate) struct Located {
    pub text: String,
    pub pos: Pos,
    pub path: String,
}

/// A list of strings, or one string standing for a list of one.
pub(crate) fn string_or_list(sink: &mut Sink, node: &Node, path: &str) -> Vec<Located> {
    let mut out = Vec::new();
    match &node.kind {
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = index(path, i);
                if let Some(text) = text(sink, item, &path) {
                    out.push(Located {
                        text,
                        pos: item.pos,
                        path,
                    });
                }
            }
        }
        Kind::Map(_) => sink.err(
            node.pos,
            path,
            "expected a string or a list of strings, found a mapping",
        ),
        Kind::Scalar { .. } => {
            if let Some(text) = text(sink, node, path) {
                out.push(Located {
                    text,
                    pos: node.pos,
                    path: path.to_string(),
                });
            }
        }
    }
    out
}

/// A list of strings (a single string is refused: these lists are sets of names).
pub(crate) fn strict_string_list(sink: &mut Sink, node: &Node, path: &str) -> Vec<String> {
    match &node.kind {
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| text(sink, item, &index(path, i)))
            .collect(),
        _ => {
            sink.err(
                node.pos,
                path,
                format!("expected a list, found {}", node.describe()),
            );
            Vec::new()
        }
    }
}

/// A duration such as `250ms`, `30s`, `5m`, `4h`, `2d` (or combined: `1h 30m`).
pub(crate) fn duration(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    allow_zero: bool,
    max: Duration,
) -> Option<Duration> {
    let text = match node.scalar() {
        Some(Scalar::Str(s)) => s.to_string(),
        Some(Scalar::Int(n)) => {
            sink.err(
                node.pos,
                path,
                format!("a duration needs a unit: write `{n}s`, `{n}ms`, `{n}m`, `{n}h` or `{n}d`"),
            );
            return None;
        }
        _ => {
            sink.err(
                node.pos,
                path,
                format!(
                    "expected a duration such as `30s`, found {}",
                    node.describe()
                ),
            );
            return None;
        }
    };
    let parsed = parse_duration(&text);
    match parsed {
        Err(why) => {
            sink.err(
                node.pos,
                path,
                format!("`{}` is not a duration: {why}", crate::analyze::clip(&text)),
            );
            None
        }
        Ok(d) if d.is_zero() && !allow_zero => {
            sink.err(node.pos, path, "must be longer than zero");
            None
        }
        Ok(d) if d > max => {
            sink.err(
                node.pos,
                path,
                format!(
                    "`{}` is too long: at most {}",
                    crate::analyze::clip(&text),
                    short(max)
                ),
            );
            None
        }
        Ok(d) => Some(d),
    }
}

/// A duration in the largest unit that writes it exactly (`365d`, `90s`, `250ms`).
pub(crate) fn short(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parses a duration with `humantime`, limited to the units the format documents.
fn parse_duration(text: &str) -> Result<Duration, String> {
    const UNITS: &[&str] = &["ms", "s", "m", "h", "d"];
    // humantime also takes months and years (of debatable length) and spelled-out units;
    // playbooks keep to the short units so a duration reads the same to everyone.
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("it is empty".into());
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err("expected a number followed by a unit (ms, s, m, h, d)".into());
        }
        let after = &rest[digits..];
        let unit_len = after.len()
            - after
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &after[..unit_len];
        if unit.is_empty() {
            return Err("a duration needs a unit (ms, s, m, h, d)".into());
        }
        if !UNITS.contains(&unit) {
            return Err(format!("unknown unit `{unit}`; use ms, s, m, h or d"));
        }
        rest = after[unit_len..].trim_start();
    }
    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 years").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999999d").is_err());
        assert!(parse_duration("5s٣").is_err());
    }
}
