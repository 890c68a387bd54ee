//! Backups: one file holding every tree and every blob, taken while the
//! server runs, restored into a fresh data directory.
//!
//! Consistency: [`SledStore::backup`] reads every tree with the write gate
//! (see [`crate::gate`]) held exclusively, so the trees it writes are the
//! state after one prefix of all writes — what a crash at that instant
//! would leave, which Allama recovers from. Blobs are copied afterwards,
//! with writes going on: a blob is durable before any record naming it is
//! written, and blobs are never changed or deleted, so every blob the trees
//! name is on disk by then (later ones come along harmlessly).
//!
//! Not in a backup: the master key (`master.key`, or `ALLAMA_MASTER_KEY`).
//! Secrets in the backup stay encrypted under it; keep the key apart from
//! the backups, and give it to the restored server.
//!
//! Format (all integers big-endian):
//!
//! ```text
//! "ALLAMA-BACKUP\n" | format version: u32 = 1
//! records, each a tag byte:
//!   'T' name_len: u32, name          a tree; the entries after it are its own
//!   'E' key_len: u32, key, value_len: u32, value
//!   'B' name: 64 hex bytes, len: u64, bytes      a blob
//!   'Z' trees: u32, entries: u64, blobs: u64, sha256 of every byte before it
//! ```
//!
//! [`restore`] checks every length against a bound before allocating, and
//! the digest before anything is visible: it writes into a sibling
//! directory and renames it into place only when the whole file checked.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::SledStore;

const MAGIC: &[u8] = b"ALLAMA-BACKUP\n";
const FORMAT: u32 = 1;
/// Bounds a hostile file cannot make [`restore`] exceed.
const MAX_NAME: u32 = 1024;
const MAX_KEY: u32 = 64 * 1024;
const MAX_VALUE: u32 = 512 * 1024 * 1024;
const MAX_BLOB: u64 = 4 * 1024 * 1024 * 1024;

/// What a backup holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackupSummary {
    /// Trees.
    pub trees: u32,
    /// Entries over all trees.
    pub entries: u64,
    /// Blob files.
    pub blobs: u64,
    /// Bytes of the backup file.
    pub bytes: u64,
}

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading the store or writing the file failed.
    #[error("{what}: {message}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        message: String,
    },
    /// The file is not a backup, is damaged, or was cut short.
    #[error("not a usable backup: {message} (at byte {offset})")]
    Invalid {
        /// Where in the file.
        offset: u64,
        /// What was wrong.
        message: String,
    },
    /// The target directory already holds something.
    #[error(
        "{dir} is not empty: restore into a new directory (a restore never overwrites a data directory)"
    )]
    NotEmpty {
        /// The target.
        dir: PathBuf,
    },
    /// The restored store would not open.
    #[error("the restored store would not open: {0}")]
    Open(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |e| BackupError::Io {
        what,
        message: e.to_string(),
    }
}

