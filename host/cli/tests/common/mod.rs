//! Helpers shared by the CLI's integration tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `allama` binary, without the environment of whoever runs the tests.
pub fn allama() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_allama"));
    c.env_remove("ALLAMA_DATA_DIR")
        .env_remove("ALLAMA_PACKAGES");
    c
}

/// Its stdout, after checking it succeeded.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its stdout and stderr, for messages and assertions.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The generic http action re-packaged as `effects`, as an operator would,
/// allowed to reach one loopback port. Returns the packages directory.
pub fn http_package(dir: &Path, port: u16) -> PathBuf {
    let http = allama_first_party::get("http");
    let src = dir.join("pkg-src");
    std::fs::create_dir_all(src.join("schemas")).unwrap();
    for f in ["request.json", "response.json"] {
        std::fs::copy(
            Path::new(http.dir).join("schemas").join(f),
            src.join("schemas").join(f),
        )
        .unwrap();
    }
    let manifest = format!(
        r#"[package]
name = "effects"
version = "1.0.0"
publisher = "cli-tests"
description = "The http action, allowed to reach the local peer"

[[actions]]
name = "request"
description = "One HTTP request"
input = "schemas/request.json"
output = "schemas/response.json"

[capabilities.limits]
memory_mib = 64
timeout_ms = 30000

[capabilities.http]
allow = []
allow_private = ["http://127.0.0.1:{port}"]
"#
    );
    std::fs::write(src.join("allama.toml"), manifest).unwrap();
    let packages = dir.join("packages");
    std::fs::create_dir_all(&packages).unwrap();
    let out = packages.join("effects.allama");
    ok(&allama()
        .arg("package")
        .arg("build")
        .arg(&src)
        .arg("--component")
        .arg(http.wasm)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap());
    packages
}

/// Runs `c` to its end, or kills it and fails the test after `secs`: a
/// command that never returns is a bug, not something to wait for.
pub fn bounded(c: &mut Command, secs: u64) -> Output {
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("{c:?} did not end within {secs} s");
        }
    }
}
