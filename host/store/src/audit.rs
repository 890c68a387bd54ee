//! The audit chain: every API mutation, authentication failure, grant,
//! approval decision, secret use, capability use and denial, as records whose
//! SHA-256 covers the previous record's hash.
//!
//! Each workspace has its own chain, so a workspace's export verifies on its
//! own and no key range mixes tenants. Layout, in tree `audit`:
//!
//! | key | value |
//! | --- | --- |
//! | workspace, `0x00`, seq (u64 big-endian) | hash (32 bytes), then the record's JSON |
//! | workspace, `0x01` | the head: last seq (u64 big-endian), then its hash |
//!
//! `hash(n) = SHA-256(hash(n-1) ‖ json(n))`, with 32 zero bytes before the
//! first record. The JSON is hashed exactly as stored, so no re-serialisation
//! can change a verdict. An append writes its records, then the head: the
//! head is the commit point (see [`AuditLog::append`]); a server's log
//! writes heads just before each sync ([`AuditLog::open_for`]).
//! [`AuditLog::verify`] walks a chain and names the first broken link:
//! an edited record (its hash no longer matches), a deleted one (a gap in the
//! sequence, or a head pointing past the last record), a reordered one (its
//! stored seq differs from its place).
//!
//! What this proves: any change to records already written, short of
//! rewriting every later record *and* the head. Someone who can rewrite the
//! whole database can forge a consistent chain; copying the head hash
//! somewhere else (it is printed by `allama audit verify`) makes that
//! detectable too.

use std::collections::HashMap;
use std::sync::Mutex;

use allama_engine::driver::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::names::check_workspace;

/// What the caller records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Who acted: `user:NAME`, `token:ID`, `run:RUN/STEP`, `system`, or
    /// `anonymous` for a failed authentication.
    pub actor: String,
    /// What kind of thing happened, dotted: `playbook.create`,
    /// `auth.failed`, `approval.decided`, `capability.http`, …
    pub action: String,
    /// What it was done to: a playbook id, a run id, a secret name, a URL.
    pub target: String,
    /// Whether it was refused (a denial, a failed authentication).
    #[serde(default)]
    pub denied: bool,
    /// Anything else worth keeping (never a secret value).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub detail: Value,
}

/// A record as stored and exported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The workspace.
    pub workspace: String,
    /// Its place in the workspace's chain, from 1.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// SHA-256 of the previous record's hash and this record's JSON (hex);
    /// filled in when read back, not part of the hashed JSON.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// A chain that does not verify: where it first breaks, and how.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit chain of workspace `{workspace}` is broken at record {seq}: {reason}")]
pub struct BrokenLink {
    /// The workspace.
    pub workspace: String,
    /// The first record that does not fit (for a missing tail, the first
    /// missing one).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// A chain that verifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The workspace.
    pub workspace: String,
    /// How many records.
    pub records: u64,
    /// The last record's hash (hex), to note down elsewhere.
    pub head: String,
}

/// Why the audit log failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A workspace name that is not `[a-z0-9][a-z0-9-]{0,62}`.
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    /// sled failed.
    #[error("audit store: {0}")]
    Store(String),
    /// The chain is damaged where a new record would join it.
    #[error(transparent)]
    Broken(#[from] BrokenLink),
}

impl From<sled::Error> for AuditError {
    fn from(e: sled::Error) -> Self {
        AuditError::Store(e.to_string())
    }
}

/// Which records [`AuditLog::query`] returns.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Records after this seq (the cursor of the previous page).
    pub after: u64,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: usize,
    /// Only actions starting with this (`auth.`, `capability.http`).
    pub action_prefix: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only denials.
    pub denied_only: bool,
}

/// Most records one query returns.
pub const MAX_PAGE: usize = 1000;

/// The audit chains, in the server's sled database.
pub struct AuditLog {
    tree: crate::gate::Tree,
    /// Each workspace's head, once read: appends to one chain are serialised.
    heads: Mutex<HashMap<String, Head>>,
    /// Heads are written by [`AuditLog::write_heads`] (before each sync),
    /// not by every append.
    deferred: bool,
}

/// A chain's head as this process knows it.
#[derive(Clone, Copy)]
struct Head {
    seq: u64,
    hash: [u8; 32],
    /// Newer than the head in the tree (deferred heads only).
    pending: bool,
}

const RECORD: u8 = 0x00;
const HEAD: u8 = 0x01;

