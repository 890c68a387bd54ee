//! The operator's trust policy: which publisher keys are trusted, and
//! whether packages must be signed.
//!
//! ```toml
//! require_signatures = true
//!
//! [publishers.allama]
//! keys = ["ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"]
//! ```

use std::collections::BTreeMap;

use allama_grant::{GrantError, TomlDoc};
use serde::Deserialize;
use toml::Spanned;

use crate::sign::PublicKey;

/// Which keys may sign for which publisher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Refuse packages without a valid signature by a trusted key.
    pub require_signatures: bool,
    /// Trusted keys by publisher name.
    pub publishers: BTreeMap<String, Vec<PublicKey>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// A policy file exists to require trust: default on.
    #[serde(default = "yes")]
    require_signatures: bool,
    #[serde(default)]
    publishers: BTreeMap<String, RawPublisher>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublisher {
    keys: Vec<Spanned<String>>,
}

impl TrustPolicy {
    /// Accept unsigned packages (signatures that are present must still be valid).
    pub fn permissive() -> Self {
        Self::default()
    }

    /// Parse a policy file.
    pub fn parse(src: &str, origin: &str) -> Result<Self, GrantError> {
        let doc = TomlDoc::parse(src, origin)?;
        let raw: RawPolicy = doc.deserialize()?;
        let mut publishers = BTreeMap::new();
        for (name, p) in raw.publishers {
            let mut keys = Vec::new();
            for (i, k) in p.keys.iter().enumerate() {
                let key = k.get_ref().parse::<PublicKey>().map_err(|m| {
                    doc.error(Some(k.span()), &format!("publishers.{name}.keys[{i}]"), m)
                })?;
                keys.push(key);
            }
            publishers.insert(name, keys);
        }
        Ok(TrustPolicy {
            require_signatures: raw.require_signatures,
            publishers,
        })
    }

    /// Whether `key` is trusted for `publisher`.
    pub fn trusts(&self, publisher: &str, key: &PublicKey) -> bool {
        self.publishers
            .get(publisher)
            .is_some_and(|ks| ks.contains(key))
    }
}