fn sled_err(what: impl Into<String>) -> impl FnOnce(sled::Error) -> BackupError {
    let what = what.into();
    move |e| BackupError::Io {
        what,
        message: e.to_string(),
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, b: &[u8]) -> Result<(), BackupError> {
        self.write_all(b).map_err(io_err("writing the backup"))
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.hash.update(&b[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl SledStore {
    /// Writes a consistent backup of the whole store to `out`. Writers
    /// wait while the trees are read (not while blobs are copied).
    pub fn backup(&self, out: impl Write) -> Result<BackupSummary, BackupError> {
        let mut w = Hashing {
            inner: BufWriter::with_capacity(1 << 20, out),
            hash: Sha256::new(),
            bytes: 0,
        };
        let mut sum = BackupSummary::default();
        w.put(MAGIC)?;
        w.put(&FORMAT.to_be_bytes())?;
        // What siblings hold back until a sync (audit heads) goes in first.
        self.run_sync_hooks().map_err(|e| BackupError::Io {
            what: "writing held-back records before the backup".into(),
            message: e.to_string(),
        })?;
        {
            let _all = self.gated.gate.exclusive();
            // In name order: the same store makes the same file.
            let mut names = self.db.tree_names();
            names.sort();
            for name in names {
                let tree = self
                    .db
                    .open_tree(&name)
                    .map_err(sled_err("opening a tree to back up"))?;
                w.put(b"T")?;
                w.put(&(name.len() as u32).to_be_bytes())?;
                w.put(&name)?;
                sum.trees += 1;
                for item in tree.iter() {
                    let (k, v) = item.map_err(sled_err("reading a tree"))?;
                    w.put(b"E")?;
                    w.put(&(k.len() as u32).to_be_bytes())?;
                    w.put(&k)?;
                    w.put(&(v.len() as u32).to_be_bytes())?;
                    w.put(&v)?;
                    sum.entries += 1;
                }
            }
        }
        let mut names: Vec<String> = std::fs::read_dir(&self.payloads)
            .map_err(io_err("listing blobs"))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            // Temporary names (a blob being written) start with a dot.
            .filter(|n| self.blob_path(n).is_ok())
            .collect();
        names.sort();
        for name in names {
            let path = self.payloads.join(&name);
            let mut f = File::open(&path).map_err(io_err(format!("reading blob {name}")))?;
            let len = f
                .metadata()
                .map_err(io_err(format!("reading blob {name}")))?
                .len();
            w.put(b"B")?;
            w.put(name.as_bytes())?;
            w.put(&len.to_be_bytes())?;
            let copied = std::io::copy(&mut (&mut f).take(len), &mut w)
                .map_err(io_err(format!("copying blob {name}")))?;
            if copied != len {
                return Err(BackupError::Io {
                    what: format!("copying blob {name}"),
                    message: format!("it shrank from {len} to {copied} bytes while being copied"),
                });
            }
            sum.blobs += 1;
        }
        w.put(b"Z")?;
        w.put(&sum.trees.to_be_bytes())?;
        w.put(&sum.entries.to_be_bytes())?;
        w.put(&sum.blobs.to_be_bytes())?;
        let digest = w.hash.clone().finalize();
        w.inner
            .write_all(&digest)
            .map_err(io_err("writing the backup"))?;
        w.bytes += digest.len() as u64;
        w.inner.flush().map_err(io_err("writing the backup"))?;
        sum.bytes = w.bytes;
        Ok(sum)
    }
}

/// A reader that hashes what it hands out and knows where it is.
struct Reading<R> {
    inner: R,
    hash: Sha256,
    offset: u64,
}

impl<R: Read> Reading<R> {
    fn invalid(&self, message: impl Into<String>) -> BackupError {
        BackupError::Invalid {
            offset: self.offset,
            message: message.into(),
        }
    }

    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.hash.update(&*buf);
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(self.invalid(format!("the file ends inside {what}: it was cut short")))
            }
            Err(e) => Err(io_err("reading the backup")(e)),
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32, BackupError> {
        let mut b = [0u8; 4];
        self.exact(&mut b, what)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, BackupError> {
        let mut b = [0u8; 8];
        self.exact(&mut b, what)?;
        Ok(u64::from_be_bytes(b))
    }

    /// A length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, max: u32, what: &str) -> Result<Vec<u8>, BackupError> {
        let len = self.u32(what)?;
        if len > max {
            return Err(self.invalid(format!(
                "{what} claims {len} bytes; at most {max} are allowed"
            )));
        }
        // Grows with what is actually there: a lying length in a short file
        // costs no more memory than the file.
        let mut v = Vec::new();
        let got = (&mut self.inner)
            .take(u64::from(len))
            .read_to_end(&mut v)
            .map_err(io_err("reading the backup"))?;
        if got < len as usize {
            self.offset += got as u64;
            return Err(self.invalid(format!("the file ends inside {what}: it was cut short")));
        }
        self.hash.update(&v);
        self.offset += got as u64;
        Ok(v)
    }
}

/// Whether `dir` is absent or an empty directory.
fn absent_or_empty(dir: &Path) -> Result<bool, BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io_err(format!("reading {}", dir.display()))(e)),
    }
}

