//! The `allama:action/http` host implementation: the request path.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use allama_grant::template::{find_placeholders, substitute};
use reqwest::header::{HeaderName, HeaderValue, LOCATION};
use url::{Host as UrlHost, Url};

use super::resolver::AddressDenied;
use super::tape::RecordedRequest;
use super::{Http, HttpEvent, governor};
use crate::audit::AuditEvent;
use crate::bindings::allama::action::http::{Host, HttpError, Method, Request, Response};
use crate::capability::StepEnv;
use crate::capability::secrets::{SecretValue, SecretsEvent, origin_of};

/// Headers the host sets itself; a component may not (request smuggling,
/// virtual-host confusion).
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
/// Headers dropped when a redirect leaves the origin (as browsers do).
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "cookie"];
const MAX_URL_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Most secret placeholders in one request: substitution happens in host
/// memory, outside the guest's limits, so it must stay small.
const MAX_PLACEHOLDERS: usize = 32;

/// Per-step state of the http capability.
pub struct HttpStep {
    pub(super) cap: Arc<Http>,
    pub(super) env: StepEnv,
}

/// A header after checks and substitution.
struct OutHeader {
    name: HeaderName,
    value: HeaderValue,
    carried_secret: bool,
}

pub(super) fn method_name(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn ip_host(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        UrlHost::Ipv4(a) => Some(IpAddr::V4(a)),
        UrlHost::Ipv6(a) => Some(IpAddr::V6(a)),
        UrlHost::Domain(_) => None,
    }
}

/// The whole chain of an error, "a: b: c".
fn chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn find_address_denial(e: &reqwest::Error) -> Option<AddressDenied> {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = src {
        if let Some(d) = c.downcast_ref::<AddressDenied>() {
            return Some(d.clone());
        }
        src = c.source();
    }
    None
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    let mut found = false;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
            found = true;
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    found.then_some(out)
}

/// The forms a secret value may take in a response: as sent,
/// percent-encoded (as it went out in a query), base64 (`|base64`), and
/// percent-encoded base64.
fn secret_forms(value: &SecretValue) -> Vec<Vec<u8>> {
    let raw = value.expose().as_bytes().to_vec();
    let encoded: Vec<u8> = url::form_urlencoded::byte_serialize(&raw)
        .collect::<String>()
        .into_bytes();
    let b64 = allama_grant::template::Encoding::Base64.apply(raw.clone());
    let b64_encoded: Vec<u8> = url::form_urlencoded::byte_serialize(&b64)
        .collect::<String>()
        .into_bytes();
    let mut forms = vec![raw];
    for f in [encoded, b64, b64_encoded] {
        if !forms.contains(&f) {
            forms.push(f);
        }
    }
    forms
}

/// Secret forms and the marks that replace them, longest form first.
pub(crate) type Marks = Vec<(Vec<u8>, Vec<u8>)>;

/// Every form of every granted secret with its mark, longest first, so a
/// secret that is part of another is never scrubbed before the longer one.
pub(crate) fn scrub_marks(secrets: &[(String, SecretValue)]) -> Marks {
    let mut marks: Vec<(Vec<u8>, Vec<u8>)> = secrets
        .iter()
        .filter(|(_, v)| !v.expose().is_empty())
        .flat_map(|(name, v)| {
            let mark = format!("[REDACTED:{name}]").into_bytes();
            secret_forms(v).into_iter().map(move |f| (f, mark.clone()))
        })
        .collect();
    marks.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
    marks
}

pub(crate) fn scrub(mut bytes: Vec<u8>, marks: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    for (form, mark) in marks {
        if let Some(b) = replace_all(&bytes, form, mark) {
            bytes = b;
        }
    }
    bytes
}

fn scrub_text(text: &str, marks: &[(Vec<u8>, Vec<u8>)]) -> String {
    String::from_utf8_lossy(&scrub(text.as_bytes().to_vec(), marks)).into_owned()
}

/// Why a request did not complete, before it becomes an `HttpError`.
pub(super) enum Refusal {
    /// The grant refused it: audited as a denial.
    Denied(String),
    /// Anything else: audited as a failure once the request was allowed.
    Failed(HttpError),
}

