//! `sdk/README.md`'s guide, run as written: a newcomer's path from nothing to
//! a signed package running under a grant.

use std::path::Path;
use std::process::Command;

/// The shell commands between the guide's markers.
fn guide_commands() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/README.md"))
            .unwrap();
    let start = readme
        .find("<!-- guide:begin -->")
        .expect("guide start marker");
    let end = readme.find("<!-- guide:end -->").expect("guide end marker");
    let block = &readme[start..end];
    let body = block
        .split("```sh")
        .nth(1)
        .expect("a sh block")
        .split("```")
        .next()
        .unwrap();
    body.trim().to_string()
}

#[test]
fn the_sdk_guide_works_as_written() {
    let commands = guide_commands();
    assert!(
        commands.starts_with("allama action new hello-world"),
        "{commands}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_allama")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Reuse the workspace's resolved versions so the scaffolded crate does not
    // re-resolve from the registry on every run (users get a fresh resolve).
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let script = format!(
        "set -euo pipefail\nexport PATH={path:?}\nallama action new hello-world\ncp {lock:?} hello-world/Cargo.lock\n{}",
        commands.replacen("allama action new hello-world\n", "", 1)
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the guide failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(r#""greeting": "Hello, Ada!""#), "{stdout}");
    assert!(
        stdout.contains("signed hello-world 0.1.0 by my-team"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hello — Greets someone [input schema; output schema]"),
        "{stdout}"
    );
    assert!(
        dir.path()
            .join("hello-world/schemas/hello-input.json")
            .exists()
    );
}

#[test]
fn new_refuses_bad_names_and_existing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_allama"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    for bad in ["Hello", "1abc", "a b", "../escape", ""] {
        let o = run(&["action", "new", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not a valid package name"),
            "{bad}"
        );
    }
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/file"), "x").unwrap();
    let o = run(&["action", "new", "taken"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
}
