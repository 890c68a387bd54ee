//! Packages through the `allama` binary: keys, build, sign, verify, inspect,
//! run with a narrowed grant, and the refusals an operator relies on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn allama(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allama"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("allama runs")
}

mod common;
use common::{ok, text as all_output};

const MANIFEST: &str = r#"[package]
name = "caps-demo"
version = "0.3.1"
publisher = "acme"
description = "Echo and HTTP probes"

[[actions]]
name = "echo"
description = "Returns its input"
input = "schemas/echo.json"
sensitive = ["/token"]

[[actions]]
name = "kv-set"

[capabilities.http]
allow = ["https://api.vendor.example"]

[capabilities.secrets.VENDOR_KEY]
hosts = ["https://api.vendor.example"]

[capabilities.kv]
max_keys = 10
"#;

/// A directory with a built, signed package and a trust policy.
struct Kit {
    dir: tempfile::TempDir,
}

impl Kit {
    fn new() -> Kit {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pkg/schemas")).unwrap();
        std::fs::write(dir.path().join("pkg/allama.toml"), MANIFEST).unwrap();
        std::fs::write(
            dir.path().join("pkg/schemas/echo.json"),
            r#"{"type":"object"}"#,
        )
        .unwrap();
        let kit = Kit { dir };
        ok(&kit.run(&["keys", "generate", "--out", "acme"]));
        ok(&kit.run(&[
            "package",
            "build",
            "pkg",
            "--component",
            allama_guests::CAPS,
            "--out",
            "caps.allama",
        ]));
        ok(&kit.run(&["package", "sign", "caps.allama", "--key", "acme.key"]));
        let public = std::fs::read_to_string(kit.path("acme.pub")).unwrap();
        kit.write(
            "trust.toml",
            &format!(
                "require_signatures = true\n[publishers.acme]\nkeys = [\"{}\"]\n",
                public.trim()
            ),
        );
        kit
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }
    fn run(&self, args: &[&str]) -> Output {
        allama(self.dir.path(), args)
    }
}

