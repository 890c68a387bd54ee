//! Runs of a workspace: start by hand, list with filters and a cursor,
//! the timeline, cancel, approve or reject a step; and the approvals inbox.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use allama_engine::inputs::InputError;
use allama_engine::machine::DecisionError;
use allama_engine::{Decision, EngineError, RunSummary};
use allama_store::RunFilter;
use allama_store::audit::AuditEntry;

use crate::accounts::{Permission, Role};
use crate::app::{Body, Caller, PathParams, QueryParams, Shared, clip};
use crate::error::{ApiError, ErrorBody};
use crate::runner::plans::{qualify, split};

/// A run, as listed.
#[derive(Serialize, ToSchema)]
pub struct RunInfo {
    /// The run id.
    pub id: String,
    /// The playbook's id.
    pub playbook: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Milliseconds since the epoch.
    pub started_at: u64,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The parent run, for a child run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Its outputs, when it succeeded and the caller waited for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
}

impl From<RunSummary> for RunInfo {
    fn from(s: RunSummary) -> Self {
        Self {
            playbook: split(&s.playbook).map_or(s.playbook.clone(), |(_, id)| id.to_string()),
            id: s.id,
            status: s.status,
            started_at: s.started_at,
            finished_at: s.finished_at,
            error: s.error,
            parent: s.parent,
            output: None,
        }
    }
}

/// Starting a run by hand.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// The playbook's id.
    pub playbook: String,
    /// Its inputs (a map; defaults apply to what is left out).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Value>,
    /// Wait up to this many milliseconds (at most 30 000) for the run to
    /// finish, and answer with its outputs if it did.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// The longest a request may wait for a run.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

fn input_error(e: InputError) -> ApiError {
    let field = match &e {
        InputError::Missing { name, .. }
        | InputError::WrongType { name, .. }
        | InputError::Unknown { name, .. } => format!("inputs.{name}"),
        _ => "inputs".to_string(),
    };
    ApiError::invalid(e.to_string()).at(field)
}

pub(crate) fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Inputs(e) => input_error(e),
        EngineError::Decision(d) => {
            let forbidden = matches!(d, DecisionError::NotAnApprover { .. });
            if forbidden {
                ApiError::forbidden(d.to_string())
            } else {
                ApiError::conflict(d.to_string())
            }
        }
        EngineError::NoSuchRun(r) => ApiError::conflict(format!("run {r} is not running")),
        EngineError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the server is stopping; try again when it is back",
        ),
        // The server chose the id: a clash is its own fault.
        e @ (EngineError::Store(_) | EngineError::RunId(..)) => ApiError::internal(e),
    }
}

/// Waits for a run up to `wait_ms`; its info, with outputs if it finished.
pub(crate) async fn settle(
    state: &Shared,
    run: &str,
    wait_ms: Option<u64>,
) -> Result<RunInfo, ApiError> {
    if let Some(ms) = wait_ms {
        let wait = Duration::from_millis(ms).min(MAX_WAIT);
        if let Ok(done) = tokio::time::timeout(wait, state.runner.engine.wait(run)).await {
            let done = done.map_err(engine_error)?;
            let mut info = summary(state, run)?;
            info.output = done.output.map(|o| (*o).clone());
            return Ok(info);
        }
    }
    summary(state, run)
}

fn summary(state: &Shared, run: &str) -> Result<RunInfo, ApiError> {
    let s = allama_engine::RunStore::summary(state.store.as_ref(), run)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(format!("run {run} has no index entry")))?;
    Ok(s.into())
}

/// A run of `ws`, or 404 (also for another workspace's run: its existence is not told).
fn run_of(state: &Shared, ws: &str, run: &str) -> Result<RunSummary, ApiError> {
    let s =
        allama_engine::RunStore::summary(state.store.as_ref(), run).map_err(ApiError::internal)?;
    match s {
        Some(s) if allama_store::scope_of(&s.playbook) == ws => Ok(s),
        _ => Err(ApiError::not_found(format!(
            "no run `{}` in `{ws}`",
            clip(run)
        ))),
    }
}

/// Starts a run of a playbook's current version (responders). A disabled
/// playbook still runs by hand.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/runs", tag = "runs",
    request_body = StartRun, params(("workspace" = String, Path)),
    responses((status = 201, body = RunInfo), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
    Body(req): Body<StartRun>,
) -> Result<(StatusCode, Json<RunInfo>), ApiError> {
    caller.require(&workspace, Permission::Respond)?;
    let plan = state
        .runner
        .plans
        .current(&workspace, &req.playbook)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no playbook `{}` in `{workspace}`",
                clip(&req.playbook)
            ))
            .at("playbook")
        })?;
    let trigger = serde_json::json!({ "kind": "manual", "by": caller.actor() });
    let digest = plan.digest.clone();
    let run = state
        .runner
        .engine
        .start_run(
            plan,
            trigger,
            req.inputs
                .unwrap_or_else(|| Value::Object(Default::default())),
        )
        .await
        .map_err(engine_error)?;
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "run.start".into(),
            target: run.clone(),
            denied: false,
            detail: serde_json::json!({ "playbook": req.playbook, "digest": digest, "trigger": "manual" }),
        },
    );
    state.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(settle(&state, &run, req.wait_ms).await?),
    ))
}

