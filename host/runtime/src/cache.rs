//! Compiled components cached on disk, keyed by the component's SHA-256 and
//! the engine's compatibility hash, so a restart does not recompile.
//!
//! Loading precompiled code is `unsafe` in wasmtime because the file is
//! trusted to be what wasmtime wrote. We write `<key>.cwasm` with a sidecar
//! `<key>.sha256` of its bytes, written after it (rename makes both atomic),
//! and check the hash of the bytes we then load (not a reopened file): a
//! corrupt or truncated entry is detected, removed and rebuilt. The
//! directory is made private to the user (0700).

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled (no entry), then stored.
    Compiled,
    /// An entry failed its check, was removed, and the component recompiled.
    Rebuilt,
    /// No cache configured.
    Uncached,
}

/// A directory of compiled components.
pub struct CodeCache {
    dir: PathBuf,
    compat: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CodeCache {
    /// Use (and create) `dir` for `engine`'s compiled code.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // Compiled code is trusted once its checksum matches: keep the
        // directory private to this user.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(Self {
            dir: dir.to_path_buf(),
            compat: format!("{:016x}", h.finish()),
        })
    }

    /// The entry path for a component digest.
    pub fn entry(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.compat))
    }

    /// Load the compiled form of `wasm` (whose SHA-256 is `digest`), compiling
    /// and storing it if needed.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry(digest);
        let sum = path.with_extension("sha256");
        let mut outcome = CacheOutcome::Compiled;
        if path.exists() {
            // Check and load the same bytes: reopening the file after the
            // check would let it be swapped in between.
            let verified = match (std::fs::read(&path), std::fs::read_to_string(&sum)) {
                (Ok(bytes), Ok(expected)) if sha256_hex(&bytes) == expected.trim() => Some(bytes),
                _ => None,
            };
            match verified {
                // SAFETY: these bytes match the hash we wrote beside them
                // when wasmtime produced them for this engine configuration.
                Some(bytes) => match unsafe { Component::deserialize(engine, &bytes) } {
                    Ok(c) => return Ok((c, CacheOutcome::Hit)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "Cache entry refused by wasmtime; rebuilding.")
                    }
                },
                None => {
                    tracing::warn!(path = %path.display(), "Cache entry failed its checksum; rebuilding.")
                }
            }
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(&sum);
            outcome = CacheOutcome::Rebuilt;
        }
        let component = Component::new(engine, wasm)?;
        let bytes = component.serialize()?;
        if let Err(e) = self.store(&path, &sum, &bytes) {
            tracing::warn!(path = %path.display(), error = %e, "Could not write cache entry; continuing uncached.");
        }
        Ok((component, outcome))
    }

    fn store(&self, path: &Path, sum: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let write = |target: &Path, data: &[u8]| -> std::io::Result<()> {
            let tmp = target.with_extension(format!("tmp{}", std::process::id()));
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_data()?;
            std::fs::rename(&tmp, target)
        };
        write(path, bytes)?;
        write(sum, sha256_hex(bytes).as_bytes())
    }
}
