//! `secrets`: secrets are handles. Components name secrets; the host
//! substitutes values into outbound requests (see `http`), reveals plaintext
//! only under `reveal = true`, and computes HMACs under `hmac = true`.

mod host;
pub(crate) mod tape;
#[cfg(test)]
mod tests;

pub use host::SecretsStep;

use allama_grant::SecretGrant;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use super::{Capability, StepEnv};

/// A secret's value. `Debug` and `Display` never show it; [`SecretValue::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wrap a plaintext.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The plaintext. Every call site is a place a secret leaves the vault.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(**redacted**)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

/// Where secret values come from (a workspace's encrypted store on a server;
/// `--secret` flags in the local runner).
pub trait SecretStore: Send + Sync {
    /// The value of `name`, if one is set.
    fn get(&self, name: &str) -> Option<SecretValue>;
}

/// Secrets held in memory.
#[derive(Default, Clone)]
pub struct MemorySecretStore {
    values: HashMap<String, SecretValue>,
}

impl MemorySecretStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set `name` to `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), SecretValue::new(value));
    }
}

impl SecretStore for MemorySecretStore {
    fn get(&self, name: &str) -> Option<SecretValue> {
        self.values.get(name).cloned()
    }
}

/// The secrets capability of one package: its grants and where values live.
pub struct Secrets {
    grants: BTreeMap<String, SecretGrant>,
    store: Arc<dyn SecretStore>,
}

/// Why the host refused a secret operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretDenial {
    /// The grant does not name this secret.
    #[error("secret `{name}` is not granted")]
    NotGranted {
        /// Secret name.
        name: String,
    },
    /// The secret may not go to this destination.
    #[error("secret `{name}` may not be sent to {origin}: its grant allows {allowed}")]
    WrongHost {
        /// Secret name.
        name: String,
        /// Where the request was going.
        origin: String,
        /// The hosts the grant lists.
        allowed: String,
    },
    /// Plaintext was asked for without `reveal = true`.
    #[error("secret `{name}` may not be revealed (its grant says reveal = false)")]
    RevealNotGranted {
        /// Secret name.
        name: String,
    },
    /// HMAC was asked for without `hmac = true`.
    #[error("secret `{name}` may not be used for HMAC (its grant says hmac = false)")]
    HmacNotGranted {
        /// Secret name.
        name: String,
    },
    /// Granted, but no value is configured.
    #[error("secret `{name}` is granted but has no value set")]
    NoValue {
        /// Secret name.
        name: String,
    },
}

impl Secrets {
    /// Configure from the grant's `[secrets.*]` sections.
    pub fn configure(grants: &BTreeMap<String, SecretGrant>, store: Arc<dyn SecretStore>) -> Self {
        Self {
            grants: grants.clone(),
            store,
        }
    }

    fn grant(&self, name: &str) -> Result<&SecretGrant, SecretDenial> {
        self.grants
            .get(name)
            .ok_or_else(|| SecretDenial::NotGranted {
                name: name.to_string(),
            })
    }

    fn value(&self, name: &str) -> Result<SecretValue, SecretDenial> {
        self.store.get(name).ok_or_else(|| SecretDenial::NoValue {
            name: name.to_string(),
        })
    }

    /// The value of `name` to send to `url`, if the grant allows it.
    pub fn for_request(&self, name: &str, url: &url::Url) -> Result<SecretValue, SecretDenial> {
        self.check_send(name, url)?;
        self.value(name)
    }

    /// Whether the grant allows sending `name` to `url`, with the reason if
    /// not (no value needed: replay checks this without sending anything).
    pub fn check_send(&self, name: &str, url: &url::Url) -> Result<(), SecretDenial> {
        let grant = self.grant(name)?;
        if !grant.may_send_to(url) {
            let allowed = if grant.hosts.is_empty() {
                "no host".to_string()
            } else {
                grant
                    .hosts
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(SecretDenial::WrongHost {
                name: name.to_string(),
                origin: origin_of(url),
                allowed,
            });
        }
        Ok(())
    }

    /// Every granted secret that has a value, for scrubbing responses and
    /// messages (values never leave the host through http).
    pub(crate) fn granted_values(&self) -> Vec<(String, SecretValue)> {
        self.grants
            .keys()
            .filter_map(|n| self.store.get(n).map(|v| (n.clone(), v)))
            .collect()
    }

    /// The names the grant lists (replay scrubs their stand-ins).
    pub(crate) fn granted_names(&self) -> impl Iterator<Item = &str> {
        self.grants.keys().map(String::as_str)
    }

    /// Whether `name` may be sent to `url` (without fetching the value).
    pub fn may_send(&self, name: &str, url: &url::Url) -> bool {
        self.grants.get(name).is_some_and(|g| g.may_send_to(url))
    }

    /// The plaintext, if `reveal = true`.
    pub fn reveal(&self, name: &str) -> Result<SecretValue, SecretDenial> {
        self.check_reveal(name)?;
        self.value(name)
    }

    /// Whether the grant allows revealing `name` (no value needed).
    pub fn check_reveal(&self, name: &str) -> Result<(), SecretDenial> {
        if !self.grant(name)?.reveal {
            return Err(SecretDenial::RevealNotGranted {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Whether the grant allows HMAC with `name` (no value needed).
    pub fn check_hmac(&self, name: &str) -> Result<(), SecretDenial> {
        if !self.grant(name)?.hmac {
            return Err(SecretDenial::HmacNotGranted {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// HMAC-SHA256 keyed with the secret, if `hmac = true`.
    pub fn hmac_sha256(&self, name: &str, data: &[u8]) -> Result<Vec<u8>, SecretDenial> {
        self.check_hmac(name)?;
        let value = self.value(name)?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, value.expose().as_bytes());
        Ok(ring::hmac::sign(&key, data).as_ref().to_vec())
    }
}

/// `scheme://host:port` of a URL, for messages and audit records.
pub(crate) fn origin_of(url: &url::Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

impl Capability for Secrets {
    const NAME: &'static str = "secrets";
    type Step = SecretsStep;
    fn prepare(self: &Arc<Self>, env: &StepEnv) -> SecretsStep {
        SecretsStep::new(self.clone(), env.clone())
    }
}

/// Audit events of the secrets capability. Values never appear here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum SecretsEvent {
    /// A secret was substituted into an outbound request.
    Sent {
        /// Secret name.
        name: String,
        /// Destination origin.
        origin: String,
    },
    /// The plaintext was handed to the component.
    Revealed {
        /// Secret name.
        name: String,
    },
    /// An HMAC was computed with the secret.
    Hmac {
        /// Secret name.
        name: String,
    },
    /// A secret operation was refused.
    Denied {
        /// Secret name.
        name: String,
        /// `send`, `reveal` or `hmac`.
        operation: String,
        /// Why.
        reason: String,
    },
}

impl SecretsEvent {
    /// Whether this is a refusal.
    pub fn is_denial(&self) -> bool {
        matches!(self, SecretsEvent::Denied { .. })
    }
}
