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
//! | `runs` | run id | [`RunSummary`] (JSON) of every run, running or finished (version 3: finished runs only) |
//! | `active` | run id | empty: a run that had not finished when the active mark passed its id (version 3: the running run's summary) |
//! | `runs_by_scope` | scope, `0x00`, run id | empty: the runs of one scope (the part of the playbook id before its first `/`: a server's workspace), newest last |
//!
//! Blobs (payloads over the codec's threshold, playbook sources) are files,
//! `<dir>/payloads/<sha256 hex>`, not sled values: sled 0.34 writes values
//! this large to files of its own without any fsync, and reads a whole value
//! even to say it exists. Each blob is written to a temporary name, synced,
//! renamed and its directory synced before `put_blob` returns, so it is
//! durable before any event that refers to it can be committed.
//! | `meta` | `schema_version` | u32 big-endian |
//! | `meta` | `active_mark` | the active mark: every unfinished run whose id sorts below it is in `active` |
//!
//! **Young runs skip `active`.** Most runs finish within milliseconds, so a
//! run's start writes only its `runs` entry (status running) and its scope
//! entry, and its end rewrites the `runs` entry: three writes, no key added
//! to `active` and removed again. Before every sync the store moves the
//! active mark up to [`YOUNG_MS`] ago, first marking in `active` each run
//! still unfinished below the new mark (sled keeps a prefix of its writes,
//! so a recovered mark always has those markers with it). The unfinished
//! runs are then `active` plus the running entries of `runs` at or above
//! the mark — a scan of a few seconds of runs at start-up. Run ids sort by
//! time; one that sorts below the mark when it starts (a child run of an
//! older run, a clock set back) is marked at once.

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
/// records; version 4 keeps every run's entry in `runs` again and marks in
/// `active` only the runs that outlive [`YOUNG_MS`]. [`SledStore::open`] migrates every earlier version; older code
/// refuses a newer store.
pub const SCHEMA_VERSION: u32 = 4;