#[test]
fn the_private_key_is_private_and_never_overwritten() {
    let kit = Kit::new();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(kit.path("acme.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = kit.run(&["keys", "generate", "--out", "acme"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(all_output(&again).contains("refusing to overwrite"));
}

#[test]
fn a_signed_package_verifies_and_runs_under_its_request() {
    let kit = Kit::new();
    let out = ok(&kit.run(&["package", "verify", "caps.allama", "--trust", "trust.toml"]));
    assert!(
        out.starts_with("ok: caps-demo 0.3.1 by acme, signed by ed25519:")
            && out.contains("(trusted)"),
        "{out}"
    );
    let out = ok(&kit.run(&[
        "action",
        "run",
        "caps.allama",
        "echo",
        "--input",
        r#"{"x":1}"#,
        "--trust",
        "trust.toml",
    ]));
    assert!(out.contains(r#""x": 1"#), "{out}");
    // Without --grant, kv is granted as requested.
    let out = ok(&kit.run(&[
        "action",
        "run",
        "caps.allama",
        "kv-set",
        "--input",
        r#"{"key":"k","value":"v"}"#,
    ]));
    assert!(out.contains(r#""ok": true"#), "{out}");
}

#[test]
fn inspect_speaks_plainly_and_shows_trust() {
    let kit = Kit::new();
    let out = ok(&kit.run(&["package", "inspect", "caps.allama", "--trust", "trust.toml"]));
    for phrase in [
        "caps-demo 0.3.1 by acme",
        "trusted for publisher acme",
        "may send secret VENDOR_KEY to https://api.vendor.example only; may not reveal it",
        "may store up to 10 keys",
        "each step: 64 MiB memory; 10 s",
        "echo — Returns its input [input schema; masks /token]",
    ] {
        assert!(out.contains(phrase), "missing `{phrase}`:\n{out}");
    }
    // Against a policy that does not trust the key: still described, and the refusal said.
    kit.write("other.toml", "require_signatures = true\n");
    let out = ok(&kit.run(&["package", "inspect", "caps.allama", "--trust", "other.toml"]));
    assert!(
        out.contains("NOT in the trust policy") && out.contains("the trust policy REFUSES it"),
        "{out}"
    );
}

#[test]
fn a_narrowed_grant_applies_and_a_widened_one_is_refused() {
    let kit = Kit::new();
    kit.write("narrow.toml", "[secrets.VENDOR_KEY]\nhosts = []\n");
    // The narrowed grant has no kv: the component is denied.
    let out = ok(&kit.run(&[
        "action",
        "run",
        "caps.allama",
        "kv-set",
        "--grant",
        "narrow.toml",
        "--input",
        r#"{"key":"k","value":"v"}"#,
    ]));
    assert!(out.contains(r#""error": "denied""#), "{out}");
    kit.write(
        "wide.toml",
        "[http]\nallow = [\"https://evil.example\"]\n[kv]\nmax_keys = 1000\n",
    );
    let o = kit.run(&[
        "action",
        "run",
        "caps.allama",
        "echo",
        "--grant",
        "wide.toml",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let text = all_output(&o);
    assert!(
        text.contains("asks for more than the package requests"),
        "{text}"
    );
    assert!(
        text.contains("http.allow[0] `https://evil.example` is not requested")
            && text.contains("kv.max_keys = 1000"),
        "{text}"
    );
}

#[test]
fn tampered_unsigned_and_untrusted_packages_are_refused() {
    let kit = Kit::new();
    let mut bytes = std::fs::read(kit.path("caps.allama")).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    std::fs::write(kit.path("tampered.allama"), &bytes).unwrap();
    let o = kit.run(&["package", "verify", "tampered.allama"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        all_output(&o).contains("modified after it was signed"),
        "{}",
        all_output(&o)
    );
    let o = kit.run(&["action", "run", "tampered.allama", "echo"]);
    assert_eq!(o.status.code(), Some(2));

    ok(&kit.run(&[
        "package",
        "build",
        "pkg",
        "--component",
        allama_guests::CAPS,
        "--out",
        "unsigned.allama",
    ]));
    let o = kit.run(&[
        "package",
        "verify",
        "unsigned.allama",
        "--trust",
        "trust.toml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        all_output(&o).contains("is unsigned, and the trust policy requires a signature"),
        "{}",
        all_output(&o)
    );
    let o = kit.run(&[
        "action",
        "run",
        "unsigned.allama",
        "echo",
        "--trust",
        "trust.toml",
    ]);
    assert_eq!(o.status.code(), Some(2));

    ok(&kit.run(&["keys", "generate", "--out", "mallory"]));
    ok(&kit.run(&["package", "sign", "unsigned.allama", "--key", "mallory.key"]));
    let o = kit.run(&[
        "package",
        "verify",
        "unsigned.allama",
        "--trust",
        "trust.toml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        all_output(&o).contains("which the trust policy does not list for publisher `acme`"),
        "{}",
        all_output(&o)
    );
}

#[test]
fn build_refuses_bad_input_with_the_place_at_fault() {
    let kit = Kit::new();
    kit.write(
        "pkg/allama.toml",
        &MANIFEST.replace("version = \"0.3.1\"", "version = \"three\""),
    );
    let o = kit.run(&[
        "package",
        "build",
        "pkg",
        "--component",
        allama_guests::CAPS,
    ]);
    assert_eq!(o.status.code(), Some(2));
    let text = all_output(&o);
    assert!(
        text.contains("allama.toml:3:") && text.contains("package.version"),
        "{text}"
    );
    kit.write("pkg/allama.toml", MANIFEST);
    kit.write("junk.wasm", "not wasm");
    let o = kit.run(&["package", "build", "pkg", "--component", "junk.wasm"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(all_output(&o).contains("not a valid WebAssembly component"));
    let o = kit.run(&["action", "run", "caps.allama", "no-such-action"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        all_output(&o).contains("has no action `no-such-action`; it has: echo, kv-set"),
        "{}",
        all_output(&o)
    );
}

#[test]
fn outputs_marked_sensitive_are_masked_unless_asked() {
    let kit = Kit::new();
    let input = r#"{"token":"tok-123","ip":"203.0.113.7"}"#;
    let o = kit.run(&["action", "run", "caps.allama", "echo", "--input", input]);
    let out = ok(&o);
    assert!(
        out.contains(r#""token": "[sensitive]""#)
            && out.contains("203.0.113.7")
            && !out.contains("tok-123"),
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("1 value(s) the package marks sensitive are masked")
    );
    let json = ok(&kit.run(&[
        "action",
        "run",
        "caps.allama",
        "echo",
        "--input",
        input,
        "--json",
    ]));
    assert!(!json.contains("tok-123"), "{json}");
    let shown = ok(&kit.run(&[
        "action",
        "run",
        "caps.allama",
        "echo",
        "--input",
        input,
        "--show-sensitive",
    ]));
    assert!(shown.contains("tok-123"), "{shown}");
}