/// Which runs to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only runs with this status.
    #[serde(default)]
    pub status: Option<String>,
    /// Only runs of this playbook.
    #[serde(default)]
    pub playbook: Option<String>,
    /// The cursor: runs older than this run id (`next` of the previous page).
    #[serde(default)]
    pub before: Option<String>,
    /// At most this many (1 to 500, default 50).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Leave child runs out.
    #[serde(default)]
    pub top_level: Option<bool>,
}

/// A page of runs.
#[derive(Serialize, ToSchema)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<RunInfo>,
    /// The cursor for the next page (`before=`), if there are more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

const STATUSES: [&str; 4] = ["running", "succeeded", "failed", "cancelled"];

/// The workspace's runs, newest first.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/runs", tag = "runs",
    params(("workspace" = String, Path), ListParams),
    responses((status = 200, body = RunPage), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> Result<Json<RunPage>, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    if let Some(s) = &q.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(ApiError::invalid(format!(
            "status `{}` is not one of {}",
            clip(s),
            STATUSES.join(", ")
        ))
        .at("status"));
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be 1 to 500, not {limit}")).at("limit"));
    }
    let filter = RunFilter {
        before: q.before,
        status: q.status,
        playbook: q.playbook.map(|p| qualify(&workspace, &p)),
        top_level: q.top_level.unwrap_or(false),
    };
    let (store, ws) = (state.store.clone(), workspace.clone());
    let (runs, more) = tokio::task::spawn_blocking(move || store.runs_in(&ws, &filter, limit))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let next = more.then(|| runs.last().map(|r| r.id.clone())).flatten();
    Ok(Json(RunPage {
        runs: runs.into_iter().map(RunInfo::from).collect(),
        next,
    }))
}

/// A waiting approval.
#[derive(Serialize, ToSchema)]
pub struct PendingApproval {
    /// The run (a child run's id names its parent).
    pub run: String,
    /// The step.
    pub step: String,
    /// The escalation level (0 = first request).
    pub level: u32,
    /// Roles whose members may decide.
    pub roles: Vec<String>,
    /// Users who may decide.
    pub users: Vec<String>,
    /// What the approvers are asked.
    pub message: String,
    /// When it was asked (ms since the epoch).
    pub requested_at: u64,
    /// When its deadline acts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<u64>,
}

impl From<allama_engine::ApprovalRequest> for PendingApproval {
    fn from(a: allama_engine::ApprovalRequest) -> Self {
        Self {
            run: a.run,
            step: a.step,
            level: a.level,
            roles: a.roles,
            users: a.users,
            message: a.message,
            requested_at: a.requested_at,
            deadline_at: a.deadline_at,
        }
    }
}

/// A run in detail: status, each step's status, outputs, approvals
/// waiting, and the timeline (every event of its history).
#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunInfo,
    /// Each step's status.
    pub steps: BTreeMap<String, String>,
    /// Approvals the run and its child runs wait for.
    pub awaiting: Vec<PendingApproval>,
    /// Every event, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
}

/// How to show a run.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ShowParams {
    /// If the run is running, wait up to this many milliseconds (at most
    /// 30 000) for it to finish first: a long poll.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// A run: its steps, outputs, approvals waiting and timeline.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/runs/{run}", tag = "runs",
    params(("workspace" = String, Path), ("run" = String, Path), ShowParams),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, run)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<ShowParams>,
) -> Result<Json<RunDetail>, ApiError> {
    caller.require(&workspace, Permission::Read)?;
    let mut summary = run_of(&state, &workspace, &run)?;
    if summary.status == "running"
        && let Some(ms) = q.wait_ms
    {
        let wait = Duration::from_millis(ms).min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, state.runner.engine.wait(&run)).await;
        summary = run_of(&state, &workspace, &run)?;
    }
    let (store, plans, id) = (state.store.clone(), state.runner.plans.clone(), run.clone());
    let (machine, events) = tokio::task::spawn_blocking(move || {
        allama_engine::history::rebuild(store.as_ref(), plans.as_ref(), &id)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let awaiting = match state.runner.engine.inspect(&run).await {
        Ok(Some(view)) => view.awaiting.into_iter().map(Into::into).collect(),
        _ => Vec::new(),
    };
    let mut info = RunInfo::from(summary);
    info.output = machine.output().map(|o| (**o).clone());
    Ok(Json(RunDetail {
        run: info,
        steps: machine
            .steps()
            .map(|(id, s)| (id.to_string(), s.status().as_str().to_string()))
            .collect(),
        awaiting,
        events: events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            .collect(),
    }))
}

/// Cancels a run and its child runs (responders).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/runs/{run}/cancel", tag = "runs",
    params(("workspace" = String, Path), ("run" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, run)): PathParams<(String, String)>,
) -> Result<Json<RunInfo>, ApiError> {
    caller.require(&workspace, Permission::Respond)?;
    let s = run_of(&state, &workspace, &run)?;
    if s.status != "running" {
        return Err(ApiError::conflict(format!(
            "run {run} has already {}",
            s.status
        )));
    }
    state
        .runner
        .engine
        .cancel(&run, &caller.actor())
        .await
        .map_err(engine_error)?;
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "run.cancel".into(),
            target: run.clone(),
            denied: false,
            detail: Value::Null,
        },
    );
    state.commit().await?;
    Ok(Json(settle(&state, &run, Some(2000)).await?))
}

