//! Record and replay of kv operations (see [`crate::tape`]).
//!
//! The hook wraps the backend call: the grant, key and size checks run
//! before it in both modes (and are never recorded); in replay the store is
//! not touched and the recorded result (or the store's recorded failure, such
//! as a full quota) is served back.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::KvBackendError;
use super::host::KvStep;
use crate::bindings::allama::action::kv::KvError;
use crate::tape::{Body, Call, Exchange, Outcome, clip};

/// A kv operation as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum KvRequest {
    /// `get(key)`.
    Get {
        /// The key.
        key: String,
    },
    /// `set(key, value, ttl)`. Matched by key; the value is kept for review.
    Set {
        /// The key.
        key: String,
        /// The value written.
        value: Body,
        /// Its time to live.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_seconds: Option<u64>,
    },
    /// `delete(key)`.
    Delete {
        /// The key.
        key: String,
    },
    /// `list-prefix(prefix, limit)`.
    ListPrefix {
        /// The prefix.
        prefix: String,
        /// The most keys asked for.
        limit: u32,
    },
}

/// A kv result as recorded: `{"value": …}` for get, `"stored"` for set,
/// `{"existed": …}` for delete, `{"keys": […]}` for list-prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvResponse {
    /// What `get` found.
    Value(Option<Body>),
    /// `set` stored the value.
    Stored,
    /// Whether `delete` removed a live value.
    Existed(bool),
    /// What `list-prefix` found.
    Keys(Vec<String>),
}

/// A store failure as recorded (grant refusals are never recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvFailure {
    /// The quota would have been exceeded.
    QuotaExceeded(String),
    /// The store failed.
    Unavailable(String),
}

impl KvRequest {
    fn op(&self) -> &'static str {
        match self {
            KvRequest::Get { .. } => "get",
            KvRequest::Set { .. } => "set",
            KvRequest::Delete { .. } => "delete",
            KvRequest::ListPrefix { .. } => "list-prefix",
        }
    }
}

impl fmt::Display for KvRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvRequest::Get { key } | KvRequest::Delete { key } | KvRequest::Set { key, .. } => {
                write!(f, "kv {} `{}`", self.op(), clip(key, 300))
            }
            KvRequest::ListPrefix { prefix, limit } => {
                write!(f, "kv list-prefix `{}` (limit {limit})", clip(prefix, 300))
            }
        }
    }
}

impl Call for KvRequest {
    type Response = Outcome<KvResponse, KvFailure>;

    fn same_call(&self, recorded: &Self) -> bool {
        match (self, recorded) {
            (KvRequest::Get { key: a }, KvRequest::Get { key: b })
            | (KvRequest::Set { key: a, .. }, KvRequest::Set { key: b, .. })
            | (KvRequest::Delete { key: a }, KvRequest::Delete { key: b }) => a == b,
            // The limit shapes the answer, so it is part of the call.
            (
                KvRequest::ListPrefix {
                    prefix: a,
                    limit: la,
                },
                KvRequest::ListPrefix {
                    prefix: b,
                    limit: lb,
                },
            ) => a == b && la == lb,
            _ => false,
        }
    }

    fn into_exchange(self, response: Self::Response) -> Exchange {
        Exchange::Kv {
            request: self,
            response,
        }
    }

    fn of(exchange: &Exchange) -> Option<(&Self, &Self::Response)> {
        match exchange {
            Exchange::Kv { request, response } => Some((request, response)),
            _ => None,
        }
    }

