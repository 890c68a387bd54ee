//! Secrets at rest: AES-256-GCM (ring) under a master key, with the key's
//! id on every ciphertext so the master key can be rotated while the server
//! runs.
//!
//! - **Master keys** live in a key file (mode 0600, created on first start)
//!   or come from `ALLAMA_MASTER_KEY`; see [`MasterKeys`]. The file holds
//!   every key some ciphertext may still need, and which one encrypts.
//! - **Ciphertexts** are in tree `secrets`, key `workspace 0x00 name`, value
//!   JSON `{"kid", "nonce", "ct", "updated_at"}`. The key bytes are the
//!   additional authenticated data, so a ciphertext copied to another name
//!   or workspace does not decrypt.
//! - **Rotation** ([`Vault::rotate`]): a new key is generated and written to
//!   the key file *beside* the old ones before anything is re-encrypted (a
//!   crash mid-way loses nothing); each secret is re-encrypted with a
//!   compare-and-swap, so a concurrent `set` is never overwritten; the old
//!   keys leave the file only when nothing refers to them. Reads go on
//!   throughout: each ciphertext names the key it needs.
//!
//! Values are never logged, never returned by listings, and kept in memory
//! only as long as a caller holds them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use allama_engine::driver::now_ms;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::names::{NameError, check_secret, check_workspace};

/// Why a secret operation failed. Never carries a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A workspace or secret name that is not allowed.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The key file is missing what it needs, or is not a key file.
    #[error("master key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A ciphertext names a key the key file does not hold.
    #[error(
        "secret `{name}` is encrypted with master key `{kid}`, which is not in the key file (was the key file replaced?)"
    )]
    UnknownKey {
        /// The secret.
        name: String,
        /// The key id it needs.
        kid: String,
    },
    /// A ciphertext that does not decrypt: damaged, or moved from another name.
    #[error("secret `{name}` does not decrypt: the stored ciphertext was altered or moved")]
    Tampered {
        /// The secret.
        name: String,
    },
    /// A value too large to be a secret.
    #[error("secret `{name}` is {len} bytes; the most is {MAX_SECRET_BYTES}")]
    TooLarge {
        /// The secret.
        name: String,
        /// Its size.
        len: usize,
    },
    /// sled or the file system failed.
    #[error("secret store: {0}")]
    Store(String),
}

impl From<sled::Error> for SecretError {
    fn from(e: sled::Error) -> Self {
        SecretError::Store(e.to_string())
    }
}

/// Largest secret value (API keys, tokens, a PEM key or two).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The environment variable that can hold the master key instead of a file:
/// a key id, `:`, and 32 bytes in base64 (`k1:…`). Rotation needs the file.
pub const MASTER_KEY_ENV: &str = "ALLAMA_MASTER_KEY";

/// The master keys: which one encrypts, and every one still needed to decrypt.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySet {
    /// The key new ciphertexts use.
    current: String,
    /// Key id → 32 bytes, base64.
    keys: BTreeMap<String, String>,
}

/// Master keys from a key file (or the environment).
pub struct MasterKeys {
    set: KeySet,
    /// The file they came from; `None` when from the environment.
    path: Option<PathBuf>,
}

fn random<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| SecretError::Store("the system random source failed".into()))?;
    Ok(b)
}

