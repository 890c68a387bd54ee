//! The Allama server: the HTTP API over the engine, with workspaces, users
//! and roles, encrypted secrets and the audit chain.
//!
//! - [`accounts`]: users, roles per workspace, hashed tokens, workspaces.
//! - [`app`]: shared state; the extractors every route uses (the
//!   authenticated [`app::Caller`], a JSON [`app::Body`] whose errors name
//!   the field); the failed-authentication limiter.
//! - [`routes`]: the `/api/v1` handlers and the generated OpenAPI document.
//! - [`error`]: the one error shape, `{"error": {"code", "message", "field"?}}`.
//! - [`webhooks`]: signature checks for triggers (Standard Webhooks, GitHub, Slack).
//!
//! Storage (`allama-store`): one sled database per data directory holds
//! run histories, the audit chains, secrets (AES-256-GCM) and accounts;
//! its key layout is in `docs/server.md`.

pub mod accounts;
pub mod app;
pub mod config;
pub mod demo;
pub mod error;
pub mod library;
pub mod metrics;
pub mod packages;
pub mod routes;
pub mod runner;
pub mod tls;
pub mod triggers;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use allama_store::SledStore;
use allama_store::audit::{AuditEntry, AuditLog};
use allama_store::secrets::{MASTER_KEY_ENV, MasterKeys, Vault};

use crate::accounts::{Accounts, Role};
use crate::app::{AppState, FailureLimiter, SYSTEM_CHAIN, Shared};

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The data directory (created if missing).
    pub data_dir: PathBuf,
    /// The master key file; default `DATA_DIR/master.key`. Ignored when
    /// `ALLAMA_MASTER_KEY` is set.
    pub master_key: Option<PathBuf>,
    /// Failed authentications allowed per client address per minute.
    pub auth_failures_per_minute: u32,
    /// Which package signatures to trust (default: unsigned packages are
    /// accepted, signatures present must be valid).
    pub trust: allama_package::TrustPolicy,
    /// Host names pinned to addresses for outbound HTTP, like `/etc/hosts`.
    pub pinned_hosts: HashMap<String, Vec<SocketAddr>>,
    /// Extra certificate authorities (PEM) for outbound HTTPS.
    pub extra_root_certs: Vec<String>,
    /// Most steps running at once.
    pub max_concurrent_steps: u32,
    /// How long webhook delivery ids are remembered (a delivery sent again
    /// within it starts no second run). Default 24 hours.
    pub webhook_id_retention_ms: u64,
    /// Whether schedules start runs (on by default; tests drive the
    /// scheduler by hand).
    pub run_scheduler: bool,
}

