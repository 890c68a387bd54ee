//! A generic HTTP request for playbooks: `request` sends one request, with
//! headers, a query, a JSON or text body and a secret by handle, and returns
//! the status, headers and body (parsed when it is JSON).
//!
//! # Which hosts: none, until an operator re-packages it
//!
//! A grant may only narrow what a package's manifest requests, and the host
//! pattern grammar (`host/grant/src/http.rs`) has no "any host": `https://*`
//! is not a pattern and `*.com` is refused as too broad. A generic package
//! cannot know its operator's hosts, and requesting a long list of popular
//! APIs "just in case" would make every install ask for far more than it
//! uses. So the manifest shipped here requests **no hosts and no secrets**
//! (`allow = []`): as shipped, the package can reach nothing, and every
//! request is refused by the host with `denied`.
//!
//! To use it, an operator re-packages it with their own manifest:
//!
//! 1. copy `actions/http/allama.toml` and `actions/http/schemas/` into a
//!    directory;
//! 2. in `[package]`, set their own `publisher` (the one their trust policy
//!    lists their key under) and a `name` of their own (e.g. `http-acme`);
//! 3. list the destinations in `[capabilities.http] allow` (and
//!    `allow_private` for internal hosts), and each secret the playbooks will
//!    name in `auth` as `[capabilities.secrets.NAME] hosts = [...]`;
//! 4. `allama package build DIR --component allama_action_http.wasm`
//!    (this crate built for `wasm32-wasip2`; the component reads nothing from
//!    the manifest, so it is the same component), then
//!    `allama package sign PKG --key their.key`.
//!
//! Grants for that package then narrow it per install as usual. The
//! operator's signature vouches for the hosts they chose; Allama's never
//! covers a host list it did not write.
//!
//! # Secrets and hostile input
//!
//! Secrets travel only through `auth`, by name, and the host sends them only
//! toward the hosts the package grants for them. The URL, header values and
//! text body may not contain `{{secret:` (refused as `invalid-input`): the
//! host substitutes such placeholders, so text from an alert must not be able
//! to pull a secret into a request. In a `json` body, `{{secret:` is written
//! with its braces escaped (`\u007b`), which JSON readers decode to the same
//! text and the host leaves alone. Query parameters are percent-encoded.
//!
//! Everything is checked before any request: the method (GET, POST, PUT,
//! PATCH, DELETE), an `http`/`https` URL with a host and no user info,
//! header names (HTTP tokens, not the ones the host sets itself) and values
//! (no CR, LF or other control characters), secret names, and the timeout.
//!
//! HEAD is not offered: the Rust SDK has no `http::head` yet.
//!
//! # Statuses
//!
//! By default an error status becomes a typed error, so the engine's retry
//! policy applies: 400 `invalid-input`, 401/403 `unauthorized`, 404
//! `not-found`, 429 `rate-limited` (with `Retry-After`), 5xx a retryable
//! `upstream` error, other 4xx a non-retryable one. With
//! `accept_any_status`, every status is returned as output.

use std::collections::BTreeMap;

use allama_sdk::{Context, Error, JsonSchema, Result, actions, http};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Headers the host sets itself and refuses from a component.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
];
/// The host's limits, checked here first for a clearer message.
const MAX_URL_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;
const MAX_QUERY_PARAMS: usize = 100;
const MAX_TIMEOUT_MS: u32 = 900_000;
/// What the host substitutes.
const PLACEHOLDER: &str = "{{secret:";

/// An HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

/// How the request authenticates, by secret name. The secret must be
/// granted toward the request's host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// `Authorization: Bearer <secret>`: `{"bearer": "NAME"}`.
    Bearer(String),
    /// HTTP Basic, the secret holding `user:password`: `{"basic": "NAME"}`.
    Basic(String),
    /// A header carrying the secret: `{"header": {"name": "x-apikey", "secret": "NAME"}}`.
    Header(HeaderAuth),
}

