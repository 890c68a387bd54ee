//! The one place the SDK reaches the host: the real imports on `wasm32`,
//! the [`crate::testing::MockHost`] of the current thread natively.

/// An outbound request, as the host receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: Option<u32>,
}

/// A response, as the host returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The host's typed http errors (some arise only from the real host).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpFailure {
    Denied(String),
    InvalidRequest(String),
    Timeout(String),
    RateLimited(u64),
    TooLarge(u64),
    Connection(String),
}

/// The host's typed kv and secrets errors, flattened.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Denied(String),
    NotFound(String),
    Quota(String),
    Invalid(String),
    Unavailable(String),
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::bindings::allama::action::{http, kv, log, secrets};

    pub fn http_send(r: RawRequest) -> Result<RawResponse, HttpFailure> {
        let method = match r.method {
            "GET" => http::Method::Get,
            "HEAD" => http::Method::Head,
            "POST" => http::Method::Post,
            "PUT" => http::Method::Put,
            "PATCH" => http::Method::Patch,
            "DELETE" => http::Method::Delete,
            _ => http::Method::Options,
        };
        let req = http::Request {
            method,
            url: r.url,
            headers: r.headers,
            body: r.body,
            timeout_ms: r.timeout_ms,
        };
        match http::send(&req) {
            Ok(resp) => Ok(RawResponse {
                status: resp.status,
                headers: resp.headers,
                body: resp.body,
            }),
            Err(http::HttpError::Denied(m)) => Err(HttpFailure::Denied(m)),
            Err(http::HttpError::InvalidRequest(m)) => Err(HttpFailure::InvalidRequest(m)),
            Err(http::HttpError::Timeout(m)) => Err(HttpFailure::Timeout(m)),
            Err(http::HttpError::RateLimited(ms)) => Err(HttpFailure::RateLimited(ms)),
            Err(http::HttpError::ResponseTooLarge(n)) => Err(HttpFailure::TooLarge(n)),
            Err(http::HttpError::Connection(m)) => Err(HttpFailure::Connection(m)),
        }
    }

    fn kv_failure(e: kv::KvError) -> Failure {
        match e {
            kv::KvError::Denied(m) => Failure::Denied(m),
            kv::KvError::QuotaExceeded(m) => Failure::Quota(m),
            kv::KvError::InvalidKey(m) | kv::KvError::TooLarge(m) => Failure::Invalid(m),
            kv::KvError::Unavailable(m) => Failure::Unavailable(m),
        }
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, Failure> {
        kv::get(key).map_err(kv_failure)
    }
    pub fn kv_set(key: &str, value: &[u8], ttl: Option<u64>) -> Result<(), Failure> {
        kv::set(key, value, ttl).map_err(kv_failure)
    }
    pub fn kv_delete(key: &str) -> Result<bool, Failure> {
        kv::delete(key).map_err(kv_failure)
    }
    pub fn kv_list(prefix: &str, limit: u32) -> Result<Vec<String>, Failure> {
        kv::list_prefix(prefix, limit).map_err(kv_failure)
    }

    pub fn log(level: crate::log::Level, message: &str, fields: &[(String, String)]) {
        let level = match level {
            crate::log::Level::Trace => log::Level::Trace,
            crate::log::Level::Debug => log::Level::Debug,
            crate::log::Level::Info => log::Level::Info,
            crate::log::Level::Warn => log::Level::Warn,
            crate::log::Level::Error => log::Level::Error,
        };
        log::write(level, message, fields);
    }

    fn secret_failure(e: secrets::SecretError) -> Failure {
        match e {
            secrets::SecretError::Denied(m) => Failure::Denied(m),
            secrets::SecretError::NotFound(m) => Failure::NotFound(m),
        }
    }
    pub fn reveal(name: &str) -> Result<String, Failure> {
        secrets::reveal(name).map_err(secret_failure)
    }
    pub fn hmac(name: &str, data: &[u8]) -> Result<Vec<u8>, Failure> {
        secrets::hmac_sha256(name, data).map_err(secret_failure)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use crate::testing::with_host;

    pub fn http_send(r: RawRequest) -> Result<RawResponse, HttpFailure> {
        with_host(|h| h.http(r))
    }
    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, Failure> {
        with_host(|h| h.kv_get(key))
    }
    pub fn kv_set(key: &str, value: &[u8], ttl: Option<u64>) -> Result<(), Failure> {
        with_host(|h| h.kv_set(key, value, ttl))
    }
    pub fn kv_delete(key: &str) -> Result<bool, Failure> {
        with_host(|h| h.kv_delete(key))
    }
    pub fn kv_list(prefix: &str, limit: u32) -> Result<Vec<String>, Failure> {
        with_host(|h| h.kv_list(prefix, limit))
    }
    pub fn log(level: crate::log::Level, message: &str, fields: &[(String, String)]) {
        with_host(|h| h.log(level, message, fields))
    }
    pub fn reveal(name: &str) -> Result<String, Failure> {
        with_host(|h| h.reveal(name))
    }
    pub fn hmac(name: &str, data: &[u8]) -> Result<Vec<u8>, Failure> {
        with_host(|h| h.hmac(name, data))
    }
}

pub use imp::*;