fn key_error(path: &Path, message: impl Into<String>) -> SecretError {
    SecretError::KeyFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl MasterKeys {
    /// The keys in `path`, creating the file with one new key (mode 0600)
    /// when it does not exist. Refuses a file others can read.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        if !path.exists() {
            let set = KeySet {
                current: "k1".into(),
                keys: BTreeMap::from([("k1".to_string(), B64.encode(random::<32>()?))]),
            };
            write_key_file(path, &set)?;
            return Ok(Self {
                set,
                path: Some(path.to_path_buf()),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| key_error(path, e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(key_error(
                    path,
                    format!(
                        "it is readable by others (mode {:o}); run `chmod 600 {}`",
                        mode & 0o777,
                        path.display()
                    ),
                ));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?;
        let set: KeySet = serde_json::from_str(&text)
            .map_err(|e| key_error(path, format!("not a key file: {e}")))?;
        check_set(&set).map_err(|m| key_error(path, m))?;
        Ok(Self {
            set,
            path: Some(path.to_path_buf()),
        })
    }

    /// One key from `ALLAMA_MASTER_KEY`'s value (`KID:BASE64`).
    pub fn from_env_value(value: &str) -> Result<Self, SecretError> {
        let at = Path::new(MASTER_KEY_ENV);
        let (kid, b64) = value
            .split_once(':')
            .ok_or_else(|| key_error(at, "expected KID:BASE64 (e.g. k1:…)"))?;
        let set = KeySet {
            current: kid.to_string(),
            keys: BTreeMap::from([(kid.to_string(), b64.trim().to_string())]),
        };
        check_set(&set).map_err(|m| key_error(at, m))?;
        Ok(Self { set, path: None })
    }

    /// The id of the key that encrypts.
    pub fn current(&self) -> &str {
        &self.set.current
    }

    /// Every key id held.
    pub fn ids(&self) -> Vec<String> {
        self.set.keys.keys().cloned().collect()
    }

    fn key(&self, kid: &str) -> Option<LessSafeKey> {
        let bytes = B64.decode(self.set.keys.get(kid)?.trim()).ok()?;
        UnboundKey::new(&AES_256_GCM, &bytes)
            .ok()
            .map(LessSafeKey::new)
    }
}

fn check_set(set: &KeySet) -> Result<(), String> {
    if !set.keys.contains_key(&set.current) {
        return Err(format!(
            "the current key `{}` is not among its keys",
            set.current
        ));
    }
    for (kid, b64) in &set.keys {
        if kid.is_empty() || kid.len() > 32 || !kid.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "key id `{}` must be 1 to 32 letters and digits",
                kid.escape_debug()
            ));
        }
        match B64.decode(b64.trim()) {
            Ok(b) if b.len() == 32 => {}
            Ok(b) => {
                return Err(format!(
                    "key `{kid}` is {} bytes; AES-256 needs 32",
                    b.len()
                ));
            }
            Err(e) => return Err(format!("key `{kid}` is not base64: {e}")),
        }
    }
    Ok(())
}