impl HttpStep {
    pub(crate) fn new(cap: Arc<Http>, env: StepEnv) -> Self {
        Self { cap, env }
    }

    fn invalid(&self, what: String) -> Refusal {
        Refusal::Failed(HttpError::InvalidRequest(format!(
            "{}, http: {what}",
            self.env.who()
        )))
    }

    /// Check the URL and its resolved-literal address against the grant.
    fn check_destination(&self, url: &Url) -> Result<allama_grant::Destination, Refusal> {
        let dest = self
            .cap
            .grant
            .check_url(url)
            .map_err(|d| Refusal::Denied(d.to_string()))?;
        if let Some(ip) = ip_host(url) {
            dest.check_address(ip)
                .map_err(|d| Refusal::Denied(d.to_string()))?;
        }
        Ok(dest)
    }

    /// The request path. Returns the response and what to audit about it.
    /// When the step is taped, `taped` gets the request as recorded once it
    /// has passed the grant.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        req: Request,
        taped: &mut Option<RecordedRequest>,
        sent: &mut BTreeMap<String, SecretValue>,
        final_url: &mut Option<Url>,
        redirects: &mut u32,
        bytes_sent: &mut u64,
    ) -> Result<Response, Refusal> {
        if req.url.len() > MAX_URL_BYTES {
            return Err(self.invalid(format!(
                "the URL is {} bytes; the most is {MAX_URL_BYTES}",
                req.url.len()
            )));
        }
        let mut url = Url::parse(&req.url)
            .map_err(|e| self.invalid(format!("url `{}`: {e}", clip(&req.url, 200))))?;
        let template_err =
            |e: allama_grant::template::TemplateError| self.invalid(format!("url: {e}"));
        let everywhere = find_placeholders(req.url.as_bytes()).map_err(template_err)?;
        let query = url.query().unwrap_or("").to_string();
        let in_query = find_placeholders(query.as_bytes()).map_err(template_err)?;
        if everywhere.len() != in_query.len() {
            return Err(self.invalid(
                "url: `{{secret:…}}` may appear only in query values, not in the scheme, host, path or fragment".into(),
            ));
        }
        let dest = self.check_destination(&url)?;

        // Headers: shape first, secrets after.
        if req.headers.len() > MAX_HEADERS {
            return Err(self.invalid(format!(
                "{} headers; the most is {MAX_HEADERS}",
                req.headers.len()
            )));
        }
        let mut names = Vec::new();
        for (name, value) in &req.headers {
            let lower = name.to_ascii_lowercase();
            HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                self.invalid(format!(
                    "header name `{}` is not a valid HTTP token",
                    clip(name, 100)
                ))
            })?;
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
                return Err(self.invalid(format!(
                    "header `{lower}` is set by the host and may not be set by a component"
                )));
            }
            if value.len() > MAX_HEADER_VALUE_BYTES {
                return Err(self.invalid(format!(
                    "header `{lower}` is {} bytes; the most is {MAX_HEADER_VALUE_BYTES}",
                    value.len()
                )));
            }
            if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(self.invalid(format!(
                    "header `{lower}` contains a control character (CR, LF or NUL)"
                )));
            }
            let phs = find_placeholders(value.as_bytes())
                .map_err(|e| self.invalid(format!("header `{lower}`: {e}")))?;
            names.extend(phs.into_iter().map(|p| p.name));
        }
        let body = req.body.unwrap_or_default();
        if body.len() > MAX_BODY_BYTES {
            return Err(self.invalid(format!(
                "the body is {} bytes; the most is {MAX_BODY_BYTES}",
                body.len()
            )));
        }
        let body_secrets =
            find_placeholders(&body).map_err(|e| self.invalid(format!("body: {e}")))?;
        let body_has_secret = !body_secrets.is_empty();
        names.extend(in_query.iter().map(|p| p.name.clone()));
        names.extend(body_secrets.into_iter().map(|p| p.name));
        if names.len() > MAX_PLACEHOLDERS {
            return Err(self.invalid(format!(
                "{} secret placeholders; the most in one request is {MAX_PLACEHOLDERS}",
                names.len()
            )));
        }

        // Each secret must be granted toward this destination.
        for name in names {
            if sent.contains_key(&name) {
                continue;
            }
            // Replay checks the grant but needs no value: nothing is sent.
            let allowed = if self.env.tape.replaying() {
                self.cap
                    .secrets
                    .check_send(&name, &url)
                    .map(|()| SecretValue::new(crate::tape::stand_in(&name)))
            } else {
                self.cap.secrets.for_request(&name, &url)
            };
            match allowed {
                Ok(v) => {
                    sent.insert(name, v);
                }
                Err(d) => {
                    self.env
                        .audit
                        .emit(AuditEvent::Secrets(SecretsEvent::Denied {
                            name: name.clone(),
                            operation: "send".into(),
                            reason: d.to_string(),
                        }));
                    return Err(Refusal::Denied(d.to_string()));
                }
            }
        }

        // The grant allowed the request: from here on it is a capability use,
        // recorded with its outcome, or served from the cassette.
        if !self.env.tape.is_off() {
            let request = self.tape_request(req.method, &req.url, &req.headers, &body);
            if let Some(answer) = self.replay(&request) {
                return answer;
            }
            *taped = Some(request);
        }

        let value_of =
            |n: &str| -> Result<Vec<u8>, ()> { Ok(sent[n].expose().as_bytes().to_vec()) };
        let mut headers = Vec::new();
        for (name, value) in &req.headers {
            let lower = name.to_ascii_lowercase();
            let carried_secret = !find_placeholders(value.as_bytes())
                .unwrap_or_default()
                .is_empty();
            let bytes = substitute(value.as_bytes(), value_of)
                .map_err(|_| self.invalid(format!("header `{lower}`")))?;
            let value = HeaderValue::from_bytes(&bytes).map_err(|_| {
                self.invalid(format!("header `{lower}`: a substituted secret contains a character not allowed in a header"))
            })?;
            headers.push(OutHeader {
                name: HeaderName::from_bytes(lower.as_bytes()).expect("checked"),
                value,
                carried_secret,
            });
        }
        if !in_query.is_empty() {
            // Encode the value (`|base64`), then percent-encode it for the query.
            let mut q = Vec::with_capacity(query.len());
            let mut copied = 0;
            for p in &in_query {
                q.extend_from_slice(&query.as_bytes()[copied..p.range.start]);
                let value = p.encoding.apply(sent[&p.name].expose().as_bytes().to_vec());
                q.extend(url::form_urlencoded::byte_serialize(&value).flat_map(|s| s.bytes()));
                copied = p.range.end;
            }
            q.extend_from_slice(&query.as_bytes()[copied..]);
            url.set_query(Some(&String::from_utf8_lossy(&q)));
        }
        let mut body = if body_has_secret {
            substitute(&body, value_of).map_err(|_| self.invalid("body".into()))?
        } else {
            body
        };

        // The shared Retry-After gate.
        let origin = dest.origin();
        let now = Instant::now();
        let step_timeout = req
            .timeout_ms
            .map_or(self.cap.grant.timeout, |t| Duration::from_millis(t.into()));
        let deadline = self
            .env
            .deadline
            .min(now + step_timeout.min(self.cap.grant.timeout));
        if let Some(wait) = self.cap.governor.wait_for(&self.cap.package, &origin, now) {
            let ok = wait <= self.cap.grant.rate_limit_wait && now + wait < deadline;
            self.env
                .audit
                .emit(AuditEvent::Http(HttpEvent::RateLimited {
                    origin: origin.clone(),
                    wait_ms: wait.as_millis() as u64,
                    waited: ok,
                }));
            if !ok {
                return Err(Refusal::Failed(HttpError::RateLimited(
                    wait.as_millis() as u64
                )));
            }
            tokio::time::sleep(wait).await;
        }

        for name in sent.keys() {
            self.env.audit.emit(AuditEvent::Secrets(SecretsEvent::Sent {
                name: name.clone(),
                origin: origin.clone(),
            }));
        }

        let mut method = req.method;
        let mut current = url;
        let timeout = |what: &str| {
            Refusal::Failed(HttpError::Timeout(format!(
                "{}, http: {what} {}",
                self.env.who(),
                origin_of_str(&origin)
            )))
        };
        let resp = loop {
            let mut rb = self
                .cap
                .client
                .request(reqwest_method(method), current.clone());
            for h in &headers {
                rb = rb.header(h.name.clone(), h.value.clone());
            }
            if !body.is_empty() {
                *bytes_sent += body.len() as u64;
                rb = rb.body(body.clone());
            }
            let resp = match tokio::time::timeout_at(deadline.into(), rb.send()).await {
                Err(_) => return Err(timeout("no response in time from")),
                Ok(Err(e)) => return Err(self.transport_error(e)),
                Ok(Ok(r)) => r,
            };
            let location = resp.headers().get(LOCATION).cloned();
            // Only the redirects whose semantics are defined; 300/304/305/306 are answers.
            let follow = matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308);
            let Some(location) = location.filter(|_| follow) else {
                break resp;
            };
            if *redirects >= self.cap.grant.max_redirects {
                break resp;
            }
            let loc = location.to_str().map_err(|_| {
                Refusal::Failed(HttpError::Connection(format!(
                    "{}, http: a redirect has an unreadable Location",
                    self.env.who()
                )))
            })?;
            let next = current.join(loc).map_err(|e| {
                Refusal::Failed(HttpError::Connection(format!(
                    "{}, http: a redirect from {} has an invalid Location: {e}",
                    self.env.who(),
                    origin_of(&current)
                )))
            })?;
            // Name the redirect's target by origin only: its path and query
            // may carry a substituted secret.
            let hop = |why: String| {
                Refusal::Denied(format!(
                    "redirect from {} to {}: {why}",
                    origin_of(&current),
                    origin_of(&next)
                ))
            };
            match self.check_destination(&next) {
                Ok(_) => {}
                Err(Refusal::Denied(why)) => return Err(hop(why)),
                Err(other) => return Err(other),
            }
            if origin_of(&next) != origin_of(&current) {
                for (name, value) in sent.iter() {
                    let echoed = secret_forms(value)
                        .iter()
                        .any(|f| loc.as_bytes().windows(f.len()).any(|w| w == f.as_slice()));
                    if echoed && !self.cap.secrets.may_send(name, &next) {
                        return Err(hop(format!(
                            "the new location carries secret `{name}`, which is not granted toward it"
                        )));
                    }
                }
                headers.retain(|h| {
                    !h.carried_secret && !CREDENTIAL_HEADERS.contains(&h.name.as_str())
                });
            }
            let status = resp.status().as_u16();
            // 303 turns into GET (HEAD stays HEAD); 301/302 turn POST into
            // GET, as clients do; everything else keeps method and body.
            if (status == 303 && method != Method::Head)
                || (matches!(status, 301 | 302) && method == Method::Post)
            {
                method = Method::Get;
                body.clear();
            }
            if body_has_secret && !body.is_empty() && origin_of(&next) != origin_of(&current) {
                return Err(hop(
                    "it would resend a body carrying secrets to another origin".into(),
                ));
            }
            current = next;
            *redirects += 1;
        };

        let status = resp.status().as_u16();
        let cap = self.cap.grant.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(Refusal::Failed(HttpError::ResponseTooLarge(cap)));
        }
        let mut headers_out: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if status == 429 {
            let now = SystemTime::now();
            if let Some(wait) = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| governor::parse_retry_after(v, now))
            {
                self.cap
                    .governor
                    .hold(&self.cap.package, &origin, wait, Instant::now());
            }
        }
        let mut resp = resp;
        let mut body_in: Vec<u8> = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline.into(), resp.chunk()).await {
                Err(_) => return Err(timeout("the response body did not arrive in time from")),
                Ok(Err(e)) => return Err(self.transport_error(e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    if body_in.len() as u64 + chunk.len() as u64 > cap {
                        return Err(Refusal::Failed(HttpError::ResponseTooLarge(cap)));
                    }
                    body_in.extend_from_slice(&chunk);
                }
            }
        }

        // A vendor that echoes a request, or stored what another request
        // sent, must not hand a secret back: scrub every granted secret.
        let marks = scrub_marks(&self.cap.secrets.granted_values());
        body_in = scrub(body_in, &marks);
        for (_, v) in headers_out.iter_mut() {
            *v = scrub_text(v, &marks);
        }
        if *redirects > 0 {
            // The query may hold a substituted secret: never record it.
            let mut shown = current;
            shown.set_query(None);
            *final_url = Some(shown);
        }
        Ok(Response {
            status,
            headers: headers_out,
            body: body_in,
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> Refusal {
        // reqwest's message ends with the URL, query (and secrets) included.
        let e = &e.without_url();
        if let Some(d) = find_address_denial(e) {
            return Refusal::Denied(d.to_string());
        }
        if e.is_timeout() {
            return Refusal::Failed(HttpError::Timeout(format!(
                "{}, http: {}",
                self.env.who(),
                chain(e)
            )));
        }
        Refusal::Failed(HttpError::Connection(format!(
            "{}, http: {}",
            self.env.who(),
            chain(e)
        )))
    }

    /// Send one request under the grant; every outcome is audited.
    pub async fn send_request(&mut self, req: Request) -> Result<Response, HttpError> {
        let started = Instant::now();
        let method = method_name(req.method).to_string();
        let url = clip(&req.url, 2048);
        let mut sent = BTreeMap::new();
        let mut final_url = None;
        let mut redirects = 0;
        let mut bytes_sent = 0;
        let mut taped = None;
        let result = self
            .attempt(
                req,
                &mut taped,
                &mut sent,
                &mut final_url,
                &mut redirects,
                &mut bytes_sent,
            )
            .await;
        let duration_us = started.elapsed().as_micros() as u64;
        // Whatever a message quotes (a vendor's error text, a redirect), no
        // secret value leaves through it.
        let marks = scrub_marks(&self.cap.secrets.granted_values());
        let result = result.map_err(|r| match r {
            Refusal::Denied(m) => Refusal::Denied(scrub_text(&m, &marks)),
            Refusal::Failed(e) => Refusal::Failed(match e {
                HttpError::Denied(m) => HttpError::Denied(scrub_text(&m, &marks)),
                HttpError::InvalidRequest(m) => HttpError::InvalidRequest(scrub_text(&m, &marks)),
                HttpError::Timeout(m) => HttpError::Timeout(scrub_text(&m, &marks)),
                HttpError::Connection(m) => HttpError::Connection(scrub_text(&m, &marks)),
                other => other,
            }),
        });
        if let Some(request) = taped {
            self.record(request, &result);
        }
        match result {
            Ok(resp) => {
                self.env.audit.emit(AuditEvent::Http(HttpEvent::Request {
                    method,
                    url,
                    final_url: final_url.map(|u| clip(u.as_str(), 2048)),
                    status: resp.status,
                    redirects,
                    secrets: sent.keys().cloned().collect(),
                    bytes_sent,
                    bytes_received: resp.body.len() as u64,
                    duration_us,
                }));
                Ok(resp)
            }
            Err(Refusal::Denied(reason)) => {
                self.env.audit.emit(AuditEvent::Http(HttpEvent::Denied {
                    method,
                    url,
                    reason: reason.clone(),
                }));
                Err(HttpError::Denied(format!(
                    "{}, http: {reason}",
                    self.env.who()
                )))
            }
            Err(Refusal::Failed(err)) => {
                let error = match &err {
                    HttpError::Denied(m)
                    | HttpError::InvalidRequest(m)
                    | HttpError::Timeout(m)
                    | HttpError::Connection(m) => m.clone(),
                    HttpError::RateLimited(ms) => format!("rate limited: retry after {ms} ms"),
                    HttpError::ResponseTooLarge(cap) => format!("response larger than {cap} bytes"),
                };
                self.env.audit.emit(AuditEvent::Http(HttpEvent::Failed {
                    method,
                    url,
                    error,
                    duration_us,
                }));
                Err(err)
            }
        }
    }
}

fn origin_of_str(origin: &str) -> &str {
    origin
}

fn reqwest_method(m: Method) -> reqwest::Method {
    match m {
        Method::Get => reqwest::Method::GET,
        Method::Head => reqwest::Method::HEAD,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
        Method::Options => reqwest::Method::OPTIONS,
    }
}

impl Host for HttpStep {
    async fn send(&mut self, request: Request) -> Result<Response, HttpError> {
        self.send_request(request).await
    }
}
