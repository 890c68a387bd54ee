//! sled storage for Allama.
//!
//! [`SledStore`] implements the engine's [`RunStore`]: run histories, the run
//! index and content-addressed blobs, in one sled database under a data
//! directory, with **group commit**: appends go into sled's buffers, and
//! [`RunStore::commit`] resolves once a single flush-and-sync covering them
//! has finished. One committer thread serves every waiter; all commits
//! requested while a sync runs share the next one.
//!
//! Durability: sled 0.34's `flush()` writes its log with `sync_file_range`,
//! which persists neither file metadata nor the device cache, so the
//! committer also calls `sync_data()` on `<dir>/db` after every flush. What
//! a commit covers survives `kill -9` and power loss (within what the disk's
//! own flush guarantees); appends not yet committed survive `kill -9` only
//! if the next commit or the periodic sync (every
//! [`PERIODIC_SYNC`]) ran first.
//!
//! Key layout (schema version [`SCHEMA_VERSION`], in tree `meta`):
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `history` | run id, `0x00`, seq of the value's first record (u64 big-endian) | one event (JSON, see `allama_engine::codec`), or from version 3 several, framed (see `group`): later appends of the run extend its last value up to 4 KiB |
//! | `runs` | run id | [`RunSummary`] (JSON) of a finished run |
//! | `active` | run id | [`RunSummary`] (JSON) of a run that has not finished (version 2: empty, its summary in `runs`) |
//! | `runs_by_scope` | scope, `0x00`, run id | empty: the runs of one scope (the part of the playbook id before its first `/`: a server's workspace), newest last |
//!
//! Blobs (payloads over the codec's threshold, playbook sources) are files,
//! `<dir>/payloads/<sha256 hex>`, not sled values: sled 0.34 writes values
//! this large to files of its own without any fsync, and reads a whole value
//! even to say it exists. Each blob is written to a temporary name, synced,
//! renamed and its directory synced before `put_blob` returns, so it is
//! durable before any event that refers to it can be committed.
//! | `meta` | `schema_version` | u32 big-endian |

pub mod audit;
pub mod backup;
pub mod gate;
mod group;
pub mod names;
pub mod secrets;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use allama_engine::store::{CommitFuture, RunStore, RunSummary, StoreError};
use tokio::sync::oneshot;

/// The layout version written by this code. Version 2 added
/// `runs_by_scope`; version 3 keeps a running run's index entry in
/// `active` (not `runs`) and lets one `history` value hold several
/// records. [`SledStore::open`] migrates every earlier version; older code
/// refuses a newer store.
pub const SCHEMA_VERSION: u32 = 3;

/// Appends not followed by a commit are synced at least this often.
pub const PERIODIC_SYNC: Duration = Duration::from_millis(20);

