//! The server's shared state, the request extractors every route uses
//! (the caller, a JSON body), and the router.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use allama_store::audit::{AuditEntry, AuditLog};
use allama_store::secrets::Vault;

use crate::accounts::{Accounts, Permission, Role, User};
use crate::error::ApiError;

/// The audit chain that records what belongs to no workspace: failed
/// authentications, workspace and user creation. No workspace may take
/// this name.
pub const SYSTEM_CHAIN: &str = "system";

/// Everything a request handler can reach.
pub struct AppState {
    /// Users, tokens, workspaces.
    pub accounts: Accounts,
    /// The audit chains.
    pub audit: Arc<AuditLog>,
    /// Encrypted secrets.
    pub vault: Arc<Vault>,
    /// Playbooks and their versions.
    pub library: Arc<crate::library::Library>,
    /// Installed packages and their grants.
    pub shelf: Arc<crate::packages::Shelf>,
    /// The engine and each workspace's packages.
    pub runner: Arc<crate::runner::Runner>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Webhook delivery ids seen.
    pub deliveries: Arc<crate::triggers::deliveries::Deliveries>,
    /// Schedules' last occurrences.
    pub scheduler: crate::triggers::schedules::Scheduler,
    /// The run store (histories, blobs: playbook sources live there).
    pub store: std::sync::Arc<allama_store::SledStore>,
    /// Failed authentications by client address.
    pub(crate) failures: FailureLimiter,
}

impl AppState {
    /// Appends one audit record. An audit write that fails is logged: the
    /// action it records has already happened and is not undone.
    pub fn audit(&self, workspace: &str, entry: AuditEntry) {
        if let Err(e) = self.audit.append(workspace, std::slice::from_ref(&entry)) {
            tracing::error!(workspace, action = entry.action, error = %e, "could not write an audit record");
        }
        // Durable within the periodic sync even if no commit follows.
        self.store.mark_dirty();
    }

    /// Makes everything written so far durable (one group commit shared
    /// with the engine). Every mutating route awaits this before it answers,
    /// so what was acknowledged survives `kill -9` and power loss.
    pub async fn commit(&self) -> Result<(), ApiError> {
        allama_engine::RunStore::commit(self.store.as_ref())
            .await
            .map_err(ApiError::internal)
    }
}

/// Shared state, as handlers take it.
pub type Shared = Arc<AppState>;

/// Failed authentications per client address, in a sliding minute. Only
/// failures count, so a busy integration with a good token is never slowed.
pub(crate) struct FailureLimiter {
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailureLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must wait, if it failed too often.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (since, n) = seen.get(&ip)?;
        let window = Duration::from_secs(60);
        let age = since.elapsed();
        (*n >= self.per_minute && age < window).then(|| window - age)
    }

    pub(crate) fn failed(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: an attacker with many addresses cannot grow this for ever.
        if seen.len() >= 100_000 {
            seen.retain(|_, (t, _)| t.elapsed() < Duration::from_secs(60));
            // Still full of recent addresses: forget half rather than grow.
            if seen.len() >= 100_000 {
                let mut n = 0;
                seen.retain(|_, _| {
                    n += 1;
                    n % 2 == 0
                });
            }
        }
        let e = seen.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= Duration::from_secs(60) {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

/// The client's address, for the failed-authentication limit and the audit
/// log, over plain TCP or TLS.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// The address failures are counted under: IPv4 as is, IPv6 by its /64
/// (one host usually holds a whole /64).
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Its user.
    pub user: User,
    /// The token's public id.
    pub token_id: String,
    /// When the token in use expires, if it does.
    pub token_expires_at: Option<u64>,
}

impl Caller {
    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user.name)
    }

    /// The caller's role in `workspace`. A workspace the caller has no role
    /// in is reported as not found, so its existence does not leak.
    pub fn role_in(&self, workspace: &str) -> Result<Role, ApiError> {
        self.user
            .roles
            .get(workspace)
            .copied()
            .ok_or_else(|| ApiError::not_found(format!("no workspace `{}`", clip(workspace))))
    }

    /// Checks that the caller may do `p` in `workspace`.
    pub fn require(&self, workspace: &str, p: Permission) -> Result<Role, ApiError> {
        let role = self.role_in(workspace)?;
        if role.allows(p) {
            Ok(role)
        } else {
            Err(ApiError::forbidden(format!(
                "your role in `{workspace}` is {}, which may not do this (it needs {})",
                role.as_str(),
                match p {
                    Permission::Read => "viewer",
                    Permission::Respond => "responder",
                    Permission::Edit => "editor",
                    Permission::Administer => "admin",
                }
            )))
        }
    }

    /// Checks that the caller is a system administrator.
    pub fn require_system_admin(&self) -> Result<(), ApiError> {
        if self.user.system_admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "only a system administrator may do this",
            ))
        }
    }
}

/// A value for messages: at most 80 characters, control characters escaped.
pub fn clip(s: &str) -> String {
    let out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        format!("{out}…")
    } else {
        out
    }
}

/// The client's address as the failure limit counts it (IPv6 by /64).
fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| limit_key(c.0.0.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The client's address, for routes that authenticate by other means
/// than a token (webhooks).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let ip = client_ip(parts);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        // A good token always passes, even from an address that failed too
        // often (many users may share one address behind a proxy).
        let refusal = match token {
            None => "no bearer token".to_string(),
            Some(t) => match state.accounts.authenticate(t).map_err(ApiError::from)? {
                Ok((user, info)) => {
                    return Ok(Caller {
                        user,
                        token_id: info.id,
                        token_expires_at: info.expires_at,
                    });
                }
                Err(r) => r.as_str().to_string(),
            },
        };
        let blocked = state.failures.blocked(ip);
        state.failures.failed(ip);
        if let Some(wait) = blocked {
            // Already audited as blocked: no record per further guess.
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many failed authentications from {ip}; try again in {} s",
                    wait.as_secs() + 1
                ),
            ));
        }
        state.audit(
            SYSTEM_CHAIN,
            AuditEntry {
                actor: "anonymous".into(),
                action: "auth.failed".into(),
                target: format!("{} {}", parts.method, clip(parts.uri.path())),
                denied: true,
                detail: serde_json::json!({ "reason": refusal, "client": ip.to_string() }),
            },
        );
        Err(ApiError::unauthorized())
    }
}

/// A JSON request body, parsed with the field at fault named on error.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the body is too large: {}", e.body_text()),
                    )
                } else {
                    ApiError::bad_request("bad_body", e.body_text())
                }
            })?;
        parse_json(&bytes).map(Body)
    }
}

/// Parses JSON, naming the path of the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (code, status) = if inner.is_data() {
            ("invalid", StatusCode::UNPROCESSABLE_ENTITY)
        } else {
            ("invalid_json", StatusCode::BAD_REQUEST)
        };
        let mut err = ApiError::new(status, code, inner.to_string());
        if path != "." {
            err = err.at(path);
        }
        err
    })
}

/// Path parameters, with the JSON error shape when they do not parse.
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))
    }
}

/// Query parameters, with the JSON error shape (and the parameter named)
/// when they do not parse.
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let field = e.path().to_string();
                let mut err = ApiError::invalid(format!("query: {}", e.into_inner()));
                if field != "." {
                    err = err.at(field);
                }
                err
            })
    }
}
