//! Outbound HTTP through the host. Secrets are handles: [`bearer`],
//! [`basic`], [`header`] and [`Request::query_secret`] write
//! `{{secret:NAME}}` placeholders that the host fills in on the way out,
//! only toward hosts the grant allows for that secret.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{self, HttpFailure, RawRequest};
use crate::{Error, Result};

/// How a request authenticates, by secret name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <secret>`.
    Bearer(String),
    /// `Authorization: Basic base64(<secret>)`, the secret holding `user:password`.
    Basic(String),
    /// `<name>: <secret>`.
    Header(String, String),
    /// `<name>: <prefix> <secret>` (e.g. Okta's `Authorization: SSWS <token>`).
    Prefixed(String, String, String),
}

/// `Authorization: Bearer` with the secret `name`.
pub fn bearer(secret: &str) -> Auth {
    Auth::Bearer(secret.to_string())
}

/// HTTP Basic with the secret `name`, which holds `user:password`.
pub fn basic(secret: &str) -> Auth {
    Auth::Basic(secret.to_string())
}

/// `<header>: <prefix> <secret>`, e.g. `prefixed("authorization", "SSWS", "OKTA_TOKEN")`.
/// The prefix is data: one holding `{{secret:` makes `send` fail.
pub fn prefixed(header: &str, prefix: &str, secret: &str) -> Auth {
    Auth::Prefixed(header.to_string(), prefix.to_string(), secret.to_string())
}

/// A vendor-specific header (`x-apikey`, `Key`, …) carrying the secret `name`.
pub fn header(name: &str, secret: &str) -> Auth {
    Auth::Header(name.to_string(), secret.to_string())
}

fn placeholder(secret: &str) -> String {
    format!("{{{{secret:{secret}}}}}")
}

/// A request being built.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until sent"]
pub struct Request {
    raw: RawRequest,
    query: Vec<(String, String)>,
    /// Set when data tried to become a template; `send` refuses.
    problem: Option<String>,
}

fn request(method: &'static str, url: &str) -> Request {
    Request {
        raw: RawRequest {
            method,
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        },
        query: Vec::new(),
        problem: None,
    }
}

/// A GET request.
pub fn get(url: &str) -> Request {
    request("GET", url)
}
/// A HEAD request.
pub fn head(url: &str) -> Request {
    request("HEAD", url)
}
/// A POST request.
pub fn post(url: &str) -> Request {
    request("POST", url)
}
/// A PUT request.
pub fn put(url: &str) -> Request {
    request("PUT", url)
}
/// A PATCH request.
pub fn patch(url: &str) -> Request {
    request("PATCH", url)
}
/// A DELETE request.
pub fn delete(url: &str) -> Request {
    request("DELETE", url)
}

