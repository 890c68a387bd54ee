//! What a workspace's packages run against, one adapter per capability the
//! runtime leaves to its host: secrets come from the workspace's vault, kv
//! lives in sled in a namespace per workspace and package, and every audit
//! record joins the workspace's chain.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use allama_runtime::audit::{AuditRecord as StepRecord, AuditSink};
use allama_runtime::capability::kv::{KvBackend, KvBackendError, Quota};
use allama_runtime::capability::secrets::{SecretStore, SecretValue};
use allama_store::SledStore;
use allama_store::audit::{AuditEntry, AuditLog};
use allama_store::secrets::Vault;
use serde_json::Value;

use crate::metrics::Metrics;

/// A workspace's secrets, as its packages' grants reach them.
pub struct WorkspaceSecrets {
    /// The vault.
    pub vault: Arc<Vault>,
    /// The workspace.
    pub workspace: String,
}

impl SecretStore for WorkspaceSecrets {
    fn get(&self, name: &str) -> Option<SecretValue> {
        match self.vault.reveal(&self.workspace, name) {
            Ok(Some(v)) => String::from_utf8(v).ok().map(SecretValue::new),
            Ok(None) => None,
            Err(e) => {
                // The step sees the secret as unset; the operator sees why.
                tracing::error!(workspace = %self.workspace, secret = name, error = %e, "could not read a secret");
                None
            }
        }
    }
}

/// Capability uses and denials of a workspace's steps, into its audit chain.
pub struct WorkspaceAudit {
    /// The chains.
    pub log: Arc<AuditLog>,
    /// To mark the database dirty, so the next group commit covers the record.
    pub store: Arc<SledStore>,
    /// The workspace.
    pub workspace: String,
    /// Counts uses and denials for `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// The audit entry for one capability record of a step.
pub fn entry_of(r: &StepRecord) -> AuditEntry {
    let detail = serde_json::to_value(&r.event).unwrap_or(Value::Null);
    let capability = detail
        .get("capability")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    AuditEntry {
        actor: format!("run:{}/{}", r.run_id, r.step_id),
        action: format!("capability.{capability}"),
        target: format!("{}/{}", r.package, r.action),
        denied: r.event.is_denial(),
        detail,
    }
}

impl AuditSink for WorkspaceAudit {
    fn record(&self, r: &StepRecord) {
        let entry = entry_of(r);
        self.metrics.capability(&entry.action, entry.denied);
        if let Err(e) = self
            .log
            .append(&self.workspace, std::slice::from_ref(&entry))
        {
            tracing::error!(workspace = %self.workspace, run = %r.run_id, error = %e, "could not write a capability audit record");
        }
        self.store.mark_dirty();
    }
}

/// kv in sled (tree `kv`): key `namespace 0x00 key` → 8 bytes of expiry
/// (ms since the epoch, big-endian; `u64::MAX` for none) then the value;
/// key `namespace 0x01` → the namespace's key count and bytes (two
/// big-endian u64), kept with every write so a quota check reads one key.
pub struct SledKv {
    tree: allama_store::gate::Tree,
    /// Writes are serialised so a quota check and its write are one step.
    writes: Mutex<()>,
}

const NEVER: u64 = u64::MAX;

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(NEVER - 1)) as u64)
}

fn entry_key(ns: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 1 + key.len());
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn usage_key(ns: &str) -> Vec<u8> {
    let mut k = ns.as_bytes().to_vec();
    k.push(1);
    k
}

fn unavailable(e: impl std::fmt::Display) -> KvBackendError {
    KvBackendError::Unavailable(e.to_string())
}

/// An entry's expiry and value; a damaged entry reads as expired.
fn decode(v: &[u8]) -> (u64, &[u8]) {
    match v.split_first_chunk::<8>() {
        Some((exp, value)) => (u64::from_be_bytes(*exp), value),
        None => (0, &[]),
    }
}

fn size(key: &str, value_len: usize) -> u64 {
    (key.len() + value_len) as u64
}

