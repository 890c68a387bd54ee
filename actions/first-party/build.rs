//! Builds every first-party action for `wasm32-wasip2` (profile `guest`:
//! stripped, LTO) with a nested cargo, and writes `actions.rs` listing each
//! package's directory and component.

use std::path::PathBuf;
use std::process::Command;

const ACTIONS: &[&str] = &["virustotal", "abuseipdb", "slack", "jira", "http"];

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = here.join("../..");
    for dir in ["wit", "sdk/rust/src", "sdk/rust/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    for a in ACTIONS {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("actions").join(a).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            root.join("actions").join(a).join("Cargo.toml").display()
        );
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for a in ACTIONS {
        cmd.args(["-p", &format!("allama-action-{a}")]);
    }
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
        .expect("could not run cargo to build the first-party actions");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            "\nThe wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2` (the README's commands do)."
        } else {
            ""
        };
        panic!("building the first-party actions for wasm32-wasip2 failed:\n{stderr}{hint}");
    }
    let mut src = String::from(
        "/// Every first-party action package: (name, package directory, component).\npub const ALL: &[FirstParty] = &[\n",
    );
    for a in ACTIONS {
        let wasm = target_dir
            .join("wasm32-wasip2/guest")
            .join(format!("allama_action_{a}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        let dir = root.join("actions").join(a).canonicalize().unwrap();
        src.push_str(&format!(
            "    FirstParty {{ name: {a:?}, dir: {:?}, wasm: {:?} }},\n",
            dir.display().to_string(),
            wasm.display().to_string()
        ));
    }
    src.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("actions.rs"), src).unwrap();
}
