//! A workspace's playbooks: every version kept, one current, enabled or not.
//!
//! Tree `playbooks`, key `workspace 0x00 id` → [`PlaybookRecord`] (JSON).
//! Sources are blobs named by their SHA-256 (the engine's plan digest), in
//! the run store, so a run can always find the exact version it started with.

use allama_engine::RunStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use allama_store::names::check_workspace;

/// One stored version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Version {
    /// 1, 2, …
    pub number: u32,
    /// SHA-256 of the source (hex).
    pub digest: String,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// Who stored it.
    pub created_by: String,
}

/// A playbook as the workspace keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlaybookRecord {
    /// Its id.
    pub id: String,
    /// Its name, from the current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether triggers and schedules may start it (manual runs always may).
    pub enabled: bool,
    /// Every version, oldest first; the last is current.
    pub versions: Vec<Version>,
}

impl PlaybookRecord {
    /// The current version.
    pub fn current(&self) -> Option<&Version> {
        self.versions.last()
    }
}

/// Why the library failed.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// A bad workspace name.
    #[error(transparent)]
    Workspace(#[from] allama_store::names::NameError),
    /// sled or the blob store failed.
    #[error("playbook store: {0}")]
    Store(String),
}

impl From<sled::Error> for LibraryError {
    fn from(e: sled::Error) -> Self {
        LibraryError::Store(e.to_string())
    }
}

impl From<allama_engine::StoreError> for LibraryError {
    fn from(e: allama_engine::StoreError) -> Self {
        LibraryError::Store(e.to_string())
    }
}

/// What storing a source did.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    /// A new playbook, at version 1.
    Created(PlaybookRecord),
    /// A new version of an existing one.
    NewVersion(PlaybookRecord),
    /// The same source as the current version: nothing changed.
    Unchanged(PlaybookRecord),
}

/// The playbooks of every workspace.
pub struct Library {
    tree: allama_store::gate::Tree,
}

fn key(ws: &str, id: &str) -> Vec<u8> {
    let mut k = ws.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn decode(v: &[u8]) -> Result<PlaybookRecord, LibraryError> {
    serde_json::from_slice(v)
        .map_err(|e| LibraryError::Store(format!("a damaged playbook record: {e}")))
}

impl Library {
    /// The playbooks in `db`.
    pub fn open(db: &allama_store::gate::Db) -> Result<Self, LibraryError> {
        Ok(Self {
            tree: db.open_tree("playbooks")?,
        })
    }

    /// Stores a parsed playbook's source as its newest version.
    pub fn store(
        &self,
        blobs: &dyn RunStore,
        ws: &str,
        playbook: &allama_playbook::Playbook,
        source: &str,
        by: &str,
    ) -> Result<Stored, LibraryError> {
        check_workspace(ws)?;
        let digest = hex::encode(Sha256::digest(source.as_bytes()));
        // The source first: a record never names a blob that is not there.
        blobs.put_blob(&digest, source.as_bytes())?;
        let k = key(ws, &playbook.id);
        loop {
            let old = self.tree.get(&k)?;
            let mut record = match &old {
                Some(v) => decode(v)?,
                None => PlaybookRecord {
                    id: playbook.id.clone(),
                    name: None,
                    enabled: true,
                    versions: Vec::new(),
                },
            };
            if record.current().is_some_and(|v| v.digest == digest) {
                return Ok(Stored::Unchanged(record));
            }
            record.name = playbook.name.clone();
            record.versions.push(Version {
                number: record.versions.len() as u32 + 1,
                digest: digest.clone(),
                created_at: crate::accounts::now_ms(),
                created_by: by.to_string(),
            });
            let new =
                serde_json::to_vec(&record).map_err(|e| LibraryError::Store(e.to_string()))?;
            // Two editors saving at once: the loser retries on top of the winner.
            if self.tree.compare_and_swap(&k, old, Some(new))?.is_ok() {
                return Ok(if record.versions.len() == 1 {
                    Stored::Created(record)
                } else {
                    Stored::NewVersion(record)
                });
            }
        }
    }

    /// One playbook.
    pub fn get(&self, ws: &str, id: &str) -> Result<Option<PlaybookRecord>, LibraryError> {
        check_workspace(ws)?;
        self.tree.get(key(ws, id))?.map(|v| decode(&v)).transpose()
    }

    /// The workspace's playbooks, by id.
    pub fn list(&self, ws: &str) -> Result<Vec<PlaybookRecord>, LibraryError> {
        check_workspace(ws)?;
        let mut prefix = ws.as_bytes().to_vec();
        prefix.push(0);
        self.tree
            .scan_prefix(prefix)
            .map(|r| r.map_err(LibraryError::from).and_then(|(_, v)| decode(&v)))
            .collect()
    }

    /// Enables or disables a playbook; `None` if there is no such playbook.
    pub fn set_enabled(
        &self,
        ws: &str,
        id: &str,
        enabled: bool,
    ) -> Result<Option<PlaybookRecord>, LibraryError> {
        check_workspace(ws)?;
        let updated = self.tree.update_and_fetch(key(ws, id), |old| {
            let old = old?;
            let Ok(mut r) = serde_json::from_slice::<PlaybookRecord>(old) else {
                return Some(old.to_vec());
            };
            r.enabled = enabled;
            Some(serde_json::to_vec(&r).unwrap_or_else(|_| old.to_vec()))
        })?;
        updated.map(|v| decode(&v)).transpose()
    }

    /// The source of a version.
    pub fn source(&self, blobs: &dyn RunStore, version: &Version) -> Result<String, LibraryError> {
        let bytes = blobs.get_blob(&version.digest)?.ok_or_else(|| {
            LibraryError::Store(format!(
                "the source of version {} is missing",
                version.number
            ))
        })?;
        String::from_utf8(bytes)
            .map_err(|_| LibraryError::Store("a stored source is not UTF-8".into()))
    }
}
