//! `GET /api/v1/backup`: a consistent backup of the whole server while it
//! runs (system administrators).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use allama_store::audit::AuditEntry;

use crate::app::{Caller, SYSTEM_CHAIN, Shared};
use crate::error::{ApiError, ErrorBody};

/// A backup of every workspace: trees and blobs in one file, as `allama
/// restore` reads it (system administrators). Writes wait while the trees
/// are read; the file is then streamed. The master key is not in it.
#[utoipa::path(get, path = "/api/v1/backup", tag = "health",
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>,
        headers(("x-allama-backup-entries" = u64, description = "Entries over all trees"),
                ("x-allama-backup-blobs" = u64, description = "Blob files"))),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn backup(State(state): State<Shared>, caller: Caller) -> Result<Response, ApiError> {
    caller.require_system_admin()?;
    let store = state.store.clone();
    // Written to an unnamed temporary file first, so the gate is held for
    // the copy only, not for as long as a slow client takes to read. It is
    // made in the data directory: the disk that holds the data has room for
    // a copy of it, which a memory-backed /tmp may not.
    let (file, sum) = tokio::task::spawn_blocking(move || {
        let mut file = tempfile::tempfile_in(store.dir()).map_err(|e| e.to_string())?;
        let sum = store.backup(&mut file).map_err(|e| e.to_string())?;
        std::io::Seek::rewind(&mut file).map_err(|e| e.to_string())?;
        Ok::<_, String>((file, sum))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    state.audit(
        SYSTEM_CHAIN,
        AuditEntry {
            actor: caller.actor(),
            action: "server.backup".into(),
            target: String::new(),
            denied: false,
            detail: serde_json::to_value(sum).unwrap_or_default(),
        },
    );
    state.commit().await?;
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 1 << 16);
    let name = format!(
        "attachment; filename=\"allama-{}.backup\"",
        allama_engine::driver::now_ms() / 1000
    );
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(sum.bytes));
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert("x-allama-backup-entries", HeaderValue::from(sum.entries));
    h.insert("x-allama-backup-blobs", HeaderValue::from(sum.blobs));
    Ok(resp)
}
