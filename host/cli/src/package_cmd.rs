//! `allama package …` and `allama keys …`: what integration authors and
//! operators do with package files.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use allama_package::{Package, PackageFile, SigningKey, TrustPolicy, inspect};
use allama_runtime::audit::NullAuditSink;
use allama_runtime::{Runtime, RuntimeConfig};

/// `allama package …`.
#[derive(clap::Subcommand)]
pub enum PackageCommand {
    /// Build a package from a directory with allama.toml and a component.
    Build {
        /// The directory holding allama.toml (and the schema files it names).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The component (.wasm).
        #[arg(long)]
        component: PathBuf,
        /// Where to write the package (default: NAME-VERSION.allama in DIR).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Sign a package with a publisher key (replaces an earlier signature by the same key).
    Sign {
        /// The package.
        package: PathBuf,
        /// The private key file (from `allama keys generate`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a package's signatures and manifest against a trust policy.
    Verify {
        /// The package.
        package: PathBuf,
        /// The trust policy (TOML). Without it, unsigned packages pass but signatures must be valid.
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// Say in plain words what a package is and may do.
    Inspect {
        /// The package.
        package: PathBuf,
        /// The trust policy, to say whether its signers are trusted.
        #[arg(long)]
        trust: Option<PathBuf>,
    },
}

/// `allama keys …`.
#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Create a publisher signing key: writes NAME.key (private, mode 0600) and NAME.pub.
    Generate {
        /// Path prefix for the two files.
        #[arg(long)]
        out: PathBuf,
    },
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{what}: could not read {}", path.display()))
}

/// Load a trust policy file, or the permissive default.
pub fn load_policy(trust: Option<&Path>) -> anyhow::Result<TrustPolicy> {
    match trust {
        None => Ok(TrustPolicy::permissive()),
        Some(p) => {
            let text =
                String::from_utf8(read(p, "--trust")?).context("--trust: the file is not UTF-8")?;
            Ok(TrustPolicy::parse(&text, &p.display().to_string())?)
        }
    }
}

fn write_new(path: &Path, data: &[u8], private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = private;
    let mut f = opts.open(path).with_context(|| {
        format!(
            "could not create {} (it must not exist yet)",
            path.display()
        )
    })?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// Replace `path` atomically.
fn replace(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("allama.tmp");
    std::fs::write(&tmp, data).with_context(|| format!("could not write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("could not replace {}", path.display()))?;
    Ok(())
}

pub fn package(cmd: PackageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PackageCommand::Build {
            dir,
            component,
            out,
        } => {
            let wasm = read(&component, "--component")?;
            // Refuse what the runtime would refuse, now rather than at install.
            let runtime = Runtime::new(
                RuntimeConfig {
                    max_concurrent_steps: 1,
                    ..RuntimeConfig::default()
                },
                Arc::new(NullAuditSink),
            )?;
            runtime
                .load("component", &wasm)
                .with_context(|| format!("--component {}", component.display()))?;
            let (file, manifest) = allama_package::build(&dir, wasm)?;
            let out = out.unwrap_or_else(|| {
                dir.join(format!("{}-{}.allama", manifest.name, manifest.version))
            });
            replace(&out, &file.to_bytes())?;
            println!(
                "built {} ({}) -> {}",
                manifest.title(),
                plural(manifest.actions.len(), "action"),
                out.display()
            );
            println!(
                "unsigned: sign it with `allama package sign {} --key KEY`",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PackageCommand::Sign { package, key } => {
            let key_text =
                String::from_utf8(read(&key, "--key")?).context("--key: the file is not UTF-8")?;
            let key = SigningKey::from_file_text(&key_text)?;
            let bytes = read(&package, "package")?;
            // Never sign something that does not verify: the signature would vouch for it.
            let opened = Package::open(
                &bytes,
                &package.display().to_string(),
                &TrustPolicy::permissive(),
            )
            .with_context(|| format!("package {}", package.display()))?;
            let mut file: PackageFile = opened.file;
            allama_package::add_signature(&mut file, &key);
            replace(&package, &file.to_bytes())?;
            println!(
                "signed {} with {}",
                opened.manifest.title(),
                key.public_key()
            );
            Ok(ExitCode::SUCCESS)
        }
        PackageCommand::Verify { package, trust } => {
            let policy = load_policy(trust.as_deref())?;
            let bytes = read(&package, "package")?;
            match Package::verify(&bytes, &package.display().to_string(), &policy) {
                Ok(p) => {
                    let signers: Vec<String> = p
                        .signers
                        .iter()
                        .map(|s| {
                            format!(
                                "{}{}",
                                s.key,
                                if s.trusted {
                                    " (trusted)"
                                } else {
                                    " (not in the trust policy)"
                                }
                            )
                        })
                        .collect();
                    let sig = if signers.is_empty() {
                        "unsigned".to_string()
                    } else {
                        format!("signed by {}", signers.join(", "))
                    };
                    println!("ok: {}, {sig}", p.manifest.title());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("REFUSED: {e:#}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        PackageCommand::Inspect { package, trust } => {
            let policy = load_policy(trust.as_deref())?;
            // Inspect shows even a package the policy would refuse (that is
            // when an operator most needs to see it), but never a tampered one.
            let bytes = read(&package, "package")?;
            let name = package.display().to_string();
            let lenient = TrustPolicy {
                require_signatures: false,
                ..policy.clone()
            };
            let p = Package::open(&bytes, &name, &lenient)
                .with_context(|| format!("package {name}"))?;
            print!("{}", inspect::describe(&p));
            if let Err(e) = Package::open(&bytes, &name, &policy) {
                println!("\nthe trust policy REFUSES it: {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

pub fn keys(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { out } => {
            let (key, text) = SigningKey::generate()?;
            let (private, public) = (out.with_extension("key"), out.with_extension("pub"));
            if private.exists() || public.exists() {
                bail!(
                    "{} or {} already exists; refusing to overwrite a key",
                    private.display(),
                    public.display()
                );
            }
            write_new(&private, text.as_bytes(), true)?;
            write_new(&public, format!("{}\n", key.public_key()).as_bytes(), false)?;
            println!("private key: {} (keep it secret)", private.display());
            println!("public key:  {}", key.public_key());
            println!(
                "operators trust it with, in their trust policy:\n  [publishers.YOUR-NAME]\n  keys = [\"{}\"]",
                key.public_key()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
