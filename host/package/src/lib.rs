//! Allama packages: what integration authors ship and operators install.
//!
//! A package is one file: the manifest (`allama.toml`, see [`manifest`]), the
//! JSON Schema files it names, the component, and ed25519 signatures by its
//! publisher ([`file`], [`sign`]). Opening a package verifies every signature
//! (any changed byte is detected), parses the manifest, and applies the
//! operator's [`trust::TrustPolicy`]. An operator's grant may narrow what the
//! manifest asks for, never widen it ([`narrow`]); [`inspect`] says in plain
//! words what a package may do.

pub mod file;
pub mod inspect;
pub mod manifest;
pub mod narrow;
pub mod sign;
pub mod trust;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use allama_grant::{Grant, GrantError};

pub use file::{PackageFile, PackageView, looks_like_package};
pub use manifest::{Action, MASK, Manifest, mask_sensitive};
pub use sign::{PublicKey, SigningKey};
pub use trust::TrustPolicy;

/// What can go wrong with a package. Messages name the package, file, line
/// and key where they can.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Not an Allama package file.
    #[error("not an Allama package (it does not start with the package header)")]
    NotAPackage,
    /// The file's structure is broken.
    #[error("the package file is malformed: {0}")]
    Malformed(String),
    /// The manifest is invalid.
    #[error("{0}")]
    Manifest(#[from] GrantError),
    /// A signature does not match the contents.
    #[error(
        "the package was modified after it was signed: the signature by {key} does not match its contents"
    )]
    Tampered {
        /// The key whose signature failed.
        key: PublicKey,
    },
    /// The policy requires signatures and there are none.
    #[error(
        "{package} is unsigned, and the trust policy requires a signature by a trusted key of publisher `{publisher}`"
    )]
    Unsigned {
        /// `name version`.
        package: String,
        /// The manifest's publisher.
        publisher: String,
    },
    /// Signed, but by no key the policy trusts for this publisher.
    #[error(
        "{package} is signed by {keys}, which the trust policy does not list for publisher `{publisher}`"
    )]
    Untrusted {
        /// `name version`.
        package: String,
        /// The manifest's publisher.
        publisher: String,
        /// The keys that signed.
        keys: String,
    },
    /// A key file problem.
    #[error("key: {0}")]
    Key(String),
    /// A grant asks for more than the manifest.
    #[error("the grant for {package} asks for more than the package requests:\n  - {}", problems.join("\n  - "))]
    Widened {
        /// `name version`.
        package: String,
        /// Each widening, with its key.
        problems: Vec<String>,
    },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The key.
    pub key: PublicKey,
    /// Whether the trust policy lists it for the manifest's publisher.
    pub trusted: bool,
}

/// A package that was verified and whose manifest is valid.
#[derive(Debug, Clone)]
pub struct Package {
    /// The manifest.
    pub manifest: Manifest,
    /// Valid signatures.
    pub signers: Vec<Signer>,
    /// The file's parts (the component, and what signing needs).
    pub file: PackageFile,
}

/// A verified package, borrowed from its bytes: what `verify` needs, with no copy.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    /// The manifest.
    pub manifest: Manifest,
    /// Valid signatures.
    pub signers: Vec<Signer>,
    /// The file's parts.
    pub view: PackageView<'a>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