/// Writes the key file atomically: a temporary file with mode 0600, synced,
/// renamed over the old one, and the directory synced.
fn write_key_file(path: &Path, set: &KeySet) -> Result<(), SecretError> {
    use std::io::Write;
    let err = |e: std::io::Error| key_error(path, e.to_string());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("key.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    let text = serde_json::to_string_pretty(set).map_err(|e| key_error(path, e.to_string()))?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    kid: String,
    nonce: String,
    ct: String,
    updated_at: u64,
}

/// A secret's name and when it was last set: what listings show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// The name.
    pub name: String,
    /// Milliseconds since the epoch.
    pub updated_at: u64,
    /// The master key it is encrypted with.
    pub kid: String,
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rotated {
    /// The new key's id.
    pub kid: String,
    /// Secrets re-encrypted under it.
    pub reencrypted: usize,
    /// Keys retired from the key file.
    pub retired: Vec<String>,
}

/// Encrypted secrets of every workspace.
pub struct Vault {
    tree: crate::gate::Tree,
    keys: RwLock<MasterKeys>,
    rotating: std::sync::Mutex<()>,
}

fn storage_key(ws: &str, name: &str) -> Vec<u8> {
    let mut k = ws.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

impl Vault {
    /// The secrets in `db` (tree `secrets`) under `keys`.
    pub fn open(db: &crate::gate::Db, keys: MasterKeys) -> Result<Self, SecretError> {
        Ok(Self {
            tree: db.open_tree("secrets")?,
            keys: RwLock::new(keys),
            rotating: std::sync::Mutex::new(()),
        })
    }

    fn seal(&self, keys: &MasterKeys, k: &[u8], value: &[u8]) -> Result<Vec<u8>, SecretError> {
        let kid = keys.current().to_string();
        let key = keys
            .key(&kid)
            .ok_or_else(|| SecretError::Store(format!("master key `{kid}` is unusable")))?;
        let nonce = random::<NONCE_LEN>()?;
        let mut buf = value.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(k), &mut buf)
            .map_err(|_| SecretError::Store("encryption failed".into()))?;
        let sealed = Sealed {
            kid,
            nonce: B64.encode(nonce),
            ct: B64.encode(buf),
            updated_at: now_ms(),
        };
        serde_json::to_vec(&sealed).map_err(|e| SecretError::Store(e.to_string()))
    }

    fn open_sealed(
        &self,
        keys: &MasterKeys,
        k: &[u8],
        name: &str,
        stored: &[u8],
    ) -> Result<Vec<u8>, SecretError> {
        let tampered = || SecretError::Tampered {
            name: name.to_string(),
        };
        let sealed: Sealed = serde_json::from_slice(stored).map_err(|_| tampered())?;
        let key = keys
            .key(&sealed.kid)
            .ok_or_else(|| SecretError::UnknownKey {
                name: name.to_string(),
                kid: sealed.kid.clone(),
            })?;
        let nonce: [u8; NONCE_LEN] = B64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(tampered)?;
        let mut buf = B64.decode(&sealed.ct).map_err(|_| tampered())?;
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(k), &mut buf)
            .map_err(|_| tampered())?;
        Ok(plain.to_vec())
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, MasterKeys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets a secret (replacing any value it had).
    pub fn set(&self, workspace: &str, name: &str, value: &[u8]) -> Result<(), SecretError> {
        check_workspace(workspace)?;
        check_secret(name)?;
        if value.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge {
                name: name.to_string(),
                len: value.len(),
            });
        }
        let k = storage_key(workspace, name);
        // The read lock is held across encrypt and insert: a rotation's final
        // scan (under the write lock) then sees every value written under a
        // key it might retire.
        let keys = self.read_keys();
        let sealed = self.seal(&keys, &k, value)?;
        self.tree.insert(k, sealed)?;
        drop(keys);
        Ok(())
    }

    /// A secret's value, or `None` if it is not set. For the host's use at
    /// call time only: never return it through the API.
    pub fn reveal(&self, workspace: &str, name: &str) -> Result<Option<Vec<u8>>, SecretError> {
        check_workspace(workspace)?;
        check_secret(name)?;
        let k = storage_key(workspace, name);
        // The keys are locked before the value is read: a rotation retires a
        // key only under the write lock, so the value read here cannot lose
        // its key between the read and the decryption.
        let keys = self.read_keys();
        match self.tree.get(&k)? {
            None => Ok(None),
            Some(v) => self.open_sealed(&keys, &k, name, &v).map(Some),
        }
    }

    /// The secrets of a workspace: names and dates, never values.
    pub fn list(&self, workspace: &str) -> Result<Vec<SecretInfo>, SecretError> {
        check_workspace(workspace)?;
        let mut prefix = workspace.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let (updated_at, kid) = serde_json::from_slice::<Sealed>(&v)
                .map(|s| (s.updated_at, s.kid))
                .unwrap_or_default();
            out.push(SecretInfo {
                name,
                updated_at,
                kid,
            });
        }
        Ok(out)
    }

    /// Deletes a secret; says whether it existed.
    pub fn delete(&self, workspace: &str, name: &str) -> Result<bool, SecretError> {
        check_workspace(workspace)?;
        check_secret(name)?;
        Ok(self.tree.remove(storage_key(workspace, name))?.is_some())
    }

    /// Re-encrypts every secret under a new master key, while reads and
    /// writes go on. Needs a key file (a key from the environment cannot be
    /// rotated in place). `sync` makes the database durable (the server
    /// passes the store's flush-and-fdatasync): the re-encrypted values are
    /// durable before the old key leaves the key file.
    pub fn rotate(&self, sync: &dyn Fn() -> Result<(), String>) -> Result<Rotated, SecretError> {
        // One rotation at a time, start to end.
        let _one = self.rotating.lock().unwrap_or_else(|e| e.into_inner());
        let (path, kid) = {
            let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
            let Some(path) = keys.path.clone() else {
                return Err(key_error(
                    Path::new(MASTER_KEY_ENV),
                    "a master key from the environment cannot be rotated; use a key file",
                ));
            };
            let n = (1..)
                .find(|n| !keys.set.keys.contains_key(&format!("k{n}")))
                .unwrap_or(1);
            let kid = format!("k{n}");
            let mut next = keys.set.clone();
            next.keys.insert(kid.clone(), B64.encode(random::<32>()?));
            next.current = kid.clone();
            // Durable before any ciphertext depends on it.
            write_key_file(&path, &next)?;
            keys.set = next;
            (path, kid)
        };
        let mut reencrypted = 0;
        for item in self.tree.iter() {
            let (k, _) = item?;
            let name = String::from_utf8_lossy(k.split(|b| *b == 0).nth(1).unwrap_or_default())
                .into_owned();
            loop {
                let current = match self.tree.get(&k)? {
                    Some(v) => v,
                    None => break, // deleted meanwhile
                };
                let keys = self.read_keys();
                if serde_json::from_slice::<Sealed>(&current).is_ok_and(|s| s.kid == kid) {
                    break; // set meanwhile, already under the new key
                }
                let plain = self.open_sealed(&keys, &k, &name, &current)?;
                let sealed = self.seal(&keys, &k, &plain)?;
                drop(keys);
                match self
                    .tree
                    .compare_and_swap(&k, Some(&current), Some(sealed))?
                {
                    Ok(()) => {
                        reencrypted += 1;
                        break;
                    }
                    Err(_) => continue, // changed under us: look again
                }
            }
        }
        // The final scan runs under the write lock, so no `set` is between
        // encrypting and inserting; the current key is always kept.
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let mut used = std::collections::BTreeSet::from([kid.clone(), keys.set.current.clone()]);
        for item in self.tree.iter() {
            let (_, v) = item?;
            if let Ok(s) = serde_json::from_slice::<Sealed>(&v) {
                used.insert(s.kid);
            }
        }
        sync().map_err(|e| SecretError::Store(format!("syncing the re-encrypted secrets: {e}")))?;
        let mut next = keys.set.clone();
        let retired: Vec<String> = next
            .keys
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        next.keys.retain(|k, _| used.contains(k));
        write_key_file(&path, &next)?;
        keys.set = next;
        Ok(Rotated {
            kid,
            reencrypted,
            retired,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn vault(dir: &Path) -> (crate::gate::Db, Vault) {
        let db = crate::gate::Db::from(sled::open(dir.join("db")).unwrap());
        let keys = MasterKeys::load_or_create(&dir.join("master.key")).unwrap();
        let v = Vault::open(&db, keys).unwrap();
        (db, v)
    }

    #[test]
    fn set_reveal_list_delete() {
        let d = tempfile::tempdir().unwrap();
        let (_db, v) = vault(d.path());
        v.set("soc", "VT_API_KEY", b"hunter2").unwrap();
        v.set("red", "VT_API_KEY", b"other").unwrap();
        assert_eq!(v.reveal("soc", "VT_API_KEY").unwrap().unwrap(), b"hunter2");
        assert_eq!(v.reveal("red", "VT_API_KEY").unwrap().unwrap(), b"other");
        assert_eq!(v.reveal("soc", "NOPE").unwrap(), None);
        let names: Vec<String> = v.list("soc").unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["VT_API_KEY"]);
        assert!(v.delete("soc", "VT_API_KEY").unwrap());
        assert!(!v.delete("soc", "VT_API_KEY").unwrap());
        assert_eq!(v.reveal("soc", "VT_API_KEY").unwrap(), None);
        assert!(v.reveal("red", "VT_API_KEY").unwrap().is_some());
    }

    #[test]
    fn the_value_is_not_on_disk_in_clear_and_the_key_file_is_private() {
        let d = tempfile::tempdir().unwrap();
        let (db, v) = vault(d.path());
        v.set("soc", "TOKEN", b"plain-text-canary-9f3a").unwrap();
        db.flush().unwrap();
        drop(v);
        drop(db);
        for entry in walk(d.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(22).any(|w| w == b"plain-text-canary-9f3a"),
                "{} holds the value in clear",
                entry.display()
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join("master.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn tampered_and_moved_ciphertexts_do_not_decrypt() {
        let d = tempfile::tempdir().unwrap();
        let (db, v) = vault(d.path());
        v.set("soc", "A", b"alpha").unwrap();
        v.set("soc", "B", b"bravo").unwrap();
        let tree = db.open_tree("secrets").unwrap();
        // Moved: A's ciphertext under B's name.
        let a = tree.get(storage_key("soc", "A")).unwrap().unwrap();
        tree.insert(storage_key("soc", "B"), a.clone()).unwrap();
        assert!(matches!(
            v.reveal("soc", "B"),
            Err(SecretError::Tampered { .. })
        ));
        // Moved to another workspace.
        tree.insert(storage_key("red", "A"), a.clone()).unwrap();
        assert!(matches!(
            v.reveal("red", "A"),
            Err(SecretError::Tampered { .. })
        ));
        // One bit flipped.
        let mut s: serde_json::Value = serde_json::from_slice(&a).unwrap();
        let mut ct = B64.decode(s["ct"].as_str().unwrap()).unwrap();
        ct[0] ^= 1;
        s["ct"] = B64.encode(ct).into();
        tree.insert(storage_key("soc", "A"), serde_json::to_vec(&s).unwrap())
            .unwrap();
        let e = v.reveal("soc", "A").unwrap_err();
        assert!(e.to_string().contains("altered or moved"), "{e}");
        // Garbage.
        tree.insert(storage_key("soc", "A"), b"not json".to_vec())
            .unwrap();
        assert!(matches!(
            v.reveal("soc", "A"),
            Err(SecretError::Tampered { .. })
        ));
    }

    #[test]
    fn hostile_names_and_sizes_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let (_db, v) = vault(d.path());
        assert!(matches!(
            v.set("soc", "../x", b"v"),
            Err(SecretError::Name(_))
        ));
        assert!(matches!(
            v.set("soc\0red", "A", b"v"),
            Err(SecretError::Name(_))
        ));
        assert!(matches!(v.reveal("soc", "A\0B"), Err(SecretError::Name(_))));
        let big = vec![b'x'; MAX_SECRET_BYTES + 1];
        assert!(matches!(
            v.set("soc", "A", &big),
            Err(SecretError::TooLarge { .. })
        ));
        v.set("soc", "A", "ünïcödé 🔑".as_bytes()).unwrap();
        assert_eq!(
            v.reveal("soc", "A").unwrap().unwrap(),
            "ünïcödé 🔑".as_bytes()
        );
    }

    #[test]
    fn a_replaced_key_file_names_the_missing_key() {
        let d = tempfile::tempdir().unwrap();
        {
            let (_db, v) = vault(d.path());
            v.set("soc", "A", b"alpha").unwrap();
        }
        std::fs::remove_file(d.path().join("master.key")).unwrap();
        let db = crate::gate::Db::from(sled::open(d.path().join("db")).unwrap());
        let other = MasterKeys::from_env_value(&format!("z9:{}", B64.encode([7u8; 32]))).unwrap();
        let v = Vault::open(&db, other).unwrap();
        match v.reveal("soc", "A") {
            Err(SecretError::UnknownKey { kid, .. }) => assert_eq!(kid, "k1"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_key_files_are_refused_with_the_reason() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("master.key");
        let cases = [
            ("nonsense", "not a key file"),
            (r#"{"current":"k1","keys":{}}"#, "not among its keys"),
            (r#"{"current":"k1","keys":{"k1":"c2hvcnQ="}}"#, "needs 32"),
            (r#"{"current":"k1","keys":{"k1":"!!"}}"#, "not base64"),
            (
                r#"{"current":"../x","keys":{"../x":"AAAA"}}"#,
                "letters and digits",
            ),
        ];
        for (text, needle) in cases {
            std::fs::write(&p, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            let e = MasterKeys::load_or_create(&p).err().expect("refused");
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::remove_file(&p).unwrap();
            MasterKeys::load_or_create(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = MasterKeys::load_or_create(&p).err().expect("refused");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
        assert!(MasterKeys::from_env_value("no-colon").is_err());
    }

    #[test]
    fn rotation_reencrypts_everything_while_reads_go_on() {
        let d = tempfile::tempdir().unwrap();
        let (_db, v) = vault(d.path());
        for i in 0..200 {
            v.set("soc", &format!("S{i}"), format!("value-{i}").as_bytes())
                .unwrap();
        }
        let v = Arc::new(v);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (v, stop) = (v.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let i = reads % 200;
                    let got = v.reveal("soc", &format!("S{i}")).expect("reads never fail");
                    assert_eq!(got.unwrap(), format!("value-{i}").as_bytes());
                    reads += 1;
                }
                reads
            })
        };
        let writer = {
            let v = v.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    v.set("soc", "LIVE", format!("live-{i}").as_bytes())
                        .unwrap();
                }
            })
        };
        let r = v.rotate(&|| Ok(())).unwrap();
        writer.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(r.kid, "k2");
        assert!(r.reencrypted >= 200, "{r:?}");
        assert_eq!(r.retired, ["k1"]);
        assert_eq!(v.reveal("soc", "LIVE").unwrap().unwrap(), b"live-49");
        assert!(v.list("soc").unwrap().iter().all(|s| s.kid == "k2"));
        // The key file now holds only the new key, and a fresh start reads everything.
        let keys = MasterKeys::load_or_create(&d.path().join("master.key")).unwrap();
        assert_eq!(keys.ids(), ["k2"]);
        let db2 = v.tree.clone();
        let v2 = Vault {
            tree: db2,
            keys: RwLock::new(keys),
            rotating: std::sync::Mutex::new(()),
        };
        assert_eq!(v2.reveal("soc", "S7").unwrap().unwrap(), b"value-7");
        // Two rotations from two threads: each ends with a usable current key.
        let v2 = Arc::new(v2);
        let a = std::thread::spawn({
            let v = v2.clone();
            move || v.rotate(&|| Ok(())).unwrap()
        });
        let b = v2.rotate(&|| Ok(())).unwrap();
        let a = a.join().unwrap();
        assert_ne!(a.kid, b.kid);
        let keys = MasterKeys::load_or_create(&d.path().join("master.key")).unwrap();
        assert!(keys.ids().contains(&keys.current().to_string()));
        v2.set("soc", "AFTER", b"x").unwrap();
        assert_eq!(v2.reveal("soc", "AFTER").unwrap().unwrap(), b"x");
        assert_eq!(v2.reveal("soc", "S9").unwrap().unwrap(), b"value-9");
        // A failed sync keeps the old key in the file.
        let before = MasterKeys::load_or_create(&d.path().join("master.key"))
            .unwrap()
            .ids();
        assert!(v2.rotate(&|| Err("disk gone".into())).is_err());
        let after = MasterKeys::load_or_create(&d.path().join("master.key"))
            .unwrap()
            .ids();
        assert!(
            before.iter().all(|k| after.contains(k)),
            "{before:?} {after:?}"
        );
        assert_eq!(v2.reveal("soc", "S9").unwrap().unwrap(), b"value-9");
    }
}
