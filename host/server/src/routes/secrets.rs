//! Secrets of a workspace: set, list names, delete. Values are never returned.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use allama_store::audit::AuditEntry;
use allama_store::secrets::SecretInfo;

use crate::accounts::Permission;
use crate::app::{Body, Caller, PathParams, Shared};
use crate::error::{ApiError, ErrorBody};

/// A secret's value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The value (UTF-8, at most 64 KiB).
    pub value: String,
}

/// A secret's name and date, as listed.
#[derive(serde::Serialize, ToSchema)]
pub struct SecretListing {
    /// The name.
    pub name: String,
    /// When it was last set (ms since the epoch).
    pub updated_at: u64,
}

impl From<SecretInfo> for SecretListing {
    fn from(s: SecretInfo) -> Self {
        Self {
            name: s.name,
            updated_at: s.updated_at,
        }
    }
}

/// Sets a secret (workspace admins).
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/secrets/{name}", tag = "secrets",
    request_body = SecretValue,
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, name)): PathParams<(String, String)>,
    Body(req): Body<SecretValue>,
) -> Result<StatusCode, ApiError> {
    caller.require(&workspace, Permission::Administer)?;
    state.vault.set(&workspace, &name, req.value.as_bytes())?;
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "secret.set".into(),
            target: name,
            denied: false,
            detail: serde_json::Value::Null,
        },
    );
    state.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The workspace's secret names (editors and admins).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/secrets", tag = "secrets",
    params(("workspace" = String, Path)),
    responses((status = 200, body = Vec<SecretListing>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
) -> Result<Json<Vec<SecretListing>>, ApiError> {
    caller.require(&workspace, Permission::Edit)?;
    Ok(Json(
        state
            .vault
            .list(&workspace)?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Deletes a secret (workspace admins).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/secrets/{name}", tag = "secrets",
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, name)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(&workspace, Permission::Administer)?;
    if !state.vault.delete(&workspace, &name)? {
        return Err(ApiError::not_found(format!(
            "no secret `{}` in `{workspace}`",
            crate::app::clip(&name)
        )));
    }
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "secret.delete".into(),
            target: name,
            denied: false,
            detail: serde_json::Value::Null,
        },
    );
    state.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a master key rotation did.
#[derive(serde::Serialize, ToSchema)]
pub struct RotationReport {
    /// The new key's id.
    pub kid: String,
    /// Secrets re-encrypted under it.
    pub reencrypted: usize,
    /// Key ids removed from the key file.
    pub retired: Vec<String>,
}

/// Re-encrypts every secret under a new master key while the server runs
/// (system administrators). `allama secrets rotate-key` calls this.
#[utoipa::path(post, path = "/api/v1/admin/rotate-key", tag = "secrets",
    responses((status = 200, body = RotationReport), (status = 403, body = ErrorBody)))]
pub async fn rotate_key(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<RotationReport>, ApiError> {
    caller.require_system_admin()?;
    let st = state.clone();
    let rotated = tokio::task::spawn_blocking(move || {
        st.vault
            .rotate(&|| st.store.sync_now().map_err(|e| e.to_string()))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e {
        allama_store::secrets::SecretError::KeyFile { .. } => ApiError::conflict(e.to_string()),
        other => ApiError::from(other),
    })?;
    state.audit(
        crate::app::SYSTEM_CHAIN,
        AuditEntry {
            actor: caller.actor(),
            action: "secret.rotate_key".into(),
            target: rotated.kid.clone(),
            denied: false,
            detail: serde_json::json!({ "reencrypted": rotated.reencrypted, "retired": rotated.retired }),
        },
    );
    state.commit().await?;
    Ok(Json(RotationReport {
        kid: rotated.kid,
        reencrypted: rotated.reencrypted,
        retired: rotated.retired,
    }))
}
