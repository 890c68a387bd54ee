//! `POST /hooks/{workspace}/{playbook}`: a vendor or a SIEM starts a run.
//!
//! The request is authenticated by its signature, not a token (see
//! [`crate::webhooks`]); its body (JSON, or a form, as Slack posts) is the
//! run's `trigger`. The answer is `202 Accepted` with the run id only once
//! the run's start is durable, so a delivery that got a 202 is never lost;
//! with `?wait_ms=N` the answer waits for the run and carries its outputs.
//! A delivery id seen before answers `200` with the first delivery's run.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use allama_playbook::WebhookSignature;
use allama_store::audit::AuditEntry;

use crate::app::{ClientIp, PathParams, QueryParams, Shared, clip};
use crate::error::{ApiError, ErrorBody};
use crate::routes::runs::settle;
use crate::triggers::deliveries::Claim;
use crate::triggers::{webhook_of, webhook_secret_name};
use crate::webhooks::{DEFAULT_TOLERANCE_SECS, Scheme, Signing};

/// Largest webhook body (GitHub's own limit is 25 MB).
pub const MAX_HOOK_BYTES: usize = 25 << 20;

/// What a delivery started.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// The run.
    pub run: String,
    /// Its status when answered.
    pub status: String,
    /// Whether this delivery id was seen before (the run is the first delivery's).
    pub duplicate: bool,
    /// Its outputs, when it finished within `wait_ms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
}

/// How to answer.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HookParams {
    /// Wait up to this many milliseconds (at most 30 000) for the run to
    /// finish and answer with its outputs (200); otherwise 202 at once.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

fn no_hook() -> ApiError {
    // One answer for every way of not being a webhook: a sender without
    // the keys learns nothing about what exists.
    ApiError::not_found("no webhook trigger at this address")
}

fn body_json(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/x-www-form-urlencoded") {
        let map: serde_json::Map<String, Value> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        return Ok(Value::Object(map));
    }
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body is not JSON (nor a form): {e}"),
        )
    })
}

/// The delivery id a sender gives, for the formats that have one.
fn delivery_id(verified: Option<String>, headers: &HeaderMap) -> Option<String> {
    verified.or_else(|| {
        ["webhook-id", "x-github-delivery"]
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
            .map(|s| s.chars().take(256).collect())
    })
}

