//! The runtime: one wasmtime `Engine` with a pooling allocator, one `Linker`
//! with every capability, a compiled-code cache, an epoch ticker, and a
//! semaphore that keeps concurrent steps within the pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allama_grant::{Grant, Limits};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::audit::AuditSink;
use crate::bindings::ActionPre;
use crate::cache::{CacheOutcome, CodeCache};
use crate::capability::http::{Http, NameResolver, RateGovernor, SystemResolver};

use crate::capability::kv::{Kv, KvBackend};
use crate::capability::log::Log;
use crate::capability::secrets::{SecretStore, Secrets};
use crate::error::{LoadError, RuntimeError};
use crate::step::{self, StepData};

/// How the runtime is sized. The defaults suit one server on a small machine.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Most steps running at once (each holds one pool slot). Default 1000.
    pub max_concurrent_steps: u32,
    /// The most linear memory any grant may give a step. Default 1 GiB.
    pub max_memory_bytes: u64,
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances: the granularity of time limits. Default 5 ms.
    pub epoch_tick: Duration,
    /// Resolves names for outbound HTTP.
    pub resolver: Arc<dyn NameResolver>,
    /// Names the operator pins to fixed addresses (split-horizon DNS, an
    /// on-premises mirror of a vendor, a test peer), like `/etc/hosts`: they
    /// are not looked up, and because the operator vouches for them they may
    /// be private addresses. A port in the address replaces the URL's
    /// default port. Grants still decide whether a package may reach the name.
    pub pinned_hosts: std::collections::HashMap<String, Vec<std::net::SocketAddr>>,
    /// Extra certificate authorities (PEM) trusted for outbound HTTPS, beside
    /// the built-in web roots: an internal CA, a TLS-inspecting proxy.
    pub extra_root_certs: Vec<String>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_concurrent_steps: 1000,
            max_memory_bytes: 1 << 30,
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
            resolver: Arc::new(SystemResolver),
            pinned_hosts: Default::default(),
            extra_root_certs: Vec::new(),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StepData>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) audit: Arc<dyn AuditSink>,
    cache: Option<CodeCache>,
    governor: Arc<RateGovernor>,
    network: Arc<crate::capability::http::Network>,
    config: RuntimeConfig,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// The component runtime. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

/// A compiled, linked component, ready to be bound to grants.
pub struct LoadedComponent {
    /// Its name (file name or package), for messages.
    pub name: String,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    /// Whether it came from the cache.
    pub cache: CacheOutcome,
    /// Time to compile or load.
    pub load_time: Duration,
    pub(crate) pre: ActionPre<StepData>,
}

/// What a package runs with: its name, the operator's grant, and the stores
/// its capabilities read (a workspace's, on a server).
pub struct PackageSpec {
    /// Package name (also the kv namespace unless one is given).
    pub name: String,
    /// The operator's grant.
    pub grant: Grant,
    /// Secret values.
    pub secrets: Arc<dyn SecretStore>,
    /// kv storage.
    pub kv: Arc<dyn KvBackend>,
    /// kv namespace; defaults to the package name.
    pub kv_namespace: Option<String>,
}

/// A component bound to a grant: what steps run.
pub struct Package {
    pub(crate) name: String,
    pub(crate) component: Arc<LoadedComponent>,
    pub(crate) limits: Limits,
    pub(crate) http: Arc<Http>,
    pub(crate) secrets: Arc<Secrets>,
    pub(crate) kv: Arc<Kv>,
    pub(crate) log: Arc<Log>,
    pub(crate) rt: Arc<Inner>,
    /// Where this binding's audit records go, when not the runtime's sink
    /// (a server sends each workspace's to its own chain).
    pub(crate) audit: Option<Arc<dyn AuditSink>>,
}

impl Package {
    /// The package name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The limits steps run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// Sends this binding's audit records to `sink` instead of the
    /// runtime's: the same component bound for two tenants keeps their
    /// records apart.
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }
}

/// Core module instances one component may create.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 16;
/// Linear memories one component may create (Rust: 1–2, Python: 1).
const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables one component may create (Python: 2).
const MAX_TABLES_PER_COMPONENT: u32 = 8;