/// Restores the backup read from `input` into `dir`, which must not exist
/// or be empty. Nothing appears at `dir` unless the whole file checked and
/// the restored store opens.
pub fn restore(input: impl Read, dir: &Path) -> Result<BackupSummary, BackupError> {
    if !absent_or_empty(dir)? {
        return Err(BackupError::NotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_err(format!("creating {}", parent.display())))?;
    let staging = tempfile::Builder::new()
        .prefix(".allama-restoring-")
        .tempdir_in(&parent)
        .map_err(io_err(format!(
            "creating a staging directory in {}",
            parent.display()
        )))?;
    let sum = restore_into(input, staging.path())?;
    // The checked copy takes the target's place in one rename.
    let _ = std::fs::remove_dir(dir);
    let staged = staging.keep();
    std::fs::rename(&staged, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        io_err(format!("moving the restored store to {}", dir.display()))(e)
    })?;
    File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", parent.display())))?;
    Ok(sum)
}

/// Reads a whole backup and checks it (lengths, names, digest, counts)
/// without writing anything.
pub fn check(input: impl Read) -> Result<BackupSummary, BackupError> {
    read_backup(input, None)
}

fn restore_into(input: impl Read, dir: &Path) -> Result<BackupSummary, BackupError> {
    let sum = read_backup(input, Some(dir))?;
    // The store must open: schema version, migrations.
    SledStore::open(dir).map_err(|e| BackupError::Open(e.to_string()))?;
    Ok(sum)
}

/// Where a backup being read goes.
struct Sink {
    db: sled::Db,
    payloads: PathBuf,
    tree: Option<sled::Tree>,
    batch: sled::Batch,
    batched: usize,
}

impl Sink {
    fn flush_batch(&mut self) -> Result<(), BackupError> {
        if let Some(t) = &self.tree {
            t.apply_batch(std::mem::take(&mut self.batch))
                .map_err(sled_err("writing the restored database"))?;
        }
        self.batched = 0;
        Ok(())
    }
}