fn record_key(ws: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(ws.len() + 9);
    k.extend_from_slice(ws.as_bytes());
    k.push(RECORD);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn head_key(ws: &str) -> Vec<u8> {
    let mut k = ws.as_bytes().to_vec();
    k.push(HEAD);
    k
}

fn link(prev: &[u8; 32], json: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(json);
    h.finalize().into()
}

impl AuditLog {
    /// The audit chains in `db` (tree `audit`); every append writes its
    /// chain's head.
    pub fn open(db: &crate::gate::Db) -> Result<Self, AuditError> {
        Ok(Self {
            tree: db.open_tree("audit")?,
            heads: Mutex::new(HashMap::new()),
            deferred: false,
        })
    }

    /// The audit chains of `store`'s database, with heads written once per
    /// sync instead of once per append: the store runs
    /// [`AuditLog::write_heads`] before each of its syncs (and backups), so
    /// what a sync covers is exactly what it covered before, with one sled
    /// write fewer for every append (a webhook delivery's record is one).
    pub fn open_for(store: &crate::SledStore) -> Result<std::sync::Arc<Self>, AuditError> {
        let log = std::sync::Arc::new(Self {
            tree: store.db().open_tree("audit")?,
            heads: Mutex::new(HashMap::new()),
            deferred: true,
        });
        let weak = std::sync::Arc::downgrade(&log);
        store.before_sync(Box::new(move || match weak.upgrade() {
            Some(log) => log.write_heads().map_err(|e| e.to_string()),
            None => Ok(()),
        }));
        Ok(log)
    }

    /// Writes every head newer than the one in the tree. Records past a
    /// head in the tree are not part of its chain after a crash, so this
    /// runs before every sync of a deferred log.
    pub fn write_heads(&self) -> Result<(), AuditError> {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        for (ws, h) in heads.iter_mut().filter(|(_, h)| h.pending) {
            self.put_head(ws, h)?;
            h.pending = false;
        }
        Ok(())
    }

    /// Writes a chain's head: its last seq (u64 big-endian), then its hash.
    fn put_head(&self, ws: &str, h: &Head) -> Result<(), AuditError> {
        let mut value = h.seq.to_be_bytes().to_vec();
        value.extend_from_slice(&h.hash);
        self.tree.insert(head_key(ws), value)?;
        Ok(())
    }

    /// The head readers go by: one this process has not written yet, else
    /// the tree's (so a head edited on disk is read as it is).
    fn current_head(&self, ws: &str) -> Result<(u64, [u8; 32]), AuditError> {
        let pending = self
            .heads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ws)
            .filter(|h| h.pending)
            .map(|h| (h.seq, h.hash));
        match pending {
            Some(h) => Ok(h),
            None => self.read_head(ws),
        }
    }

    fn read_head(&self, ws: &str) -> Result<(u64, [u8; 32]), AuditError> {
        match self.tree.get(head_key(ws))? {
            None => Ok((0, [0; 32])),
            Some(v) if v.len() == 40 => {
                let seq = u64::from_be_bytes(v[..8].try_into().unwrap_or_default());
                let mut hash = [0; 32];
                hash.copy_from_slice(&v[8..]);
                Ok((seq, hash))
            }
            Some(v) => Err(BrokenLink {
                workspace: ws.to_string(),
                seq: 0,
                reason: format!("the chain's head is {} bytes, not 40", v.len()),
            }
            .into()),
        }
    }

    /// Appends records to a workspace's chain, in order, atomically; returns
    /// the last one's seq. Durable with the database's next sync.
    ///
    /// The records are written one by one and the head last: the head is
    /// the commit point. (A sled batch would make this atomic too, but
    /// sled 0.34 writes its log twice for every batch, which cost more than
    /// everything else a webhook delivery does.) sled recovers a prefix of
    /// its writes, so a crash leaves either the new head or the old head
    /// with some of the new records after it: those were never part of the
    /// chain, [`AuditLog::query`] and [`AuditLog::verify`] ignore records
    /// past the head, and the next append removes them first.
    pub fn append(&self, workspace: &str, entries: &[AuditEntry]) -> Result<u64, AuditError> {
        check_workspace(workspace)?;
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        let (mut seq, mut prev) = match heads.get(workspace) {
            Some(h) => (h.seq, h.hash),
            None => {
                let head = self.read_head(workspace)?;
                self.drop_uncommitted(workspace, head.0)?;
                head
            }
        };
        let at_ms = now_ms();
        for entry in entries {
            seq += 1;
            let record = AuditRecord {
                workspace: workspace.to_string(),
                seq,
                at_ms,
                entry: entry.clone(),
                hash: String::new(),
            };
            let json = serde_json::to_vec(&record)
                .map_err(|e| AuditError::Store(format!("encoding an audit record: {e}")))?;
            let hash = link(&prev, &json);
            let mut value = Vec::with_capacity(32 + json.len());
            value.extend_from_slice(&hash);
            value.extend_from_slice(&json);
            self.tree.insert(record_key(workspace, seq), value)?;
            prev = hash;
        }
        let head = Head {
            seq,
            hash: prev,
            pending: self.deferred,
        };
        if !self.deferred {
            self.put_head(workspace, &head)?;
        }
        heads.insert(workspace.to_string(), head);
        Ok(seq)
    }

    /// Removes records past the head: left by a crash between an append's
    /// records and its head, never part of the chain.
    fn drop_uncommitted(&self, workspace: &str, head: u64) -> Result<(), AuditError> {
        if head == u64::MAX {
            return Ok(());
        }
        let start = record_key(workspace, head + 1);
        let end = record_key(workspace, u64::MAX);
        for item in self.tree.range(start..=end) {
            let (k, _) = item?;
            self.tree.remove(k)?;
        }
        Ok(())
    }

    /// Records of one workspace, oldest first, filtered; the last one's seq
    /// is the cursor for the next page.
    pub fn query(&self, workspace: &str, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        check_workspace(workspace)?;
        let limit = q.limit.clamp(1, MAX_PAGE);
        let mut out = Vec::new();
        // Records past the head are not part of the chain (see `append`).
        let (head, _) = self.current_head(workspace)?;
        if q.after >= head {
            return Ok(out);
        }
        let start = record_key(workspace, q.after.saturating_add(1));
        let end = record_key(workspace, head);
        for item in self.tree.range(start..=end) {
            let (_, v) = item?;
            let Some(r) = decode(&v) else { continue };
            if q.action_prefix
                .as_ref()
                .is_some_and(|p| !r.entry.action.starts_with(p.as_str()))
                || q.actor.as_ref().is_some_and(|a| r.entry.actor != *a)
                || (q.denied_only && !r.entry.denied)
            {
                continue;
            }
            out.push(r);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every workspace that has a chain.
    pub fn workspaces(&self) -> Result<Vec<String>, AuditError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (k, _) = item?;
            // A head key is a workspace name and HEAD; a record key holds a
            // 0x00 and eight seq bytes, which no workspace name can.
            if k.last() == Some(&HEAD)
                && let Ok(ws) = std::str::from_utf8(&k[..k.len() - 1])
                && check_workspace(ws).is_ok()
            {
                out.push(ws.to_string());
            }
        }
        // Chains whose first head is not written yet.
        for (ws, h) in self.heads.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if h.pending && !out.contains(ws) {
                out.push(ws.clone());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Walks a workspace's chain from the first record; the first broken
    /// link is the error.
    pub fn verify(&self, workspace: &str) -> Result<Verified, AuditError> {
        check_workspace(workspace)?;
        let broken = |seq: u64, reason: String| -> AuditError {
            BrokenLink {
                workspace: workspace.to_string(),
                seq,
                reason,
            }
            .into()
        };
        let mut prefix = workspace.as_bytes().to_vec();
        prefix.push(RECORD);
        let mut expected = 1u64;
        let mut prev = [0u8; 32];
        let (head_seq, head_hash) = self.current_head(workspace)?;
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item?;
            let Some(place) = k
                .get(prefix.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
            else {
                return Err(broken(expected, "a record has a malformed key".into()));
            };
            if place > head_seq {
                // Past the head: an append a crash cut short (see `append`).
                break;
            }
            if place != expected {
                return Err(broken(
                    expected,
                    format!("record {expected} is missing (the next one is {place})"),
                ));
            }
            if v.len() < 32 {
                return Err(broken(place, "the record is truncated".into()));
            }
            let (stored, json) = v.split_at(32);
            if link(&prev, json) != stored {
                return Err(broken(
                    place,
                    "its hash does not match its contents and the previous record's hash (edited, or the records before it changed)".into(),
                ));
            }
            match serde_json::from_slice::<AuditRecord>(json) {
                Ok(r) if r.seq == place && r.workspace == workspace => {}
                Ok(r) => {
                    return Err(broken(
                        place,
                        format!(
                            "it says it is record {} of `{}`: moved from elsewhere",
                            r.seq, r.workspace
                        ),
                    ));
                }
                Err(e) => return Err(broken(place, format!("it is not a record: {e}"))),
            }
            prev.copy_from_slice(stored);
            expected += 1;
        }
        let last = expected - 1;
        if head_seq != last {
            return Err(broken(
                last + 1,
                format!(
                    "the chain's head says {head_seq} records, but {last} are there (records at the end were deleted)"
                ),
            ));
        }
        if head_hash != prev {
            return Err(broken(
                last,
                "the chain's head does not match the last record's hash".into(),
            ));
        }
        Ok(Verified {
            workspace: workspace.to_string(),
            records: last,
            head: hex::encode(prev),
        })
    }
}

fn decode(v: &[u8]) -> Option<AuditRecord> {
    let (hash, json) = v.split_at_checked(32)?;
    let mut r: AuditRecord = serde_json::from_slice(json).ok()?;
    r.hash = hex::encode(hash);
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, n: u64) -> AuditEntry {
        AuditEntry {
            actor: "user:alice".into(),
            action: action.into(),
            target: format!("pb-{n}"),
            denied: false,
            detail: serde_json::json!({"n": n}),
        }
    }

    fn log() -> (tempfile::TempDir, crate::gate::Db, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::gate::Db::from(sled::open(dir.path().join("db")).unwrap());
        let log = AuditLog::open(&db).unwrap();
        (dir, db, log)
    }

    fn fill(log: &AuditLog, ws: &str, n: u64) {
        for i in 1..=n {
            log.append(ws, &[entry("playbook.create", i)]).unwrap();
        }
    }

    fn broken_at(log: &AuditLog, ws: &str) -> (u64, String) {
        match log.verify(ws) {
            Err(AuditError::Broken(b)) => (b.seq, b.reason),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    /// A crash between an append's records and its head leaves records
    /// past the head: not part of the chain, never shown, removed by the
    /// next append, whose records take their places.
    #[test]
    fn deferred_heads_are_written_by_every_sync_and_backup() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SledStore::open(dir.path()).unwrap();
        let log = AuditLog::open_for(&store).unwrap();
        // What the tree alone says: the view after a crash.
        let on_disk = || AuditLog::open(store.db()).unwrap();
        for i in 1..=3 {
            log.append("soc", &[entry("playbook.create", i)]).unwrap();
        }
        // Readers of this log see every record at once...
        assert_eq!(log.verify("soc").unwrap().records, 3);
        assert_eq!(
            log.query(
                "soc",
                &AuditQuery {
                    limit: 10,
                    ..Default::default()
                }
            )
            .unwrap()
            .len(),
            3
        );
        assert_eq!(log.workspaces().unwrap(), vec!["soc".to_string()]);
        // ...while the tree has no head yet: a crash now leaves no chain.
        assert_eq!(on_disk().verify("soc").unwrap().records, 0);
        assert!(on_disk().workspaces().unwrap().is_empty());
        store.sync_now().unwrap();
        let synced = log.verify("soc").unwrap();
        assert_eq!(on_disk().verify("soc").unwrap(), synced);
        // Two more, cut off by a crash before the next sync: the chain of
        // three still verifies, and the next append (another process)
        // drops the two and goes on from three.
        log.append("soc", &[entry("a", 4), entry("a", 5)]).unwrap();
        assert_eq!(on_disk().verify("soc").unwrap(), synced);
        let after_crash = on_disk();
        assert_eq!(after_crash.append("soc", &[entry("b", 4)]).unwrap(), 4);
        assert_eq!(after_crash.verify("soc").unwrap().records, 4);
        // A backup writes held-back heads before it reads the trees.
        let dir2 = tempfile::tempdir().unwrap();
        let store2 = crate::SledStore::open(dir2.path()).unwrap();
        let log2 = AuditLog::open_for(&store2).unwrap();
        log2.append("ir", &[entry("x", 1), entry("x", 2)]).unwrap();
        let mut file = Vec::new();
        store2.backup(&mut file).unwrap();
        assert_eq!(
            AuditLog::open(store2.db())
                .unwrap()
                .verify("ir")
                .unwrap()
                .records,
            2
        );
        // A head edited on disk is read as it is once written.
        let mut forged = 2u64.to_be_bytes().to_vec();
        forged.extend_from_slice(&[7; 32]);
        store2
            .db()
            .open_tree("audit")
            .unwrap()
            .insert(head_key("ir"), forged)
            .unwrap();
        assert!(log2.verify("ir").is_err());
    }

    #[test]
    fn records_a_crash_left_past_the_head_are_not_part_of_the_chain() {
        let (_d, db, log) = self::log();
        fill(&log, "soc", 3);
        let head = log.verify("soc").unwrap().head;
        // What the crash left: records 4 and 5 of an append whose head
        // was never written (as `append` writes them).
        let tree = db.open_tree("audit").unwrap();
        for seq in [4u64, 5] {
            tree.insert(record_key("soc", seq), vec![7u8; 40]).unwrap();
        }
        drop(log);
        let log = AuditLog::open(&db).unwrap();
        let v = log.verify("soc").unwrap();
        assert_eq!((v.records, v.head.as_str()), (3, head.as_str()));
        let all = AuditQuery {
            limit: 100,
            ..Default::default()
        };
        assert_eq!(log.query("soc", &all).unwrap().len(), 3);
        // The next append (one record) replaces 4 and removes 5.
        assert_eq!(log.append("soc", &[entry("secret.set", 9)]).unwrap(), 4);
        assert_eq!(log.verify("soc").unwrap().records, 4);
        assert!(tree.get(record_key("soc", 5)).unwrap().is_none());
        assert_eq!(
            log.query("soc", &all).unwrap()[3].entry.action,
            "secret.set"
        );
        // Deleting the last committed record is still caught.
        tree.remove(record_key("soc", 4)).unwrap();
        let (seq, reason) = broken_at(&log, "soc");
        assert_eq!(seq, 4, "{reason}");
        assert!(reason.contains("deleted"), "{reason}");
    }

    #[test]
    fn an_untouched_chain_verifies_and_names_its_head() {
        let (_d, _db, log) = log();
        fill(&log, "soc", 5);
        log.append("soc", &[entry("a", 6), entry("b", 7)]).unwrap();
        let v = log.verify("soc").unwrap();
        assert_eq!(v.records, 7);
        let all = log
            .query(
                "soc",
                &AuditQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(all.len(), 7);
        assert_eq!(all.last().unwrap().hash, v.head);
        assert_eq!(log.verify("empty").unwrap().records, 0);
    }

    #[test]
    fn an_edited_record_is_named() {
        let (_d, db, log) = log();
        fill(&log, "soc", 5);
        let tree = db.open_tree("audit").unwrap();
        let k = record_key("soc", 3);
        let mut v = tree.get(&k).unwrap().unwrap().to_vec();
        let text = String::from_utf8(v[32..].to_vec())
            .unwrap()
            .replace("pb-3", "pb-X");
        v.truncate(32);
        v.extend_from_slice(text.as_bytes());
        tree.insert(&k, v).unwrap();
        let (seq, reason) = broken_at(&log, "soc");
        assert_eq!(seq, 3);
        assert!(reason.contains("hash does not match"), "{reason}");
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        // The tamperer recomputes the edited record's own hash: the next
        // record's hash, which covers it, no longer fits.
        let (_d, db, log) = log();
        fill(&log, "soc", 5);
        let tree = db.open_tree("audit").unwrap();
        let prev = tree.get(record_key("soc", 2)).unwrap().unwrap();
        let k = record_key("soc", 3);
        let v = tree.get(&k).unwrap().unwrap();
        let json = String::from_utf8(v[32..].to_vec())
            .unwrap()
            .replace("alice", "mallory");
        let mut forged = link(prev[..32].try_into().unwrap(), json.as_bytes()).to_vec();
        forged.extend_from_slice(json.as_bytes());
        tree.insert(&k, forged).unwrap();
        assert_eq!(broken_at(&log, "soc").0, 4);
    }

    #[test]
    fn a_deleted_record_is_named() {
        let (_d, db, log) = log();
        fill(&log, "soc", 5);
        let tree = db.open_tree("audit").unwrap();
        tree.remove(record_key("soc", 2)).unwrap();
        let (seq, reason) = broken_at(&log, "soc");
        assert_eq!(seq, 2);
        assert!(reason.contains("missing"), "{reason}");
    }

    #[test]
    fn deleted_records_at_the_end_are_caught_by_the_head() {
        let (_d, db, log) = log();
        fill(&log, "soc", 5);
        let tree = db.open_tree("audit").unwrap();
        tree.remove(record_key("soc", 5)).unwrap();
        tree.remove(record_key("soc", 4)).unwrap();
        let (seq, reason) = broken_at(&log, "soc");
        assert_eq!(seq, 4);
        assert!(reason.contains("deleted"), "{reason}");
    }

    #[test]
    fn reordered_records_are_named() {
        let (_d, db, log) = log();
        fill(&log, "soc", 5);
        let tree = db.open_tree("audit").unwrap();
        let a = tree.get(record_key("soc", 2)).unwrap().unwrap();
        let b = tree.get(record_key("soc", 3)).unwrap().unwrap();
        tree.insert(record_key("soc", 2), b).unwrap();
        tree.insert(record_key("soc", 3), a).unwrap();
        assert_eq!(broken_at(&log, "soc").0, 2);
    }

    #[test]
    fn a_record_moved_from_another_workspace_is_named() {
        let (_d, db, log) = log();
        fill(&log, "soc", 3);
        fill(&log, "red", 3);
        let tree = db.open_tree("audit").unwrap();
        let theirs = tree.get(record_key("red", 3)).unwrap().unwrap();
        tree.insert(record_key("soc", 4), theirs.clone()).unwrap();
        // A head that takes it in: seq 4, its hash.
        let mut head = 4u64.to_be_bytes().to_vec();
        head.extend_from_slice(&theirs[..32]);
        tree.insert(head_key("soc"), head).unwrap();
        // The moved record's hash was made over red's chain, not soc's.
        assert_eq!(broken_at(&log, "soc").0, 4);
        assert_eq!(log.verify("red").unwrap().records, 3);
    }

    #[test]
    fn chains_survive_reopening_and_continue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::gate::Db::from(sled::open(dir.path().join("db")).unwrap());
            let log = AuditLog::open(&db).unwrap();
            fill(&log, "soc", 3);
            db.flush().unwrap();
        }
        // Reopened at once: sled may still hold the lock a moment.
        let reopened =
            crate::open_when_unlocked(&sled::Config::new().path(dir.path().join("db"))).unwrap();
        let db = crate::gate::Db::from(reopened);
        let log = AuditLog::open(&db).unwrap();
        assert_eq!(log.append("soc", &[entry("x", 4)]).unwrap(), 4);
        assert_eq!(log.verify("soc").unwrap().records, 4);
        assert_eq!(log.workspaces().unwrap(), ["soc"]);
    }

    #[test]
    fn queries_filter_and_page() {
        let (_d, _db, log) = log();
        for i in 1..=10 {
            let mut e = entry(
                if i % 2 == 0 {
                    "auth.failed"
                } else {
                    "playbook.create"
                },
                i,
            );
            e.denied = i % 2 == 0;
            log.append("soc", &[e]).unwrap();
        }
        let q = AuditQuery {
            limit: 2,
            action_prefix: Some("auth.".into()),
            ..Default::default()
        };
        let page1 = log.query("soc", &q).unwrap();
        assert_eq!(page1.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 4]);
        let page2 = log
            .query(
                "soc",
                &AuditQuery {
                    after: 4,
                    ..q.clone()
                },
            )
            .unwrap();
        assert_eq!(page2.iter().map(|r| r.seq).collect::<Vec<_>>(), [6, 8]);
        let denied = log
            .query(
                "soc",
                &AuditQuery {
                    limit: 100,
                    denied_only: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(denied.len(), 5);
        // Another workspace sees nothing of this one.
        assert!(
            log.query(
                "red",
                &AuditQuery {
                    limit: 100,
                    ..Default::default()
                }
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn hostile_workspace_names_are_refused() {
        let (_d, _db, log) = log();
        for bad in [
            "",
            "../x",
            "a\u{0}b",
            "UPPER",
            "ünï",
            &"a".repeat(64),
            "-lead",
        ] {
            assert!(
                matches!(log.append(bad, &[entry("x", 1)]), Err(AuditError::Name(_))),
                "{bad:?}"
            );
            assert!(
                matches!(log.verify(bad), Err(AuditError::Name(_))),
                "{bad:?}"
            );
        }
    }
}