fn pool_config(config: &RuntimeConfig) -> PoolingAllocationConfig {
    let n = config.max_concurrent_steps;
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component is a few core instances (the program, the WASI
    // adapter, shims); a Python one (componentize-py) is 14: CPython, libc and
    // its emulation libraries, the adapter and shims. Either has up to two
    // memories and a few tables. The core-instance total is only a counter
    // (instance metadata is allocated on demand), so it is sized for every
    // admitted step to be the largest component allowed. Every total is n ×
    // the per-component maximum, so hostile steps can never use up slots
    // that other admitted steps need; a component wanting more fails to
    // instantiate with a typed error.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
        .total_memories(n.saturating_mul(MAX_MEMORIES_PER_COMPONENT))
        .total_tables(n.saturating_mul(MAX_TABLES_PER_COMPONENT))
        .total_stacks(n)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_memory_size(config.max_memory_bytes as usize)
        // Reset only what was touched, and keep a small resident prefix:
        // the measured difference between ~35 µs and ~10 µs per step.
        .linear_memory_keep_resident(4 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    pool
}

impl Runtime {
    /// Start a runtime. Reserves the pool's address space up front.
    pub fn new(config: RuntimeConfig, audit: Arc<dyn AuditSink>) -> Result<Self, RuntimeError> {
        let mut wcfg = Config::new();
        wcfg.epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(&config)));
        let engine = Engine::new(&wcfg).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        step::add_to_linker(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let cache = match &config.cache_dir {
            Some(dir) => {
                Some(
                    CodeCache::open(dir, &engine).map_err(|source| RuntimeError::Cache {
                        path: dir.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let network = Arc::new(
            crate::capability::http::Network::new(
                config.resolver.clone(),
                &config.pinned_hosts,
                &config.extra_root_certs,
            )
            .map_err(RuntimeError::Tls)?,
        );
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop_ticker.clone();
            let tick = config.epoch_tick;
            // A plain thread, not a task: it must tick even when every
            // executor thread is busy running Wasm.
            std::thread::Builder::new()
                .name("allama-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| {
                    RuntimeError::Engine(format!("could not start the epoch thread: {e}"))
                })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                permits: Arc::new(Semaphore::new(config.max_concurrent_steps as usize)),
                audit,
                cache,
                governor: Arc::new(RateGovernor::new()),
                network,
                config,
                stop_ticker,
            }),
        })
    }

    /// The wasmtime engine (benchmarks compare against it bare).
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compile (or load from cache) and link a component.
    pub fn load(&self, name: &str, wasm: &[u8]) -> Result<Arc<LoadedComponent>, LoadError> {
        let started = Instant::now();
        let digest = hex::encode(Sha256::digest(wasm));
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            name: name.to_string(),
            message: format!("{e:#}"),
        };
        let (component, cache) = match &self.inner.cache {
            Some(c) => c
                .load(&self.inner.engine, wasm, &digest)
                .map_err(compile_err)?,
            None => (
                Component::new(&self.inner.engine, wasm).map_err(compile_err)?,
                CacheOutcome::Uncached,
            ),
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                name: name.to_string(),
                message: format!("{e:#}"),
            })?;
        let pre = ActionPre::new(pre).map_err(|e| LoadError::NotAnAction {
            name: name.to_string(),
            message: format!("{e:#}"),
        })?;
        Ok(Arc::new(LoadedComponent {
            name: name.to_string(),
            digest,
            cache,
            load_time: started.elapsed(),
            pre,
        }))
    }

    /// [`Runtime::load`] from a file.
    pub fn load_file(&self, path: &Path) -> Result<Arc<LoadedComponent>, LoadError> {
        let wasm = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        self.load(&name, &wasm)
    }

    /// Bind a component to a package's grant: every capability is configured
    /// here, once, so a step only looks things up.
    pub fn bind(
        &self,
        component: &Arc<LoadedComponent>,
        spec: PackageSpec,
    ) -> Result<Package, LoadError> {
        let grant = spec.grant;
        let refuse = |message: String| LoadError::Grant {
            package: spec.name.clone(),
            message,
        };
        if grant.limits.memory_bytes > self.inner.config.max_memory_bytes {
            return Err(refuse(format!(
                "limits.memory_mib = {} exceeds this runtime's maximum of {} MiB",
                grant.limits.memory_bytes >> 20,
                self.inner.config.max_memory_bytes >> 20
            )));
        }
        let secrets = Arc::new(Secrets::configure(&grant.secrets, spec.secrets));
        let http = Http::configure(
            &spec.name,
            &grant.http,
            secrets.clone(),
            self.inner.network.clone(),
            self.inner.governor.clone(),
        )
        .map_err(|e| refuse(e.to_string()))?;
        let namespace = spec.kv_namespace.unwrap_or_else(|| spec.name.clone());
        let kv = Kv::configure(grant.kv.as_ref(), spec.kv, namespace);
        Ok(Package {
            name: spec.name,
            component: component.clone(),
            limits: grant.limits.clone(),
            http: Arc::new(http),
            secrets,
            kv: Arc::new(kv),
            log: Arc::new(Log),
            rt: self.inner.clone(),
            audit: None,
        })
    }

    /// Steps that can start right now without waiting for a slot.
    pub fn available_slots(&self) -> usize {
        self.inner.permits.available_permits()
    }
}