fn read_backup(input: impl Read, dir: Option<&Path>) -> Result<BackupSummary, BackupError> {
    let mut r = Reading {
        inner: BufReader::with_capacity(1 << 20, input),
        hash: Sha256::new(),
        offset: 0,
    };
    let mut magic = [0u8; MAGIC.len()];
    r.exact(&mut magic, "the header")?;
    if magic != MAGIC {
        return Err(BackupError::Invalid {
            offset: 0,
            message: "this is not an Allama backup (the header is wrong)".into(),
        });
    }
    let format = r.u32("the header")?;
    if format != FORMAT {
        return Err(r.invalid(format!(
            "backup format {format}; this Allama reads format {FORMAT}"
        )));
    }
    let mut sink = match dir {
        Some(dir) => {
            let payloads = dir.join("payloads");
            std::fs::create_dir_all(&payloads).map_err(io_err("creating the blob directory"))?;
            let db = sled::Config::new()
                .path(dir)
                .flush_every_ms(None)
                .open()
                .map_err(sled_err("creating the restored database"))?;
            Some(Sink {
                db,
                payloads,
                tree: None,
                batch: sled::Batch::default(),
                batched: 0,
            })
        }
        None => None,
    };
    let mut sum = BackupSummary::default();
    let mut in_tree = false;
    let mut seen = std::collections::HashSet::new();
    loop {
        let mut tag = [0u8; 1];
        r.exact(&mut tag, "a record tag")?;
        match tag[0] {
            b'T' => {
                let name = r.bytes(MAX_NAME, "a tree name")?;
                if !seen.insert(name.clone()) {
                    return Err(r.invalid(format!(
                        "tree `{}` appears twice",
                        String::from_utf8_lossy(&name)
                    )));
                }
                if let Some(sink) = &mut sink {
                    sink.flush_batch()?;
                    sink.tree = Some(
                        sink.db
                            .open_tree(&name)
                            .map_err(sled_err("creating a restored tree"))?,
                    );
                }
                in_tree = true;
                sum.trees += 1;
            }
            b'E' => {
                if !in_tree {
                    return Err(r.invalid("an entry before any tree"));
                }
                let k = r.bytes(MAX_KEY, "an entry's key")?;
                let v = r.bytes(MAX_VALUE, "an entry's value")?;
                if let Some(sink) = &mut sink {
                    sink.batched += k.len() + v.len();
                    sink.batch.insert(k, v);
                    if sink.batched > 16 << 20 {
                        sink.flush_batch()?;
                    }
                }
                sum.entries += 1;
            }
            b'B' => {
                let mut name = [0u8; 64];
                r.exact(&mut name, "a blob name")?;
                let name = std::str::from_utf8(&name)
                    .ok()
                    .filter(|n| n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                    .ok_or_else(|| r.invalid("a blob name that is not 64 lowercase hex digits"))?
                    .to_string();
                let len = r.u64("a blob length")?;
                if len > MAX_BLOB {
                    return Err(r.invalid(format!(
                        "blob {name} claims {len} bytes; at most {MAX_BLOB} are allowed"
                    )));
                }
                let mut f = match &sink {
                    Some(sink) => Some(
                        File::create(sink.payloads.join(&name))
                            .map_err(io_err(format!("writing blob {name}")))?,
                    ),
                    None => None,
                };
                let mut buf = vec![0u8; 1 << 16];
                let mut left = len;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    r.exact(&mut buf[..n], "a blob")?;
                    if let Some(f) = &mut f {
                        f.write_all(&buf[..n])
                            .map_err(io_err(format!("writing blob {name}")))?;
                    }
                    left -= n as u64;
                }
                if let Some(f) = f {
                    f.sync_all()
                        .map_err(io_err(format!("writing blob {name}")))?;
                }
                sum.blobs += 1;
            }
            b'Z' => {
                let counts = (
                    r.u32("the trailer")?,
                    r.u64("the trailer")?,
                    r.u64("the trailer")?,
                );
                let expected = r.hash.clone().finalize();
                let mut digest = [0u8; 32];
                r.inner
                    .read_exact(&mut digest)
                    .map_err(|_| r.invalid("the file ends inside its digest: it was cut short"))?;
                if digest[..] != expected[..] {
                    return Err(r.invalid(
                        "the digest does not match the contents: the file was changed or damaged",
                    ));
                }
                if counts != (sum.trees, sum.entries, sum.blobs) {
                    return Err(r.invalid(format!(
                        "the trailer counts {} trees, {} entries, {} blobs; the file holds {}, {}, {}",
                        counts.0, counts.1, counts.2, sum.trees, sum.entries, sum.blobs
                    )));
                }
                let mut rest = [0u8; 1];
                if r.inner
                    .read(&mut rest)
                    .map_err(io_err("reading the backup"))?
                    != 0
                {
                    return Err(r.invalid("bytes after the trailer"));
                }
                sum.bytes = r.offset + 32;
                break;
            }
            other => {
                return Err(r.invalid(format!("unknown record tag 0x{other:02x}")));
            }
        }
    }
    if let Some(mut sink) = sink {
        sink.flush_batch()?;
        sink.db
            .flush()
            .map_err(sled_err("writing the restored database"))?;
        let (payloads, dir) = (sink.payloads.clone(), dir.unwrap_or(Path::new(".")));
        drop(sink);
        for d in [&payloads, dir] {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(io_err(format!("syncing {}", d.display())))?;
        }
        File::open(dir.join("db"))
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing the restored database"))?;
    }
    Ok(sum)
}