/// A secret in a header of one's choosing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderAuth {
    /// The header's name, e.g. `x-apikey`.
    pub name: String,
    /// The secret's name.
    pub secret: String,
    /// Written before the secret, with one space between: `SSWS` gives `SSWS <secret>`.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// One request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: Method,
    /// An `http` or `https` URL; its host must be allowed by the package's manifest and grant.
    pub url: String,
    /// Request headers, `{name: value}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to the URL, `{name: value}`, percent-encoded.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// A JSON body (sent with `content-type: application/json` unless `headers` sets one; `null` sends none). Not with `body`.
    #[serde(default)]
    pub json: Option<Value>,
    /// A text body, sent as is (set `content-type` in `headers`). Not with `json`.
    #[serde(default)]
    pub body: Option<String>,
    /// Authentication with a secret, by name.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Time limit for this request in milliseconds (the grant's limit applies too).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Parse the body as JSON whatever its content type, and fail if it is not JSON.
    #[serde(default)]
    pub expect_json: bool,
    /// Return error statuses (4xx, 5xx) as output instead of failing the step.
    #[serde(default)]
    pub accept_any_status: bool,
    /// Send the step's idempotency key in this header (e.g. `Idempotency-Key`), so a vendor
    /// that deduplicates by key acts once even when a step is retried or resumed after a crash.
    #[serde(default)]
    pub idempotency_header: Option<String>,
}

/// The response.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Response headers, names in lower case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body as text (invalid UTF-8 replaced).
    pub body: String,
    /// The body parsed, when the response is JSON (by content type, or with `expect_json`) and not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
}

// ---------------------------------------------------------------- checks

fn invalid(message: String) -> Error {
    Error::invalid_input(message)
}

/// An HTTP token (RFC 9110 §5.6.2).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn checked_header_name(name: &str, what: &str) -> Result<String> {
    if !is_token(name) {
        return Err(invalid(format!(
            "{what}: `{}` is not a valid header name",
            clip(name)
        )));
    }
    let lower = name.to_ascii_lowercase();
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        return Err(invalid(format!(
            "{what}: `{lower}` is set by the host and may not be set by an action"
        )));
    }
    Ok(lower)
}

/// Header values: no control characters but tab, bounded, no placeholder.
fn checked_header_value(name: &str, value: &str) -> Result<()> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(invalid(format!(
            "header `{name}` contains a control character (CR, LF, NUL, …)"
        )));
    }
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(invalid(format!(
            "header `{name}` is {} bytes; at most {MAX_HEADER_VALUE_BYTES}",
            value.len()
        )));
    }
    no_placeholder(&format!("header `{name}`"), value)
}

fn no_placeholder(what: &str, text: &str) -> Result<()> {
    if text.contains(PLACEHOLDER) {
        return Err(invalid(format!(
            "{what} contains `{PLACEHOLDER}`: secrets are sent only through `auth`"
        )));
    }
    Ok(())
}

/// `^[A-Za-z_][A-Za-z0-9_]{0,127}$`, as the host requires.
fn checked_secret_name(name: &str) -> Result<&str> {
    let b = name.as_bytes();
    let ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && b.len() <= 128
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if !ok {
        return Err(invalid(format!(
            "`auth`: `{}` is not a secret name (letters, digits and `_`)",
            clip(name)
        )));
    }
    Ok(name)
}