impl ServerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            master_key: None,
            auth_failures_per_minute: 10,
            trust: allama_package::TrustPolicy::permissive(),
            pinned_hosts: HashMap::new(),
            extra_root_certs: Vec::new(),
            max_concurrent_steps: 1000,
            webhook_id_retention_ms: 24 * 3600 * 1000,
            run_scheduler: true,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory.
    #[error("data directory {dir}: {message}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        message: String,
    },
    /// The master key.
    #[error(transparent)]
    Key(#[from] allama_store::secrets::SecretError),
    /// Accounts.
    #[error(transparent)]
    Accounts(#[from] accounts::AccountError),
    /// The audit log.
    #[error(transparent)]
    Audit(#[from] allama_store::audit::AuditError),
    /// The engine or the runtime.
    #[error(transparent)]
    Runner(#[from] runner::RunnerError),
}

/// An opened server: its state, and on a first start the admin token.
pub struct Opened {
    /// The state the router serves.
    pub state: Shared,
    /// The run store (the same sled database).
    pub store: Arc<SledStore>,
    /// On a fresh data directory: the admin's token, to print once.
    pub first_admin_token: Option<String>,
}

impl Opened {
    /// Stops the engine once what it accepted is durable, then syncs the
    /// store: what a graceful stop does after the last request.
    pub async fn close(self) -> Result<(), StartError> {
        self.state.runner.shutdown().await;
        self.store.sync_now().map_err(|e| StartError::DataDir {
            dir: self.store.dir().to_path_buf(),
            message: format!("the final sync: {e}"),
        })
    }
}

/// The user and workspace a fresh data directory starts with.
pub const FIRST_ADMIN: &str = "admin";
/// The workspace a fresh data directory starts with.
pub const FIRST_WORKSPACE: &str = "default";

/// Opens (or on first start, creates) the data directory: store, master
/// key, accounts. A fresh directory gets workspace `default` and user
/// `admin` (system administrator, admin of `default`) with a token.
pub async fn open(config: &ServerConfig) -> Result<Opened, StartError> {
    let dir = &config.data_dir;
    let data_err = |m: String| StartError::DataDir {
        dir: dir.clone(),
        message: m,
    };
    std::fs::create_dir_all(dir).map_err(|e| data_err(e.to_string()))?;
    let store = Arc::new(SledStore::open(dir).map_err(|e| data_err(e.to_string()))?);
    let db = store.db();
    let accounts = Accounts::open(db)?;
    let keys = match std::env::var(MASTER_KEY_ENV) {
        Ok(v) => MasterKeys::from_env_value(&v)?,
        Err(_) => {
            let path = config
                .master_key
                .clone()
                .unwrap_or_else(|| dir.join("master.key"));
            // A new key is made only for a new data directory: for one that
            // holds data, a missing key file is a mistake (a wrong path), and
            // a fresh key would leave every secret undecryptable.
            if !path.exists() && !accounts.is_empty() {
                return Err(data_err(format!(
                    "the master key file {} is missing, but this data directory already holds data encrypted under a master key; give the right --master-key, or restore the file",
                    path.display()
                )));
            }
            MasterKeys::load_or_create(&path)?
        }
    };
    let library = Arc::new(library::Library::open(db).map_err(|e| data_err(e.to_string()))?);
    let shelf = Arc::new(packages::Shelf::open(db).map_err(|e| data_err(e.to_string()))?);
    // Heads written before each sync, not with every record.
    let audit = AuditLog::open_for(&store)?;
    let vault = Arc::new(Vault::open(db, keys)?);
    let metrics = Arc::new(metrics::Metrics::new());
    let workspaces: Vec<String> = accounts.workspaces()?.into_iter().map(|w| w.name).collect();
    let runner = runner::Runner::start(
        runner::RunnerParts {
            store: store.clone(),
            library: library.clone(),
            shelf: shelf.clone(),
            vault: vault.clone(),
            audit: audit.clone(),
            metrics: metrics.clone(),
            trust: config.trust.clone(),
            runtime: allama_runtime::RuntimeConfig {
                max_concurrent_steps: config.max_concurrent_steps,
                cache_dir: Some(dir.join("cache")),
                pinned_hosts: config.pinned_hosts.clone(),
                extra_root_certs: config.extra_root_certs.clone(),
                ..allama_runtime::RuntimeConfig::default()
            },
        },
        &workspaces,
    )
    .await?;
    let state = Arc::new(AppState {
        accounts,
        audit,
        vault,
        library,
        shelf,
        runner,
        metrics,
        deliveries: Arc::new(
            triggers::deliveries::Deliveries::open(db, config.webhook_id_retention_ms)
                .map_err(|e| data_err(e.to_string()))?,
        ),
        scheduler: triggers::schedules::Scheduler::open(db).map_err(|e| data_err(e.to_string()))?,
        store: store.clone(),
        failures: FailureLimiter::new(config.auth_failures_per_minute),
    });
    if config.run_scheduler {
        triggers::schedules::spawn(&state);
    }
    let mut first_admin_token = None;
    if state.accounts.is_empty() {
        state.accounts.create_workspace(FIRST_WORKSPACE, "system")?;
        state.accounts.create_user(
            FIRST_ADMIN,
            BTreeMap::from([(FIRST_WORKSPACE.to_string(), Role::Admin)]),
            true,
        )?;
        let (token, info) =
            state
                .accounts
                .issue_token(FIRST_ADMIN, "created at first start", None)?;
        state.audit(
            SYSTEM_CHAIN,
            AuditEntry {
                actor: "system".into(),
                action: "server.initialise".into(),
                target: dir.display().to_string(),
                denied: false,
                detail: serde_json::json!({ "user": FIRST_ADMIN, "workspace": FIRST_WORKSPACE, "token": info.id }),
            },
        );
        store
            .sync_now()
            .map_err(|e| data_err(format!("could not make the first start durable: {e}")))?;
        first_admin_token = Some(token);
    }
    Ok(Opened {
        state,
        store,
        first_admin_token,
    })
}

/// Serves the API on `listener` until `shutdown` resolves; requests in
/// flight are finished first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes::router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<app::ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// [`serve`] over TLS 1.3 (see [`tls`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = routes::router(state);
    axum::serve(
        tls::TlsListener::new(listener, config)?,
        app.into_make_service_with_connect_info::<app::ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