impl Package {
    /// Verify a package file without copying it: signatures (any changed byte
    /// is detected), manifest, trust policy. `origin` names it in messages.
    pub fn verify<'a>(
        bytes: &'a [u8],
        origin: &str,
        policy: &TrustPolicy,
    ) -> Result<Verified<'a>, PackageError> {
        let view = PackageView::parse(bytes)?;
        let checks = sign::verify_all(view.body, &view.signatures);
        if let Some((sig, _)) = view.signatures.iter().zip(&checks).find(|(_, ok)| !**ok) {
            return Err(PackageError::Tampered {
                key: PublicKey(sig.public_key),
            });
        }
        let manifest_text = std::str::from_utf8(view.manifest)
            .map_err(|_| PackageError::Malformed("the manifest is not UTF-8".into()))?;
        let (manifest, used) =
            Manifest::parse(manifest_text, &format!("{origin}!allama.toml"), &view.files)?;
        if let Some(extra) = view.files.keys().find(|k| !used.contains(k)) {
            return Err(PackageError::Malformed(format!(
                "file `{extra}` is not referenced by the manifest"
            )));
        }
        let signers: Vec<Signer> = view
            .signatures
            .iter()
            .map(|s| {
                let key = PublicKey(s.public_key);
                Signer {
                    key,
                    trusted: policy.trusts(&manifest.publisher, &key),
                }
            })
            .collect();
        let package = format!("{} {}", manifest.name, manifest.version);
        if policy.require_signatures && !signers.iter().any(|s| s.trusted) {
            if signers.is_empty() {
                return Err(PackageError::Unsigned {
                    package,
                    publisher: manifest.publisher.clone(),
                });
            }
            let keys = signers
                .iter()
                .map(|s| s.key.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(PackageError::Untrusted {
                package,
                publisher: manifest.publisher.clone(),
                keys,
            });
        }
        Ok(Verified {
            manifest,
            signers,
            view,
        })
    }

    /// Verify and open a package file, keeping its parts.
    pub fn open(bytes: &[u8], origin: &str, policy: &TrustPolicy) -> Result<Package, PackageError> {
        let v = Package::verify(bytes, origin, policy)?;
        Ok(Package {
            file: v.view.to_file(),
            manifest: v.manifest,
            signers: v.signers,
        })
    }

    /// The component's bytes.
    pub fn component(&self) -> &[u8] {
        &self.file.component
    }

    /// SHA-256 of the component, hex (computed on demand: verifying does not need it).
    pub fn component_digest(&self) -> String {
        sha256_hex(&self.file.component)
    }

    /// The grant to run with: the operator's `grant` checked against the
    /// manifest (it may only narrow), or, without one, exactly what the
    /// manifest requests.
    pub fn effective_grant(&self, grant: Option<&Grant>) -> Result<Grant, PackageError> {
        let Some(grant) = grant else {
            return Ok(self.manifest.capabilities.clone());
        };
        let problems = narrow::widenings(&self.manifest.capabilities, grant);
        if problems.is_empty() {
            Ok(grant.clone())
        } else {
            Err(PackageError::Widened {
                package: format!("{} {}", self.manifest.name, self.manifest.version),
                problems,
            })
        }
    }
}

/// Build an unsigned package from a directory holding `allama.toml` (and the
/// schema files it names) and a component.
pub fn build(dir: &Path, component: Vec<u8>) -> Result<(PackageFile, Manifest), PackageError> {
    let path = dir.join("allama.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| PackageError::Io {
        path: path.clone(),
        source,
    })?;
    struct Dir<'a>(&'a Path);
    impl manifest::SchemaFiles for Dir<'_> {
        fn read(&self, rel: &str) -> Result<Vec<u8>, String> {
            std::fs::read(self.0.join(rel)).map_err(|e| format!("could not read `{rel}`: {e}"))
        }
    }
    let (manifest, used) = Manifest::parse(&text, &path.display().to_string(), &Dir(dir))?;
    let mut files = BTreeMap::new();
    for rel in used {
        let data = std::fs::read(dir.join(&rel)).map_err(|source| PackageError::Io {
            path: dir.join(&rel),
            source,
        })?;
        if data.len() as u64 > file::MAX_FILE {
            return Err(PackageError::Malformed(format!(
                "`{rel}` is larger than {} bytes",
                file::MAX_FILE
            )));
        }
        files.insert(rel, data);
    }
    Ok((
        PackageFile {
            manifest: text.into_bytes(),
            files,
            component,
            signatures: Vec::new(),
        },
        manifest,
    ))
}

/// Add (or replace) `key`'s signature on a package.
pub fn add_signature(file: &mut PackageFile, key: &SigningKey) {
    let sig = key.sign(&file.body());
    file.signatures.retain(|s| s.public_key != sig.public_key);
    file.signatures.push(sig);
}

#[cfg(test)]
mod tests;
