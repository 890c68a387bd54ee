//! The `allama:action/secrets` host implementation.

use std::sync::Arc;

use super::{SecretDenial, Secrets, SecretsEvent};
use crate::audit::AuditEvent;
use crate::bindings::allama::action::secrets::{Host, SecretError};
use crate::capability::StepEnv;

/// Per-step state of the secrets capability.
pub struct SecretsStep {
    pub(super) cap: Arc<Secrets>,
    pub(super) env: StepEnv,
}

impl SecretsStep {
    pub(crate) fn new(cap: Arc<Secrets>, env: StepEnv) -> Self {
        Self { cap, env }
    }

    pub(super) fn refuse(&self, name: &str, operation: &str, denial: SecretDenial) -> SecretError {
        self.env
            .audit
            .emit(AuditEvent::Secrets(SecretsEvent::Denied {
                name: name.to_string(),
                operation: operation.to_string(),
                reason: denial.to_string(),
            }));
        let message = format!("{}, secrets: {denial}", self.env.who());
        match denial {
            SecretDenial::NoValue { .. } => SecretError::NotFound(message),
            _ => SecretError::Denied(message),
        }
    }
}

impl Host for SecretsStep {
    async fn reveal(&mut self, name: String) -> Result<String, SecretError> {
        if !self.env.tape.is_off() {
            return self.reveal_taped(name);
        }
        match self.cap.reveal(&name) {
            Ok(v) => {
                self.env
                    .audit
                    .emit(AuditEvent::Secrets(SecretsEvent::Revealed { name }));
                Ok(v.expose().to_string())
            }
            Err(d) => Err(self.refuse(&name, "reveal", d)),
        }
    }

    async fn hmac_sha256(&mut self, name: String, data: Vec<u8>) -> Result<Vec<u8>, SecretError> {
        if !self.env.tape.is_off() {
            return self.hmac_taped(name, data);
        }
        match self.cap.hmac_sha256(&name, &data) {
            Ok(mac) => {
                self.env
                    .audit
                    .emit(AuditEvent::Secrets(SecretsEvent::Hmac { name }));
                Ok(mac)
            }
            Err(d) => Err(self.refuse(&name, "hmac", d)),
        }
    }
}
