//! Record and replay of secret operations (see [`crate::tape`]).
//!
//! A reveal is recorded by name only; replay answers with the stand-in
//! [`stand_in`]. An HMAC is recorded with its message and MAC (which does not
//! reveal the key), so replay is exact. Grant refusals are decided again in
//! replay and never recorded; replay needs no secret values at all.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::SecretsEvent;
use super::host::SecretsStep;
use crate::audit::AuditEvent;
use crate::bindings::allama::action::secrets::SecretError;
use crate::tape::{Body, Call, Exchange, ReplayMismatch, clip, stand_in};

/// A secret operation as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRequest {
    /// `reveal(name)`.
    Reveal {
        /// Secret name.
        name: String,
    },
    /// `hmac-sha256(name, data)`.
    Hmac {
        /// Secret name.
        name: String,
        /// The message.
        data: Body,
    },
}

/// What a secret operation returned (never a secret value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretResponse {
    /// The plaintext was handed over (replay hands over the stand-in).
    Revealed,
    /// The MAC, hex.
    Mac(String),
}

impl fmt::Display for SecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRequest::Reveal { name } => write!(f, "secrets reveal `{}`", clip(name, 200)),
            SecretRequest::Hmac { name, data } => {
                write!(f, "secrets hmac-sha256 `{}` over {data}", clip(name, 200))
            }
        }
    }
}

impl Call for SecretRequest {
    type Response = SecretResponse;

    fn same_call(&self, recorded: &Self) -> bool {
        self == recorded
    }

    fn into_exchange(self, response: Self::Response) -> Exchange {
        Exchange::Secret {
            request: self,
            response,
        }
    }

    fn of(exchange: &Exchange) -> Option<(&Self, &Self::Response)> {
        match exchange {
            Exchange::Secret { request, response } => Some((request, response)),
            _ => None,
        }
    }

    fn check(&self, response: &Self::Response) -> Result<(), String> {
        match (self, response) {
            (SecretRequest::Reveal { .. }, SecretResponse::Revealed) => Ok(()),
            (SecretRequest::Hmac { .. }, SecretResponse::Mac(hex)) => {
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(())
                } else {
                    Err("an HMAC-SHA256 is 64 hex digits".into())
                }
            }
            (SecretRequest::Reveal { .. }, _) => Err("a reveal is answered `revealed`".into()),
            (SecretRequest::Hmac { .. }, _) => Err("an HMAC is answered with `mac`".into()),
        }
    }

    fn weight(&self, _response: &Self::Response) -> u64 {
        match self {
            SecretRequest::Reveal { name } => name.len() as u64,
            SecretRequest::Hmac { name, data } => (name.len() + data.0.len() + 64) as u64,
        }
    }
}

impl SecretsStep {
    fn diverged(&self, m: ReplayMismatch) -> SecretError {
        SecretError::Denied(format!("{}, secrets: {m}", self.env.who()))
    }

    /// `reveal` on a taped step.
    pub(super) fn reveal_taped(&self, name: String) -> Result<String, SecretError> {
        let tape = &self.env.tape;
        let call = SecretRequest::Reveal { name: name.clone() };
        let value = if tape.replaying() {
            if let Err(d) = self.cap.check_reveal(&name) {
                return Err(self.refuse(&name, "reveal", d));
            }
            match tape.replay(&call) {
                Some(Err(m)) => return Err(self.diverged(m)),
                _ => stand_in(&name),
            }
        } else {
            match self.cap.reveal(&name) {
                Ok(v) => {
                    tape.record(call, SecretResponse::Revealed);
                    v.expose().to_string()
                }
                Err(d) => return Err(self.refuse(&name, "reveal", d)),
            }
        };
        self.env
            .audit
            .emit(AuditEvent::Secrets(SecretsEvent::Revealed { name }));
        Ok(value)
    }

    /// `hmac-sha256` on a taped step.
    pub(super) fn hmac_taped(&self, name: String, data: Vec<u8>) -> Result<Vec<u8>, SecretError> {
        let tape = &self.env.tape;
        let call = SecretRequest::Hmac {
            name: name.clone(),
            data: Body(tape.scrub(&data)),
        };
        let mac = if tape.replaying() {
            if let Err(d) = self.cap.check_hmac(&name) {
                return Err(self.refuse(&name, "hmac", d));
            }
            match tape.replay(&call) {
                Some(Ok(SecretResponse::Mac(h))) => hex::decode(h).map_err(|e| {
                    SecretError::Denied(format!(
                        "{}, secrets: the recorded MAC is not hex: {e}",
                        self.env.who()
                    ))
                })?,
                Some(Err(m)) => return Err(self.diverged(m)),
                // `check` pairs an HMAC with a MAC before it is served.
                _ => {
                    return Err(SecretError::Denied(format!(
                        "{}, secrets: the recording answers an HMAC without a MAC",
                        self.env.who()
                    )));
                }
            }
        } else {
            match self.cap.hmac_sha256(&name, &data) {
                Ok(mac) => {
                    tape.record(call, SecretResponse::Mac(hex::encode(&mac)));
                    mac
                }
                Err(d) => return Err(self.refuse(&name, "hmac", d)),
            }
        };
        self.env
            .audit
            .emit(AuditEvent::Secrets(SecretsEvent::Hmac { name }));
        Ok(mac)
    }
}
