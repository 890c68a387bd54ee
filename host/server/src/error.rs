//! Every error the API returns: `{ "error": { "code", "message", "field"? } }`
//! with a status that says whose fault it was.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`invalid_json`, `forbidden`, …).
    pub code: &'static str,
    /// What was wrong, for a person.
    pub message: String,
    /// The request field at fault, as a JSON path (`name`, `steps[2].uses`).
    pub field: Option<String>,
}

/// The body of an error response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error inside [`ErrorBody`].
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code.
    pub code: String,
    /// What was wrong.
    pub message: String,
    /// The request field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with a status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the field at fault.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422: well-formed, but a value is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 401: no valid token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is required: send `Authorization: Bearer alm_…`",
        )
    }

    /// 403: the token's user lacks the role.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such thing (also for things in workspaces the caller cannot see).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: conflicts with what exists.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 500: our fault. The message is logged; the client gets a plain one.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to handle the request; the error is in its log",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<allama_store::names::NameError> for ApiError {
    fn from(e: allama_store::names::NameError) -> Self {
        ApiError::invalid(e.to_string()).at("name")
    }
}

impl From<allama_store::secrets::SecretError> for ApiError {
    fn from(e: allama_store::secrets::SecretError) -> Self {
        use allama_store::secrets::SecretError as E;
        match e {
            E::Name(n) => n.into(),
            E::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()).at("value")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<allama_store::audit::AuditError> for ApiError {
    fn from(e: allama_store::audit::AuditError) -> Self {
        match e {
            allama_store::audit::AuditError::Name(n) => n.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::accounts::AccountError> for ApiError {
    fn from(e: crate::accounts::AccountError) -> Self {
        use crate::accounts::AccountError as E;
        match e {
            E::Workspace(n) => n.into(),
            E::UserName(_) => ApiError::invalid(e.to_string()).at("name"),
            E::NoUser(_) | E::NoToken(_) => ApiError::not_found(e.to_string()),
            E::UserExists(_) | E::WorkspaceExists(_) => ApiError::conflict(e.to_string()),
            E::Reserved(_) => ApiError::invalid(e.to_string()).at("name"),
            E::NoWorkspace(_) => ApiError::not_found(e.to_string()),
            E::Store(_) => ApiError::internal(e),
        }
    }
}
