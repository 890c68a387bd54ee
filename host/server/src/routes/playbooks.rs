//! Playbooks of a workspace: create from YAML or JSON (each save is a new
//! version), list, show, versions, validate, enable/disable, diff versions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use allama_store::audit::AuditEntry;

use crate::accounts::Permission;
use crate::app::{Body, Caller, PathParams, QueryParams, Shared};
use crate::error::{ApiError, ErrorBody};
use crate::library::{PlaybookRecord, Stored};

/// A playbook's source.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The playbook, as YAML or JSON text.
    pub source: String,
    /// `yaml` (default) or `json`: how to read `source`.
    #[serde(default)]
    pub format: Format,
}

/// How a source is written.
#[derive(Deserialize, Default, Clone, Copy, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// YAML.
    #[default]
    Yaml,
    /// JSON.
    Json,
}

/// One problem in a source: where, and what.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// Where in the playbook (`steps[2].with.ip`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// A validation verdict.
#[derive(Serialize, ToSchema)]
pub struct Validation {
    /// Whether the playbook is valid.
    pub ok: bool,
    /// Its id, when it parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

/// Parses and validates a source against what the workspace has: its
/// packages' actions, its playbooks (for `playbook:` steps), and this
/// server's time zones (for schedules).
pub(crate) fn check(
    state: &Shared,
    ws: &str,
    src: &Source,
) -> Result<allama_playbook::Playbook, Vec<Problem>> {
    let file = match src.format {
        Format::Yaml => "playbook.yaml",
        Format::Json => "playbook.json",
    };
    let catalog = state.runner.catalog(ws).map_err(|e| {
        vec![Problem {
            line: 1,
            column: 1,
            path: String::new(),
            message: format!("the workspace's catalog could not be read: {e}"),
        }]
    })?;
    let pb = allama_playbook::validate(&src.source, file, &catalog).map_err(|d| {
        d.0.into_iter()
            .map(|d| Problem {
                line: d.line,
                column: d.col,
                path: d.path,
                message: d.message,
            })
            .collect::<Vec<_>>()
    })?;
    let problems: Vec<Problem> = crate::triggers::schedules::schedules_of(&pb)
        .into_iter()
        .filter_map(|(i, s)| s.err().map(|e| (i, e)))
        .map(|(i, e)| {
            // The parser keeps no position for a trigger: point at the
            // first line holding the value at fault.
            let needle = match &e {
                crate::triggers::schedules::ScheduleError::Cron { cron, .. } => cron.clone(),
                crate::triggers::schedules::ScheduleError::TimeZone(tz) => tz.clone(),
            };
            let line = src
                .source
                .lines()
                .position(|l| l.contains(&needle))
                .map_or(1, |n| n as u32 + 1);
            Problem {
                line,
                column: 1,
                path: format!("triggers[{i}].schedule"),
                message: e.to_string(),
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(pb)
    } else {
        Err(problems)
    }
}

fn invalid(problems: &[Problem]) -> ApiError {
    let first = &problems[0];
    let mut e = ApiError::invalid(format!(
        "the playbook is not valid: {}:{}: {}{}",
        first.line,
        first.column,
        first.message,
        if problems.len() > 1 {
            format!(
                " (and {} more problems: POST …/playbooks/validate lists all)",
                problems.len() - 1
            )
        } else {
            String::new()
        }
    ));
    e = e.at(if first.path.is_empty() {
        "source".to_string()
    } else {
        format!("source:{}", first.path)
    });
    e
}

/// Checks a playbook without storing it: syntax, shape, expressions, the step
/// graph, the `uses` of the workspace's packages, child playbooks, schedules.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/playbooks/validate", tag = "playbooks",
    request_body = Source, params(("workspace" = String, Path)),
    responses((status = 200, body = Validation), (status = 404, body = ErrorBody)))]
pub async fn validate(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
    Body(src): Body<Source>,
) -> Result<Json<Validation>, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    Ok(Json(match check(&state, &workspace, &src) {
        Ok(pb) => Validation {
            ok: true,
            id: Some(pb.id),
            problems: Vec::new(),
        },
        Err(problems) => Validation {
            ok: false,
            id: None,
            problems,
        },
    }))
}

/// Stores a checked playbook in `ws` and audits a new playbook or version
/// as done by `actor`; not yet durable (the caller commits).
pub(crate) fn store_checked(
    state: &Shared,
    ws: &str,
    pb: &allama_playbook::Playbook,
    source: &str,
    actor: &str,
) -> Result<Stored, ApiError> {
    let stored = state
        .library
        .store(state.store.as_ref(), ws, pb, source, actor)
        .map_err(ApiError::internal)?;
    let (r, action) = match &stored {
        Stored::Created(r) => (r, "playbook.create"),
        Stored::NewVersion(r) => (r, "playbook.version"),
        Stored::Unchanged(_) => return Ok(stored),
    };
    state.audit(
        ws,
        AuditEntry {
            actor: actor.to_string(),
            action: action.into(),
            target: r.id.clone(),
            denied: false,
            detail: serde_json::json!({ "version": r.versions.len(), "digest": r.current().map(|v| &v.digest) }),
        },
    );
    Ok(stored)
}

