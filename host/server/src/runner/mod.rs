//! The engine inside the server.
//!
//! One [`Engine`] carries every workspace's runs; it knows nothing of
//! workspaces. What keeps them apart:
//! - [`plans`]: inside the engine a playbook is `WORKSPACE/ID`, and so are
//!   the child playbooks its steps start;
//! - [`WorkspaceExecutor`]: a step runs against its own workspace's
//!   packages, bound to that workspace's grants, secrets, kv namespace
//!   (`WORKSPACE/PACKAGE`) and audit chain ([`stores`]).

pub mod plans;
pub mod stores;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use allama_engine::{Engine, EngineConfig, Executor, Invocation, Outcome, RunStore};
use allama_executor::{Installed, Registry, RuntimeExecutor, TapeMode};
use allama_package::TrustPolicy;
use allama_package::manifest::Manifest;
use allama_playbook::PlaybookInfo;
use allama_runtime::{LoadedComponent, PackageSpec, Runtime, RuntimeConfig};
use allama_store::SledStore;
use allama_store::audit::AuditLog;
use allama_store::secrets::Vault;

use crate::library::Library;
use crate::metrics::Metrics;
use crate::packages::{Shelf, grant_of};
use plans::ServerPlans;
use stores::{SledKv, WorkspaceAudit, WorkspaceSecrets};

/// Runs each step with its workspace's packages.
#[derive(Default)]
pub struct WorkspaceExecutor {
    by_workspace: RwLock<HashMap<String, Arc<RuntimeExecutor>>>,
}

impl WorkspaceExecutor {
    fn set(&self, ws: &str, exec: RuntimeExecutor) {
        self.by_workspace
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ws.to_string(), Arc::new(exec));
    }

    fn of(&self, playbook: &str) -> Arc<RuntimeExecutor> {
        let ws = plans::split(playbook).map_or("", |(ws, _)| ws);
        self.by_workspace
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ws)
            .cloned()
            // A workspace with no packages: every action is "not installed".
            .unwrap_or_else(|| Arc::new(RuntimeExecutor::new(Arc::default(), TapeMode::Off)))
    }
}

impl Executor for WorkspaceExecutor {
    fn invoke(&self, inv: Invocation) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        self.of(&inv.playbook).invoke(inv)
    }
}

/// What the runner is built from.
pub struct RunnerParts {
    /// The run store (also holds package files and playbook sources).
    pub store: Arc<SledStore>,
    /// The playbooks.
    pub library: Arc<Library>,
    /// The packages.
    pub shelf: Arc<Shelf>,
    /// Secrets.
    pub vault: Arc<Vault>,
    /// Audit chains.
    pub audit: Arc<AuditLog>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Which package signatures to trust.
    pub trust: TrustPolicy,
    /// The component runtime's settings.
    pub runtime: RuntimeConfig,
}

