//! The local environment the playbook and runs commands work in: a data
//! directory (the sled store), a directory of installed packages with their
//! grants, a trust policy, secrets, and the playbooks child steps may use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};

use allama_engine::{Plan, Plans, RunStore};
use allama_executor::{Installed, Registry};
use allama_grant::Grant;
use allama_playbook::PlaybookInfo;
use allama_runtime::capability::kv::MemoryKv;
use allama_runtime::capability::secrets::MemorySecretStore;
use allama_runtime::{PackageSpec, Runtime, RuntimeConfig};
use allama_store::SledStore;

/// Where the local commands find things.
#[derive(clap::Args, Clone, Debug)]
pub struct Env {
    /// Data directory (runs, blobs). Default: $ALLAMA_DATA_DIR, else
    /// $XDG_DATA_HOME/allama, else ~/.local/share/allama.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Directory of installed packages: `*.allama` files, each with an
    /// optional `NAME.grant.toml` beside it that narrows what it may do.
    /// Default: $ALLAMA_PACKAGES, else DATA_DIR/packages.
    #[arg(long, global = true)]
    pub packages: Option<PathBuf>,
    /// Trust policy for packages (TOML). Without it, unsigned packages load
    /// but signatures present must be valid.
    #[arg(long, global = true)]
    pub trust: Option<PathBuf>,
    /// A secret, NAME=VALUE (repeatable). Also read from ALLAMA_SECRET_NAME
    /// environment variables. Values never appear in output or history.
    #[arg(long = "secret", value_name = "NAME=VALUE", global = true)]
    pub secrets: Vec<String>,
    /// Directory of playbooks that `playbook:` steps may start. Default: the
    /// directory of the playbook file given.
    #[arg(long, global = true)]
    pub playbooks: Option<PathBuf>,
    /// Send requests for a host name to a fixed address instead of looking it
    /// up, like /etc/hosts: NAME=IP:PORT (repeatable). For a vendor's mirror
    /// or a local stand-in; grants still decide whether a package may reach
    /// the name.
    #[arg(long = "pin", value_name = "NAME=IP:PORT", global = true)]
    pub pins: Vec<String>,
    /// An extra certificate authority (PEM file) to trust for outbound HTTPS
    /// (repeatable), e.g. an internal CA.
    #[arg(long = "ca-cert", value_name = "FILE", global = true)]
    pub ca_certs: Vec<PathBuf>,
}

