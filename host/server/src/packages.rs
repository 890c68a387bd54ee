//! The packages each workspace installed, and what it granted them.
//!
//! Tree `packages`, key `workspace 0x00 name` → [`PackageRecord`] (JSON).
//! The package file itself is a blob named by its SHA-256, in the run store.
//! A package is installed *pending*: it runs only once an editor grants it,
//! either what its manifest requests or a narrower grant (TOML, as for
//! `allama package grant`). Revoking returns it to pending.

use allama_engine::RunStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use allama_package::{Package, TrustPolicy};
use allama_store::names::check_workspace;

/// A workspace's installed package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageRecord {
    /// The package name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its publisher.
    pub publisher: String,
    /// What it does.
    pub description: String,
    /// SHA-256 of the package file (hex).
    pub digest: String,
    /// The file's size in bytes.
    pub size: u64,
    /// Keys whose signatures verified, and whether the trust policy trusts them.
    pub signers: Vec<SignerInfo>,
    /// Its actions' names.
    pub actions: Vec<String>,
    /// Whether it may run.
    pub granted: bool,
    /// The narrowing grant (TOML) it runs with; absent: what it requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Who installed this version, and when (ms since the epoch).
    pub installed_by: String,
    /// When.
    pub installed_at: u64,
    /// Who granted or revoked it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<String>,
}

/// A signature on a package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignerInfo {
    /// The public key.
    pub key: String,
    /// Whether the trust policy lists it for the publisher.
    pub trusted: bool,
}