/// How long a run may stay unfinished before its `active` marker is
/// written (see the module's notes).
pub const YOUNG_MS: u64 = 2000;

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
    young: Arc<Young>,
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
        let migration = |message| OpenError::Migration {
            dir: dir.to_path_buf(),
            from: found,
            message,
        };
        let active = db.open_tree("active").map_err(sled_err)?;
        if found < 3 {
            migrate_2_to_3(&runs, &active).map_err(migration)?;
        }
        if found < 4 {
            migrate_3_to_4(&runs, &active).map_err(migration)?;
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
        drop((runs, by_scope, active));
        let runs = gated.open_tree("runs").map_err(sled_err)?;
        let young = Arc::new(Young::open(&gated, &runs).map_err(|e| OpenError::Sled {
            dir: dir.to_path_buf(),
            message: format!("reading the runs above the active mark: {e}"),
        })?);
        let store = Self {
            history: gated.open_tree("history").map_err(sled_err)?,
            tails: Mutex::default(),
            runs,
            young,
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
        };
        // Before every sync: young runs the mark passes get their markers.
        let young = Arc::downgrade(&store.young);
        store.before_sync(Box::new(move || match young.upgrade() {
            Some(y) => y.advance(allama_engine::driver::now_ms()),
            None => Ok(()),
        }));
        Ok(store)
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

/// Version 3 kept a running run's entry in `active`; version 4 keeps every
/// run's entry in `runs` and an empty marker in `active`. Idempotent: a
/// marker is already migrated; an entry whose run also has a `runs` entry
/// (a crash between a version-3 run's two end writes) is a finished run.
fn migrate_3_to_4(runs: &sled::Tree, active: &sled::Tree) -> Result<(), String> {
    for item in active.iter() {
        let (id, v) = item.map_err(|e| e.to_string())?;
        if v.is_empty() {
            continue;
        }
        if runs.get(&id).map_err(|e| e.to_string())?.is_some() {
            active.remove(&id).map_err(|e| e.to_string())?;
        } else {
            runs.insert(&id, v).map_err(|e| e.to_string())?;
            active.insert(&id, &[]).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The active mark for time `ms`: the smallest id a run started then has.
fn mark_at(ms: u64) -> Vec<u8> {
    allama_engine::driver::first_run_id_at(ms).into_bytes()
}

/// Unfinished runs: markers in `active` below the mark, and in memory the
/// runs at or above it (see the module's notes).
struct Young {
    active: gate::Tree,
    meta: gate::Tree,
    state: Mutex<YoungState>,
}

struct YoungState {
    /// The mark as last written.
    mark: Vec<u8>,
    /// Unfinished runs at or above the mark (no marker in `active`).
    runs: std::collections::BTreeSet<String>,
}

impl Young {
    fn open(db: &gate::Db, runs: &gate::Tree) -> Result<Self, String> {
        let e = |e: sled::Error| e.to_string();
        let active = db.open_tree("active").map_err(e)?;
        let meta = db.open_tree("meta").map_err(e)?;
        let mark = match meta.get("active_mark").map_err(e)? {
            Some(m) => m.to_vec(),
            None => {
                // A new or just migrated store: every unfinished run has
                // a marker, so any mark holds; this one is now.
                let m = mark_at(allama_engine::driver::now_ms());
                meta.insert("active_mark", m.clone()).map_err(e)?;
                m
            }
        };
        let mut young = std::collections::BTreeSet::new();
        for item in runs.range(mark.clone()..) {
            let (id, v) = item.map_err(e)?;
            if is_running(&v) {
                young.insert(String::from_utf8_lossy(&id).into_owned());
            }
        }
        Ok(Self {
            active,
            meta,
            state: Mutex::new(YoungState { mark, runs: young }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, YoungState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the mark up to [`YOUNG_MS`] before `now`: markers first, the
    /// mark last. Runs before every sync.
    fn advance(&self, now: u64) -> Result<(), String> {
        let mark = mark_at(now.saturating_sub(YOUNG_MS));
        let mut st = self.lock();
        if mark <= st.mark {
            return Ok(());
        }
        let below: Vec<String> = st
            .runs
            .iter()
            .take_while(|id| id.as_bytes() < mark.as_slice())
            .cloned()
            .collect();
        for id in &below {
            self.active
                .insert(id.as_bytes(), &[])
                .map_err(|e| e.to_string())?;
            st.runs.remove(id);
        }
        self.meta
            .insert("active_mark", mark.clone())
            .map_err(|e| e.to_string())?;
        st.mark = mark;
        Ok(())
    }

    /// Every unfinished run, in id order.
    fn all(&self, runs: &gate::Tree) -> Result<Vec<String>, StoreError> {
        let st = self.lock();
        let mut out = Vec::new();
        for k in self.active.iter().keys() {
            let k = k.map_err(io)?;
            // A marker whose run's entry says it finished: a crash between
            // the end's two writes. Finished wins.
            if runs.get(&k).map_err(io)?.is_some_and(|v| !is_running(&v)) {
                continue;
            }
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        out.extend(st.runs.iter().cloned());
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Whether a `runs` entry is a running run's (an unreadable one counts as
/// running: recovery then reports it).
fn is_running(v: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Status {
        status: String,
    }
    serde_json::from_slice::<Status>(v).map_or(true, |s| s.status == "running")
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
        let id = summary.id.as_bytes();
        // Held throughout, so the mark cannot pass this run between its
        // entry and its marker (`Young::advance` takes it too).
        let mut young = self.young.lock();
        let below_mark = id < young.mark.as_slice();
        let running = summary.status == "running";
        if running && below_mark && self.young.active.get(id).map_err(io)?.is_none() {
            // A run that starts below the mark (a child of an older run, a
            // clock set back): its marker first, so an entry below the
            // mark never goes without one.
            self.young.active.insert(id, &[]).map_err(io)?;
        }
        // Every run's entry is in `runs`: a run's start adds it (and its
        // scope entry), its end rewrites it in place.
        let known = self.runs.insert(id, bytes).map_err(io)?;
        if known.is_none() {
            // Indexed with the run's first summary (a run keeps its
            // playbook; version-1 stores are indexed by their migration).
            self.by_scope
                .insert(scope_key(scope_of(&summary.playbook), &summary.id), &[])
                .map_err(io)?;
        }
        let was_running = known.as_deref().is_some_and(is_running);
        if running {
            if !was_running && !below_mark {
                young.runs.insert(summary.id.clone());
            }
        } else {
            // The end first (above): a crash before the marker's removal
            // leaves both, and the finished entry wins.
            if was_running && !young.runs.remove(&summary.id) {
                self.young.active.remove(id).map_err(io)?;
            }
            // Finished: its history is extended no more, or read back if it is.
            self.tails
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&summary.id);
        }
        drop(young);
        self.committer.dirty();
        Ok(())
    }

    fn summary(&self, run: &str) -> Result<Option<RunSummary>, StoreError> {
        self.runs
            .get(run.as_bytes())
            .map_err(io)?
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
        // Newest first: run ids sort by time.
        let mut out = Vec::new();
        for item in self.runs.iter().rev().take(limit) {
            let (k, v) = item.map_err(io)?;
            out.push(serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                run: String::from_utf8_lossy(&k).into_owned(),
                seq: 0,
                message: format!("run index entry: {e}"),
            })?);
        }
        Ok(out)
    }

    fn active(&self) -> Result<Vec<String>, StoreError> {
        self.young.all(&self.runs)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn running(id: &str) -> RunSummary {
        RunSummary {
            id: id.into(),
            playbook: "soc/triage".into(),
            status: "running".into(),
            started_at: 0,
            finished_at: None,
            parent: None,
            error: None,
        }
    }

    fn mark_at_str(ms: u64) -> String {
        allama_engine::driver::first_run_id_at(ms)
    }

    fn markers(s: &SledStore) -> Vec<String> {
        s.gated
            .open_tree("active")
            .unwrap()
            .iter()
            .keys()
            .map(|k| String::from_utf8(k.unwrap().to_vec()).unwrap())
            .collect()
    }

    /// A run that outlives YOUNG_MS is marked when the mark passes it, and
    /// the mark is written after the marker, so a restart finds it.
    #[test]
    fn moving_the_mark_marks_the_runs_it_passes() {
        let dir = tempfile::tempdir().unwrap();
        let now = allama_engine::driver::now_ms();
        let early = format!("{}0001000000000000", mark_at_str(now + 1000));
        let late = format!("{}0001000000000000", mark_at_str(now + 9000));
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put_summary(&running(&early)).unwrap();
            s.put_summary(&running(&late)).unwrap();
            assert!(markers(&s).is_empty());
            // Five seconds on: the mark passes `early`, not `late`.
            s.young.advance(now + 1000 + YOUNG_MS + 5000).unwrap();
            assert_eq!(markers(&s), [early.clone()]);
            assert_eq!(s.active().unwrap(), [early.clone(), late.clone()]);
            // A mark never moves back.
            s.young.advance(now).unwrap();
            assert_eq!(s.young.lock().mark, mark_at(now + 1000 + 5000));
            s.sync_now().unwrap();
        }
        // Reopened: `early` is found by its marker (below the written mark),
        // `late` by the scan above it.
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.young.lock().mark, mark_at(now + 6000));
        assert_eq!(s.active().unwrap(), [early.clone(), late.clone()]);
        let mut done = running(&early);
        done.status = "succeeded".into();
        s.put_summary(&done).unwrap();
        assert!(markers(&s).is_empty());
        assert_eq!(s.active().unwrap(), [late]);
    }
}