impl Env {
    /// The data directory.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        if let Some(d) = std::env::var_os("ALLAMA_DATA_DIR") {
            return Ok(PathBuf::from(d));
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .context("no data directory: give --data-dir or set ALLAMA_DATA_DIR")?;
        Ok(base.join("allama"))
    }

    /// Opens the store, with a clear message when another process has it.
    pub fn open_store(&self) -> anyhow::Result<Arc<SledStore>> {
        let dir = self.data_dir()?;
        match SledStore::open(&dir) {
            Ok(s) => Ok(Arc::new(s)),
            Err(e) => {
                let text = e.to_string();
                if text.contains("lock")
                    || text.contains("WouldBlock")
                    || text.contains("temporarily unavailable")
                {
                    bail!(
                        "the data directory {} is in use by another allama process; wait for it to finish or stop it ({text})",
                        dir.display()
                    );
                }
                Err(e).context("opening the run store")
            }
        }
    }

    fn packages_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.packages {
            return Ok(d.clone());
        }
        if let Some(d) = std::env::var_os("ALLAMA_PACKAGES") {
            return Ok(PathBuf::from(d));
        }
        Ok(self.data_dir()?.join("packages"))
    }

    fn secret_store(&self) -> anyhow::Result<MemorySecretStore> {
        let mut secrets = MemorySecretStore::new();
        for (k, v) in std::env::vars() {
            if let Some(name) = k.strip_prefix("ALLAMA_SECRET_")
                && allama_grant::template::is_valid_secret_name(name)
            {
                secrets.insert(name, &v);
            }
        }
        for s in &self.secrets {
            let (name, value) = crate::action_run::parse_secret(s)?;
            secrets.insert(name, value);
        }
        Ok(secrets)
    }

    /// Whether a packages directory exists.
    pub fn has_packages(&self) -> bool {
        self.packages_dir().is_ok_and(|d| d.is_dir())
    }

    /// Loads every package in the packages directory, verified and bound to
    /// its grant (or, without a runtime, only their manifests). A missing
    /// directory is an empty registry.
    pub fn registry(&self, runtime: Option<&Runtime>) -> anyhow::Result<Registry> {
        let dir = self.packages_dir()?;
        let mut registry = Registry::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(registry);
        };
        let policy = crate::package_cmd::load_policy(self.trust.as_deref())?;
        let secrets = Arc::new(self.secret_store()?);
        let kv = Arc::new(MemoryKv::new());
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "allama"))
            .collect();
        files.sort();
        for path in files {
            let origin = path.display().to_string();
            let bytes = std::fs::read(&path).with_context(|| format!("reading {origin}"))?;
            let pkg = allama_package::Package::open(&bytes, &origin, &policy)
                .with_context(|| format!("package {origin}"))?;
            let grant_path = path.with_extension("grant.toml");
            let grant = if grant_path.exists() {
                let text = std::fs::read_to_string(&grant_path)
                    .with_context(|| format!("reading {}", grant_path.display()))?;
                Some(Grant::from_toml_str(
                    &text,
                    &grant_path.display().to_string(),
                )?)
            } else {
                None
            };
            let grant = pkg
                .effective_grant(grant.as_ref())
                .with_context(|| format!("grant for {origin}"))?;
            let name = pkg.manifest.name.clone();
            let Some(runtime) = runtime else {
                registry.install(Installed {
                    manifest: pkg.manifest,
                    package: None,
                });
                continue;
            };
            let component = runtime
                .load(&name, &pkg.file.component)
                .with_context(|| format!("loading {origin}"))?;
            let bound = runtime.bind(
                &component,
                PackageSpec {
                    name: name.clone(),
                    grant,
                    secrets: secrets.clone(),
                    kv: kv.clone(),
                    kv_namespace: None,
                },
            )?;
            registry.install(Installed {
                manifest: pkg.manifest,
                package: Some(Arc::new(bound)),
            });
        }
        Ok(registry)
    }
}

/// Parses `--pin NAME=IP:PORT` values.
pub(crate) fn parse_pins(
    pins: &[String],
) -> anyhow::Result<HashMap<String, Vec<std::net::SocketAddr>>> {
    let mut out: HashMap<String, Vec<std::net::SocketAddr>> = HashMap::new();
    for p in pins {
        let Some((name, addr)) = p.split_once('=') else {
            bail!("--pin `{p}` must be NAME=IP:PORT");
        };
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            bail!("--pin `{p}`: `{name}` is not a host name");
        }
        let addr: std::net::SocketAddr = addr
            .trim()
            .parse()
            .with_context(|| format!("--pin `{p}`: `{addr}` is not IP:PORT"))?;
        out.entry(name).or_default().push(addr);
    }
    Ok(out)
}

/// A runtime for local runs, with the compiled-code cache, the pins and the
/// extra CAs of `env`.
pub fn runtime(env: &Env) -> anyhow::Result<Runtime> {
    let sink: Arc<dyn allama_runtime::audit::AuditSink> =
        Arc::new(allama_runtime::audit::NullAuditSink);
    let pinned_hosts = parse_pins(&env.pins)?;
    let mut extra_root_certs = Vec::new();
    for f in &env.ca_certs {
        extra_root_certs.push(
            std::fs::read_to_string(f).with_context(|| format!("--ca-cert {}", f.display()))?,
        );
    }
    let config = |cache_dir| RuntimeConfig {
        max_concurrent_steps: 256,
        cache_dir,
        pinned_hosts: pinned_hosts.clone(),
        extra_root_certs: extra_root_certs.clone(),
        ..RuntimeConfig::default()
    };
    match Runtime::new(config(crate::action_run::default_cache_dir()), sink.clone()) {
        Ok(r) => Ok(r),
        Err(allama_runtime::RuntimeError::Cache { .. }) => Ok(Runtime::new(config(None), sink)?),
        Err(e) => Err(e.into()),
    }
}