/// Run histories and the index in sled, blobs as synced files beside it.
pub struct SledStore {
    db: sled::Db,
    /// The same database behind the write gate, for every writer.
    gated: gate::Db,
    history: gate::Tree,
    /// Each unfinished run's last history value (appends extend it), which
    /// also makes appends one at a time.
    tails: Mutex<std::collections::HashMap<String, Tail>>,
    runs: gate::Tree,
    active: gate::Tree,
    by_scope: gate::Tree,
    payloads: PathBuf,
    committer: Arc<Committer>,
    commit_thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled refused the directory.
    #[error("opening the store at {dir}: {message}")]
    Sled {
        /// The data directory.
        dir: PathBuf,
        /// sled's message.
        message: String,
    },
    /// Migrating an older layout failed; the store is unchanged where it
    /// matters (the version stays, so the next start tries again).
    #[error("migrating the store at {dir} from schema version {from}: {message}")]
    Migration {
        /// The data directory.
        dir: PathBuf,
        /// The version found.
        from: u32,
        /// What failed.
        message: String,
    },
    /// The store was written by a newer Allama.
    #[error(
        "the store at {dir} has schema version {found}; this Allama understands up to {SCHEMA_VERSION}"
    )]
    TooNew {
        /// The data directory.
        dir: PathBuf,
        /// The version found.
        found: u32,
    },
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl SledStore {
    /// Where the blob named `hash` lives. Names are SHA-256 hex digests; any
    /// other name (from a damaged or hostile history) is refused, so it can
    /// never point outside the blob directory.
    fn blob_path(&self, hash: &str) -> Result<PathBuf, StoreError> {
        if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(StoreError::Io(format!(
                "`{}` is not a blob name (64 lowercase hex digits)",
                hash.chars().take(80).collect::<String>()
            )));
        }
        Ok(self.payloads.join(hash))
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        let sled_err = |e: sled::Error| OpenError::Sled {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| OpenError::Sled {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let config = sled::Config::new()
            .path(dir)
            // The committer thread decides when to flush.
            .flush_every_ms(None)
            .cache_capacity(64 * 1024 * 1024);
        let db = open_when_unlocked(&config).map_err(sled_err)?;
        let meta = db.open_tree("meta").map_err(sled_err)?;
        let runs = db.open_tree("runs").map_err(sled_err)?;
        let by_scope = db.open_tree("runs_by_scope").map_err(sled_err)?;
        let found = match meta.get("schema_version").map_err(sled_err)? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u32::from_be_bytes)
                .unwrap_or(u32::MAX),
            // A new store: nothing to migrate.
            None if runs.is_empty() => SCHEMA_VERSION,
            None => 1,
        };
        if found > SCHEMA_VERSION {
            return Err(OpenError::TooNew {
                dir: dir.to_path_buf(),
                found,
            });
        }
        if found < 2 {
            migrate_1_to_2(&runs, &by_scope).map_err(|message| OpenError::Migration {
                dir: dir.to_path_buf(),
                from: found,
                message,
            })?;
        }
        if found < 3 {
            migrate_2_to_3(&runs, &db.open_tree("active").map_err(sled_err)?).map_err(
                |message| OpenError::Migration {
                    dir: dir.to_path_buf(),
                    from: found,
                    message,
                },
            )?;
        }
        if found != SCHEMA_VERSION || meta.get("schema_version").map_err(sled_err)?.is_none() {
            // The migrated data first, then the version that says it is there.
            db.flush().map_err(sled_err)?;
            meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())
                .map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
        }
        let file = File::open(dir.join("db")).map_err(|e| OpenError::Sled {
            dir: dir.to_path_buf(),
            message: format!("opening db for sync: {e}"),
        })?;
        let (committer, commit_thread) = Committer::start(db.clone(), file);
        let gated = gate::Db::from(db.clone());
        drop((runs, by_scope));
        Ok(Self {
            history: gated.open_tree("history").map_err(sled_err)?,
            tails: Mutex::default(),
            runs: gated.open_tree("runs").map_err(sled_err)?,
            active: gated.open_tree("active").map_err(sled_err)?,
            by_scope: gated.open_tree("runs_by_scope").map_err(sled_err)?,
            gated,
            payloads: {
                let p = dir.join("payloads");
                std::fs::create_dir_all(&p).map_err(|e| OpenError::Sled {
                    dir: dir.to_path_buf(),
                    message: format!("creating {}: {e}", p.display()),
                })?;
                p
            },
            db,
            committer,
            commit_thread: Some(commit_thread),
            dir: dir.to_path_buf(),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flushes and syncs now, blocking (for shutdown and tests).
    pub fn sync_now(&self) -> Result<(), StoreError> {
        self.committer.sync()
    }

    /// Registers work to run before every sync — each commit, each periodic
    /// sync, [`SledStore::sync_now`] — and before a backup reads the trees:
    /// a sibling store that keeps some writes in memory until then (the
    /// audit chains' heads) writes them here, so every sync covers them. A
    /// hook's error fails the sync it ran for.
    pub fn before_sync(&self, hook: SyncHook) {
        self.committer
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Runs the [`SledStore::before_sync`] hooks now (a backup, before it
    /// reads the trees).
    pub(crate) fn run_sync_hooks(&self) -> Result<(), StoreError> {
        self.committer.run_hooks()
    }

    /// Marks the database as changed by a sibling store (the server's
    /// trees), so the periodic sync covers it within [`PERIODIC_SYNC`].
    pub fn mark_dirty(&self) {
        self.committer.dirty();
    }

    /// How many durable commits (flush + sync) have run.
    pub fn commits(&self) -> u64 {
        self.committer.count()
    }

    /// The database, for sibling stores (the server's trees): its trees
    /// write through the gate a backup closes.
    pub fn db(&self) -> &gate::Db {
        &self.gated
    }
}

/// How long [`SledStore::open`] waits for a database this process just
/// closed to be unlocked.
const UNLOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens sled, waiting (up to [`UNLOCK_WAIT`]) while its file lock is held:
/// sled releases the lock when the last of its I/O threads lets go of a
/// closed database, a moment after the close, so reopening at once (a
/// restore checking what it wrote, a restart in one process) can find it
/// still locked. A lock held by another process is still refused, later.
pub(crate) fn open_when_unlocked(config: &sled::Config) -> sled::Result<sled::Db> {
    let until = std::time::Instant::now() + UNLOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The scope of a playbook id: the part before its first `/` (a server's
/// workspace), or empty.
pub fn scope_of(playbook: &str) -> &str {
    playbook.split_once('/').map_or("", |(scope, _)| scope)
}

fn scope_key(scope: &str, run: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(scope.len() + 1 + run.len());
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(run.as_bytes());
    k
}

/// Version 1 had no `runs_by_scope`: index every run. Idempotent, so an
/// interrupted migration is simply run again.
fn migrate_1_to_2(runs: &sled::Tree, by_scope: &sled::Tree) -> Result<(), String> {
    for item in runs.iter() {
        let (k, v) = item.map_err(|e| e.to_string())?;
        let run = String::from_utf8_lossy(&k);
        let summary: RunSummary =
            serde_json::from_slice(&v).map_err(|e| format!("run index entry {run}: {e}"))?;
        by_scope
            .insert(scope_key(scope_of(&summary.playbook), &run), &[])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Version 2 kept every run's entry in `runs` and marked running runs in
/// `active` with an empty value; version 3 keeps a running run's entry in
/// `active`. Idempotent: an entry already moved is only removed from `runs`.
/// (Version 3 also lets a `history` value hold several records, which needs
/// no rewrite: a version-2 value is one record.)
fn migrate_2_to_3(runs: &sled::Tree, active: &sled::Tree) -> Result<(), String> {
    for item in active.iter() {
        let (id, v) = item.map_err(|e| e.to_string())?;
        if v.is_empty() {
            match runs.get(&id).map_err(|e| e.to_string())? {
                Some(summary) => {
                    active.insert(&id, summary).map_err(|e| e.to_string())?;
                }
                // Marked running with no entry at all: nothing to move.
                None => continue,
            }
        }
        runs.remove(&id).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Which runs [`SledStore::runs_in`] returns.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs older than this run id (the cursor of the previous page).
    pub before: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this playbook (its full id).
    pub playbook: Option<String>,
    /// Only top-level runs (no child runs).
    pub top_level: bool,
}

impl SledStore {
    /// The runs of one scope, newest first, filtered, at most `limit`; and
    /// whether more remain (the last one's id is the next page's cursor).
    pub fn runs_in(
        &self,
        scope: &str,
        filter: &RunFilter,
        limit: usize,
    ) -> Result<(Vec<RunSummary>, bool), StoreError> {
        let start = scope_key(scope, "");
        let end = match &filter.before {
            Some(b) => scope_key(scope, b),
            None => {
                let mut e = scope.as_bytes().to_vec();
                e.push(1);
                e
            }
        };
        let mut out = Vec::new();
        for item in self.by_scope.range(start.clone()..end).rev() {
            let (k, _) = item.map_err(io)?;
            let run = String::from_utf8_lossy(&k[start.len()..]).into_owned();
            let Some(s) = self.summary(&run)? else {
                continue;
            };
            if filter.status.as_ref().is_some_and(|st| &s.status != st)
                || filter.playbook.as_ref().is_some_and(|p| &s.playbook != p)
                || (filter.top_level && s.parent.is_some())
            {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(s);
        }
        Ok((out, false))
    }
}

/// A history value is extended by later appends up to this size; past it,
/// an append starts a new value.
const HISTORY_VALUE_BYTES: usize = 4096;

/// Runs whose last history value is remembered; past it the memory starts
/// over (a value is then read back once).
const MAX_TAILS: usize = 65_536;

/// A run's last history value, as last written.
struct Tail {
    first_seq: u64,
    value: sled::IVec,
}

fn history_key(run: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(run.len() + 9);
    k.extend_from_slice(run.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl RunStore for SledStore {
    fn append(&self, run: &str, first_seq: u64, records: &[Vec<u8>]) -> Result<(), StoreError> {
        if run.as_bytes().contains(&0) {
            return Err(StoreError::Io(format!(
                "run id {run:?} contains a NUL byte"
            )));
        }
        if records.is_empty() {
            return Ok(());
        }
        // One sled write for the whole append, not one per record and not
        // a sled batch (sled 0.34 seals and writes its log buffer twice for
        // every batch, `pin_log`). And where it fits, the run's last value
        // is rewritten with these records added instead of a new key being
        // made: every new key grows a leaf, and sled splits its leaves every
        // few keys, rewriting both halves; a rewrite of a small value costs
        // a fraction of that. One value is atomic: a crash keeps all of an
        // append or none of it, and any prefix of a run's appends is a state
        // the run was in (none was acknowledged before the commit).
        let mut tails = self.tails.lock().unwrap_or_else(|e| e.into_inner());
        let added = group::framed_len(records);
        // The run's last value: remembered from its last append in this
        // process, else read (the first append after a restart). A run's
        // first append has none.
        let last = match tails.get(run) {
            Some(t) => Some((t.first_seq, t.value.clone())),
            None if first_seq == 0 => None,
            None => {
                let key = history_key(run, first_seq);
                self.history
                    .get_lt(&key)
                    .map_err(io)?
                    .filter(|(k, _)| {
                        k.len() == key.len() && k[..run.len() + 1] == key[..run.len() + 1]
                    })
                    .and_then(|(k, v)| {
                        let first = u64::from_be_bytes(k[run.len() + 1..].try_into().ok()?);
                        Some((first, v))
                    })
            }
        };
        let (first, value) = match last {
            Some((first, value))
                if value.len() + added <= HISTORY_VALUE_BYTES
                    && group::count(&value).and_then(|c| first.checked_add(c as u64))
                        == Some(first_seq) =>
            {
                (first, sled::IVec::from(group::extend(&value, records)))
            }
            _ => (first_seq, sled::IVec::from(group::encode(records))),
        };
        if let Err(e) = self.history.insert(history_key(run, first), value.clone()) {
            tails.remove(run);
            return Err(io(e));
        }
        if tails.len() >= MAX_TAILS {
            tails.clear();
        }
        tails.insert(
            run.to_string(),
            Tail {
                first_seq: first,
                value,
            },
        );
        self.committer.dirty();
        Ok(())
    }

    fn history(&self, run: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut prefix = run.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for kv in self.history.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(io)?;
            let n = out.len() as u64;
            let seq = k
                .get(prefix.len()..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if seq != Some(n) {
                return Err(StoreError::Corrupt {
                    run: run.to_string(),
                    seq: n,
                    message: format!("the history has a gap: expected record {n}, found {seq:?}"),
                });
            }
            group::decode(&v, &mut out).map_err(|message| StoreError::Corrupt {
                run: run.to_string(),
                seq: n,
                message,
            })?;
        }
        Ok(out)
    }

    fn put_summary(&self, summary: &RunSummary) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(summary).map_err(io)?;
        // A running run's entry is in `active`, a finished one's in `runs`:
        // a run's index costs a write at its start and one at its end, and
        // `runs` only ever grows by finished runs.
        if summary.status == "running" {
            let known = self
                .active
                .insert(summary.id.as_bytes(), bytes)
                .map_err(io)?;
            // Indexed with the run's first summary (a run keeps its playbook;
            // version-1 stores are indexed by their migration).
            if known.is_none() {
                self.by_scope
                    .insert(scope_key(scope_of(&summary.playbook), &summary.id), &[])
                    .map_err(io)?;
            }
        } else {
            // The end first: a crash between the two leaves both entries,
            // and the finished one wins.
            let known = self.runs.insert(summary.id.as_bytes(), bytes).map_err(io)?;
            let was_running = self.active.remove(summary.id.as_bytes()).map_err(io)?;
            if known.is_none() && was_running.is_none() {
                self.by_scope
                    .insert(scope_key(scope_of(&summary.playbook), &summary.id), &[])
                    .map_err(io)?;
            }
            // Finished: its history is extended no more, or read back if it is.
            self.tails
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&summary.id);
        }
        self.committer.dirty();
        Ok(())
    }

    fn summary(&self, run: &str) -> Result<Option<RunSummary>, StoreError> {
        let entry = match self.runs.get(run.as_bytes()).map_err(io)? {
            Some(b) => Some(b),
            None => self
                .active
                .get(run.as_bytes())
                .map_err(io)?
                .filter(|b| !b.is_empty()),
        };
        entry
            .map(|b| {
                serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                    run: run.to_string(),
                    seq: 0,
                    message: format!("run index entry: {e}"),
                })
            })
            .transpose()
    }

    fn summaries(&self, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        // Finished and running runs, merged newest first (ids sort by time).
        let mut done = self.runs.iter().rev().peekable();
        let mut running = self.active.iter().rev().peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let order = match (done.peek(), running.peek()) {
                (None, None) => break,
                (Some(_), None) | (Some(Err(_)), _) => std::cmp::Ordering::Greater,
                (None, Some(_)) | (_, Some(Err(_))) => std::cmp::Ordering::Less,
                (Some(Ok((d, _))), Some(Ok((r, _)))) => d.cmp(r),
            };
            if order == std::cmp::Ordering::Equal {
                // Both (a crash between a run's two end writes): the end wins.
                running.next();
            }
            let take_done = order != std::cmp::Ordering::Less;
            let next = if take_done {
                done.next()
            } else {
                running.next()
            };
            let Some(item) = next else { break };
            let (k, v) = item.map_err(io)?;
            if v.is_empty() {
                continue;
            }
            let s: RunSummary = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                run: String::from_utf8_lossy(&k).into_owned(),
                seq: 0,
                message: format!("run index entry: {e}"),
            })?;
            out.push(s);
        }
        Ok(out)
    }

    fn active(&self) -> Result<Vec<String>, StoreError> {
        self.active
            .iter()
            .keys()
            .map(|k| {
                k.map_err(io)
                    .map(|k| String::from_utf8_lossy(&k).into_owned())
            })
            .collect()
    }

    fn put_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.blob_path(hash)?;
        // Content-addressed: present means identical.
        if path.exists() {
            return Ok(());
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .payloads
            .join(format!(".{hash}.{}.{n}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.payloads)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StoreError::Io(format!("writing blob {}: {e}", path.display()))
        })
    }

    fn get_blob(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.blob_path(hash)?;
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io(format!(
                "reading blob {}: {e}",
                path.display()
            ))),
        }
    }

    fn commit(&self) -> CommitFuture {
        let rx = self.committer.request();
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Io("the committer stopped".into())))
        })
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Join the committer so sled's file lock is released when this
        // returns: a store can be reopened at once.
        self.committer.stop();
        if let Some(t) = self.commit_thread.take() {
            let _ = t.join();
        }
    }
}