/// A decision's comment.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Kept in the run's history and the audit record (at most 4 KiB).
    #[serde(default)]
    pub comment: Option<String>,
    /// Wait up to this many milliseconds (at most 30 000) for the run to finish.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// The roles a workspace role counts as for approvals: its own and every
/// lesser one (an admin may decide what a responder may).
fn roles_held(role: Role) -> Vec<String> {
    [Role::Viewer, Role::Responder, Role::Editor, Role::Admin]
        .into_iter()
        .filter(|r| *r <= role)
        .map(|r| r.as_str().to_string())
        .collect()
}

async fn decide(
    state: Shared,
    caller: Caller,
    workspace: String,
    run: String,
    step: String,
    body: DecisionBody,
    decision: Decision,
) -> Result<Json<RunInfo>, ApiError> {
    let role = caller.require(&workspace, Permission::Respond)?;
    run_of(&state, &workspace, &run)?;
    if body.comment.as_ref().is_some_and(|c| c.len() > 4096) {
        return Err(ApiError::invalid("the comment is longer than 4 KiB").at("comment"));
    }
    let verb = match decision {
        Decision::Approve => "approve",
        Decision::Reject => "reject",
    };
    let result = state
        .runner
        .engine
        .decide(
            &run,
            &step,
            decision,
            &caller.user.name,
            &roles_held(role),
            body.comment.clone(),
        )
        .await;
    let refused = result.as_ref().err().map(|e| e.to_string());
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "approval.decide".into(),
            target: format!("{run}/{step}"),
            denied: refused.is_some(),
            detail: serde_json::json!({
                "decision": verb,
                "comment": body.comment,
                "refused": refused,
            }),
        },
    );
    state.commit().await?;
    result.map_err(engine_error)?;
    Ok(Json(settle(&state, &run, body.wait_ms).await?))
}

/// Approves a step waiting for approval (responders named by the step's approvers).
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/runs/{run}/steps/{step}/approve", tag = "runs",
    request_body = DecisionBody,
    params(("workspace" = String, Path), ("run" = String, Path), ("step" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn approve(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, run, step)): PathParams<(String, String, String)>,
    Body(body): Body<DecisionBody>,
) -> Result<Json<RunInfo>, ApiError> {
    decide(state, caller, workspace, run, step, body, Decision::Approve).await
}

/// Rejects a step waiting for approval.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace}/runs/{run}/steps/{step}/reject", tag = "runs",
    request_body = DecisionBody,
    params(("workspace" = String, Path), ("run" = String, Path), ("step" = String, Path)),
    responses((status = 200, body = RunInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn reject(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, run, step)): PathParams<(String, String, String)>,
    Body(body): Body<DecisionBody>,
) -> Result<Json<RunInfo>, ApiError> {
    decide(state, caller, workspace, run, step, body, Decision::Reject).await
}

/// Which approvals to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InboxParams {
    /// Every pending approval of the workspace, not only those the caller may decide.
    #[serde(default)]
    pub all: Option<bool>,
}

/// Approvals waiting in the workspace that the caller may decide (or all, with `all=true`).
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/approvals", tag = "runs",
    params(("workspace" = String, Path), InboxParams),
    responses((status = 200, body = Vec<PendingApproval>), (status = 404, body = ErrorBody)))]
pub async fn inbox(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(workspace): PathParams<String>,
    QueryParams(q): QueryParams<InboxParams>,
) -> Result<Json<Vec<PendingApproval>>, ApiError> {
    let role = caller.require(&workspace, Permission::Read)?;
    let pending = state
        .runner
        .engine
        .pending_approvals()
        .await
        .map_err(engine_error)?;
    let held = roles_held(role);
    let mine = |a: &allama_engine::ApprovalRequest| {
        role.allows(Permission::Respond)
            && (a.users.contains(&caller.user.name) || a.roles.iter().any(|r| held.contains(r)))
    };
    let mut out = Vec::new();
    for a in pending {
        if !q.all.unwrap_or(false) && !mine(&a) {
            continue;
        }
        if run_of(&state, &workspace, &a.run).is_ok() {
            out.push(a.into());
        }
    }
    Ok(Json(out))
}
