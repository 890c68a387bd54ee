//! Builds the guest programs in `programs/` for `wasm32-wasip2` with a nested
//! cargo (wasmtime's test-programs do the same), then writes `guests.rs` with
//! the path of each component so tests and the CLI can find them.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[&str] = &["bench", "caps", "hostile"];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let programs = manifest_dir.join("programs");
    let wit = manifest_dir.join("../../wit");
    println!(
        "cargo:rerun-if-changed={}",
        programs.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-changed={}", wit.display());
    for g in GUESTS {
        println!("cargo:rerun-if-changed={}", programs.join(g).display());
    }

    // Share one guest target dir across host profiles so a guest is built once.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("../../target"))
        .join("guests");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&programs)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
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
        .expect("could not run cargo to build the guest programs");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            "\nThe wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2` (the README's commands do)."
        } else {
            ""
        };
        panic!("building the guest programs failed:\n{stderr}{hint}");
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut src = String::new();
    for g in GUESTS {
        let wasm = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{g}.wasm"));
        assert!(
            wasm.exists(),
            "guest {g} was not built at {}",
            wasm.display()
        );
        // A stable copy in OUT_DIR for include_bytes!.
        let copy = out_dir.join(format!("{g}.wasm"));
        std::fs::copy(&wasm, &copy).unwrap();
        src.push_str(&const_item(g, &copy));
    }
    std::fs::write(out_dir.join("guests.rs"), src).unwrap();
}

fn const_item(name: &str, path: &Path) -> String {
    format!(
        "/// Path of the `{name}` guest component.\npub const {}: &str = {:?};\n",
        name.to_uppercase(),
        path.display().to_string()
    )
}