/// An absolute `http`/`https` URL with a host, an optional port, and no
/// user info, whitespace, control characters or backslashes.
fn checked_url(url: &str) -> Result<&str> {
    let u = url.trim();
    let bad = |why: &str| invalid(format!("`url`: `{}` {why}", clip(url)));
    if u.len() > MAX_URL_BYTES {
        return Err(bad(&format!("is longer than {MAX_URL_BYTES} bytes")));
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) || u.contains('\\') {
        return Err(bad(
            "contains whitespace, a control character or a backslash",
        ));
    }
    let lower = u.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return Err(bad("is not an http or https URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("has user info (`user@`); send credentials with `auth`"));
    }
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) => (
                addr.parse::<std::net::Ipv6Addr>().is_ok()
                    && (rest.is_empty() || rest.starts_with(':')),
                rest.strip_prefix(':'),
            ),
            None => (false, None),
        },
        None => {
            let (h, p) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
            };
            (h.split('.').all(label_ok), p)
        }
    };
    if !host_ok {
        return Err(bad("has no valid host"));
    }
    if let Some(p) = port
        && (!p.bytes().all(|b| b.is_ascii_digit()) || !p.parse::<u16>().is_ok_and(|n| n > 0))
    {
        return Err(bad("has an invalid port"));
    }
    no_placeholder("`url`", u)?;
    Ok(u)
}

/// A JSON body in which no `{{secret:` survives: its `{` become `\u007b`,
/// which JSON readers decode back to `{`. (In serialized JSON a `{` followed
/// by `{` can only be inside a string, and serde_json never leaves a lone
/// `\` before one, so the replacement is always a valid escape.)
fn inert_json(body: &Value) -> Vec<u8> {
    body.to_string()
        .replace(PLACEHOLDER, "\\u007b\\u007bsecret:")
        .into_bytes()
}

fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// The typed error for an error status.
fn status_error(method: &str, url: &str, resp: &http::Response) -> Error {
    let s = resp.status;
    let short: String = resp.text().trim().chars().take(300).collect();
    // The query may carry data the analyst should not see in an error line.
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let message = format!("{method} {path} answered {s}: {short}");
    match s {
        400 => Error::invalid_input(message),
        401 | 403 => Error::unauthorized(message),
        404 => Error::not_found(message),
        429 => Error::rate_limited(resp.retry_after_ms(), message),
        500..=599 => Error::upstream(Some(s), message),
        _ => Error::upstream(Some(s), message).retryable(false),
    }
}

// ---------------------------------------------------------------- the action

/// What `auth` adds: a header by the SDK's helpers, or one with a prefix
/// before the secret's placeholder (which the SDK has no helper for).
enum Credential {
    Handle(http::Auth),
}

