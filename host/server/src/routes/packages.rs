//! Packages of a workspace: upload (verified against the trust policy),
//! list, inspect, grant (as requested or narrower), revoke, remove.
//! Every change reloads the workspace's packages; steps already running
//! finish with what they started with.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use allama_store::audit::AuditEntry;

use crate::accounts::Permission;
use crate::app::{Body, Caller, PathParams, QueryParams, Shared, clip};
use crate::error::{ApiError, ErrorBody};
use crate::packages::{GrantRefused, PackageRecord, ShelfError, grant_of};

/// Largest package file accepted (CPython in Wasm is about 40 MiB).
pub const MAX_PACKAGE_BYTES: usize = 128 << 20;

/// A package and, in plain words, what it asks for and what it may do.
#[derive(Serialize, ToSchema)]
pub struct PackageDetail {
    /// The record.
    #[serde(flatten)]
    pub record: PackageRecord,
    /// Its actions.
    pub action_details: Vec<ActionDetail>,
    /// What its manifest requests, one sentence per capability.
    pub requests: Vec<String>,
    /// What it may do now (empty while it is not granted).
    pub may: Vec<String>,
}

/// One action of a package.
#[derive(Serialize, ToSchema)]
pub struct ActionDetail {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
}

fn shelf_error(e: ShelfError) -> ApiError {
    match e {
        ShelfError::Package(p) => ApiError::invalid(p.to_string()).at("package"),
        ShelfError::Workspace(w) => ApiError::not_found(w.to_string()),
        e @ ShelfError::Store(_) => ApiError::internal(e),
    }
}

fn detail(state: &Shared, record: PackageRecord) -> Result<PackageDetail, ApiError> {
    let pkg = state
        .shelf
        .open_stored(state.store.as_ref(), state.runner.trust(), &record)
        .map_err(shelf_error)?;
    let requests = allama_package::inspect::capabilities(&pkg.manifest.capabilities);
    let may = if record.granted {
        let narrowing = grant_of(&record).map_err(ApiError::internal)?;
        let grant = pkg
            .effective_grant(narrowing.as_ref())
            .map_err(ApiError::internal)?;
        allama_package::inspect::capabilities(&grant)
    } else {
        Vec::new()
    };
    Ok(PackageDetail {
        action_details: pkg
            .manifest
            .actions
            .iter()
            .map(|a| ActionDetail {
                name: a.name.clone(),
                description: a.description.clone(),
            })
            .collect(),
        record,
        requests,
        may,
    })
}

/// Reloads the workspace's packages into its runner.
pub(crate) async fn reload(state: &Shared, ws: &str) -> Result<(), ApiError> {
    let (runner, ws) = (state.runner.clone(), ws.to_string());
    tokio::task::spawn_blocking(move || runner.reload(&ws))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// How to install.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// Grant what the manifest requests at once (otherwise it is installed pending).
    #[serde(default)]
    pub grant: Option<bool>,
}

/// Installs a package file (`.allama`, as `allama package build` writes it) (editors;
/// `?grant=true` needs an admin).
/// A new version of an installed package replaces it; it keeps its grant
/// only if it requests exactly what the old version did.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/packages", tag = "packages",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("workspace" = String, Path), UploadParams),
    responses((status = 201, body = PackageDetail), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
    QueryParams(q): QueryParams<UploadParams>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<PackageDetail>), ApiError> {
    caller.require(&workspace, Permission::Edit)?;
    if q.grant.unwrap_or(false) {
        caller.require(&workspace, Permission::Administer)?;
    }
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the package file as the body with `Content-Type: application/octet-stream`",
        ));
    }
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "a package file may be at most {} MiB",
                    MAX_PACKAGE_BYTES >> 20
                ),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    let mut record = install(&state, &workspace, bytes.to_vec(), &caller.actor()).await?;
    if q.grant.unwrap_or(false) && !record.granted {
        record = grant_package(&state, &caller.actor(), &workspace, &record.name, None).await?;
    }
    reload(&state, &workspace).await?;
    state.commit().await?;
    Ok((StatusCode::CREATED, Json(detail(&state, record)?)))
}

/// Installs a package file in `ws` (pending unless the replaced version's
/// grant carries over), audited as done by `actor`.
pub(crate) async fn install(
    state: &Shared,
    ws: &str,
    bytes: Vec<u8>,
    actor: &str,
) -> Result<PackageRecord, ApiError> {
    let (shelf, store, trust, w, by) = (
        state.shelf.clone(),
        state.store.clone(),
        state.runner.trust().clone(),
        ws.to_string(),
        actor.to_string(),
    );
    let installed =
        tokio::task::spawn_blocking(move || shelf.install(store.as_ref(), &trust, &w, &bytes, &by))
            .await
            .map_err(ApiError::internal)?
            .map_err(shelf_error)?;
    let record = installed.record;
    state.audit(
        ws,
        AuditEntry {
            actor: actor.to_string(),
            action: "package.install".into(),
            target: record.name.clone(),
            denied: false,
            detail: serde_json::json!({
                "version": record.version,
                "digest": record.digest,
                "replaced": installed.replaced.map(|r| r.version),
                "kept_grant": record.granted,
            }),
        },
    );
    Ok(record)
}

