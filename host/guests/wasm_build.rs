//! Shared by the build scripts that compile guests for `wasm32-wasip2`
//! (`host/guests/build.rs`, `actions/first-party/build.rs`), included with
//! `#[path]`: a nested cargo build with the host's flags removed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest target triple.
pub const TARGET: &str = "wasm32-wasip2";

/// One target dir for every guest, shared across host profiles:
/// `$CARGO_TARGET_DIR/guests`, else `<root>/target/guests`.
pub fn guest_target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests")
}

/// `cargo build --target wasm32-wasip2 --target-dir <target_dir> <args>` in
/// `dir`; panics with cargo's output (and a hint if the target is missing).
pub fn cargo_build(dir: &Path, target_dir: &Path, args: &[&str], what: &str) {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(dir)
        .args(["build", "--target", TARGET, "--target-dir"])
        .arg(target_dir)
        .args(args);
    // The host's flags and profile settings are not the guest's.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run cargo to build {what}: {e}"));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            "\nThe wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2` (the README's commands do)."
        } else {
            ""
        };
        panic!("building {what} for {TARGET} failed:\n{stderr}{hint}");
    }
}