/// Why the runner could not start or load a workspace's packages.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The runtime.
    #[error("runtime: {0}")]
    Runtime(String),
    /// The engine.
    #[error(transparent)]
    Engine(#[from] allama_engine::EngineError),
    /// The package store.
    #[error(transparent)]
    Shelf(#[from] crate::packages::ShelfError),
    /// sled.
    #[error("store: {0}")]
    Store(String),
}

/// The engine, and the packages each workspace runs with.
pub struct Runner {
    /// The engine.
    pub engine: Engine,
    /// Playbook versions.
    pub plans: Arc<ServerPlans>,
    executor: Arc<WorkspaceExecutor>,
    runtime: Runtime,
    parts: RunnerParts,
    kv: Arc<SledKv>,
    /// Compiled components by package file digest: a grant change does not recompile.
    components: Mutex<HashMap<String, Arc<LoadedComponent>>>,
    /// Each workspace's package manifests, for validating playbooks.
    manifests: RwLock<HashMap<String, Vec<Manifest>>>,
    /// Package loads are serialised: two grant changes in a row must not
    /// install their registries in the opposite order.
    loading: Mutex<()>,
}

impl Runner {
    /// Loads every workspace's packages, then starts the engine (which
    /// resumes every unfinished run).
    pub async fn start(
        parts: RunnerParts,
        workspaces: &[String],
    ) -> Result<Arc<Runner>, RunnerError> {
        let sink: Arc<dyn allama_runtime::audit::AuditSink> =
            Arc::new(allama_runtime::audit::NullAuditSink);
        let runtime = Runtime::new(parts.runtime.clone(), sink.clone())
            .or_else(|e| match e {
                // An unusable cache directory is not worth refusing to start.
                allama_runtime::RuntimeError::Cache { .. } => Runtime::new(
                    RuntimeConfig {
                        cache_dir: None,
                        ..parts.runtime.clone()
                    },
                    sink,
                ),
                e => Err(e),
            })
            .map_err(|e| RunnerError::Runtime(e.to_string()))?;
        let kv = Arc::new(
            SledKv::open(parts.store.db()).map_err(|e| RunnerError::Store(e.to_string()))?,
        );
        let executor = Arc::new(WorkspaceExecutor::default());
        let plans = Arc::new(ServerPlans::new(parts.library.clone(), parts.store.clone()));
        let store: Arc<dyn RunStore> = parts.store.clone();
        parts
            .metrics
            .resumed(store.active().map(|a| a.len()).unwrap_or(0));
        // Packages first: resumed runs need them.
        let loader = Loader {
            runtime: &runtime,
            parts: &parts,
            kv: &kv,
        };
        let mut components = HashMap::new();
        let mut manifests = HashMap::new();
        for ws in workspaces {
            let (exec, m) = loader.load(ws, &mut components)?;
            executor.set(ws, exec);
            manifests.insert(ws.clone(), m);
        }
        let engine = Engine::start(
            store,
            executor.clone(),
            plans.clone(),
            EngineConfig::default(),
        )
        .await?;
        let runner = Arc::new(Runner {
            engine,
            plans,
            executor,
            runtime,
            parts,
            kv,
            components: Mutex::new(components),
            manifests: RwLock::new(manifests),
            loading: Mutex::new(()),
        });
        let mut updates = runner.engine.subscribe();
        let metrics = runner.parts.metrics.clone();
        tokio::spawn(async move {
            loop {
                match updates.recv().await {
                    Ok(u) => metrics.update(&u),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => metrics.missed(n),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(runner)
    }

    /// Rebuilds a workspace's packages after an install, grant, revoke or
    /// removal. Blocking (it may compile a component): call it off the
    /// async workers. Steps already running finish with what they had.
    pub fn reload(&self, ws: &str) -> Result<(), RunnerError> {
        let _one = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        let loader = Loader {
            runtime: &self.runtime,
            parts: &self.parts,
            kv: &self.kv,
        };
        let mut components =
            std::mem::take(&mut *self.components.lock().unwrap_or_else(|e| e.into_inner()));
        let loaded = loader.load(ws, &mut components);
        *self.components.lock().unwrap_or_else(|e| e.into_inner()) = components;
        let (exec, manifests) = loaded?;
        self.executor.set(ws, exec);
        self.manifests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ws.to_string(), manifests);
        Ok(())
    }

    /// The trust policy packages are verified against.
    pub fn trust(&self) -> &TrustPolicy {
        &self.parts.trust
    }

    /// Stops taking work once everything accepted is durable; runs in
    /// flight resume at the next start.
    pub async fn shutdown(&self) {
        self.engine.shutdown().await;
    }

    /// What validating a playbook of `ws` knows: its installed packages'
    /// actions and its playbooks' inputs.
    pub fn catalog(&self, ws: &str) -> Result<Registry, RunnerError> {
        let mut registry = Registry::new();
        if let Some(ms) = self
            .manifests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ws)
        {
            for m in ms {
                registry.install(Installed {
                    manifest: m.clone(),
                    package: None,
                });
            }
        }
        let playbooks = self
            .parts
            .library
            .list(ws)
            .map_err(|e| RunnerError::Store(e.to_string()))?;
        for p in playbooks {
            if let Some(plan) = self.plans.current(ws, &p.id) {
                registry.add_playbook(
                    &p.id,
                    PlaybookInfo {
                        inputs: plan.playbook.inputs.clone(),
                    },
                );
            }
        }
        Ok(registry)
    }
}

struct Loader<'a> {
    runtime: &'a Runtime,
    parts: &'a RunnerParts,
    kv: &'a Arc<SledKv>,
}

impl Loader<'_> {
    /// A workspace's executor and manifests. A package that no longer
    /// verifies or binds is left out of the executor (its steps fail with
    /// "not loaded") and logged; the others still load.
    fn load(
        &self,
        ws: &str,
        components: &mut HashMap<String, Arc<LoadedComponent>>,
    ) -> Result<(RuntimeExecutor, Vec<Manifest>), RunnerError> {
        let p = self.parts;
        let mut registry = Registry::new();
        let mut manifests = Vec::new();
        let secrets = Arc::new(WorkspaceSecrets {
            vault: p.vault.clone(),
            workspace: ws.to_string(),
        });
        let audit = Arc::new(WorkspaceAudit {
            log: p.audit.clone(),
            store: p.store.clone(),
            workspace: ws.to_string(),
            metrics: p.metrics.clone(),
        });
        for record in p.shelf.list(ws)? {
            let pkg = match p.shelf.open_stored(p.store.as_ref(), &p.trust, &record) {
                Ok(pkg) => pkg,
                Err(e) => {
                    tracing::error!(workspace = ws, package = %record.name, error = %e, "package left out");
                    continue;
                }
            };
            manifests.push(pkg.manifest.clone());
            let bound = if record.granted {
                self.bind(ws, &record, &pkg, components, &secrets, &audit)
                    .map_err(|e| {
                        tracing::error!(workspace = ws, package = %record.name, error = %e, "package not loaded");
                    })
                    .ok()
            } else {
                None
            };
            registry.install(Installed {
                manifest: pkg.manifest,
                package: bound.map(Arc::new),
            });
        }
        Ok((
            RuntimeExecutor::new(Arc::new(registry), TapeMode::Off),
            manifests,
        ))
    }

    fn bind(
        &self,
        ws: &str,
        record: &crate::packages::PackageRecord,
        pkg: &allama_package::Package,
        components: &mut HashMap<String, Arc<LoadedComponent>>,
        secrets: &Arc<WorkspaceSecrets>,
        audit: &Arc<WorkspaceAudit>,
    ) -> Result<allama_runtime::Package, String> {
        let narrowing = grant_of(record).map_err(|e| e.to_string())?;
        let grant = pkg
            .effective_grant(narrowing.as_ref())
            .map_err(|e| e.to_string())?;
        let component = match components.get(&record.digest) {
            Some(c) => c.clone(),
            None => {
                let c = self
                    .runtime
                    .load(&record.name, pkg.component())
                    .map_err(|e| e.to_string())?;
                components.insert(record.digest.clone(), c.clone());
                c
            }
        };
        let bound = self
            .runtime
            .bind(
                &component,
                PackageSpec {
                    name: record.name.clone(),
                    grant,
                    secrets: secrets.clone(),
                    kv: self.kv.clone(),
                    kv_namespace: Some(plans::qualify(ws, &record.name)),
                },
            )
            .map_err(|e| e.to_string())?;
        Ok(bound.with_audit(audit.clone()))
    }
}
