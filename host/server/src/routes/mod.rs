//! The HTTP API: `/api/v1/…`, `/healthz`, and the OpenAPI document at
//! `/api/openapi.json`, generated from the handlers' annotations.

pub mod audit;
pub mod backup;
pub mod hooks;
pub mod identity;
pub mod packages;
pub mod playbooks;
pub mod runs;
pub mod secrets;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::Shared;
use crate::error::{ApiError, ErrorBody};

/// Largest request body (a playbook with its documentation fits many times).
pub const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(OpenApi)]
#[openapi(
    info(title = "Allama", description = "Security automation where every integration runs sandboxed."),
    modifiers(&BearerAuth),
    security(("token" = [])),
    tags(
        (name = "identity", description = "Workspaces, users, roles, tokens"),
        (name = "playbooks", description = "Playbooks and their versions"),
        (name = "packages", description = "Action packages and their grants"),
        (name = "runs", description = "Runs, their timelines, approvals"),
        (name = "triggers", description = "Webhooks and schedules"),
        (name = "secrets", description = "Encrypted secrets; values are never returned"),
        (name = "audit", description = "The tamper-evident audit chain"),
        (name = "health", description = "Liveness"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("alm_…")
                    .build(),
            ),
        );
    }
}

/// Liveness: the server answers.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses((status = 200, body = String)))]
async fn healthz() -> &'static str {
    "ok"
}

/// Prometheus metrics: runs, steps, durations, capability uses and denials,
/// queue depth, webhooks (system administrators: the counts cover every
/// workspace).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn metrics(
    axum::extract::State(state): axum::extract::State<Shared>,
    caller: crate::app::Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_system_admin()?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    ))
}

/// The workspace's schedules: each enabled or disabled playbook's
/// `schedule` triggers, with their next and last occurrences.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace}/schedules", tag = "triggers",
    params(("workspace" = String, Path)),
    responses((status = 200, body = Vec<crate::triggers::schedules::ScheduleInfo>), (status = 404, body = ErrorBody)))]
async fn schedules(
    axum::extract::State(state): axum::extract::State<Shared>,
    caller: crate::app::Caller,
    crate::app::PathParams(workspace): crate::app::PathParams<String>,
) -> Result<axum::Json<Vec<crate::triggers::schedules::ScheduleInfo>>, ApiError> {
    caller.require(&workspace, crate::accounts::Permission::Read)?;
    let now = allama_engine::driver::now_ms();
    state
        .scheduler
        .list(&state, &workspace, now)
        .map(axum::Json)
        .map_err(ApiError::internal)
}

/// The router with every route, and the OpenAPI document describing it.
pub fn router(state: Shared) -> axum::Router {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(identity::me))
        .routes(routes!(
            identity::create_workspace,
            identity::list_workspaces
        ))
        .routes(routes!(identity::create_user))
        .routes(routes!(identity::set_member, identity::remove_member))
        .routes(routes!(identity::issue_token, identity::list_tokens))
        .routes(routes!(identity::revoke_token))
        .routes(routes!(secrets::list))
        .routes(routes!(secrets::set, secrets::delete))
        .routes(routes!(secrets::rotate_key))
        .routes(routes!(playbooks::create, playbooks::list))
        .routes(routes!(playbooks::validate))
        .routes(routes!(playbooks::show))
        .routes(routes!(playbooks::version))
        .routes(routes!(playbooks::set_enabled))
        .routes(routes!(playbooks::diff))
        .routes(routes!(audit::query))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::export))
        .routes(routes!(packages::show, packages::remove))
        .routes(routes!(packages::grant, packages::revoke))
        .routes(routes!(runs::start, runs::list))
        .routes(routes!(runs::show))
        .routes(routes!(runs::cancel))
        .routes(routes!(runs::approve))
        .routes(routes!(runs::reject))
        .routes(routes!(runs::inbox))
        .routes(routes!(metrics))
        .routes(routes!(backup::backup))
        .routes(routes!(schedules))
        .merge(
            // Package files are far larger than any JSON body.
            OpenApiRouter::new()
                .routes(routes!(packages::upload, packages::list))
                .layer(DefaultBodyLimit::max(packages::MAX_PACKAGE_BYTES)),
        )
        .merge(
            OpenApiRouter::new()
                .routes(routes!(hooks::deliver))
                .layer(DefaultBodyLimit::max(hooks::MAX_HOOK_BYTES)),
        )
        .split_for_parts();
    let doc = api.to_pretty_json().unwrap_or_default();
    router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc,
                )
                    .into_response()
            }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
