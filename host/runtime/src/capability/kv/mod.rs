//! `kv`: a small key-value store per package (per workspace and package on a
//! server), with TTLs and a quota from the grant. The backend is a trait: in
//! memory here, sled in the store.

mod host;
mod memory;
pub(crate) mod tape;
#[cfg(test)]
mod tests;

pub use host::KvStep;
pub use memory::MemoryKv;

use allama_grant::KvGrant;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::SystemTime;

use super::{Capability, StepEnv};

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Most keys one `list-prefix` returns.
pub const MAX_LIST: u32 = 1000;

/// The quota a write is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Most keys in the namespace.
    pub max_keys: u64,
    /// Most bytes (keys + values) in the namespace.
    pub max_total_bytes: u64,
}

/// Failures of a kv backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvBackendError {
    /// The write would exceed the quota.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The backend failed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Storage behind the kv capability. Namespaces isolate packages (and
/// workspaces): a backend never returns data across namespaces.
pub trait KvBackend: Send + Sync {
    /// The live (unexpired) value under `key`.
    fn get(&self, ns: &str, key: &str, now: SystemTime) -> Result<Option<Vec<u8>>, KvBackendError>;
    /// Store `value`, checking `quota` atomically with the write.
    fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        expires: Option<SystemTime>,
        quota: Quota,
        now: SystemTime,
    ) -> Result<(), KvBackendError>;
    /// Remove `key`; whether a live value existed.
    fn delete(&self, ns: &str, key: &str, now: SystemTime) -> Result<bool, KvBackendError>;
    /// Up to `limit` live keys starting with `prefix`, in byte order.
    fn list_prefix(
        &self,
        ns: &str,
        prefix: &str,
        limit: usize,
        now: SystemTime,
    ) -> Result<Vec<String>, KvBackendError>;
}

/// The kv capability of one package.
pub struct Kv {
    grant: Option<KvGrant>,
    backend: Arc<dyn KvBackend>,
    namespace: String,
}

impl Kv {
    /// Configure from the grant's `[kv]` section (absent: every call is denied).
    pub fn configure(
        grant: Option<&KvGrant>,
        backend: Arc<dyn KvBackend>,
        namespace: String,
    ) -> Self {
        Self {
            grant: grant.cloned(),
            backend,
            namespace,
        }
    }
}

impl Capability for Kv {
    const NAME: &'static str = "kv";
    type Step = KvStep;
    fn prepare(self: &Arc<Self>, env: &StepEnv) -> KvStep {
        KvStep::new(self.clone(), env.clone())
    }
}

/// Audit events of the kv capability (keys, never values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum KvEvent {
    /// A write.
    Set {
        /// The key.
        key: String,
        /// Value size.
        bytes: u64,
    },
    /// A delete.
    Delete {
        /// The key.
        key: String,
    },
    /// A refused call: not granted, over quota, bad key, too large.
    Denied {
        /// `get`, `set`, `delete` or `list-prefix`.
        operation: String,
        /// Why.
        reason: String,
    },
}

impl KvEvent {
    /// Whether this is a refusal.
    pub fn is_denial(&self) -> bool {
        matches!(self, KvEvent::Denied { .. })
    }
}
