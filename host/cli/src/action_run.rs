//! `allama action run`: the local runner an integration author uses.

use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use allama_grant::Grant;
use allama_runtime::audit::{AuditEvent, AuditRecord, AuditSink, FileAuditSink, MemoryAuditSink};
use allama_runtime::capability::kv::MemoryKv;
use allama_runtime::capability::secrets::MemorySecretStore;
use allama_runtime::{PackageSpec, Runtime, RuntimeConfig, StepContext, StepReport};

/// Arguments of `allama action run`.
#[derive(clap::Args)]
pub struct Args {
    /// The package (.allama) or a bare component (.wasm).
    component: PathBuf,
    /// The action to run.
    action: String,
    /// Input JSON, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    input: String,
    /// The grant (TOML). For a package it may only narrow what the manifest
    /// requests (without it: exactly what it requests); for a bare component,
    /// without it nothing is granted.
    #[arg(long)]
    grant: Option<PathBuf>,
    /// Trust policy for packages (TOML); without it, unsigned packages run
    /// but signatures must be valid.
    #[arg(long)]
    trust: Option<PathBuf>,
    /// A secret value, NAME=VALUE (repeatable). Values never appear in output.
    #[arg(long = "secret", value_name = "NAME=VALUE")]
    secrets: Vec<String>,
    /// Package name for audit records and the kv namespace (default: file name).
    #[arg(long)]
    package: Option<String>,
    /// Also append audit records to this file, as JSON lines.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Where compiled components are cached (default: $ALLAMA_CACHE_DIR, else
    /// $XDG_CACHE_HOME/allama/compiled, else ~/.cache/allama/compiled).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile the component afresh, without the cache.
    #[arg(long)]
    no_cache: bool,
    /// Show output values the package marks sensitive (masked by default).
    #[arg(long)]
    show_sensitive: bool,
    /// Print the whole report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

struct Tee(Vec<Arc<dyn AuditSink>>);

impl AuditSink for Tee {
    fn record(&self, r: &AuditRecord) {
        for s in &self.0 {
            s.record(r);
        }
    }
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let input = match args.input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--input: could not read {path}"))?,
        None => args.input.clone(),
    };
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&input) {
        bail!("--input is not valid JSON: {e}");
    }
    let grant = match &args.grant {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--grant: could not read {}", path.display()))?;
            Some(Grant::from_toml_str(&text, &path.display().to_string())?)
        }
        None => None,
    };
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("could not read {}", args.component.display()))?;
    let mut sensitive: Vec<String> = Vec::new();
    let (wasm, grant, default_name) = if allama_package::looks_like_package(&bytes) {
        let policy = crate::package_cmd::load_policy(args.trust.as_deref())?;
        let origin = args.component.display().to_string();
        let pkg = allama_package::Package::open(&bytes, &origin, &policy)
            .with_context(|| format!("package {origin}"))?;
        if pkg.manifest.action(&args.action).is_none() {
            let known: Vec<&str> = pkg
                .manifest
                .actions
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            bail!(
                "package {} has no action `{}`; it has: {}",
                pkg.manifest.title(),
                args.action,
                known.join(", ")
            );
        }
        let grant = pkg.effective_grant(grant.as_ref())?;
        sensitive = pkg
            .manifest
            .action(&args.action)
            .map(|a| a.sensitive.clone())
            .unwrap_or_default();
        (pkg.file.component, grant, pkg.manifest.name)
    } else {
        if args.trust.is_some() {
            bail!(
                "--trust applies to packages; {} is a bare component",
                args.component.display()
            );
        }
        let name = args
            .component
            .file_stem()
            .map_or_else(|| "component".into(), |s| s.to_string_lossy().into_owned());
        (bytes, grant.unwrap_or_else(Grant::deny_all), name)
    };
    let mut secrets = MemorySecretStore::new();
    for s in &args.secrets {
        let (name, value) = parse_secret(s)?;
        secrets.insert(name, value);
    }
    let memory = Arc::new(MemoryAuditSink::new());
    let mut sinks: Vec<Arc<dyn AuditSink>> = vec![memory];
    if let Some(path) = &args.audit_log {
        sinks.push(Arc::new(
            FileAuditSink::open(path).with_context(|| format!("--audit-log {}", path.display()))?,
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sink: Arc<dyn AuditSink> = Arc::new(Tee(sinks));
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(default_cache_dir)
    };
    let config = |cache_dir| RuntimeConfig {
        max_concurrent_steps: 4,
        cache_dir,
        ..RuntimeConfig::default()
    };
    let runtime = match Runtime::new(config(cache_dir.clone()), sink.clone()) {
        Ok(r) => r,
        // An unusable cache costs time, not correctness: run uncached.
        Err(allama_runtime::RuntimeError::Cache { path, source }) => {
            eprintln!(
                "(compiled-code cache {} unusable: {source}; compiling without it)",
                path.display()
            );
            Runtime::new(config(None), sink)?
        }
        Err(e) => return Err(e.into()),
    };
    let name = args.package.clone().unwrap_or(default_name);
    let component = runtime.load(&name, &wasm)?;
    let package = runtime.bind(
        &component,
        PackageSpec {
            name,
            grant,
            secrets: Arc::new(secrets),
            kv: Arc::new(MemoryKv::new()),
            kv_namespace: None,
        },
    )?;
    let ctx = StepContext::adhoc(&args.action);
    let mut report = rt.block_on(package.run(&args.action, &input, &ctx));
    if let (false, Ok(output)) = (args.show_sensitive, &mut report.outcome) {
        let masked = allama_package::mask_sensitive(output, &sensitive);
        if masked > 0 && !args.json {
            eprintln!(
                "({masked} value(s) the package marks sensitive are masked; --show-sensitive shows them)"
            );
        }
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `$ALLAMA_CACHE_DIR`, else `$XDG_CACHE_HOME/allama/compiled`, else
/// `~/.cache/allama/compiled`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("ALLAMA_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("allama/compiled"))
}

fn print_report(report: &StepReport) {
    match &report.outcome {
        Ok(v) => println!(
            "output:\n{}",
            serde_json::to_string_pretty(v).unwrap_or_default()
        ),
        Err(_) => println!("error: {}", report.error_message().unwrap_or_default()),
    }
    let uses = report.audit.len();
    let denials = report.audit.iter().filter(|r| r.event.is_denial()).count();
    println!("\ncapability uses and denials ({uses}, {denials} denied):");
    if uses == 0 {
        println!("  (none)");
    }
    for r in &report.audit {
        println!("  {}", describe(&r.event));
    }
    if !report.log.lines.is_empty() {
        println!("\nlog:");
        for l in &report.log.lines {
            let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "  {:<5} {} {}",
                format!("{:?}", l.level).to_lowercase(),
                l.message,
                fields.join(" ")
            );
        }
    }
    for (name, text) in [
        ("stdout", &report.log.stdout),
        ("stderr", &report.log.stderr),
    ] {
        if !text.is_empty() {
            println!("\n{name}:");
            for line in text.lines() {
                println!("  {line}");
            }
        }
    }
    if report.log.dropped_bytes > 0 {
        println!(
            "\n({} bytes of log output dropped at the cap)",
            report.log.dropped_bytes
        );
    }
    println!(
        "\nstep: {:.2} ms (waited {:.2} ms for a slot)",
        report.duration.as_secs_f64() * 1e3,
        report.queued.as_secs_f64() * 1e3
    );
}

fn describe(e: &AuditEvent) -> String {
    let when = match e.duration_us() {
        Some(us) => format!("{:>9.2} ms", us as f64 / 1e3),
        None if e.is_denial() => format!("{:>12}", "DENIED"),
        None => " ".repeat(12),
    };
    format!("{when}  {e}")
}

/// One `--secret NAME=VALUE`, checked (the value is never echoed).
pub fn parse_secret(s: &str) -> anyhow::Result<(&str, &str)> {
    let Some((name, value)) = s.split_once('=') else {
        bail!(
            "--secret `{}` must be NAME=VALUE",
            s.split('=').next().unwrap_or("")
        );
    };
    if !allama_grant::template::is_valid_secret_name(name) {
        bail!(
            "--secret: `{name}` is not a valid secret name (letters, digits and _, not starting with a digit)"
        );
    }
    Ok((name, value))
}
