//! The narrow storage the engine needs, as a trait, with an in-memory
//! implementation for tests. The sled implementation lives in
//! `allama-store`; both keep the same contract:
//!
//! - `append` buffers; a later `commit` resolves once everything appended
//!   before it is durable (group commit: many appends, one sync).
//! - A run's history is read back in `seq` order.
//! - Blobs are content-addressed: `put_blob` of bytes already stored is a no-op.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::event::Millis;

/// A storage failure. The engine cannot make progress without its store, so
/// these stop the run they concern (and are logged with the run id).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage layer failed.
    #[error("store: {0}")]
    Io(String),
    /// Stored bytes could not be decoded.
    #[error("store: run {run}: record {seq} is corrupt: {message}")]
    Corrupt {
        /// The run.
        run: String,
        /// The record's position.
        seq: u64,
        /// What is wrong.
        message: String,
    },
    /// A history refers to a blob the store does not have.
    #[error("store: blob {0} is missing")]
    MissingBlob(String),
}

/// A run's entry in the index: enough to list runs without reading histories.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The playbook's id.
    pub playbook: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// When it started.
    pub started_at: Millis,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The parent run, for a child run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// Resolves when a commit is durable.
pub type CommitFuture = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Where runs live.
pub trait RunStore: Send + Sync + 'static {
    /// Buffers records at `first_seq`, `first_seq + 1`, … of a run's history.
    fn append(&self, run: &str, first_seq: u64, records: &[Vec<u8>]) -> Result<(), StoreError>;
    /// A run's history, in order.
    fn history(&self, run: &str) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Writes a run's index entry; a `running` entry marks the run active.
    fn put_summary(&self, summary: &RunSummary) -> Result<(), StoreError>;
    /// One run's index entry.
    fn summary(&self, run: &str) -> Result<Option<RunSummary>, StoreError>;
    /// Index entries, newest first, up to `limit`.
    fn summaries(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError>;
    /// Ids of runs that have not finished.
    fn active(&self) -> Result<Vec<String>, StoreError>;
    /// Stores a blob under its SHA-256 (hex).
    fn put_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// A blob by its SHA-256.
    fn get_blob(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Resolves once everything written before this call is durable.
    fn commit(&self) -> CommitFuture;
}

/// Everything in memory; `commit` is immediate. For tests and `--memory` runs.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    histories: HashMap<String, BTreeMap<u64, Vec<u8>>>,
    summaries: HashMap<String, RunSummary>,
    blobs: HashMap<String, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        // A panic elsewhere must not make the store unusable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of blobs stored (tests check sharing).
    pub fn blob_count(&self) -> usize {
        self.lock().blobs.len()
    }
}

impl RunStore for MemoryStore {
    fn append(&self, run: &str, first_seq: u64, records: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut m = self.lock();
        let h = m.histories.entry(run.to_string()).or_default();
        for (i, r) in records.iter().enumerate() {
            h.insert(first_seq + i as u64, r.clone());
        }
        Ok(())
    }

    fn history(&self, run: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .histories
            .get(run)
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default())
    }

    fn put_summary(&self, summary: &RunSummary) -> Result<(), StoreError> {
        self.lock()
            .summaries
            .insert(summary.id.clone(), summary.clone());
        Ok(())
    }

    fn summary(&self, run: &str) -> Result<Option<RunSummary>, StoreError> {
        Ok(self.lock().summaries.get(run).cloned())
    }

    fn summaries(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let mut all: Vec<RunSummary> = self.lock().summaries.values().cloned().collect();
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
        all.truncate(limit);
        Ok(all)
    }

    fn active(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self
            .lock()
            .summaries
            .values()
            .filter(|s| s.status == "running")
            .map(|s| s.id.clone())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn put_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.lock()
            .blobs
            .entry(hash.to_string())
            .or_insert_with(|| bytes.to_vec());
        Ok(())
    }

    fn get_blob(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().blobs.get(hash).cloned())
    }

    fn commit(&self) -> CommitFuture {
        Box::pin(async { Ok(()) })
    }
}