/// Reads and parses a playbook file; validation errors list every problem.
pub fn read_playbook(
    path: &Path,
    catalog: Option<&dyn allama_playbook::Catalog>,
) -> anyhow::Result<(allama_playbook::Playbook, String)> {
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path.display().to_string();
    let parsed = match catalog {
        Some(c) => allama_playbook::validate(&source, &file, c),
        None => allama_playbook::parse(&source, &file),
    };
    match parsed {
        Ok(pb) => Ok((pb, source)),
        Err(d) => bail!("{d}"),
    }
}

/// Playbook versions for the engine: any version a run started with (its
/// source is kept in the store as a blob named by its digest), and the
/// current version of each playbook in the library directory for new child
/// runs.
pub struct LocalPlans {
    store: Arc<dyn RunStore>,
    current: HashMap<String, Arc<Plan>>,
    by_digest: Mutex<HashMap<String, Arc<Plan>>>,
}

impl LocalPlans {
    /// Plans from the library directory `dir` (files that do not parse are
    /// reported and skipped).
    pub fn load(store: Arc<dyn RunStore>, dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut current = HashMap::new();
        if let Some(dir) = dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            files.sort();
            for f in files {
                match read_playbook(&f, None) {
                    Ok((pb, source)) => {
                        let plan = Plan::new(pb, &source);
                        store.put_blob(&plan.digest, source.as_bytes())?;
                        current.insert(plan.id().to_string(), plan);
                    }
                    Err(e) => {
                        tracing::debug!(file = %f.display(), error = %e, "not a playbook; skipped")
                    }
                }
            }
        }
        Ok(Self {
            store,
            current,
            by_digest: Mutex::new(HashMap::new()),
        })
    }

    /// Records a playbook version so runs of it can resume.
    pub fn remember(&self, plan: &Arc<Plan>, source: &str) -> anyhow::Result<()> {
        self.store.put_blob(&plan.digest, source.as_bytes())?;
        self.by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(plan.digest.clone(), plan.clone());
        Ok(())
    }

    /// What validation knows of the library's playbooks.
    pub fn infos(&self) -> Vec<(String, PlaybookInfo)> {
        self.current
            .iter()
            .map(|(id, p)| {
                (
                    id.clone(),
                    PlaybookInfo {
                        inputs: p.playbook.inputs.clone(),
                    },
                )
            })
            .collect()
    }
}

impl Plans for LocalPlans {
    fn plan(&self, id: &str, digest: Option<&str>) -> Option<Arc<Plan>> {
        let Some(digest) = digest else {
            return self.current.get(id).cloned();
        };
        if let Some(p) = self
            .by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            return Some(p.clone());
        }
        let bytes = self.store.get_blob(digest).ok().flatten()?;
        let source = String::from_utf8(bytes).ok()?;
        let pb = allama_playbook::parse(
            &source,
            &format!("{id}@{}", &digest[..12.min(digest.len())]),
        )
        .ok()?;
        let plan = Plan::new(pb, &source);
        if plan.digest != digest || plan.id() != id {
            return None;
        }
        self.by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.to_string(), plan.clone());
        Some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pins;

    #[test]
    fn pins_parse_and_bad_ones_say_what_is_wrong() {
        let p = parse_pins(&[
            "Slack.com=127.0.0.1:8443".into(),
            "slack.com=[::1]:8443".into(),
        ])
        .unwrap();
        assert_eq!(
            p["slack.com"].len(),
            2,
            "names are case-insensitive, addresses add up"
        );
        for (bad, needle) in [
            ("slack.com", "must be NAME=IP:PORT"),
            ("=127.0.0.1:1", "is not a host name"),
            ("evil/../x=127.0.0.1:1", "is not a host name"),
            ("slack.com=localhost:443", "is not IP:PORT"),
            ("slack.com=127.0.0.1", "is not IP:PORT"),
            ("slack.com=127.0.0.1:99999", "is not IP:PORT"),
            ("sl\u{e4}ck.com=127.0.0.1:1", "is not a host name"),
        ] {
            let e = format!("{:#}", parse_pins(&[bad.into()]).expect_err(bad));
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
