//! Run actions natively, with mocked capabilities, in `cargo test`.
//!
//! ```
//! use allama_sdk::testing::{MockHost, Reply};
//! # mod component { allama_sdk::actions! { "echo" => echo, }
//! #   fn echo(v: serde_json::Value, _: &allama_sdk::Context) -> allama_sdk::Result<serde_json::Value> { Ok(v) } }
//! let host = MockHost::new()
//!     .secret("VT_API_KEY", "test-key")
//!     .on("GET", "https://www.virustotal.com/api/v3/ip_addresses/203.0.113.7", Reply::json(200, serde_json::json!({"data": {}})));
//! let out = host.run(component::Actions::dispatch, "echo", serde_json::json!({"a": 1})).unwrap();
//! assert_eq!(out, serde_json::json!({"a": 1}));
//! ```
//!
//! The mock substitutes `{{secret:NAME}}` placeholders as the host would
//! (an unknown secret is a `denied` error), so a test sees exactly what the
//! vendor would receive: [`MockHost::requests`]. Exchanges can be recorded
//! as JSON and loaded with [`MockHost::exchanges_json`].

#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::backend::{Failure, HttpFailure, RawRequest, RawResponse};
use crate::log::Level;
use crate::{Context, Error, Result};

/// A mocked response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// Body (UTF-8 in recordings).
    #[serde(default)]
    pub body: String,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
    /// A text reply.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: body.to_string(),
        }
    }
    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// One recorded exchange: a request pattern and its reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// Method, e.g. `GET`.
    pub method: String,
    /// URL as the action writes it (placeholders unsubstituted). Without a
    /// `?`, the query is ignored when matching; a trailing `*` matches any
    /// suffix.
    pub url: String,
    /// The reply.
    pub reply: Reply,
}

/// A request the action sent, after secret substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Method.
    pub method: String,
    /// URL with secrets substituted.
    pub url: String,
    /// Headers with secrets substituted.
    pub headers: Vec<(String, String)>,
    /// Body with secrets substituted.
    pub body: Option<Vec<u8>>,
}

impl Sent {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(self.body.as_deref().unwrap_or_default()).into_owned()
    }
}

/// A captured log line: level, message, fields.
pub type LogLine = (Level, String, Vec<(String, String)>);

#[derive(Default)]
struct State {
    exchanges: Vec<(Exchange, usize)>,
    sent: Vec<Sent>,
    kv: BTreeMap<String, Vec<u8>>,
    logs: Vec<LogLine>,
}

/// Mocked capabilities for native tests.
#[derive(Clone, Default)]
pub struct MockHost {
    secrets: HashMap<String, String>,
    revealable: Vec<String>,
    state: Rc<RefCell<State>>,
    kv_enabled: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<MockHost>> = const { RefCell::new(None) };
}

pub(crate) fn with_host<R>(f: impl FnOnce(&MockHost) -> R) -> R {
    CURRENT.with(|c| {
        let host = c
            .borrow()
            .clone()
            .expect("allama-sdk capabilities used outside MockHost::run (or outside a component)");
        f(&host)
    })
}

fn substitute(
    text: &str,
    secrets: &HashMap<String, String>,
) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{secret:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 9..];
        let end = after.find("}}").ok_or("unclosed `{{secret:`")?;
        let spec = &after[..end];
        let (name, b64) = match spec.strip_suffix("|base64") {
            Some(n) => (n, true),
            None => (spec, false),
        };
        let value = secrets.get(name).ok_or_else(|| {
            format!("secret `{name}` is not granted (add it with MockHost::secret)")
        })?;
        if b64 {
            use base64::Engine;
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(value));
        } else {
            out.push_str(value);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn url_matches(pattern: &str, url: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return url.starts_with(prefix);
    }
    if pattern.contains('?') {
        pattern == url
    } else {
        url.split('?').next() == Some(pattern)
    }
}