fn request(input: HttpRequest, ctx: &Context) -> Result<HttpResponse> {
    let url = checked_url(&input.url)?;
    if input.json.is_some() && input.body.is_some() {
        return Err(invalid("give `json` or `body`, not both".into()));
    }
    if let Some(t) = input.timeout_ms
        && !(1..=MAX_TIMEOUT_MS).contains(&t)
    {
        return Err(invalid(format!(
            "`timeout_ms` must be between 1 and {MAX_TIMEOUT_MS}"
        )));
    }
    if input.headers.len() > MAX_HEADERS - 2 {
        return Err(invalid(format!(
            "{} headers; at most {}",
            input.headers.len(),
            MAX_HEADERS - 2
        )));
    }
    let mut headers: Vec<(String, &str)> = Vec::with_capacity(input.headers.len());
    for (name, value) in &input.headers {
        let lower = checked_header_name(name, "`headers`")?;
        checked_header_value(&lower, value)?;
        headers.push((lower, value));
    }
    if let Some(name) = &input.idempotency_header {
        let lower = checked_header_name(name, "`idempotency_header`")?;
        if headers.iter().any(|(n, _)| *n == lower) {
            return Err(invalid(format!(
                "`headers` sets `{lower}`, which `idempotency_header` sets too"
            )));
        }
        checked_header_value(&lower, &ctx.idempotency_key)?;
        headers.push((lower, &ctx.idempotency_key));
    }
    let has = |name: &str| headers.iter().any(|(n, _)| n == name);

    if input.query.len() > MAX_QUERY_PARAMS {
        return Err(invalid(format!(
            "{} query parameters; at most {MAX_QUERY_PARAMS}",
            input.query.len()
        )));
    }
    if input.query.keys().any(String::is_empty) {
        return Err(invalid("`query` has an empty parameter name".into()));
    }
    if let Some(b) = &input.body {
        no_placeholder("`body`", b)?;
    }

    let auth: Option<(String, Credential)> = match &input.auth {
        None => None,
        Some(Auth::Bearer(s)) => Some((
            "authorization".into(),
            Credential::Handle(http::bearer(checked_secret_name(s)?)),
        )),
        Some(Auth::Basic(s)) => Some((
            "authorization".into(),
            Credential::Handle(http::basic(checked_secret_name(s)?)),
        )),
        Some(Auth::Header(h)) => {
            let name = checked_header_name(&h.name, "`auth.header.name`")?;
            let secret = checked_secret_name(&h.secret)?;
            let credential = match &h.prefix {
                None => Credential::Handle(http::header(&name, secret)),
                Some(p) => {
                    let p = p.trim();
                    if p.is_empty() {
                        return Err(invalid("`auth.header.prefix` is empty".into()));
                    }
                    checked_header_value(&name, p)?;
                    Credential::Handle(http::prefixed(&name, p, secret))
                }
            };
            Some((name, credential))
        }
    };
    if let Some((name, _)) = &auth
        && has(name)
    {
        return Err(invalid(format!(
            "`headers` sets `{name}`, which `auth` sets too"
        )));
    }

    let method = match input.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    };
    let mut req = match input.method {
        Method::Get => http::get(url),
        Method::Post => http::post(url),
        Method::Put => http::put(url),
        Method::Patch => http::patch(url),
        Method::Delete => http::delete(url),
    };
    for (k, v) in &input.query {
        req = req.query(k, v);
    }
    for (name, value) in &headers {
        req = req.header(name, value);
    }
    match auth {
        Some((_, Credential::Handle(a))) => req = req.auth(a),
        None => {}
    }
    if let Some(j) = &input.json {
        if !has("content-type") {
            req = req.header("content-type", "application/json");
        }
        req = req.body(inert_json(j));
    } else if let Some(b) = input.body {
        req = req.body(b);
    }
    if let Some(t) = input.timeout_ms {
        req = req.timeout_ms(t);
    }
    let sent_url = req.url();

    let resp = req.send()?;
    if !input.accept_any_status && resp.status >= 400 {
        return Err(status_error(method, &sent_url, &resp));
    }
    let mut out_headers: BTreeMap<String, String> = BTreeMap::new();
    for (n, v) in &resp.headers {
        out_headers
            .entry(n.to_ascii_lowercase())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    let body = resp.text();
    let json = if body.trim().is_empty() {
        None
    } else if input.expect_json {
        Some(resp.json::<Value>()?)
    } else if resp.header("content-type").is_some_and(is_json_media_type) {
        serde_json::from_slice(&resp.body).ok()
    } else {
        None
    };
    Ok(HttpResponse {
        status: resp.status,
        headers: out_headers,
        body,
        json,
    })
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

actions! {
    "request" => request,
}

#[cfg(test)]
mod tests {
    use super::*;
    use allama_sdk::ErrorKind;
    use allama_sdk::testing::{MockHost, Reply};
    use base64::Engine;
    use serde_json::json;

    const API: &str = "https://api.example.com/v1/items";

    fn run(host: &MockHost, input: Value) -> Result<Value> {
        host.run(Actions::dispatch, "request", input)
    }

    #[test]
    fn get_with_query_headers_and_bearer() {
        let host = MockHost::new().secret("API_TOKEN", "t0k3n").on(
            "GET",
            API,
            Reply::json(200, json!({"items": [1, 2]}))
                .header("X-Request-Id", "r1")
                .header("Vary", "a")
                .header("vary", "b"),
        );
        let out = run(
            &host,
            json!({"method": "GET", "url": " https://api.example.com/v1/items?fixed=1 ",
                "headers": {"Accept": "application/json", "X-Trace": "abc\tdef"},
                "query": {"q": "a b&c=d", "page": "2"}, "auth": {"bearer": "API_TOKEN"}, "timeout_ms": 5000}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"status": 200, "headers": {"content-type": "application/json", "x-request-id": "r1", "vary": "a, b"},
                "body": "{\"items\":[1,2]}", "json": {"items": [1, 2]}})
        );
        let sent = host.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, "GET");
        assert_eq!(
            sent[0].url,
            "https://api.example.com/v1/items?fixed=1&page=2&q=a%20b%26c%3Dd"
        );
        assert_eq!(sent[0].header("authorization"), Some("Bearer t0k3n"));
        assert_eq!(sent[0].header("accept"), Some("application/json"));
        assert_eq!(sent[0].header("x-trace"), Some("abc\tdef"));
        assert_eq!(sent[0].header("content-type"), None);
        assert_eq!(sent[0].body, None);
    }

    #[test]
    fn post_json_with_basic_auth() {
        let host = MockHost::new().secret("SVC", "user:p@ss").on(
            "POST",
            API,
            Reply::json(201, json!({"id": 7})),
        );
        let out = run(&host, json!({"method": "POST", "url": API, "json": {"name": "x", "tags": ["a"]}, "auth": {"basic": "SVC"}})).unwrap();
        assert_eq!(out["status"], 201);
        assert_eq!(out["json"], json!({"id": 7}));
        let sent = &host.requests()[0];
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.url, API);
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:p@ss")
        );
        assert_eq!(sent.header("authorization"), Some(basic.as_str()));
        assert_eq!(sent.header("content-type"), Some("application/json"));
        assert_eq!(sent.body_text(), r#"{"name":"x","tags":["a"]}"#);
    }

    #[test]
    fn idempotency_key_in_a_header_of_ones_choosing() {
        let host = MockHost::new().on("POST", API, Reply::json(201, json!({})));
        run(&host, json!({"method": "POST", "url": API, "json": {}, "idempotency_header": "Idempotency-Key"})).unwrap();
        assert_eq!(
            host.requests()[0].header("idempotency-key"),
            Some("test-run/request")
        );
        for (input, needle) in [
            (
                json!({"method": "POST", "url": API, "idempotency_header": "Bad Name"}),
                "idempotency_header",
            ),
            (
                json!({"method": "POST", "url": API, "idempotency_header": "host"}),
                "host",
            ),
            (
                json!({"method": "POST", "url": API, "idempotency_header": "x-key", "headers": {"X-Key": "mine"}}),
                "sets too",
            ),
            (
                json!({"method": "POST", "url": API, "idempotency_header": 7}),
                "expected a string",
            ),
        ] {
            let e = run(&host, input.clone()).expect_err(&input.to_string());
            assert!(e.to_string().contains(needle), "{input}: {e}");
        }
        assert_eq!(
            host.requests().len(),
            1,
            "refused input never reaches the vendor"
        );
    }

    #[test]
    fn put_patch_delete_and_text_bodies() {
        for (method, body) in [
            ("PUT", Some("a=1&b=2")),
            ("PATCH", Some("<x/>")),
            ("DELETE", None),
        ] {
            let host = MockHost::new().on(method, API, Reply::text(204, ""));
            let mut input =
                json!({"method": method, "url": API, "headers": {"Content-Type": "text/xml"}});
            if let Some(b) = body {
                input["body"] = json!(b);
            }
            let out = run(&host, input).unwrap();
            assert_eq!(
                out,
                json!({"status": 204, "headers": {}, "body": ""}),
                "{method}"
            );
            let sent = &host.requests()[0];
            assert_eq!(sent.method, method);
            assert_eq!(sent.header("content-type"), Some("text/xml"));
            assert_eq!(sent.body.as_deref(), body.map(str::as_bytes), "{method}");
        }
    }

    #[test]
    fn a_json_body_keeps_a_caller_content_type() {
        let host = MockHost::new().on("POST", API, Reply::text(202, "queued"));
        let out = run(&host, json!({"method": "POST", "url": API, "headers": {"content-type": "application/vnd.api+json"}, "json": [1]})).unwrap();
        assert_eq!(out, json!({"status": 202, "headers": {}, "body": "queued"}));
        let sent = &host.requests()[0];
        assert_eq!(
            sent.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
        assert_eq!(
            sent.header("content-type"),
            Some("application/vnd.api+json")
        );
        assert_eq!(sent.body_text(), "[1]");
    }

    #[test]
    fn header_auth_with_and_without_prefix() {
        let host = MockHost::new()
            .secret("OKTA", "00abc")
            .on("GET", API, Reply::text(200, "ok"));
        run(&host, json!({"method": "GET", "url": API, "auth": {"header": {"name": "Authorization", "secret": "OKTA", "prefix": " SSWS "}}})).unwrap();
        run(&host, json!({"method": "GET", "url": API, "auth": {"header": {"name": "X-ApiKey", "secret": "OKTA"}}})).unwrap();
        let sent = host.requests();
        assert_eq!(sent[0].header("authorization"), Some("SSWS 00abc"));
        assert_eq!(sent[1].header("x-apikey"), Some("00abc"));
        assert_eq!(sent[1].header("authorization"), None);
    }

    #[test]
    fn json_is_parsed_by_content_type_or_on_request() {
        let cases = [
            (
                Reply::text(200, "{\"a\":1}")
                    .header("content-type", "application/problem+json; charset=utf-8"),
                false,
                Some(json!({"a": 1})),
            ),
            (
                Reply::text(200, "{\"a\":1}").header("content-type", "text/plain"),
                false,
                None,
            ),
            (
                Reply::text(200, "{\"a\":1}").header("content-type", "text/plain"),
                true,
                Some(json!({"a": 1})),
            ),
            (
                Reply::text(200, "not json").header("content-type", "application/json"),
                false,
                None,
            ),
            (
                Reply::text(200, "  ").header("content-type", "application/json"),
                true,
                None,
            ),
        ];
        for (reply, expect_json, json) in cases {
            let host = MockHost::new().on("GET", API, reply);
            let out = run(
                &host,
                json!({"method": "GET", "url": API, "expect_json": expect_json}),
            )
            .unwrap();
            assert_eq!(out.get("json"), json.as_ref(), "{out}");
        }
        let host = MockHost::new().on("GET", API, Reply::text(200, "<html>"));
        let e = run(
            &host,
            json!({"method": "GET", "url": API, "expect_json": true}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream(Some(200)), "{e}");
        assert!(!e.retryable);
    }

    #[test]
    fn error_statuses_become_typed_errors() {
        let cases = [
            (
                Reply::json(400, json!({"error": "bad field"})),
                ErrorKind::InvalidInput,
                false,
            ),
            (
                Reply::text(401, "who are you"),
                ErrorKind::Unauthorized,
                false,
            ),
            (Reply::text(403, "no"), ErrorKind::Unauthorized, false),
            (Reply::text(404, "gone"), ErrorKind::NotFound, false),
            (
                Reply::text(409, "conflict"),
                ErrorKind::Upstream(Some(409)),
                false,
            ),
            (
                Reply::text(429, "slow down").header("Retry-After", "3"),
                ErrorKind::RateLimited(Some(3_000)),
                true,
            ),
            (
                Reply::text(429, "slow down"),
                ErrorKind::RateLimited(None),
                true,
            ),
            (
                Reply::text(500, "boom"),
                ErrorKind::Upstream(Some(500)),
                true,
            ),
            (
                Reply::text(503, "later"),
                ErrorKind::Upstream(Some(503)),
                true,
            ),
        ];
        for (reply, kind, retryable) in cases {
            let status = reply.status;
            let host = MockHost::new().on("DELETE", API, reply);
            let e = run(
                &host,
                json!({"method": "DELETE", "url": API, "query": {"token": "hidden"}}),
            )
            .unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
            assert_eq!(e.retryable, retryable, "{e}");
            assert!(
                e.message
                    .starts_with(&format!("DELETE {API} answered {status}: ")),
                "{e}"
            );
            assert!(!e.message.contains("hidden"), "{e}");
        }
    }

    #[test]
    fn accept_any_status_returns_errors_as_output() {
        let host = MockHost::new().on(
            "GET",
            API,
            Reply::json(404, json!({"error": "no such item"})),
        );
        let out = run(
            &host,
            json!({"method": "GET", "url": API, "accept_any_status": true}),
        )
        .unwrap();
        assert_eq!(out["status"], 404);
        assert_eq!(out["json"], json!({"error": "no such item"}));
    }

    #[test]
    fn host_refusals_and_missing_secrets_are_denied() {
        let host = MockHost::new().on("GET", API, Reply::text(200, "ok"));
        let e = run(
            &host,
            json!({"method": "GET", "url": API, "auth": {"bearer": "NOT_GRANTED"}}),
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Denied, "{e}");
    }

    #[test]
    fn secret_placeholders_from_input_never_reach_the_host() {
        let host = MockHost::new()
            .secret("K", "s3cret")
            .on("POST", API, Reply::text(200, "ok"));
        let hostile = json!({"note": "{{secret:K}}", "b64": "{{secret:K|base64}}", "{{secret:K}}": ["\\{{secret:K}}"]});
        run(
            &host,
            json!({"method": "POST", "url": API, "json": hostile, "query": {"q": "{{secret:K}}"}}),
        )
        .unwrap();
        let sent = &host.requests()[0];
        assert!(
            !sent.body_text().contains("{{secret:") && !sent.body_text().contains("s3cret"),
            "{}",
            sent.body_text()
        );
        assert_eq!(
            serde_json::from_slice::<Value>(sent.body.as_deref().unwrap()).unwrap(),
            hostile
        );
        assert_eq!(sent.url, format!("{API}?q=%7B%7Bsecret%3AK%7D%7D"));

        for input in [
            json!({"method": "POST", "url": API, "body": "x={{secret:K}}"}),
            json!({"method": "GET", "url": API, "headers": {"X-Note": "{{secret:K}}"}}),
            json!({"method": "GET", "url": "https://api.example.com/{{secret:K}}"}),
            json!({"method": "GET", "url": "https://api.example.com/x?k={{secret:K}}"}),
            json!({"method": "GET", "url": API, "auth": {"header": {"name": "x-k", "secret": "K", "prefix": "{{secret:K}}"}}}),
        ] {
            let e = run(&host, input.clone()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{input}: {e}");
        }
        assert_eq!(host.requests().len(), 1);
    }

    #[test]
    fn hostile_input_is_refused_before_any_request() {
        let host = MockHost::new().secret("K", "v");
        let get = |url: &str| json!({"method": "GET", "url": url});
        let with = |key: &str, value: Value| {
            let mut v = json!({"method": "GET", "url": API});
            v[key] = value;
            v
        };
        let mut cases = vec![];
        for method in [
            "get", "HEAD", "OPTIONS", "TRACE", "CONNECT", "GET ", "G\r\nET", "",
        ] {
            cases.push(json!({"method": method, "url": API}));
        }
        cases.push(json!({"method": 1, "url": API}));
        for url in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "//example.com/x",
            "example.com",
            "https://",
            "https:///path",
            "https://user:pw@example.com/",
            "https://@example.com/",
            "https://example.com@evil.com/",
            "https://exa mple.com/",
            "https://example.com/a b",
            "https://example.com/\r\nHost: evil",
            "https://example.com\\@evil.com/",
            "https://example.com:0/",
            "https://example.com:99999/",
            "https://example.com:x/",
            "https://[::1/",
            "https://[nothex]/",
            "https://a..b/",
            "https://example.com./",
            "https://%65xample.com/",
            "",
        ] {
            cases.push(get(url));
        }
        cases.push(get(&format!(
            "https://example.com/{}",
            "a".repeat(MAX_URL_BYTES)
        )));
        for (name, value) in [
            ("X-A", "a\r\nInjected: 1"),
            ("X-A", "a\nb"),
            ("X-A", "a\0b"),
            ("X A", "v"),
            ("X:A", "v"),
            ("", "v"),
            ("X-\u{e9}", "v"),
            ("Host", "evil.com"),
            ("content-length", "0"),
            ("Transfer-Encoding", "chunked"),
            ("Proxy-Authorization", "x"),
        ] {
            cases.push(with("headers", json!({ name: value })));
        }
        cases.push(with(
            "headers",
            json!({"X-Big": "a".repeat(MAX_HEADER_VALUE_BYTES + 1)}),
        ));
        cases.push(with(
            "headers",
            Value::Object((0..99).map(|i| (format!("x-{i}"), json!("v"))).collect()),
        ));
        cases.push(with("headers", json!({"X-Num": 1})));
        cases.push(with("query", json!({"": "v"})));
        cases.push(with("query", json!({"n": 1})));
        cases.push(json!({"method": "POST", "url": API, "json": {}, "body": "x"}));
        for t in [0, 900_001] {
            cases.push(with("timeout_ms", json!(t)));
        }
        cases.push(with("timeout_ms", json!(-1)));
        for auth in [
            json!({"bearer": "1BAD"}),
            json!({"bearer": "BAD-NAME"}),
            json!({"bearer": ""}),
            json!({"basic": "a b"}),
            json!({"bearer": "K", "basic": "K"}),
            json!({"token": "K"}),
            json!("K"),
            json!({"header": {"name": "x-k"}}),
            json!({"header": {"name": "x k", "secret": "K"}}),
            json!({"header": {"name": "Host", "secret": "K"}}),
            json!({"header": {"name": "x-k", "secret": "K", "prefix": " "}}),
            json!({"header": {"name": "x-k", "secret": "K", "prefix": "a\r\nb"}}),
            json!({"header": {"name": "x-k", "secret": "K", "extra": 1}}),
        ] {
            cases.push(with("auth", auth));
        }
        cases.push(json!({"method": "GET", "url": API, "headers": {"Authorization": "Basic x"}, "auth": {"bearer": "K"}}));
        cases.push(json!({"method": "GET", "url": API, "headers": {"X-Key": "x"}, "auth": {"header": {"name": "x-key", "secret": "K"}}}));
        cases.push(json!({"method": "GET", "url": API, "follow": true}));
        cases.push(json!({"url": API}));
        for input in cases {
            let e = run(&host, input.clone()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{input}: {e}");
        }
        let e = host
            .run(
                Actions::dispatch,
                "get",
                json!({"method": "GET", "url": API}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(host.requests().is_empty());
    }

    #[test]
    fn unusual_but_valid_urls_are_accepted() {
        for url in [
            "HTTPS://API.Example.com/x",
            "http://example.com",
            "https://example.com:8443/a?b=c#frag",
            "https://[2001:db8::1]:8443/x",
            "https://[2001:db8::1]/",
            "https://203.0.113.7/x",
            "https://b\u{fc}cher.example/",
            "https://my_host.example.com/",
        ] {
            assert!(checked_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn schemas_are_derived_from_the_types() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
        allama_sdk::schema::check_file::<HttpRequest>(&format!("{dir}/request.json")).unwrap();
        allama_sdk::schema::check_file::<HttpResponse>(&format!("{dir}/response.json")).unwrap();
    }
}