    fn check(&self, response: &Self::Response) -> Result<(), String> {
        let fits = match (self, response) {
            (_, Outcome::Error(_)) => true,
            (KvRequest::Get { .. }, Outcome::Ok(r)) => matches!(r, KvResponse::Value(_)),
            (KvRequest::Set { .. }, Outcome::Ok(r)) => matches!(r, KvResponse::Stored),
            (KvRequest::Delete { .. }, Outcome::Ok(r)) => matches!(r, KvResponse::Existed(_)),
            (KvRequest::ListPrefix { .. }, Outcome::Ok(r)) => matches!(r, KvResponse::Keys(_)),
        };
        if fits {
            Ok(())
        } else {
            Err(format!(
                "a kv {} is answered with {}",
                self.op(),
                match self {
                    KvRequest::Get { .. } => "`value`",
                    KvRequest::Set { .. } => "`stored`",
                    KvRequest::Delete { .. } => "`existed`",
                    KvRequest::ListPrefix { .. } => "`keys`",
                }
            ))
        }
    }

    fn weight(&self, response: &Self::Response) -> u64 {
        let asked = match self {
            KvRequest::Get { key } | KvRequest::Delete { key } => key.len(),
            KvRequest::Set { key, value, .. } => key.len() + value.0.len(),
            KvRequest::ListPrefix { prefix, .. } => prefix.len(),
        };
        let answer = match response {
            Outcome::Ok(KvResponse::Value(Some(v))) => v.0.len(),
            Outcome::Ok(KvResponse::Keys(keys)) => keys.iter().map(String::len).sum(),
            Outcome::Ok(_) => 0,
            Outcome::Error(KvFailure::QuotaExceeded(m) | KvFailure::Unavailable(m)) => m.len(),
        };
        (asked + answer) as u64
    }
}

impl From<KvFailure> for KvBackendError {
    fn from(f: KvFailure) -> Self {
        match f {
            KvFailure::QuotaExceeded(m) => KvBackendError::QuotaExceeded(m),
            KvFailure::Unavailable(m) => KvBackendError::Unavailable(m),
        }
    }
}

/// How one operation's result is written to and read from a recording.
pub(super) struct Codec<T> {
    /// The result as recorded (the tape scrubs secret values from it).
    pub encode: fn(&T, &crate::tape::StepTape) -> KvResponse,
    /// The recorded result; `None` if it does not fit (`check` prevents it).
    pub decode: fn(KvResponse) -> Option<T>,
}

impl KvStep {
    /// The call as recorded (keys and values scrubbed of secret values), on
    /// a taped step only: an untaped step builds nothing.
    pub(super) fn taped(
        &self,
        call: impl FnOnce(&crate::tape::StepTape) -> KvRequest,
    ) -> Option<KvRequest> {
        (!self.env.tape.is_off()).then(|| call(&self.env.tape))
    }

    /// Call the backend, or, on a taped step (`call` is `Some`), record the
    /// call or serve it from the cassette.
    pub(super) fn backend<T>(
        &self,
        operation: &str,
        call: Option<KvRequest>,
        live: impl FnOnce() -> Result<T, KvBackendError>,
        codec: Codec<T>,
    ) -> Result<T, KvError> {
        let tape = &self.env.tape;
        let Some(call) = call else {
            return live().map_err(|e| self.backend_error(operation, e));
        };
        if let Some(served) = tape.replay(&call) {
            return match served {
                Ok(Outcome::Ok(r)) => (codec.decode)(r).ok_or_else(|| {
                    KvError::Unavailable(format!(
                        "{}, kv: the recorded result does not fit {call}",
                        self.env.who()
                    ))
                }),
                Ok(Outcome::Error(f)) => Err(self.backend_error(operation, f.into())),
                Err(m) => Err(KvError::Unavailable(format!("{}, kv: {m}", self.env.who()))),
            };
        }
        let result = live();
        let outcome = match &result {
            Ok(v) => Outcome::Ok((codec.encode)(v, tape)),
            Err(KvBackendError::QuotaExceeded(m)) => {
                Outcome::Error(KvFailure::QuotaExceeded(tape.scrub_text(m)))
            }
            Err(KvBackendError::Unavailable(m)) => {
                Outcome::Error(KvFailure::Unavailable(tape.scrub_text(m)))
            }
        };
        tape.record(call, outcome);
        result.map_err(|e| self.backend_error(operation, e))
    }
}