/// Starts a run of the playbook from a signed delivery.
#[utoipa::path(post, path = "/hooks/{workspace}/{playbook}", tag = "triggers", security(()),
    request_body(content = Object, content_type = "application/json"),
    params(("workspace" = String, Path), ("playbook" = String, Path), HookParams),
    responses((status = 202, body = Accepted), (status = 200, body = Accepted),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn deliver(
    State(state): State<Shared>,
    ClientIp(ip): ClientIp,
    PathParams((workspace, playbook)): PathParams<(String, String)>,
    QueryParams(q): QueryParams<HookParams>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    if let Some(wait) = state.failures.blocked(ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many refused deliveries from {ip}; try again in {} s",
                wait.as_secs() + 1
            ),
        ));
    }
    if allama_store::names::check_workspace(&workspace).is_err()
        || state
            .accounts
            .workspace(&workspace)
            .ok()
            .flatten()
            .is_none()
    {
        return Err(no_hook());
    }
    let record = state
        .library
        .get(&workspace, &playbook)
        .map_err(ApiError::internal)?
        .filter(|r| r.enabled)
        .ok_or_else(no_hook)?;
    // The current version of the record just read (not a second read).
    let plan = record
        .current()
        .and_then(|v| {
            state
                .runner
                .plans
                .version(&workspace, &record.id, &v.digest)
        })
        .ok_or_else(no_hook)?;
    let scheme = webhook_of(&plan.playbook).ok_or_else(no_hook)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a webhook body may be at most {} MiB", MAX_HOOK_BYTES >> 20),
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })?;
    let verified_id = match scheme {
        WebhookSignature::None => None,
        s => {
            let scheme = match s {
                WebhookSignature::Github => Scheme::Github,
                WebhookSignature::Slack => Scheme::Slack,
                _ => Scheme::Standard,
            };
            let refuse = |why: String| {
                state.failures.failed(ip);
                state.metrics.webhook("refused");
                state.audit(
                    &workspace,
                    AuditEntry {
                        actor: format!("webhook:{ip}"),
                        action: "webhook.refused".into(),
                        target: record.id.clone(),
                        denied: true,
                        detail: serde_json::json!({ "reason": why }),
                    },
                );
                ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", why)
            };
            let name = webhook_secret_name(&record.id);
            let keys = match state.vault.reveal(&workspace, &name) {
                Ok(Some(v)) => String::from_utf8_lossy(&v)
                    .split_whitespace()
                    .filter_map(|k| crate::webhooks::parse_secret(k).ok())
                    .collect::<Vec<_>>(),
                Ok(None) => Vec::new(),
                Err(e) => return Err(ApiError::internal(e)),
            };
            if keys.is_empty() {
                return Err(refuse(format!(
                    "the trigger has no usable signing key: an admin sets workspace secret {name}"
                )));
            }
            let signing = Signing {
                scheme,
                keys,
                tolerance_secs: DEFAULT_TOLERANCE_SECS,
            };
            let now = allama_engine::driver::now_ms() / 1000;
            match crate::webhooks::verify(&signing, &headers, &body, now) {
                Ok(v) => v.id,
                Err(e) => return Err(refuse(e.to_string())),
            }
        }
    };
    let trigger = body_json(&headers, &body)?;
    let id = delivery_id(verified_id, &headers);
    let now = allama_engine::driver::now_ms();
    // The run's id is chosen first, so the delivery's claim names it.
    let run_id = allama_engine::driver::new_run_id();
    if let Some(id) = &id {
        let started = |run: &str| {
            matches!(
                allama_engine::RunStore::summary(state.store.as_ref(), run),
                Ok(Some(_))
            )
        };
        match state
            .deliveries
            .claim(&workspace, &record.id, id, &run_id, now, &started)
            .map_err(ApiError::internal)?
        {
            Claim::New => {}
            Claim::Duplicate { run } => {
                state.metrics.webhook("duplicate");
                // The run's index entry is written just before its start's
                // commit: answer once that commit is done, so a duplicate is
                // never told of a start a crash could still undo.
                allama_engine::RunStore::commit(state.store.as_ref())
                    .await
                    .map_err(ApiError::internal)?;
                let info = settle(&state, &run, q.wait_ms).await?;
                return Ok((
                    StatusCode::OK,
                    Json(Accepted {
                        run,
                        status: info.status,
                        duplicate: true,
                        output: info.output,
                    }),
                )
                    .into_response());
            }
            Claim::InFlight => {
                return Err(ApiError::conflict(format!(
                    "delivery `{}` is being accepted right now; retry in a moment",
                    clip(id)
                )));
            }
        }
    }
    let started = state
        .runner
        .engine
        .start_run_as(run_id, plan, trigger, Value::Object(Default::default()))
        .await;
    let run = match started {
        Ok(run) => run,
        Err(e) => {
            if let Some(id) = &id {
                let _ = state.deliveries.release(&workspace, &record.id, id);
            }
            return Err(crate::routes::runs::engine_error(e));
        }
    };
    state.metrics.webhook("accepted");
    state.audit(
        &workspace,
        AuditEntry {
            actor: format!("webhook:{ip}"),
            action: "webhook.accepted".into(),
            target: run.clone(),
            denied: false,
            detail: serde_json::json!({ "playbook": record.id, "delivery": id }),
        },
    );
    let info = settle(&state, &run, q.wait_ms).await?;
    // Without `wait_ms` the answer is always 202, however fast the run was.
    let status = if q.wait_ms.is_none() || info.status == "running" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Accepted {
            run,
            status: info.status,
            duplicate: false,
            output: info.output,
        }),
    )
        .into_response())
}