/// Why the shelf failed.
#[derive(Debug, thiserror::Error)]
pub enum ShelfError {
    /// A bad workspace name.
    #[error(transparent)]
    Workspace(#[from] allama_store::names::NameError),
    /// The file is not a valid package, or the trust policy refuses it.
    #[error(transparent)]
    Package(#[from] allama_package::PackageError),
    /// sled or the blob store failed.
    #[error("package store: {0}")]
    Store(String),
}

impl From<sled::Error> for ShelfError {
    fn from(e: sled::Error) -> Self {
        ShelfError::Store(e.to_string())
    }
}

impl From<allama_engine::StoreError> for ShelfError {
    fn from(e: allama_engine::StoreError) -> Self {
        ShelfError::Store(e.to_string())
    }
}

/// The installed packages of every workspace.
pub struct Shelf {
    tree: allama_store::gate::Tree,
}

fn key(ws: &str, name: &str) -> Vec<u8> {
    let mut k = ws.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn decode(v: &[u8]) -> Result<PackageRecord, ShelfError> {
    serde_json::from_slice(v)
        .map_err(|e| ShelfError::Store(format!("a damaged package record: {e}")))
}

/// What installing did.
pub struct Installed {
    /// The new record.
    pub record: PackageRecord,
    /// The version it replaced, if any.
    pub replaced: Option<PackageRecord>,
}

impl Shelf {
    /// The shelf in `db`.
    pub fn open(db: &allama_store::gate::Db) -> Result<Self, ShelfError> {
        Ok(Self {
            tree: db.open_tree("packages")?,
        })
    }

    /// Verifies and installs a package file (replacing the workspace's
    /// package of that name). A replacement keeps its grant only when it
    /// requests exactly what the old version requested and the old grant
    /// still narrows it: a version that asks for more starts pending.
    pub fn install(
        &self,
        blobs: &dyn RunStore,
        policy: &TrustPolicy,
        ws: &str,
        bytes: &[u8],
        by: &str,
    ) -> Result<Installed, ShelfError> {
        check_workspace(ws)?;
        let pkg = Package::open(bytes, "the uploaded package", policy)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let m = &pkg.manifest;
        let old = self.get(ws, &m.name)?;
        let (granted, grant) = match &old {
            Some(o) if o.granted => match self.open_stored(blobs, policy, o) {
                Ok(prev)
                    if prev.manifest.capabilities == m.capabilities
                        && grant_of(o)
                            .ok()
                            .is_some_and(|g| pkg.effective_grant(g.as_ref()).is_ok()) =>
                {
                    (true, o.grant.clone())
                }
                _ => (false, None),
            },
            _ => (false, None),
        };
        blobs.put_blob(&digest, bytes)?;
        let record = PackageRecord {
            name: m.name.clone(),
            version: m.version.to_string(),
            publisher: m.publisher.clone(),
            description: m.description.clone(),
            digest,
            size: bytes.len() as u64,
            signers: pkg
                .signers
                .iter()
                .map(|s| SignerInfo {
                    key: s.key.to_string(),
                    trusted: s.trusted,
                })
                .collect(),
            actions: m.actions.iter().map(|a| a.name.clone()).collect(),
            granted,
            grant,
            installed_by: by.to_string(),
            installed_at: crate::accounts::now_ms(),
            granted_by: old.as_ref().and_then(|o| o.granted_by.clone()),
        };
        self.put(ws, &record)?;
        Ok(Installed {
            record,
            replaced: old,
        })
    }

    fn put(&self, ws: &str, r: &PackageRecord) -> Result<(), ShelfError> {
        let v = serde_json::to_vec(r).map_err(|e| ShelfError::Store(e.to_string()))?;
        self.tree.insert(key(ws, &r.name), v)?;
        Ok(())
    }

    /// Grants a package: `grant` (TOML) narrows what it requests; `None`
    /// grants exactly what it requests. Refused if the grant widens.
    pub fn grant(
        &self,
        blobs: &dyn RunStore,
        policy: &TrustPolicy,
        ws: &str,
        name: &str,
        grant: Option<String>,
        by: &str,
    ) -> Result<Option<PackageRecord>, GrantRefused> {
        let Some(mut r) = self.get(ws, name)? else {
            return Ok(None);
        };
        let pkg = self.open_stored(blobs, policy, &r)?;
        if let Some(text) = &grant {
            let g = allama_grant::Grant::from_toml_str(text, "grant")
                .map_err(|e| GrantRefused::Invalid(e.to_string()))?;
            pkg.effective_grant(Some(&g))?;
        }
        r.granted = true;
        r.grant = grant;
        r.granted_by = Some(by.to_string());
        self.put(ws, &r)?;
        Ok(Some(r))
    }

    /// Revokes a package's grant: it stays installed but no step of it runs.
    pub fn revoke(
        &self,
        ws: &str,
        name: &str,
        by: &str,
    ) -> Result<Option<PackageRecord>, ShelfError> {
        let Some(mut r) = self.get(ws, name)? else {
            return Ok(None);
        };
        r.granted = false;
        r.grant = None;
        r.granted_by = Some(by.to_string());
        self.put(ws, &r)?;
        Ok(Some(r))
    }

    /// Removes a package; its kv data stays (a reinstall finds it).
    pub fn remove(&self, ws: &str, name: &str) -> Result<Option<PackageRecord>, ShelfError> {
        check_workspace(ws)?;
        self.tree
            .remove(key(ws, name))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// One package.
    pub fn get(&self, ws: &str, name: &str) -> Result<Option<PackageRecord>, ShelfError> {
        check_workspace(ws)?;
        self.tree
            .get(key(ws, name))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// The workspace's packages, by name.
    pub fn list(&self, ws: &str) -> Result<Vec<PackageRecord>, ShelfError> {
        check_workspace(ws)?;
        let mut prefix = ws.as_bytes().to_vec();
        prefix.push(0);
        self.tree
            .scan_prefix(prefix)
            .map(|r| r.map_err(ShelfError::from).and_then(|(_, v)| decode(&v)))
            .collect()
    }

    /// The stored package file of a record, verified again.
    pub fn open_stored(
        &self,
        blobs: &dyn RunStore,
        policy: &TrustPolicy,
        r: &PackageRecord,
    ) -> Result<Package, ShelfError> {
        let bytes = blobs.get_blob(&r.digest)?.ok_or_else(|| {
            ShelfError::Store(format!("the file of package {} is missing", r.name))
        })?;
        Ok(Package::open(&bytes, &r.name, policy)?)
    }
}

/// The narrowing grant of a record, parsed.
pub fn grant_of(
    r: &PackageRecord,
) -> Result<Option<allama_grant::Grant>, allama_grant::GrantError> {
    r.grant
        .as_deref()
        .map(|t| allama_grant::Grant::from_toml_str(t, &format!("grant of {}", r.name)))
        .transpose()
}

/// Why a grant was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantRefused {
    /// The grant is not valid TOML or not a valid grant.
    #[error("{0}")]
    Invalid(String),
    /// The package, or the store.
    #[error(transparent)]
    Shelf(#[from] ShelfError),
}

impl From<allama_package::PackageError> for GrantRefused {
    fn from(e: allama_package::PackageError) -> Self {
        GrantRefused::Shelf(ShelfError::Package(e))
    }
}
