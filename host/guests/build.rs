//! Builds the guest programs in `programs/` for `wasm32-wasip2` with a nested
//! cargo (wasmtime's test-programs do the same), builds the Python example
//! (`sdk/python/examples/ip_reputation`) with componentize-py, then writes
//! `guests.rs` with the path of each component so tests and the CLI can find
//! them.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[&str] = &["bench", "caps", "hostile"];
#[path = "wasm_build.rs"]
mod wasm_build;
use wasm_build::TARGET;

/// The componentize-py release the Python guest is built and tested with
/// (`scripts/test` and `scripts/run` install it).
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

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

    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("wasm_build.rs").display()
    );
    let target_dir = wasm_build::guest_target_dir(&manifest_dir.join("../.."));
    wasm_build::cargo_build(&programs, &target_dir, &["--release"], "the guest programs");

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

    let python = build_python_example(&manifest_dir.join("../.."), &wit, &target_dir);
    let copy = out_dir.join("python_example.wasm");
    std::fs::copy(&python, &copy).unwrap();
    src.push_str(&const_item("python_example", &copy));

    std::fs::write(out_dir.join("guests.rs"), src).unwrap();
}

/// Builds `sdk/python/examples/ip_reputation` (with the SDK in `sdk/python`)
/// into `python_example.wasm` next to the Rust guests, unless its inputs
/// (sources, WIT, componentize-py version) are those of the last build.
fn build_python_example(root: &Path, wit: &Path, target_dir: &Path) -> PathBuf {
    let sdk = root.join("sdk/python");
    let example = sdk.join("examples/ip_reputation");
    let out = target_dir
        .join(TARGET)
        .join("release")
        .join("python_example.wasm");

    // Files, not directories: componentize-py writes `__pycache__` next to
    // the sources, which would make a watched directory always look changed.
    let mut sources = Vec::new();
    python_sources(&sdk.join("allama"), &mut sources);
    python_sources(&example, &mut sources);
    sources.sort();
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
    let tool = std::env::var("COMPONENTIZE_PY").unwrap_or_else(|_| "componentize-py".into());

    let version = match Command::new(&tool).arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!(
            "`{tool}` was not found: it builds the Python guest component (sdk/python).\n\
             Run ./scripts/test (it installs it), or `pip install componentize-py=={COMPONENTIZE_PY_VERSION}` \
             and make sure `componentize-py` is on PATH (or set COMPONENTIZE_PY to its path)."
        ),
    };
    if !version.ends_with(COMPONENTIZE_PY_VERSION) {
        println!(
            "cargo:warning=building the Python guest with {version}; Allama is tested with componentize-py {COMPONENTIZE_PY_VERSION}"
        );
    }

    // Skip the ~5 s build when nothing it depends on has changed.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    version.hash(&mut hasher);
    let mut wit_files: Vec<PathBuf> = std::fs::read_dir(wit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    wit_files.sort();
    for f in wit_files.iter().chain(&sources) {
        f.hash(&mut hasher);
        std::fs::read(f).unwrap_or_default().hash(&mut hasher);
    }
    let stamp = format!("{:016x}", hasher.finish());
    let stamp_file = out.with_extension("stamp");
    if out.exists() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(&stamp) {
        return out;
    }

    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    // Another profile's build script may be writing the same file.
    let tmp = out.with_extension(format!("wasm.{}.tmp", std::process::id()));
    let result = Command::new(&tool)
        .arg("-q")
        .arg("-d")
        .arg(wit)
        .args(["-w", "action", "componentize", "app", "-p"])
        .arg(&example)
        .arg("-p")
        .arg(&sdk)
        .arg("-o")
        .arg(&tmp)
        .current_dir(target_dir)
        .output()
        .expect("could not run componentize-py");
    if !result.status.success() {
        let _ = std::fs::remove_file(&tmp);
        panic!(
            "componentize-py failed to build the Python example ({}):\n{}{}",
            example.display(),
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
    }
    std::fs::rename(&tmp, &out).unwrap();
    std::fs::write(&stamp_file, stamp).unwrap();
    out
}

/// The `.py` files under `dir`, recursively, skipping `__pycache__`.
fn python_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "__pycache__") {
                python_sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "py") {
            out.push(path);
        }
    }
}

fn const_item(name: &str, path: &Path) -> String {
    format!(
        "/// Path of the `{name}` guest component.\npub const {}: &str = {:?};\n",
        name.to_uppercase(),
        path.display().to_string()
    )
}
