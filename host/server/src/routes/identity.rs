//! Who am I, workspaces, users and their roles, tokens.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use allama_store::audit::AuditEntry;

use crate::accounts::{Permission, Role, TokenInfo, User, Workspace, now_ms};
use crate::app::{Body, Caller, PathParams, SYSTEM_CHAIN, Shared};
use crate::error::{ApiError, ErrorBody};

/// The caller.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The user.
    pub user: User,
    /// The token in use.
    pub token_id: String,
}

/// Who the token acts as, and its roles.
#[utoipa::path(get, path = "/api/v1/me", tag = "identity",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        user: caller.user,
        token_id: caller.token_id,
    })
}

/// A new workspace.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    /// `[a-z0-9][a-z0-9-]{0,62}`.
    pub name: String,
}

/// Creates a workspace (system administrators); its creator becomes its admin.
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "identity", request_body = NewWorkspace,
    responses((status = 201, body = Workspace), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_workspace(
    State(state): State<Shared>,
    caller: Caller,
    Body(req): Body<NewWorkspace>,
) -> Result<(StatusCode, Json<Workspace>), ApiError> {
    caller.require_system_admin()?;
    let ws = state
        .accounts
        .create_workspace(&req.name, &caller.actor())?;
    state
        .accounts
        .set_role(&caller.user.name, &ws.name, Some(Role::Admin))?;
    let entry = AuditEntry {
        actor: caller.actor(),
        action: "workspace.create".into(),
        target: ws.name.clone(),
        denied: false,
        detail: serde_json::Value::Null,
    };
    state.audit(SYSTEM_CHAIN, entry.clone());
    state.audit(&ws.name, entry);
    state.commit().await?;
    Ok((StatusCode::CREATED, Json(ws)))
}

/// A workspace the caller belongs to.
#[derive(Serialize, ToSchema)]
pub struct MyWorkspace {
    /// Its name.
    pub name: String,
    /// The caller's role in it.
    pub role: Role,
}

/// The workspaces the caller has a role in.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "identity",
    responses((status = 200, body = Vec<MyWorkspace>), (status = 401, body = ErrorBody)))]
pub async fn list_workspaces(caller: Caller) -> Json<Vec<MyWorkspace>> {
    Json(
        caller
            .user
            .roles
            .iter()
            .map(|(name, role)| MyWorkspace {
                name: name.clone(),
                role: *role,
            })
            .collect(),
    )
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// `[a-z0-9][a-z0-9._-]{0,62}`.
    pub name: String,
    /// Role by workspace (each must exist).
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// May create workspaces and users.
    #[serde(default)]
    pub system_admin: bool,
}

/// Creates a user (system administrators).
#[utoipa::path(post, path = "/api/v1/users", tag = "identity", request_body = NewUser,
    responses((status = 201, body = User), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<Shared>,
    caller: Caller,
    Body(req): Body<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    caller.require_system_admin()?;
    for ws in req.roles.keys() {
        allama_store::names::check_workspace(ws).map_err(|e| {
            ApiError::invalid(e.to_string()).at(format!("roles.{}", crate::app::clip(ws)))
        })?;
        if state.accounts.workspace(ws)?.is_none() {
            return Err(
                ApiError::not_found(format!("no workspace `{ws}`")).at(format!("roles.{ws}"))
            );
        }
    }
    let user = state
        .accounts
        .create_user(&req.name, req.roles.clone(), req.system_admin)?;
    let entry = AuditEntry {
        actor: caller.actor(),
        action: "user.create".into(),
        target: user.name.clone(),
        denied: false,
        detail: serde_json::json!({ "roles": req.roles, "system_admin": req.system_admin }),
    };
    state.audit(SYSTEM_CHAIN, entry.clone());
    for (ws, role) in &req.roles {
        // Each workspace's chain learns only its own role.
        let mut e = entry.clone();
        e.detail = serde_json::json!({ "role": role });
        state.audit(ws, e);
    }
    state.commit().await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// A member's role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// The role to give.
    pub role: Role,
}

/// A member's role in one workspace (and nothing of their other workspaces).
#[derive(Serialize, ToSchema)]
pub struct Member {
    /// The user.
    pub user: String,
    /// The workspace.
    pub workspace: String,
    /// Their role in it.
    pub role: Role,
}

/// Gives a user a role in the workspace (workspace admins).
#[utoipa::path(put, path = "/api/v1/workspaces/{workspace}/members/{user}", tag = "identity",
    request_body = Membership,
    params(("workspace" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn set_member(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, user)): PathParams<(String, String)>,
    Body(req): Body<Membership>,
) -> Result<Json<Member>, ApiError> {
    caller.require(&workspace, Permission::Administer)?;
    if req.role != Role::Admin {
        keep_an_admin(&state, &workspace, &user)?;
    }
    state.accounts.set_role(&user, &workspace, Some(req.role))?;
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "member.set".into(),
            target: user.clone(),
            denied: false,
            detail: serde_json::json!({ "role": req.role }),
        },
    );
    state.commit().await?;
    Ok(Json(Member {
        user,
        workspace,
        role: req.role,
    }))
}

