//! Diagnostics: every problem found in a playbook, with where it is.

use std::fmt;

use crate::limits::MAX_DIAGNOSTICS;
use crate::yaml::Pos;

/// One problem in a playbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name given to [`crate::parse`].
    pub file: String,
    /// 1-based line of the offending key or value.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
    /// Where in the playbook, such as `steps[2].with.ip`; empty for the file as a whole.
    pub path: String,
    /// What is wrong, and often how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a playbook file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn lines(diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

/// Collects diagnostics for one file.
pub(crate) struct Sink {
    file: String,
    found: Vec<Diagnostic>,
    dropped: usize,
}

impl Sink {
    pub fn new(file: &str) -> Sink {
        Sink {
            file: file.to_string(),
            found: Vec::new(),
            dropped: 0,
        }
    }

    /// Records a problem at `pos`.
    pub fn err(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        if self.found.len() >= MAX_DIAGNOSTICS {
            self.dropped += 1;
            return;
        }
        self.found.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// How many problems were recorded (dropped ones included).
    pub fn count(&self) -> usize {
        self.found.len() + self.dropped
    }

    /// The diagnostics, sorted by position, or `None` when there are none.
    pub fn finish(mut self) -> Option<Diagnostics> {
        if self.found.is_empty() {
            return None;
        }
        // Stable: problems at the same place keep the order they were found in.
        self.found.sort_by_key(|d| (d.line, d.col));
        if self.dropped > 0 {
            let last = self.found.last().map_or((1, 1), |d| (d.line, d.col));
            self.found.push(Diagnostic {
                file: self.file.clone(),
                line: last.0,
                col: last.1,
                path: String::new(),
                message: format!(
                    "{} more problems not shown (at most {MAX_DIAGNOSTICS} are reported)",
                    self.dropped
                ),
            });
        }
        Some(Diagnostics(self.found))
    }
}

/// `parent.name`, or `parent["odd name"]` for names that are not identifiers.
pub(crate) fn field(parent: &str, name: &str) -> String {
    let simple = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), simple) {
        (true, true) => name.to_string(),
        (false, true) => format!("{parent}.{name}"),
        (_, false) => format!("{parent}[{}]", serde_json::Value::from(name)),
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// ` (did you mean `x`?)` when one candidate is close to `word`, else empty.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1) && *d > 0)
        .min_by_key(|(d, _)| *d);
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_suggestions() {
        assert_eq!(field("steps[0]", "with"), "steps[0].with");
        assert_eq!(field("", "id"), "id");
        assert_eq!(field("x", "a b"), "x[\"a b\"]");
        assert_eq!(
            did_you_mean("neds", ["needs", "name"]),
            " (did you mean `needs`?)"
        );
        assert_eq!(did_you_mean("zzzzzz", ["needs", "name"]), "");
    }
}