/// The group-commit thread.
struct Committer {
    state: Mutex<CommitState>,
    wake: Condvar,
    db: sled::Db,
    file: File,
    hooks: Mutex<Vec<SyncHook>>,
}

/// Work that must be written before every sync (see
/// [`SledStore::before_sync`]).
pub type SyncHook = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Default)]
struct CommitState {
    requested: u64,
    done: u64,
    dirty: bool,
    stop: bool,
    commits: u64,
    waiters: Vec<(u64, oneshot::Sender<Result<(), StoreError>>)>,
}

impl Committer {
    fn start(db: sled::Db, file: File) -> (Arc<Self>, std::thread::JoinHandle<()>) {
        let c = Arc::new(Self {
            state: Mutex::new(CommitState::default()),
            wake: Condvar::new(),
            db,
            file,
            hooks: Mutex::default(),
        });
        let worker = c.clone();
        let handle = std::thread::Builder::new()
            .name("allama-commit".into())
            .spawn(move || worker.run())
            .expect("spawning the commit thread");
        (c, handle)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CommitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dirty(&self) {
        self.lock().dirty = true;
    }

    fn count(&self) -> u64 {
        self.lock().commits
    }

    fn request(&self) -> oneshot::Receiver<Result<(), StoreError>> {
        let (tx, rx) = oneshot::channel();
        let mut s = self.lock();
        s.requested += 1;
        let g = s.requested;
        s.waiters.push((g, tx));
        drop(s);
        self.wake.notify_one();
        rx
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_one();
    }

    fn run_hooks(&self) -> Result<(), StoreError> {
        for hook in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            hook().map_err(StoreError::Io)?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Whatever a hook writes is covered by this very sync.
        self.run_hooks()?;
        self.db.flush().map_err(io)?;
        self.file.sync_data().map_err(io)?;
        Ok(())
    }

    fn run(self: Arc<Self>) {
        let mut s = self.lock();
        loop {
            if s.requested == s.done {
                if s.stop {
                    if s.dirty {
                        drop(s);
                        let _ = self.sync();
                    }
                    return;
                }
                // Nobody waits: sync leftover appends after a short while,
                // so they join a commit if one is requested meanwhile.
                let (g, timeout) = self
                    .wake
                    .wait_timeout(s, PERIODIC_SYNC)
                    .unwrap_or_else(|e| e.into_inner());
                s = g;
                if s.requested == s.done && !(timeout.timed_out() && s.dirty) {
                    continue;
                }
            }
            let target = s.requested;
            s.dirty = false;
            drop(s);
            let result = self.sync();
            s = self.lock();
            s.commits += 1;
            s.done = target;
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut s.waiters)
                .into_iter()
                .partition(|(g, _)| *g <= target);
            s.waiters = waiting;
            for (_, tx) in ready {
                let _ = tx.send(
                    result
                        .as_ref()
                        .map(|_| ())
                        .map_err(|e| StoreError::Io(e.to_string())),
                );
            }
        }
    }
}