/// Stores a playbook: a new playbook, or a new version of the one with its id (editors).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/playbooks", tag = "playbooks",
    request_body = Source, params(("workspace" = String, Path)),
    responses((status = 201, body = PlaybookRecord), (status = 200, body = PlaybookRecord),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
    Body(src): Body<Source>,
) -> Result<(StatusCode, Json<PlaybookRecord>), ApiError> {
    caller.require(&workspace, Permission::Edit)?;
    let pb = check(&state, &workspace, &src).map_err(|p| invalid(&p))?;
    let (status, record) =
        match store_checked(&state, &workspace, &pb, &src.source, &caller.actor())? {
            Stored::Created(r) | Stored::NewVersion(r) => (StatusCode::CREATED, r),
            Stored::Unchanged(r) => return Ok((StatusCode::OK, Json(r))),
        };
    state.commit().await?;
    Ok((status, Json(record)))
}

/// The workspace's playbooks.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/playbooks", tag = "playbooks",
    params(("workspace" = String, Path)),
    responses((status = 200, body = Vec<PlaybookRecord>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
) -> Result<Json<Vec<PlaybookRecord>>, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    Ok(Json(
        state.library.list(&workspace).map_err(ApiError::internal)?,
    ))
}

fn record(state: &Shared, ws: &str, id: &str) -> Result<PlaybookRecord, ApiError> {
    state
        .library
        .get(ws, id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(format!("no playbook `{}` in `{ws}`", crate::app::clip(id)))
        })
}

/// A playbook with its current source.
#[derive(Serialize, ToSchema)]
pub struct PlaybookDetail {
    /// The record.
    #[serde(flatten)]
    pub record: PlaybookRecord,
    /// The current version's source.
    pub source: String,
}

/// A playbook and its current source.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/playbooks/{id}", tag = "playbooks",
    params(("workspace" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = PlaybookDetail), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, id)): PathParams<(String, String)>,
) -> Result<Json<PlaybookDetail>, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    let r = record(&state, &workspace, &id)?;
    let current = r
        .current()
        .ok_or_else(|| ApiError::internal("a playbook without versions"))?;
    let source = state
        .library
        .source(state.store.as_ref(), current)
        .map_err(ApiError::internal)?;
    Ok(Json(PlaybookDetail { record: r, source }))
}

/// One version's source, as text.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/playbooks/{id}/versions/{number}", tag = "playbooks",
    params(("workspace" = String, Path), ("id" = String, Path), ("number" = u32, Path)),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub async fn version(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, id, number)): PathParams<(String, String, u32)>,
) -> Result<Response, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    let r = record(&state, &workspace, &id)?;
    let v = version_of(&r, number)?;
    let source = state
        .library
        .source(state.store.as_ref(), v)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        source,
    )
        .into_response())
}

fn version_of(r: &PlaybookRecord, n: u32) -> Result<&crate::library::Version, ApiError> {
    r.versions.iter().find(|v| v.number == n).ok_or_else(|| {
        ApiError::not_found(format!(
            "playbook `{}` has versions 1 to {}, not {n}",
            r.id,
            r.versions.len()
        ))
    })
}

/// Whether a playbook may be started by its triggers.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    /// Enabled or not.
    pub enabled: bool,
}

/// Enables or disables a playbook (editors).
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/playbooks/{id}/enabled", tag = "playbooks",
    request_body = Enabled, params(("workspace" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = PlaybookRecord), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_enabled(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, id)): PathParams<(String, String)>,
    Body(req): Body<Enabled>,
) -> Result<Json<PlaybookRecord>, ApiError> {
    caller.require(&workspace, Permission::Edit)?;
    let r = state
        .library
        .set_enabled(&workspace, &id, req.enabled)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no playbook `{}` in `{workspace}`",
                crate::app::clip(&id)
            ))
        })?;
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: if req.enabled {
                "playbook.enable"
            } else {
                "playbook.disable"
            }
            .into(),
            target: id,
            denied: false,
            detail: serde_json::Value::Null,
        },
    );
    state.commit().await?;
    Ok(Json(r))
}

/// Which versions to compare.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    /// The older version (default: the one before `to`).
    #[serde(default)]
    pub from: Option<u32>,
    /// The newer version (default: the current one).
    #[serde(default)]
    pub to: Option<u32>,
}

/// A unified diff between two versions' sources.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/playbooks/{id}/diff", tag = "playbooks",
    params(("workspace" = String, Path), ("id" = String, Path), DiffParams),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub async fn diff(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, id)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<DiffParams>,
) -> Result<Response, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    let r = record(&state, &workspace, &id)?;
    let to = q.to.unwrap_or(r.versions.len() as u32);
    let from = q.from.unwrap_or(to.saturating_sub(1).max(1));
    let (a, b) = (version_of(&r, from)?, version_of(&r, to)?);
    let (sa, sb) = (
        state
            .library
            .source(state.store.as_ref(), a)
            .map_err(ApiError::internal)?,
        state
            .library
            .source(state.store.as_ref(), b)
            .map_err(ApiError::internal)?,
    );
    // Off the async workers, and with a deadline: two large, wholly
    // different versions must not pin a core (past it the diff is coarser,
    // still correct).
    let (ha, hb) = (format!("{id} v{from}"), format!("{id} v{to}"));
    let text = tokio::task::spawn_blocking(move || {
        similar::TextDiff::configure()
            .deadline(std::time::Instant::now() + std::time::Duration::from_millis(500))
            .diff_lines(&sa, &sb)
            .unified_diff()
            .context_radius(3)
            .header(&ha, &hb)
            .to_string()
    })
    .await
    .map_err(ApiError::internal)?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