/// Refuses to take the admin role from the workspace's last admin: nobody
/// could then manage its secrets, members or audit log.
fn keep_an_admin(state: &Shared, workspace: &str, user: &str) -> Result<(), ApiError> {
    let admins: Vec<String> = state
        .accounts
        .users()?
        .into_iter()
        .filter(|u| u.roles.get(workspace) == Some(&Role::Admin))
        .map(|u| u.name)
        .collect();
    if admins.len() == 1 && admins[0] == user {
        return Err(ApiError::conflict(format!(
            "`{user}` is the last admin of `{workspace}`; make someone else admin first"
        )));
    }
    Ok(())
}

/// Removes a user from the workspace (workspace admins).
#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace}/members/{user}", tag = "identity",
    params(("workspace" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<Shared>,
    caller: Caller,
    PathParams((workspace, user)): PathParams<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(&workspace, Permission::Administer)?;
    keep_an_admin(&state, &workspace, &user)?;
    state.accounts.set_role(&user, &workspace, None)?;
    state.audit(
        &workspace,
        AuditEntry {
            actor: caller.actor(),
            action: "member.remove".into(),
            target: user,
            denied: false,
            detail: serde_json::Value::Null,
        },
    );
    state.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for.
    pub label: String,
    /// Days until it expires (1 to 3650); never, if absent. Never later than
    /// the token that issues it.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// Another user to issue it for (system administrators only).
    #[serde(default)]
    pub user: Option<String>,
}

/// A token, shown once.
#[derive(Serialize, ToSchema)]
pub struct IssuedToken {
    /// The token: keep it; the server has only its hash.
    pub token: String,
    /// Its record.
    pub info: TokenInfo,
}

/// Issues a token for the caller (or, for system administrators, another user).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "identity", request_body = NewToken,
    responses((status = 201, body = IssuedToken), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn issue_token(
    State(state): State<Shared>,
    caller: Caller,
    Body(req): Body<NewToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let user = match &req.user {
        Some(u) if *u != caller.user.name => {
            caller.require_system_admin()?;
            u.clone()
        }
        _ => caller.user.name.clone(),
    };
    if req.label.chars().count() > 200 {
        return Err(ApiError::invalid("the label is longer than 200 characters").at("label"));
    }
    let expires_at = match req.expires_in_days {
        None => None,
        Some(d @ 1..=3650) => Some(now_ms() + u64::from(d) * 86_400_000),
        Some(_) => {
            return Err(
                ApiError::invalid("expires_in_days must be 1 to 3650").at("expires_in_days")
            );
        }
    };
    // A token cannot outlive the one that made it: a short-lived token
    // must not be a way to a permanent one.
    let expires_at = match (expires_at, caller.token_expires_at) {
        (_, None) => expires_at,
        (None, Some(cap)) => Some(cap),
        (Some(t), Some(cap)) => Some(t.min(cap)),
    };
    let (token, info) = state.accounts.issue_token(&user, &req.label, expires_at)?;
    state.audit(
        SYSTEM_CHAIN,
        AuditEntry {
            actor: caller.actor(),
            action: "token.issue".into(),
            target: info.id.clone(),
            denied: false,
            detail: serde_json::json!({ "user": user, "label": info.label, "expires_at": expires_at }),
        },
    );
    state.commit().await?;
    Ok((StatusCode::CREATED, Json(IssuedToken { token, info })))
}

/// The caller's tokens (every token, for system administrators).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "identity",
    responses((status = 200, body = Vec<TokenInfo>), (status = 401, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let who = (!caller.user.system_admin).then_some(caller.user.name.as_str());
    Ok(Json(state.accounts.tokens(who)?))
}

/// Revokes a token (one's own; any, for system administrators).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "identity",
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<Shared>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let mine = state
        .accounts
        .tokens(Some(&caller.user.name))?
        .iter()
        .any(|t| t.id == id);
    if !mine && !caller.user.system_admin {
        return Err(ApiError::not_found(format!(
            "no token `{}`",
            crate::app::clip(&id)
        )));
    }
    let t = state.accounts.revoke(&id)?;
    state.audit(
        SYSTEM_CHAIN,
        AuditEntry {
            actor: caller.actor(),
            action: "token.revoke".into(),
            target: t.id,
            denied: false,
            detail: serde_json::json!({ "user": t.user }),
        },
    );
    state.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
