//! The two error types: found while parsing, found while evaluating.

/// A template or expression that cannot be parsed, or that breaks a static limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at character {offset}: {message}")]
pub struct ParseError {
    /// Character (not byte) offset in the source string where the problem is.
    pub offset: usize,
    /// What is wrong, for an analyst.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(offset: usize, message: impl Into<String>) -> Self {
        ParseError {
            offset,
            message: message.into(),
        }
    }

    /// The same error, `by` characters further into an enclosing string.
    pub(crate) fn shifted(mut self, by: usize) -> Self {
        self.offset += by;
        self
    }
}

/// An evaluation that failed: a missing key, a type mismatch, a function refusing its input,
/// a limit reached.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    /// What failed, naming the path or function (`steps.vt.output.malicious: no such key …`).
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
        }
    }

    /// The same error, prefixed with where it happened (a JSON pointer).
    pub(crate) fn at(self, pointer: &str) -> Self {
        if pointer.is_empty() {
            self
        } else {
            EvalError::new(format!("{pointer}: {}", self.message))
        }
    }
}
