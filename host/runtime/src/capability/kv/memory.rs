//! An in-memory kv backend (local runner, tests).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::SystemTime;

use super::{KvBackend, KvBackendError, Quota};

struct Entry {
    value: Vec<u8>,
    expires: Option<SystemTime>,
}

impl Entry {
    fn live(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

#[derive(Default)]
struct Namespace {
    entries: BTreeMap<String, Entry>,
    bytes: u64,
}

impl Namespace {
    fn size(key: &str, value: &[u8]) -> u64 {
        (key.len() + value.len()) as u64
    }
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.bytes -= Self::size(key, &e.value);
        Some(e)
    }
    fn purge_expired(&mut self, now: SystemTime) {
        let dead: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            self.remove(&k);
        }
    }
}

/// Keeps every namespace in memory.
#[derive(Default)]
pub struct MemoryKv {
    spaces: Mutex<HashMap<String, Namespace>>,
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvBackend for MemoryKv {
    fn get(&self, ns: &str, key: &str, now: SystemTime) -> Result<Option<Vec<u8>>, KvBackendError> {
        let spaces = self.spaces.lock().unwrap();
        Ok(spaces
            .get(ns)
            .and_then(|s| s.entries.get(key))
            .filter(|e| e.live(now))
            .map(|e| e.value.clone()))
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
        let mut spaces = self.spaces.lock().unwrap();
        let space = spaces.entry(ns.to_string()).or_default();
        let old = space
            .entries
            .get(key)
            .map(|e| Namespace::size(key, &e.value))
            .unwrap_or(0);
        let new = Namespace::size(key, &value);
        let over = |s: &Namespace| {
            let keys = s.entries.len() as u64 + u64::from(!s.entries.contains_key(key));
            let bytes = s.bytes - old.min(s.bytes) + new;
            (
                keys > quota.max_keys,
                bytes > quota.max_total_bytes,
                keys,
                bytes,
            )
        };
        if matches!(over(space), (true, _, _, _) | (_, true, _, _)) {
            space.purge_expired(now);
        }
        let (too_many, too_big, keys, bytes) = over(space);
        if too_many {
            return Err(KvBackendError::QuotaExceeded(format!(
                "{keys} keys would exceed kv.max_keys = {}",
                quota.max_keys
            )));
        }
        if too_big {
            return Err(KvBackendError::QuotaExceeded(format!(
                "{bytes} bytes would exceed kv.max_total_kib = {} KiB",
                quota.max_total_bytes / 1024
            )));
        }
        space.remove(key);
        space.bytes += new;
        space
            .entries
            .insert(key.to_string(), Entry { value, expires });
        Ok(())
    }

    fn delete(&self, ns: &str, key: &str, now: SystemTime) -> Result<bool, KvBackendError> {
        let mut spaces = self.spaces.lock().unwrap();
        Ok(spaces
            .get_mut(ns)
            .and_then(|s| s.remove(key))
            .is_some_and(|e| e.live(now)))
    }

    fn list_prefix(
        &self,
        ns: &str,
        prefix: &str,
        limit: usize,
        now: SystemTime,
    ) -> Result<Vec<String>, KvBackendError> {
        let spaces = self.spaces.lock().unwrap();
        let Some(space) = spaces.get(ns) else {
            return Ok(Vec::new());
        };
        Ok(space
            .entries
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, e)| e.live(now))
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }
}
