//! Builds every first-party action for `wasm32-wasip2` (profile `guest`:
//! stripped, LTO) with a nested cargo, and writes `actions.rs` listing each
//! package's directory and component.

use std::path::PathBuf;

#[path = "../../host/guests/wasm_build.rs"]
mod wasm_build;

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
    println!(
        "cargo:rerun-if-changed={}",
        root.join("host/guests/wasm_build.rs").display()
    );
    let target_dir = wasm_build::guest_target_dir(&root);
    let packages: Vec<String> = ACTIONS
        .iter()
        .map(|a| format!("allama-action-{a}"))
        .collect();
    let mut args = vec!["--profile", "guest"];
    for p in &packages {
        args.extend(["-p", p.as_str()]);
    }
    wasm_build::cargo_build(&root, &target_dir, &args, "the first-party actions");
    let mut src = String::from(
        "/// Every first-party action package: (name, package directory, component).\npub const ALL: &[FirstParty] = &[\n",
    );
    for a in ACTIONS {
        let wasm = target_dir
            .join("wasm32-wasip2/guest")
            .join(format!("allama_action_{a}.wasm"));
        assert!(wasm.exists(), "{} was not built", wasm.display());
        let dir = root.join("actions").join(a).canonicalize().unwrap();
        // The manifest and its schemas, embedded: a binary can build the
        // package without the source tree.
        let mut files = vec![dir.join("allama.toml")];
        let schemas = dir.join("schemas");
        if let Ok(entries) = std::fs::read_dir(&schemas) {
            let mut found: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            found.sort();
            files.extend(found);
        }
        println!("cargo:rerun-if-changed={}", schemas.display());
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("allama.toml").display()
        );
        let embedded: String = files
            .iter()
            .map(|f| {
                let rel = f.strip_prefix(&dir).unwrap().display().to_string();
                format!(
                    "({rel:?}, include_bytes!({:?}) as &[u8]), ",
                    f.display().to_string()
                )
            })
            .collect();
        src.push_str(&format!(
            "    FirstParty {{ name: {a:?}, dir: {:?}, wasm: {:?}, files: &[{embedded}], component: include_bytes!({:?}) }},\n",
            dir.display().to_string(),
            wasm.display().to_string(),
            wasm.display().to_string()
        ));
    }
    src.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("actions.rs"), src).unwrap();
}
