//! A workspace's audit log: query, verify, export.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use allama_store::audit::{AuditError, AuditQuery, AuditRecord, MAX_PAGE};

use crate::accounts::Permission;
use crate::app::{Caller, PathParams, QueryParams, Shared};
use crate::error::{ApiError, ErrorBody};

/// Filters and the page cursor.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Records after this seq (the previous page's `next`).
    #[serde(default)]
    pub after: u64,
    /// At most this many (1 to 1000; default 100).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only actions starting with this (`auth.`, `secret.`).
    #[serde(default)]
    pub action: Option<String>,
    /// Only this actor (`user:alice`).
    #[serde(default)]
    pub actor: Option<String>,
    /// Only denials.
    #[serde(default)]
    pub denied: bool,
}

/// One page of records.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// The records, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<AuditRecord>,
    /// The cursor for the next page, when there may be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// The verdict on a chain.
#[derive(Serialize, ToSchema)]
pub struct Verdict {
    /// Whether every link holds.
    pub ok: bool,
    /// How many records (when it holds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// The last record's hash, to note down elsewhere (when it holds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The first broken record (when it does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<u64>,
    /// What is wrong there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn query_of(p: &AuditParams) -> Result<AuditQuery, ApiError> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_PAGE}")).at("limit"));
    }
    Ok(AuditQuery {
        after: p.after,
        limit,
        action_prefix: p.action.clone(),
        actor: p.actor.clone(),
        denied_only: p.denied,
    })
}

/// Audit records of the workspace (workspace admins).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit", tag = "audit",
    params(("workspace" = String, Path), AuditParams),
    responses((status = 200, body = AuditPage), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn query(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
    QueryParams(params): QueryParams<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(&workspace, Permission::Administer)?;
    let q = query_of(&params)?;
    let records = state.audit.query(&workspace, &q)?;
    let next = (records.len() == q.limit)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(Json(AuditPage { records, next }))
}

/// Walks the workspace's chain and names the first broken link (workspace admins).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/verify", tag = "audit",
    params(("workspace" = String, Path)),
    responses((status = 200, body = Verdict), (status = 403, body = ErrorBody)))]
pub async fn verify(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
) -> Result<Json<Verdict>, ApiError> {
    caller.require(&workspace, Permission::Administer)?;
    Ok(Json(match state.audit.verify(&workspace) {
        Ok(v) => Verdict {
            ok: true,
            records: Some(v.records),
            head: Some(v.head),
            broken_at: None,
            reason: None,
        },
        Err(AuditError::Broken(b)) => Verdict {
            ok: false,
            records: None,
            head: None,
            broken_at: Some(b.seq),
            reason: Some(b.reason),
        },
        Err(e) => return Err(e.into()),
    }))
}

/// Every record of the workspace as JSON lines, with hashes (workspace admins).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/audit/export", tag = "audit",
    params(("workspace" = String, Path)),
    responses((status = 200, content_type = "application/x-ndjson", body = String), (status = 403, body = ErrorBody)))]
pub async fn export(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
) -> Result<Response, ApiError> {
    caller.require(&workspace, Permission::Administer)?;
    let mut out = String::new();
    let mut after = 0;
    loop {
        let page = state.audit.query(
            &workspace,
            &AuditQuery {
                after,
                limit: MAX_PAGE,
                ..AuditQuery::default()
            },
        )?;
        for r in &page {
            out.push_str(&serde_json::to_string(r).map_err(ApiError::internal)?);
            out.push('\n');
        }
        match page.last() {
            Some(r) if page.len() == MAX_PAGE => after = r.seq,
            _ => break,
        }
    }
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        out,
    )
        .into_response())
}
