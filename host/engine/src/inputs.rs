//! A run's inputs checked against the playbook's `inputs`, defaults applied.

use allama_playbook::Playbook;
use serde_json::{Map, Value};

/// The inputs given do not fit the playbook.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    /// Inputs must be a map.
    #[error("playbook {playbook}: inputs must be a map of names to values, got {got}")]
    NotAMap {
        /// The playbook.
        playbook: String,
        /// What was given.
        got: &'static str,
    },
    /// A required input is missing.
    #[error("playbook {playbook}: input `{name}` is required")]
    Missing {
        /// The playbook.
        playbook: String,
        /// The input.
        name: String,
    },
    /// An input has the wrong type.
    #[error("playbook {playbook}: input `{name}` must be {expected}, got {got}")]
    WrongType {
        /// The playbook.
        playbook: String,
        /// The input.
        name: String,
        /// The declared type.
        expected: &'static str,
        /// What was given.
        got: &'static str,
    },
    /// An input the playbook does not declare.
    #[error("playbook {playbook}: unknown input `{name}` (declared: {declared})")]
    Unknown {
        /// The playbook.
        playbook: String,
        /// The input.
        name: String,
        /// The declared inputs, comma-separated.
        declared: String,
    },
}

/// Checks `given` against the playbook's declared inputs and fills defaults.
/// `null` means "no inputs".
pub fn resolve_inputs(playbook: &Playbook, given: Value) -> Result<Value, InputError> {
    let mut given = match given {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        other => {
            return Err(InputError::NotAMap {
                playbook: playbook.id.clone(),
                got: kind(&other),
            });
        }
    };
    if let Some(name) = given.keys().find(|k| !playbook.inputs.contains_key(*k)) {
        return Err(InputError::Unknown {
            playbook: playbook.id.clone(),
            name: name.clone(),
            declared: playbook
                .inputs
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut out = Map::new();
    for (name, spec) in &playbook.inputs {
        match given.remove(name).or_else(|| spec.default.clone()) {
            Some(v) => {
                if !spec.kind.accepts(&v) {
                    return Err(InputError::WrongType {
                        playbook: playbook.id.clone(),
                        name: name.clone(),
                        expected: spec.kind.name(),
                        got: kind(&v),
                    });
                }
                out.insert(name.clone(), v);
            }
            None if spec.required => {
                return Err(InputError::Missing {
                    playbook: playbook.id.clone(),
                    name: name.clone(),
                });
            }
            None => {
                out.insert(name.clone(), Value::Null);
            }
        }
    }
    Ok(Value::Object(out))
}

/// What kind of JSON value `v` is, for messages ("must be a list, got a map").
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}
