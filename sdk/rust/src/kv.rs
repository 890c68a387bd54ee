//! The package's key-value store (a namespace per workspace and package).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{self, Failure};
use crate::{Error, Result};

fn error(op: &str, f: Failure) -> Error {
    match f {
        Failure::Denied(m) => Error::denied(m),
        Failure::NotFound(m) => Error::not_found(m),
        Failure::Quota(m) => Error::internal(format!("kv {op}: {m}")),
        Failure::Invalid(m) => Error::internal(format!("kv {op}: {m}")),
        Failure::Unavailable(m) => {
            Error::new(crate::ErrorKind::Upstream(None), format!("kv {op}: {m}"))
        }
    }
}

/// The bytes under `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>> {
    backend::kv_get(key).map_err(|f| error("get", f))
}
/// Store bytes under `key`, optionally expiring after `ttl_seconds`.
pub fn set(key: &str, value: &[u8], ttl_seconds: Option<u64>) -> Result<()> {
    backend::kv_set(key, value, ttl_seconds).map_err(|f| error("set", f))
}
/// Remove `key`; whether it existed.
pub fn delete(key: &str) -> Result<bool> {
    backend::kv_delete(key).map_err(|f| error("delete", f))
}
/// Up to `limit` keys starting with `prefix`.
pub fn list_prefix(prefix: &str, limit: u32) -> Result<Vec<String>> {
    backend::kv_list(prefix, limit).map_err(|f| error("list", f))
}
/// A JSON value under `key`.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    match get(key)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::internal(format!("kv get {key}: not the expected JSON: {e}"))),
    }
}
/// Store a value as JSON.
pub fn set_json<T: Serialize>(key: &str, value: &T, ttl_seconds: Option<u64>) -> Result<()> {
    set(
        key,
        &serde_json::to_vec(value).map_err(|e| Error::internal(e.to_string()))?,
        ttl_seconds,
    )
}