impl SledKv {
    /// The kv tree of `db`.
    pub fn open(db: &allama_store::gate::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            tree: db.open_tree("kv")?,
            writes: Mutex::new(()),
        })
    }

    fn usage(&self, ns: &str) -> Result<(u64, u64), KvBackendError> {
        Ok(match self.tree.get(usage_key(ns)).map_err(unavailable)? {
            Some(v) if v.len() == 16 => (
                u64::from_be_bytes(v[..8].try_into().unwrap_or_default()),
                u64::from_be_bytes(v[8..].try_into().unwrap_or_default()),
            ),
            _ => (0, 0),
        })
    }

    fn usage_value(keys: u64, bytes: u64) -> Vec<u8> {
        let mut v = keys.to_be_bytes().to_vec();
        v.extend_from_slice(&bytes.to_be_bytes());
        v
    }

    /// Deletes the namespace's expired entries; returns the usage after.
    fn purge(&self, ns: &str, now: u64) -> Result<(u64, u64), KvBackendError> {
        let (mut keys, mut bytes) = self.usage(ns)?;
        let mut prefix = ns.as_bytes().to_vec();
        prefix.push(0);
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item.map_err(unavailable)?;
            let (exp, value) = decode(&v);
            if exp <= now {
                batch.remove(k.clone());
                keys = keys.saturating_sub(1);
                bytes = bytes.saturating_sub((k.len() - prefix.len() + value.len()) as u64);
            }
        }
        batch.insert(usage_key(ns), Self::usage_value(keys, bytes));
        self.tree.apply_batch(batch).map_err(unavailable)?;
        Ok((keys, bytes))
    }
}

impl KvBackend for SledKv {
    fn get(&self, ns: &str, key: &str, now: SystemTime) -> Result<Option<Vec<u8>>, KvBackendError> {
        let Some(v) = self.tree.get(entry_key(ns, key)).map_err(unavailable)? else {
            return Ok(None);
        };
        let (exp, value) = decode(&v);
        Ok((exp > millis(now)).then(|| value.to_vec()))
    }

    fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        expires: Option<SystemTime>,
        quota: Quota,
        now: SystemTime,
    ) -> Result<(), KvBackendError> {
        let _one = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let now = millis(now);
        let k = entry_key(ns, key);
        let old = self.tree.get(&k).map_err(unavailable)?;
        let new = size(key, value.len());
        let over = |(keys, bytes): (u64, u64), old: &Option<sled::IVec>| {
            let old_size = old.as_ref().map_or(0, |v| size(key, decode(v).1.len()));
            let keys = keys + u64::from(old.is_none());
            let bytes = bytes.saturating_sub(old_size) + new;
            (keys, bytes)
        };
        let mut after = over(self.usage(ns)?, &old);
        if after.0 > quota.max_keys || after.1 > quota.max_total_bytes {
            self.purge(ns, now)?;
            let old = self.tree.get(&k).map_err(unavailable)?;
            after = over(self.usage(ns)?, &old);
        }
        if after.0 > quota.max_keys {
            return Err(KvBackendError::QuotaExceeded(format!(
                "{} keys would exceed kv.max_keys = {}",
                after.0, quota.max_keys
            )));
        }
        if after.1 > quota.max_total_bytes {
            return Err(KvBackendError::QuotaExceeded(format!(
                "{} bytes would exceed kv.max_total_kib = {} KiB",
                after.1,
                quota.max_total_bytes / 1024
            )));
        }
        let exp = expires.map_or(NEVER, millis);
        let mut stored = exp.to_be_bytes().to_vec();
        stored.extend_from_slice(&value);
        let mut batch = sled::Batch::default();
        batch.insert(k, stored);
        batch.insert(usage_key(ns), Self::usage_value(after.0, after.1));
        self.tree.apply_batch(batch).map_err(unavailable)
    }

    fn delete(&self, ns: &str, key: &str, now: SystemTime) -> Result<bool, KvBackendError> {
        let _one = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let k = entry_key(ns, key);
        let Some(old) = self.tree.get(&k).map_err(unavailable)? else {
            return Ok(false);
        };
        let (exp, value) = decode(&old);
        let (keys, bytes) = self.usage(ns)?;
        let mut batch = sled::Batch::default();
        batch.remove(k);
        batch.insert(
            usage_key(ns),
            Self::usage_value(
                keys.saturating_sub(1),
                bytes.saturating_sub(size(key, value.len())),
            ),
        );
        self.tree.apply_batch(batch).map_err(unavailable)?;
        Ok(exp > millis(now))
    }

    fn list_prefix(
        &self,
        ns: &str,
        prefix: &str,
        limit: usize,
        now: SystemTime,
    ) -> Result<Vec<String>, KvBackendError> {
        let now = millis(now);
        let start = entry_key(ns, prefix);
        let skip = ns.len() + 1;
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&start) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(unavailable)?;
            if decode(&v).0 > now {
                out.push(String::from_utf8_lossy(&k[skip..]).into_owned());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
fn later(now: SystemTime, ms: u64) -> SystemTime {
    now + std::time::Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv() -> (tempfile::TempDir, SledKv) {
        let d = tempfile::tempdir().unwrap();
        let db = allama_store::gate::Db::from(sled::open(d.path()).unwrap());
        let kv = SledKv::open(&db).unwrap();
        (d, kv)
    }

    const Q: Quota = Quota {
        max_keys: 3,
        max_total_bytes: 64,
    };

    #[test]
    fn namespaces_are_apart_and_values_expire() {
        let (_d, kv) = kv();
        let now = SystemTime::now();
        kv.set("soc/vt", "k", b"one".to_vec(), None, Q, now)
            .unwrap();
        kv.set("soc/abuse", "k", b"two".to_vec(), None, Q, now)
            .unwrap();
        kv.set("other/vt", "k", b"three".to_vec(), None, Q, now)
            .unwrap();
        assert_eq!(kv.get("soc/vt", "k", now).unwrap().unwrap(), b"one");
        assert_eq!(kv.get("other/vt", "k", now).unwrap().unwrap(), b"three");
        // A namespace that is a prefix of another sees nothing of it.
        assert_eq!(kv.get("soc/v", "k", now).unwrap(), None);
        assert!(kv.list_prefix("soc/v", "", 10, now).unwrap().is_empty());
        kv.set("soc/vt", "t", b"x".to_vec(), Some(later(now, 10)), Q, now)
            .unwrap();
        assert!(kv.get("soc/vt", "t", now).unwrap().is_some());
        assert_eq!(kv.get("soc/vt", "t", later(now, 11)).unwrap(), None);
        assert_eq!(kv.list_prefix("soc/vt", "", 10, now).unwrap(), ["k", "t"]);
        assert_eq!(
            kv.list_prefix("soc/vt", "", 10, later(now, 11)).unwrap(),
            ["k"]
        );
        assert!(!kv.delete("soc/vt", "t", later(now, 11)).unwrap());
        assert!(kv.delete("soc/vt", "k", now).unwrap());
        assert!(!kv.delete("soc/vt", "k", now).unwrap());
    }

    #[test]
    fn quotas_hold_and_expired_entries_make_room() {
        let (_d, kv) = kv();
        let now = SystemTime::now();
        for k in ["a", "b", "c"] {
            kv.set("ws/p", k, b"v".to_vec(), Some(later(now, 5)), Q, now)
                .unwrap();
        }
        let e = kv
            .set("ws/p", "d", b"v".to_vec(), None, Q, now)
            .unwrap_err();
        assert!(e.to_string().contains("kv.max_keys = 3"), "{e}");
        // Overwriting a key does not count as a new one.
        kv.set("ws/p", "a", b"w".to_vec(), None, Q, now).unwrap();
        // Once the others expire, they make room.
        kv.set("ws/p", "d", b"v".to_vec(), None, Q, later(now, 6))
            .unwrap();
        let e = kv
            .set("ws/p", "e", vec![b'x'; 70], None, Q, later(now, 6))
            .unwrap_err();
        assert!(e.to_string().contains("kv.max_total_kib"), "{e}");
        // Deleting frees what the entry took.
        assert!(kv.delete("ws/p", "a", later(now, 6)).unwrap());
        kv.set("ws/p", "e", vec![b'x'; 40], None, Q, later(now, 6))
            .unwrap();
        assert_eq!(kv.usage("ws/p").unwrap(), (2, 2 + 41));
    }

    #[test]
    fn hostile_keys_stay_in_their_namespace() {
        let (_d, kv) = kv();
        let now = SystemTime::now();
        let q = Quota {
            max_keys: 100,
            max_total_bytes: 1 << 20,
        };
        for key in ["\0", "\u{1}", "../x", "k\0other", "ключ", ""] {
            kv.set("ws/p", key, key.as_bytes().to_vec(), None, q, now)
                .unwrap();
            assert_eq!(
                kv.get("ws/p", key, now).unwrap().unwrap(),
                key.as_bytes(),
                "{key:?}"
            );
        }
        assert_eq!(kv.list_prefix("ws/p", "", 100, now).unwrap().len(), 6);
        assert!(kv.list_prefix("ws/q", "", 100, now).unwrap().is_empty());
        assert_eq!(kv.get("ws/p", "k", now).unwrap(), None);
    }
}
