//! `allama action new NAME`: a Rust action crate that tests natively, builds
//! to a component, and packages.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `allama action new`.
#[derive(clap::Args)]
pub struct Args {
    /// Package name: lowercase letters, digits and `-`, starting with a letter.
    name: String,
    /// Where to create it (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Publisher name for the manifest.
    #[arg(long, default_value = "my-team")]
    publisher: String,
    /// Path of the allama-sdk crate (default: the SDK this allama was built from).
    #[arg(long)]
    sdk: Option<PathBuf>,
}

fn valid(name: &str) -> bool {
    let mut c = name.chars();
    name.len() <= 64
        && c.next().is_some_and(|c| c.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    if !valid(&args.name) {
        bail!(
            "`{}` is not a valid package name: lowercase letters, digits and `-`, starting with a letter (e.g. `ip-lookup`)",
            args.name
        );
    }
    if !valid(&args.publisher) {
        bail!(
            "--publisher `{}` is not valid: lowercase letters, digits and `-`, starting with a letter",
            args.publisher
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        bail!("{} already exists and is not empty", dir.display());
    }
    let sdk = match args.sdk {
        Some(p) => p,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/rust"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "--sdk: {} not found (pass the path of sdk/rust)",
            sdk.display()
        )
    })?;
    let krate = args.name.replace('-', "_");
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", cargo_toml(&args.name, &sdk)),
        ("allama.toml", manifest(&args.name, &args.publisher)),
        ("grant.toml", GRANT.to_string()),
        ("src/lib.rs", LIB.to_string()),
        (".gitignore", "/target\n*.allama\n*.key\n".to_string()),
    ];
    for (rel, text) in &files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(&path, text)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    println!("created {} in {}", args.name, dir.display());
    println!("next:");
    println!("  cd {}", dir.display());
    println!(
        "  cargo test                                    # runs the action natively, writes schemas/"
    );
    println!("  cargo build --release --target wasm32-wasip2  # the component");
    println!(
        "  allama package build . --component target/wasm32-wasip2/release/{krate}.wasm --out {}.allama",
        args.name
    );
    println!(
        "  allama action run {}.allama hello --input '{{\"name\":\"Ada\"}}' --grant grant.toml",
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
allama-sdk = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
schemars = "1"

[profile.release]
lto = true
codegen-units = 1
strip = true

# A standalone crate, not part of an enclosing workspace.
[workspace]
"#,
        sdk = sdk.display().to_string()
    )
}

fn manifest(name: &str, publisher: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
publisher = "{publisher}"
description = "Says hello; a starting point"

[[actions]]
name = "hello"
description = "Greets someone"
input = "schemas/hello-input.json"
output = "schemas/hello-output.json"

# What the package asks for: nothing but computation. Add [capabilities.http]
# with allow = ["https://api.vendor.example"] and a [capabilities.secrets.NAME]
# with hosts = [...] when the action calls a vendor (see docs/grants.md).
[capabilities.limits]
memory_mib = 16
timeout_ms = 2000
"#
    )
}

const GRANT: &str = "# The operator's grant: may narrow the manifest, never widen it.\n[limits]\nmemory_mib = 16\ntimeout_ms = 1000\n";

const LIB: &str = r#"//! A starting point: one action, `hello`.

use allama_sdk::{Context, Error, Result, actions, log};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The input of `hello`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HelloInput {
    /// Who to greet.
    pub name: String,
}

/// The output of `hello`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HelloOutput {
    /// The greeting.
    pub greeting: String,
}

fn hello(input: HelloInput, ctx: &Context) -> Result<HelloOutput> {
    let name = input.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::invalid_input("`name` must be 1 to 100 characters"));
    }
    log::info("greeting", &[("run", &ctx.run_id)]);
    Ok(HelloOutput { greeting: format!("Hello, {name}!") })
}

actions! {
    "hello" => hello,
}

#[cfg(test)]
mod tests {
    use super::*;
    use allama_sdk::testing::MockHost;
    use serde_json::json;

    #[test]
    fn greets() {
        let out = MockHost::new().run(Actions::dispatch, "hello", json!({"name": "Ada"})).unwrap();
        assert_eq!(out["greeting"], "Hello, Ada!");
    }

    #[test]
    fn refuses_bad_input() {
        let e = MockHost::new().run(Actions::dispatch, "hello", json!({"name": ""})).unwrap_err();
        assert_eq!(e.kind, allama_sdk::ErrorKind::InvalidInput);
        assert!(MockHost::new().run(Actions::dispatch, "hello", json!({"nom": "x"})).is_err());
    }

    #[test]
    fn schemas_match_the_types() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
        allama_sdk::schema::check_file::<HelloInput>(&format!("{dir}/hello-input.json")).unwrap();
        allama_sdk::schema::check_file::<HelloOutput>(&format!("{dir}/hello-output.json")).unwrap();
    }
}
"#;
