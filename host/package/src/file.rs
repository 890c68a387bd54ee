//! The package file: one file holding the manifest, the schema files it
//! names, and the component, followed by signatures.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! body:
//!   magic   "ALLAMA-PKG" 0x00 0x01          12 bytes (format version 1)
//!   section tag u8, length u64, bytes       repeated
//!     1 = manifest (allama.toml, UTF-8)      exactly one, first
//!     2 = file: u16 path length, path, data  schema files, sorted, unique
//!     3 = component (.wasm)                  exactly one, last
//! trailer:
//!   "SIGS", count u32, then count × (32-byte ed25519 public key, 64-byte signature)
//! ```
//!
//! A signature is over `"allama package v1\n" || SHA-256(body)`, so every
//! byte of the body is covered; the trailer is fixed-size binary, so every
//! byte of it is either a key, a signature or structure. Nothing may follow.

use std::collections::BTreeMap;

use crate::PackageError;

const MAGIC: &[u8; 12] = b"ALLAMA-PKG\x00\x01";
const SIGS: &[u8; 4] = b"SIGS";
const TAG_MANIFEST: u8 = 1;
const TAG_FILE: u8 = 2;
const TAG_COMPONENT: u8 = 3;

/// Largest manifest.
pub const MAX_MANIFEST: u64 = 1 << 20;
/// Largest schema file.
pub const MAX_FILE: u64 = 1 << 20;
/// Most schema files.
pub const MAX_FILES: usize = 512;
/// Largest component.
pub const MAX_COMPONENT: u64 = 256 << 20;
/// Most signatures.
pub const MAX_SIGNATURES: u32 = 16;

/// An ed25519 signature with the key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The public key.
    pub public_key: [u8; 32],
    /// The signature.
    pub signature: [u8; 64],
}

/// The parts of a package file, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// `allama.toml` as authored.
    pub manifest: Vec<u8>,
    /// Schema files by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The component.
    pub component: Vec<u8>,
    /// Signatures over the body.
    pub signatures: Vec<Signature>,
}

fn section(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
}

impl PackageFile {
    /// The body bytes (what signatures cover).
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.component.len() + self.manifest.len() + 1024);
        out.extend_from_slice(MAGIC);
        section(&mut out, TAG_MANIFEST, &self.manifest);
        for (path, data) in &self.files {
            let mut entry = Vec::with_capacity(2 + path.len() + data.len());
            entry.extend_from_slice(&(path.len() as u16).to_le_bytes());
            entry.extend_from_slice(path.as_bytes());
            entry.extend_from_slice(data);
            section(&mut out, TAG_FILE, &entry);
        }
        section(&mut out, TAG_COMPONENT, &self.component);
        out
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(SIGS);
        out.extend_from_slice(&(self.signatures.len() as u32).to_le_bytes());
        for s in &self.signatures {
            out.extend_from_slice(&s.public_key);
            out.extend_from_slice(&s.signature);
        }
        out
    }

    /// Parse a package file; returns it and the length of its body.
    pub fn parse(bytes: &[u8]) -> Result<(PackageFile, usize), PackageError> {
        let view = PackageView::parse(bytes)?;
        Ok((view.to_file(), view.body.len()))
    }
}

/// A package file's parts, borrowed from its bytes (verification needs no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageView<'a> {
    /// `allama.toml` as authored.
    pub manifest: &'a [u8],
    /// Schema files by relative path.
    pub files: BTreeMap<String, &'a [u8]>,
    /// The component.
    pub component: &'a [u8],
    /// Signatures over the body.
    pub signatures: Vec<Signature>,
    /// The signed bytes.
    pub body: &'a [u8],
}

impl<'a> PackageView<'a> {
    /// An owned copy.
    pub fn to_file(&self) -> PackageFile {
        PackageFile {
            manifest: self.manifest.to_vec(),
            files: self
                .files
                .iter()
                .map(|(k, v)| (k.clone(), v.to_vec()))
                .collect(),
            component: self.component.to_vec(),
            signatures: self.signatures.clone(),
        }
    }

