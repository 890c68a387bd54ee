//! The first-party action packages (`actions/*`), built for `wasm32-wasip2`.
//!
//! `build.rs` compiles each action crate to a component; [`ALL`] lists them
//! with their package directories (`allama.toml`, `schemas/`). [`package`]
//! builds and signs a package from one, as a release would.

use std::path::Path;

use allama_package::{PackageFile, SigningKey};

/// One first-party action package.
#[derive(Debug, Clone, Copy)]
pub struct FirstParty {
    /// Package name.
    pub name: &'static str,
    /// Its directory (with `allama.toml`).
    pub dir: &'static str,
    /// Its built component.
    pub wasm: &'static str,
    /// Its manifest and schema files (path in the package directory, bytes).
    pub files: &'static [(&'static str, &'static [u8])],
    /// Its component's bytes.
    pub component: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/actions.rs"));

/// The package named `name`.
pub fn get(name: &str) -> &'static FirstParty {
    ALL.iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no first-party action `{name}`"))
}

/// Build the unsigned package file for `action` from the files embedded in
/// this crate (no source tree needed), with `manifest` instead of its own
/// when given: how an operator re-packages a generic action for one host
/// (the schemas are the action's).
pub fn unsigned(
    action: &FirstParty,
    manifest: Option<&str>,
) -> Result<Vec<u8>, allama_package::PackageError> {
    let dir = tempfile::tempdir().map_err(|source| allama_package::PackageError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    for (rel, bytes) in action.files {
        let path = dir.path().join(rel);
        let io = |source| allama_package::PackageError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let bytes = match (*rel, manifest) {
            ("allama.toml", Some(m)) => m.as_bytes(),
            _ => bytes,
        };
        std::fs::write(&path, bytes).map_err(io)?;
    }
    let (file, _manifest) = allama_package::build(dir.path(), action.component.to_vec())?;
    Ok(file.to_bytes())
}

/// Build the package file for `action`, signed by `key`.
pub fn package(
    action: &FirstParty,
    key: &SigningKey,
) -> Result<Vec<u8>, allama_package::PackageError> {
    let wasm = std::fs::read(action.wasm).map_err(|source| allama_package::PackageError::Io {
        path: action.wasm.into(),
        source,
    })?;
    let (mut file, _manifest): (PackageFile, _) =
        allama_package::build(Path::new(action.dir), wasm)?;
    allama_package::add_signature(&mut file, key);
    Ok(file.to_bytes())
}