fn escape_placeholders(json: &[u8]) -> Vec<u8> {
    const OPEN: &[u8] = b"{{secret:";
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    while i < json.len() {
        if json[i..].starts_with(OPEN) {
            out.extend_from_slice(br"\u007b\u007bsecret:");
            i += OPEN.len();
        } else {
            out.push(json[i]);
            i += 1;
        }
    }
    out
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Request {
    /// Add a query parameter (percent-encoded).
    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((encode(key), encode(&value.to_string())));
        self
    }
    /// Add a query parameter whose value is the secret `name`.
    pub fn query_secret(mut self, key: &str, secret: &str) -> Self {
        self.query.push((encode(key), placeholder(secret)));
        self
    }
    /// Add a header.
    /// Add a header. Its value is data, never a template: a value holding
    /// `{{secret:` (say, from an alert) makes `send` fail; credentials go
    /// through [`Request::auth`].
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if value.contains("{{secret:") {
            self.problem = Some(format!(
                "header `{name}` holds `{{{{secret:`; secrets go in headers only through auth()"
            ));
        }
        self.credential_header(name, value)
    }

    fn credential_header(mut self, name: &str, value: &str) -> Self {
        self.raw.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// Authenticate with a secret handle.
    pub fn auth(self, auth: Auth) -> Self {
        match auth {
            Auth::Bearer(s) => {
                self.credential_header("authorization", &format!("Bearer {}", placeholder(&s)))
            }
            Auth::Basic(s) => {
                self.credential_header("authorization", &format!("Basic {{{{secret:{s}|base64}}}}"))
            }
            Auth::Prefixed(name, prefix, s) => {
                let mut r = self;
                if prefix.contains("{{secret:") {
                    r.problem = Some(format!("the prefix of header `{name}` holds `{{{{secret:`"));
                }
                let value = format!("{prefix} {}", placeholder(&s));
                r.credential_header(&name, &value)
            }
            Auth::Header(name, s) => {
                let value = placeholder(&s);
                self.credential_header(&name, &value)
            }
        }
    }
    /// A JSON body. Data is never a template: a `{{secret:` inside a JSON
    /// string (alert text copied into a ticket, say) is written as
    /// `\u007b\u007bsecret:`, which the vendor decodes to the same text but
    /// the host does not substitute. Outside strings the sequence cannot
    /// occur in JSON, so the replacement is exact.
    pub fn json<T: Serialize>(mut self, body: &T) -> Self {
        let bytes = serde_json::to_vec(body).expect("JSON bodies serialize");
        self.raw.body = Some(escape_placeholders(&bytes));
        self.header("content-type", "application/json")
    }
    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        self.raw.body = Some(body.join("&").into_bytes());
        self.header("content-type", "application/x-www-form-urlencoded")
    }
    /// A raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.raw.body = Some(body.into());
        self
    }
    /// A per-request timeout (capped by the grant).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.raw.timeout_ms = Some(ms);
        self
    }

    fn finish(self) -> RawRequest {
        let mut raw = self.raw;
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            raw.url.push(if raw.url.contains('?') { '&' } else { '?' });
            raw.url.push_str(&q.join("&"));
        }
        raw
    }

    /// The URL as it will be sent (placeholders unsubstituted).
    pub fn url(&self) -> String {
        self.clone().finish().url
    }

    /// Send it; any status is a [`Response`]. Host refusals and transport
    /// failures become typed errors.
    pub fn send(self) -> Result<Response> {
        if let Some(problem) = &self.problem {
            return Err(Error::invalid_input(problem.clone()));
        }
        let raw = self.finish();
        let what = format!("{} {}", raw.method, raw.url);
        match backend::http_send(raw) {
            Ok(r) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
                what,
            }),
            Err(HttpFailure::Denied(m)) => Err(Error::denied(m)),
            Err(HttpFailure::InvalidRequest(m)) => {
                Err(Error::internal(format!("the request was malformed: {m}")))
            }
            Err(HttpFailure::Timeout(m)) => Err(Error::new(crate::ErrorKind::Timeout, m)),
            Err(HttpFailure::RateLimited(ms)) => Err(Error::rate_limited(
                Some(ms),
                format!("{what}: the vendor asked us to wait {ms} ms"),
            )),
            Err(HttpFailure::TooLarge(n)) => Err(Error::upstream(
                None,
                format!("{what}: the response is larger than {n} bytes"),
            )
            .retryable(false)),
            Err(HttpFailure::Connection(m)) => Err(Error::upstream(None, m)),
        }
    }

    /// Send it, turn error statuses into typed errors, and parse the JSON body.
    pub fn send_json<T: DeserializeOwned>(self) -> Result<T> {
        self.send()?.error_for_status()?.json()
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Body (secrets sent are scrubbed by the host).
    pub body: Vec<u8>,
    what: String,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::upstream(
                Some(self.status),
                format!("{}: the response is not the expected JSON: {e}", self.what),
            )
            .retryable(false)
        })
    }
    /// `Retry-After` in milliseconds, if present as seconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000))
    }
    /// Typed errors for error statuses: 401/403 unauthorized, 404 not found,
    /// 429 rate limited (with Retry-After), 5xx upstream (retryable), other
    /// 4xx upstream (not retryable).
    pub fn error_for_status(self) -> Result<Response> {
        let s = self.status;
        let detail = || {
            let text = self.text();
            let short: String = text.chars().take(300).collect();
            format!("{} answered {s}: {short}", self.what)
        };
        match s {
            200..=399 => Ok(self),
            401 | 403 => Err(Error::unauthorized(detail())),
            404 => Err(Error::not_found(detail())),
            429 => Err(Error::rate_limited(self.retry_after_ms(), detail())),
            500..=599 => Err(Error::upstream(Some(s), detail())),
            _ => Err(Error::upstream(Some(s), detail()).retryable(false)),
        }
    }
}

/// Follow a paginated API: `next` reads each page and returns its items and
/// the next request (or `None` at the end). Stops after `max_pages`.
pub fn paginate<T>(
    first: Request,
    max_pages: usize,
    mut next: impl FnMut(&Response) -> Result<(Vec<T>, Option<Request>)>,
) -> Result<Vec<T>> {
    let mut items = Vec::new();
    let mut request = Some(first);
    let mut pages = 0;
    while let Some(r) = request.take() {
        if pages == max_pages {
            break;
        }
        let resp = r.send()?.error_for_status()?;
        let (mut page, following) = next(&resp)?;
        items.append(&mut page);
        request = following;
        pages += 1;
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_in_json_data_are_escaped_but_decode_unchanged() {
        let text = "alert says {{secret:JIRA_BASIC}} and {{other}}";
        let r = post("https://x.example/").json(&serde_json::json!({ "description": text }));
        let body = r.raw.body.clone().unwrap();
        assert!(
            !body.windows(9).any(|w| w == b"{{secret:"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let back: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(back["description"], text);
    }

    #[test]
    fn a_header_value_from_data_cannot_name_a_secret() {
        let r = get("https://x.example/").header("x-note", "see {{secret:VT_API_KEY}}");
        let e = r.send().unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::InvalidInput);
        assert!(e.message.contains("header `x-note`"), "{e}");
        // auth() still writes the handle.
        let ok = get("https://x.example/").auth(bearer("TOKEN"));
        assert_eq!(ok.raw.headers[0].1, "Bearer {{secret:TOKEN}}");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        let r = get("https://x.example/a")
            .query("q", "{{secret:K}} & =")
            .query_secret("key", "K");
        assert_eq!(
            r.url(),
            "https://x.example/a?q=%7B%7Bsecret%3AK%7D%7D%20%26%20%3D&key={{secret:K}}"
        );
    }
}