/// Grants a package what it requests (`grant` `None`) or a narrower grant,
/// audited as done by `actor`.
pub(crate) async fn grant_package(
    state: &Shared,
    actor: &str,
    ws: &str,
    name: &str,
    grant: Option<String>,
) -> Result<PackageRecord, ApiError> {
    let r = state
        .shelf
        .grant(
            state.store.as_ref(),
            state.runner.trust(),
            ws,
            name,
            grant.clone(),
            actor,
        )
        .map_err(|e| match e {
            GrantRefused::Invalid(m) => ApiError::invalid(m).at("grant"),
            GrantRefused::Shelf(ShelfError::Package(p)) => {
                ApiError::invalid(p.to_string()).at("grant")
            }
            GrantRefused::Shelf(s) => shelf_error(s),
        })?
        .ok_or_else(|| not_found(ws, name))?;
    state.audit(
        ws,
        AuditEntry {
            actor: actor.to_string(),
            action: "package.grant".into(),
            target: name.to_string(),
            denied: false,
            detail: serde_json::json!({ "version": r.version, "narrowed": grant }),
        },
    );
    Ok(r)
}

fn not_found(ws: &str, name: &str) -> ApiError {
    ApiError::not_found(format!("no package `{}` in `{ws}`", clip(name)))
}

/// The workspace's packages.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/packages", tag = "packages",
    params(("workspace" = String, Path)),
    responses((status = 200, body = Vec<PackageRecord>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
) -> Result<Json<Vec<PackageRecord>>, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    Ok(Json(state.shelf.list(&workspace).map_err(shelf_error)?))
}

/// A package: its actions, what it requests and what it may do.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/packages/{name}", tag = "packages",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = PackageDetail), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, name)): PathParams<(String, String)>,
) -> Result<Json<PackageDetail>, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    let r = state
        .shelf
        .get(&workspace, &name)
        .map_err(shelf_error)?
        .ok_or_else(|| not_found(&workspace, &name))?;
    Ok(Json(detail(&state, r)?))
}

/// What to grant.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// A grant (TOML, as `allama package grant` writes it) that narrows what
    /// the package requests; absent: grant exactly what it requests.
    #[serde(default)]
    pub grant: Option<String>,
}

/// Grants a package what it requests, or a narrower grant (admins).
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/packages/{name}/grant", tag = "packages",
    request_body = GrantBody, params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = PackageDetail), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn grant(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, name)): PathParams<(String, String)>,
    Body(body): Body<GrantBody>,
) -> Result<Json<PackageDetail>, ApiError> {
    // A grant decides which hosts get which secrets: a workspace admin's call.
    caller.require(&workspace, Permission::Administer)?;
    let r = grant_package(&state, &caller.actor(), &workspace, &name, body.grant).await?;
    reload(&state, &workspace).await?;
    state.commit().await?;
    Ok(Json(detail(&state, r)?))
}

/// Revokes a package's grant: it stays installed, and no step of it runs (editors).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/packages/{name}/grant", tag = "packages",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = PackageDetail), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, name)): PathParams<(String, String)>,
) -> Result<Json<PackageDetail>, ApiError> {
    caller.require(&workspace, Permission::Edit)?;
    let r = state
        .shelf
        .revoke(&workspace, &name, &caller.actor())
        .map_err(shelf_error)?
        .ok_or_else(|| not_found(&workspace, &name))?;
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "package.revoke".into(),
            target: name.clone(),
            denied: false,
            detail: serde_json::json!({ "version": r.version }),
        },
    );
    reload(&state, &workspace).await?;
    state.commit().await?;
    Ok(Json(detail(&state, r)?))
}

/// Removes a package (editors). Its kv data is kept for a reinstall.
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/packages/{name}", tag = "packages",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, name)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(&workspace, Permission::Edit)?;
    let r = state
        .shelf
        .remove(&workspace, &name)
        .map_err(shelf_error)?
        .ok_or_else(|| not_found(&workspace, &name))?;
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "package.remove".into(),
            target: name,
            denied: false,
            detail: serde_json::json!({ "version": r.version }),
        },
    );
    reload(&state, &workspace).await?;
    state.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
