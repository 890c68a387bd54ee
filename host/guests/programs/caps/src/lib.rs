//! A well-behaved component: one action per capability use, driven by its
//! JSON input, so host tests can exercise every capability from inside Wasm.
wit_bindgen::generate!({ path: "../../../../wit", world: "action" });

use allama::action::types::ErrorKind;
use allama::action::{http, kv, log, secrets};
use serde_json::{Value, json};

struct Caps;

fn bad_input(message: String) -> ActionError {
    ActionError {
        kind: ErrorKind::InvalidInput,
        message,
        retryable: false,
    }
}

fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, ActionError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| bad_input(format!("input.{name}: expected a string")))
}

fn http_error_json(e: http::HttpError) -> Value {
    let (kind, detail) = match e {
        http::HttpError::Denied(m) => ("denied", json!(m)),
        http::HttpError::InvalidRequest(m) => ("invalid-request", json!(m)),
        http::HttpError::Timeout(m) => ("timeout", json!(m)),
        http::HttpError::RateLimited(ms) => ("rate-limited", json!(ms)),
        http::HttpError::ResponseTooLarge(n) => ("response-too-large", json!(n)),
        http::HttpError::Connection(m) => ("connection", json!(m)),
    };
    json!({ "error": kind, "detail": detail })
}

fn method(name: &str) -> Result<http::Method, ActionError> {
    Ok(match name {
        "GET" => http::Method::Get,
        "HEAD" => http::Method::Head,
        "POST" => http::Method::Post,
        "PUT" => http::Method::Put,
        "PATCH" => http::Method::Patch,
        "DELETE" => http::Method::Delete,
        "OPTIONS" => http::Method::Options,
        other => return Err(bad_input(format!("input.method: unknown method {other}"))),
    })
}

/// `{"method","url","headers":[[n,v]],"body"}` → `{"status","headers","body"}` or `{"error","detail"}`.
fn do_http(input: &Value) -> Result<Value, ActionError> {
    let headers = input
        .get("headers")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    Some((
                        h.get(0)?.as_str()?.to_string(),
                        h.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let req = http::Request {
        method: method(input.get("method").and_then(Value::as_str).unwrap_or("GET"))?,
        url: str_field(input, "url")?.to_string(),
        headers,
        body: input
            .get("body")
            .and_then(Value::as_str)
            .map(|b| b.as_bytes().to_vec()),
        timeout_ms: input
            .get("timeout_ms")
            .and_then(Value::as_u64)
            .map(|t| t as u32),
    };
    Ok(match http::send(&req) {
        Ok(resp) => json!({
            "status": resp.status,
            "headers": resp.headers,
            "body": String::from_utf8_lossy(&resp.body),
            "body_len": resp.body.len(),
        }),
        Err(e) => http_error_json(e),
    })
}

fn secret_result<T: Into<Value>>(r: Result<T, secrets::SecretError>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v.into() }),
        Err(secrets::SecretError::Denied(m)) => json!({ "error": "denied", "detail": m }),
        Err(secrets::SecretError::NotFound(m)) => json!({ "error": "not-found", "detail": m }),
    }
}

fn kv_result<T: Into<Value>>(r: Result<T, kv::KvError>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v.into() }),
        Err(e) => {
            let (kind, m) = match e {
                kv::KvError::Denied(m) => ("denied", m),
                kv::KvError::QuotaExceeded(m) => ("quota-exceeded", m),
                kv::KvError::InvalidKey(m) => ("invalid-key", m),
                kv::KvError::TooLarge(m) => ("too-large", m),
                kv::KvError::Unavailable(m) => ("unavailable", m),
            };
            json!({ "error": kind, "detail": m })
        }
    }
}

impl Guest for Caps {
    fn run(action: String, input: String, ctx: Context) -> Result<String, ActionError> {
        let input: Value = serde_json::from_str(&input)
            .map_err(|e| bad_input(format!("input is not JSON: {e}")))?;
        let out = match action.as_str() {
            "echo" => input,
            "context" => json!({
                "run_id": ctx.run_id, "step_id": ctx.step_id,
                "idempotency_key": ctx.idempotency_key, "attempt": ctx.attempt,
            }),
            "http" => do_http(&input)?,
            "reveal" => secret_result(secrets::reveal(str_field(&input, "name")?)),
            "hmac" => {
                let data = str_field(&input, "data")?.as_bytes().to_vec();
                let mac = secrets::hmac_sha256(str_field(&input, "name")?, &data)
                    .map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<String>());
                secret_result(mac)
            }
            "kv-set" => {
                let ttl = input.get("ttl").and_then(Value::as_u64);
                kv_result(
                    kv::set(
                        str_field(&input, "key")?,
                        str_field(&input, "value")?.as_bytes(),
                        ttl,
                    )
                    .map(|()| true),
                )
            }
            "kv-get" => kv_result(kv::get(str_field(&input, "key")?).map(|v| {
                v.map_or(Value::Null, |b| {
                    Value::String(String::from_utf8_lossy(&b).into_owned())
                })
            })),
            "kv-delete" => kv_result(kv::delete(str_field(&input, "key")?)),
            "kv-list" => {
                let limit = input.get("limit").and_then(Value::as_u64).unwrap_or(100) as u32;
                kv_result(kv::list_prefix(str_field(&input, "prefix")?, limit))
            }
            "log" => {
                log::write(
                    log::Level::Info,
                    str_field(&input, "message")?,
                    &[("step".into(), ctx.step_id.clone())],
                );
                println!("stdout: {}", str_field(&input, "message")?);
                eprintln!("stderr: {}", str_field(&input, "message")?);
                json!({ "logged": true })
            }
            "fail" => {
                let kind = match str_field(&input, "kind")? {
                    "not-found" => ErrorKind::NotFound,
                    "rate-limited" => {
                        ErrorKind::RateLimited(input.get("retry_after_ms").and_then(Value::as_u64))
                    }
                    "upstream" => ErrorKind::Upstream(Some(502)),
                    "unauthorized" => ErrorKind::Unauthorized,
                    _ => ErrorKind::Internal,
                };
                return Err(ActionError {
                    kind,
                    message: "asked to fail".into(),
                    retryable: true,
                });
            }
            other => return Err(bad_input(format!("unknown action `{other}`"))),
        };
        Ok(out.to_string())
    }
}

export!(Caps);