impl MockHost {
    /// No secrets, no exchanges, kv granted.
    pub fn new() -> Self {
        MockHost {
            kv_enabled: true,
            ..Default::default()
        }
    }
    /// Grant a secret with a value (sendable by handle).
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.to_string(), value.to_string());
        self
    }
    /// Also allow reading the secret's plaintext.
    pub fn revealable(mut self, name: &str) -> Self {
        self.revealable.push(name.to_string());
        self
    }
    /// Deny kv, as a grant without `[kv]` would.
    pub fn without_kv(mut self) -> Self {
        self.kv_enabled = false;
        self
    }
    /// Answer `method url` with `reply` (the first matching exchange that has
    /// not been used answers; the last match repeats).
    pub fn on(self, method: &str, url: &str, reply: Reply) -> Self {
        self.state.borrow_mut().exchanges.push((
            Exchange {
                method: method.to_string(),
                url: url.to_string(),
                reply,
            },
            0,
        ));
        self
    }
    /// Load recorded exchanges: a JSON array of `{method, url, reply: {status, headers, body}}`.
    pub fn exchanges_json(self, json: &str) -> std::result::Result<Self, serde_json::Error> {
        let list: Vec<Exchange> = serde_json::from_str(json)?;
        for e in list {
            self.state.borrow_mut().exchanges.push((e, 0));
        }
        Ok(self)
    }
    /// Requests sent so far, secrets substituted.
    pub fn requests(&self) -> Vec<Sent> {
        self.state.borrow().sent.clone()
    }
    /// Log lines so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.state.borrow().logs.clone()
    }
    /// The kv contents.
    pub fn kv(&self) -> BTreeMap<String, Vec<u8>> {
        self.state.borrow().kv.clone()
    }

    /// Run `action` through a component's `Actions::dispatch` with JSON input.
    pub fn run(
        &self,
        dispatch: fn(&str, &str, &Context) -> Result<String>,
        action: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let ctx = Context {
            run_id: "test-run".into(),
            step_id: action.into(),
            idempotency_key: format!("test-run/{action}"),
            attempt: 1,
        };
        let previous = CURRENT.with(|c| c.replace(Some(self.clone())));
        let out = dispatch(action, &input.to_string(), &ctx);
        CURRENT.with(|c| c.replace(previous));
        let text = out?;
        serde_json::from_str(&text)
            .map_err(|e| Error::internal(format!("the action's output is not JSON: {e}")))
    }

    pub(crate) fn http(&self, r: RawRequest) -> std::result::Result<RawResponse, HttpFailure> {
        let url = substitute(&r.url, &self.secrets).map_err(HttpFailure::Denied)?;
        let mut headers = Vec::new();
        for (n, v) in &r.headers {
            headers.push((
                n.clone(),
                substitute(v, &self.secrets).map_err(HttpFailure::Denied)?,
            ));
        }
        let body = match &r.body {
            Some(b) => Some(
                substitute(&String::from_utf8_lossy(b), &self.secrets)
                    .map_err(HttpFailure::Denied)?
                    .into_bytes(),
            ),
            None => None,
        };
        let mut state = self.state.borrow_mut();
        state.sent.push(Sent {
            method: r.method.to_string(),
            url: url.clone(),
            headers,
            body,
        });
        let matching: Vec<usize> = (0..state.exchanges.len())
            .filter(|&i| {
                state.exchanges[i].0.method.eq_ignore_ascii_case(r.method)
                    && url_matches(&state.exchanges[i].0.url, &r.url)
            })
            .collect();
        let pick = matching
            .iter()
            .copied()
            .find(|&i| state.exchanges[i].1 == 0)
            .or(matching.last().copied());
        let Some(i) = pick else {
            return Err(HttpFailure::Connection(format!(
                "no mocked exchange matches {} {} (add one with MockHost::on)",
                r.method, r.url
            )));
        };
        state.exchanges[i].1 += 1;
        let reply = state.exchanges[i].0.reply.clone();
        // Scrub secrets from the reply, as the host does.
        let mut body = reply.body;
        for (name, value) in &self.secrets {
            if !value.is_empty() {
                body = body.replace(value, &format!("[REDACTED:{name}]"));
            }
        }
        Ok(RawResponse {
            status: reply.status,
            headers: reply.headers,
            body: body.into_bytes(),
        })
    }

    pub(crate) fn kv_get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, Failure> {
        self.kv_check(key)?;
        Ok(self.state.borrow().kv.get(key).cloned())
    }
    pub(crate) fn kv_set(
        &self,
        key: &str,
        value: &[u8],
        _ttl: Option<u64>,
    ) -> std::result::Result<(), Failure> {
        self.kv_check(key)?;
        self.state
            .borrow_mut()
            .kv
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }
    pub(crate) fn kv_delete(&self, key: &str) -> std::result::Result<bool, Failure> {
        self.kv_check(key)?;
        Ok(self.state.borrow_mut().kv.remove(key).is_some())
    }
    pub(crate) fn kv_list(
        &self,
        prefix: &str,
        limit: u32,
    ) -> std::result::Result<Vec<String>, Failure> {
        if !self.kv_enabled {
            return Err(Failure::Denied("kv is not granted".into()));
        }
        Ok(self
            .state
            .borrow()
            .kv
            .keys()
            .filter(|k| k.starts_with(prefix))
            .take(limit as usize)
            .cloned()
            .collect())
    }
    fn kv_check(&self, key: &str) -> std::result::Result<(), Failure> {
        if !self.kv_enabled {
            return Err(Failure::Denied("kv is not granted".into()));
        }
        if key.is_empty() || key.len() > 512 {
            return Err(Failure::Invalid(
                "the key is empty or longer than 512 bytes".into(),
            ));
        }
        Ok(())
    }
    pub(crate) fn log(&self, level: Level, message: &str, fields: &[(String, String)]) {
        self.state
            .borrow_mut()
            .logs
            .push((level, message.to_string(), fields.to_vec()));
    }
    pub(crate) fn reveal(&self, name: &str) -> std::result::Result<String, Failure> {
        if !self.revealable.iter().any(|n| n == name) {
            return Err(Failure::Denied(format!(
                "secret `{name}` may not be revealed"
            )));
        }
        self.secrets
            .get(name)
            .cloned()
            .ok_or_else(|| Failure::NotFound(format!("secret `{name}` has no value")))
    }
    pub(crate) fn hmac(&self, name: &str, data: &[u8]) -> std::result::Result<Vec<u8>, Failure> {
        let key = self
            .secrets
            .get(name)
            .ok_or_else(|| Failure::Denied(format!("secret `{name}` is not granted")))?;
        Ok(hmac_sha256(key.as_bytes(), data))
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn substitution_mirrors_the_host() {
        let secrets = HashMap::from([("K".to_string(), "v@l".to_string())]);
        assert_eq!(substitute("a {{secret:K}} b", &secrets).unwrap(), "a v@l b");
        assert_eq!(
            substitute("Basic {{secret:K|base64}}", &secrets).unwrap(),
            "Basic dkBs"
        );
        assert!(
            substitute("{{secret:NOPE}}", &secrets)
                .unwrap_err()
                .contains("not granted")
        );
        assert!(substitute("{{secret:K", &secrets).is_err());
    }

    fn dispatch(name: &str, _input: &str, _ctx: &Context) -> Result<String> {
        match name {
            "pages" => {
                let items = crate::http::paginate(
                    crate::http::get("https://api.example.com/items"),
                    10,
                    |resp| {
                        let body: serde_json::Value = resp.json()?;
                        let items = body["data"].as_array().cloned().unwrap_or_default();
                        let next = body["meta"]["next_cursor"].as_str().map(|c| {
                            crate::http::get("https://api.example.com/items").query("cursor", c)
                        });
                        Ok((items, next))
                    },
                )?;
                Ok(serde_json::to_string(&items).unwrap())
            }
            _ => {
                let r = crate::http::get("https://api.example.com/thing")
                    .auth(crate::http::bearer("TOKEN"))
                    .send()?;
                Ok(serde_json::json!({"status": r.status, "body": r.text()}).to_string())
            }
        }
    }

    #[test]
    fn paginate_follows_cursors_to_the_end() {
        let host = MockHost::new()
            .on(
                "GET",
                "https://api.example.com/items?cursor=2",
                Reply::json(
                    200,
                    serde_json::json!({"data": [3], "meta": {"next_cursor": null}}),
                ),
            )
            .on(
                "GET",
                "https://api.example.com/items?cursor=1",
                Reply::json(
                    200,
                    serde_json::json!({"data": [2], "meta": {"next_cursor": "2"}}),
                ),
            )
            .on(
                "GET",
                "https://api.example.com/items",
                Reply::json(
                    200,
                    serde_json::json!({"data": [1], "meta": {"next_cursor": "1"}}),
                ),
            );
        let out = host.run(dispatch, "pages", serde_json::json!({})).unwrap();
        assert_eq!(out, serde_json::json!([1, 2, 3]));
        assert_eq!(host.requests().len(), 3);
    }

    #[test]
    fn recorded_exchanges_replay_and_secrets_are_scrubbed() {
        let recording = r#"[{"method": "GET", "url": "https://api.example.com/thing",
            "reply": {"status": 200, "headers": [["content-type", "text/plain"]], "body": "token was s3cr3t"}}]"#;
        let host = MockHost::new()
            .secret("TOKEN", "s3cr3t")
            .exchanges_json(recording)
            .unwrap();
        let out = host.run(dispatch, "thing", serde_json::json!({})).unwrap();
        assert_eq!(out["status"], 200);
        assert_eq!(out["body"], "token was [REDACTED:TOKEN]");
        assert_eq!(
            host.requests()[0].header("authorization"),
            Some("Bearer s3cr3t")
        );
        assert!(MockHost::new().exchanges_json("{not json").is_err());
        // Unmatched requests are a clear error, not a hang.
        let e = MockHost::new()
            .secret("TOKEN", "x")
            .run(dispatch, "thing", serde_json::json!({}))
            .unwrap_err();
        assert!(
            e.message
                .contains("no mocked exchange matches GET https://api.example.com/thing"),
            "{e}"
        );
    }

    #[test]
    fn url_patterns() {
        assert!(url_matches("https://a/x", "https://a/x?q=1"));
        assert!(!url_matches("https://a/x?q=2", "https://a/x?q=1"));
        assert!(url_matches("https://a/*", "https://a/x/y"));
        assert!(!url_matches("https://a/x", "https://a/xy"));
    }
}
