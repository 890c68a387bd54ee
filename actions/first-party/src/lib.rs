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
}

include!(concat!(env!("OUT_DIR"), "/actions.rs"));

/// The package named `name`.
pub fn get(name: &str) -> &'static FirstParty {
    ALL.iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no first-party action `{name}`"))
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