    /// Parse a package file without copying its contents.
    pub fn parse(bytes: &'a [u8]) -> Result<PackageView<'a>, PackageError> {
        let bad = |what: String| PackageError::Malformed(what);
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            if bytes.starts_with(b"ALLAMA-PKG") {
                return Err(bad(
                    "unsupported package format version (this Allama reads version 1)".into(),
                ));
            }
            return Err(PackageError::NotAPackage);
        }
        let mut pos = MAGIC.len();
        let take = |pos: &mut usize, n: u64, what: &str| -> Result<&'a [u8], PackageError> {
            let n = usize::try_from(n).map_err(|_| bad(format!("{what}: length too large")))?;
            let end = pos
                .checked_add(n)
                .filter(|e| *e <= bytes.len())
                .ok_or_else(|| bad(format!("{what}: truncated")))?;
            let s = &bytes[*pos..end];
            *pos = end;
            Ok(s)
        };
        let mut manifest = None;
        let mut files = BTreeMap::new();
        let mut component = None;
        while component.is_none() {
            let head = take(&mut pos, 9, "section header")?;
            let tag = head[0];
            let len = u64::from_le_bytes(head[1..9].try_into().unwrap());
            match tag {
                TAG_MANIFEST if manifest.is_none() && files.is_empty() => {
                    if len > MAX_MANIFEST {
                        return Err(bad(format!(
                            "the manifest is {len} bytes; the most is {MAX_MANIFEST}"
                        )));
                    }
                    manifest = Some(take(&mut pos, len, "manifest")?);
                }
                TAG_FILE if manifest.is_some() => {
                    if len > MAX_FILE + 2 + 256 {
                        return Err(bad(format!(
                            "a schema file is {len} bytes; the most is {MAX_FILE}"
                        )));
                    }
                    if files.len() >= MAX_FILES {
                        return Err(bad(format!("more than {MAX_FILES} files")));
                    }
                    let entry = take(&mut pos, len, "file")?;
                    if entry.len() < 2 {
                        return Err(bad("file entry: truncated".into()));
                    }
                    let plen = u16::from_le_bytes([entry[0], entry[1]]) as usize;
                    let path = entry
                        .get(2..2 + plen)
                        .and_then(|p| std::str::from_utf8(p).ok())
                        .filter(|p| crate::manifest::is_safe_relative_path(p))
                        .ok_or_else(|| bad("file entry: invalid path".into()))?;
                    if files
                        .keys()
                        .next_back()
                        .is_some_and(|last: &String| last.as_str() >= path)
                    {
                        return Err(bad(format!("file `{path}` is out of order or repeated")));
                    }
                    files.insert(path.to_string(), &entry[2 + plen..]);
                }
                TAG_COMPONENT if manifest.is_some() => {
                    if len > MAX_COMPONENT {
                        return Err(bad(format!(
                            "the component is {len} bytes; the most is {MAX_COMPONENT}"
                        )));
                    }
                    component = Some(take(&mut pos, len, "component")?);
                }
                other => {
                    return Err(bad(format!(
                        "unexpected section {other} at byte {}",
                        pos - 9
                    )));
                }
            }
        }
        let body_len = pos;
        let sigs = take(&mut pos, 8, "signature trailer")?;
        if &sigs[..4] != SIGS {
            return Err(bad("signature trailer: missing".into()));
        }
        let count = u32::from_le_bytes(sigs[4..8].try_into().unwrap());
        if count > MAX_SIGNATURES {
            return Err(bad(format!(
                "{count} signatures; the most is {MAX_SIGNATURES}"
            )));
        }
        let mut signatures = Vec::new();
        for _ in 0..count {
            let s = take(&mut pos, 96, "signature")?;
            signatures.push(Signature {
                public_key: s[..32].try_into().unwrap(),
                signature: s[32..].try_into().unwrap(),
            });
        }
        if pos != bytes.len() {
            return Err(bad(format!(
                "{} unexpected bytes after the signatures",
                bytes.len() - pos
            )));
        }
        Ok(PackageView {
            manifest: manifest.expect("set before the component"),
            files,
            component: component.expect("loop ends on it"),
            signatures,
            body: &bytes[..body_len],
        })
    }
}

/// Whether `bytes` start like a package file (vs a bare component).
pub fn looks_like_package(bytes: &[u8]) -> bool {
    bytes.starts_with(b"ALLAMA-PKG")
}
