//! Record and replay of http exchanges (see [`crate::tape`]).
//!
//! The hook sits in the request path after every grant check and before
//! substitution: what the grant refuses is decided again in replay and never
//! recorded; a request that passed is recorded in placeholder form with the
//! response (or error) the component saw, and in replay is answered from the
//! cassette without touching the network.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::host::{HttpStep, Refusal, method_name};
use crate::bindings::allama::action::http::{HttpError, Method, Response};
use crate::tape::{Body, Call, Exchange, Outcome, clip};

/// The methods the host sends (as recorded).
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// An HTTP request as the component wrote it: placeholders, not secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The URL as written (query placeholders included).
    pub url: String,
    /// Headers as written (values may hold placeholders). Not matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The body as written; absent when empty.
    #[serde(default, skip_serializing_if = "Body::is_empty")]
    pub body: Body,
}

/// A response as the component saw it (secrets already scrubbed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The body, decompressed.
    #[serde(default)]
    pub body: Body,
}

/// Why an allowed request produced no response, as the component was told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFailure {
    /// Refused after sending: a redirect target, a resolved address.
    Denied(String),
    /// Malformed (e.g. an unreadable redirect).
    InvalidRequest(String),
    /// No answer in time.
    Timeout(String),
    /// Held back by the vendor's Retry-After, milliseconds.
    RateLimited(u64),
    /// The body exceeded this many bytes.
    ResponseTooLarge(u64),
    /// The connection failed.
    Connection(String),
}

impl fmt::Display for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http {} {}", self.method, clip(&self.url, 300))?;
        if !self.body.is_empty() {
            write!(f, " with body {}", self.body)?;
        }
        Ok(())
    }
}

impl Call for RecordedRequest {
    type Response = Outcome<RecordedResponse, HttpFailure>;

    fn same_call(&self, recorded: &Self) -> bool {
        self.method == recorded.method && self.url == recorded.url && self.body == recorded.body
    }

    fn into_exchange(self, response: Self::Response) -> Exchange {
        Exchange::Http {
            request: self,
            response,
        }
    }

    fn of(exchange: &Exchange) -> Option<(&Self, &Self::Response)> {
        match exchange {
            Exchange::Http { request, response } => Some((request, response)),
            _ => None,
        }
    }

    fn check(&self, response: &Self::Response) -> Result<(), String> {
        if !METHODS.contains(&self.method.as_str()) {
            return Err(format!(
                "method `{}` is not one the host sends",
                clip(&self.method, 40)
            ));
        }
        match response {
            Outcome::Ok(r) if !(100..=999).contains(&r.status) => {
                Err(format!("status {} is not an HTTP status", r.status))
            }
            _ => Ok(()),
        }
    }

    fn weight(&self, response: &Self::Response) -> u64 {
        let headers = |hs: &[(String, String)]| -> usize {
            hs.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
        };
        let answer = match response {
            Outcome::Ok(r) => headers(&r.headers) + r.body.0.len(),
            Outcome::Error(_) => 256,
        };
        (self.url.len() + headers(&self.headers) + self.body.0.len() + answer) as u64
    }
}

impl HttpStep {
    /// The request as recorded: as written, with any secret value that
    /// appears literally (e.g. one the component revealed) replaced by its
    /// mark, so recording and replay (with stand-ins) agree.
    pub(super) fn tape_request(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> RecordedRequest {
        let tape = &self.env.tape;
        RecordedRequest {
            method: method_name(method).to_string(),
            url: tape.scrub_text(url),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), tape.scrub_text(v)))
                .collect(),
            body: Body(tape.scrub(body)),
        }
    }

    /// In replay, the recorded answer to `request`; `None` when not replaying.
    pub(super) fn replay(&self, request: &RecordedRequest) -> Option<Result<Response, Refusal>> {
        let served = self.env.tape.replay(request)?;
        Some(match served {
            Ok(Outcome::Ok(r)) => Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body.0,
            }),
            Ok(Outcome::Error(e)) => Err(match e {
                HttpFailure::Denied(m) => Refusal::Denied(m),
                HttpFailure::InvalidRequest(m) => Refusal::Failed(HttpError::InvalidRequest(m)),
                HttpFailure::Timeout(m) => Refusal::Failed(HttpError::Timeout(m)),
                HttpFailure::RateLimited(ms) => Refusal::Failed(HttpError::RateLimited(ms)),
                HttpFailure::ResponseTooLarge(n) => Refusal::Failed(HttpError::ResponseTooLarge(n)),
                HttpFailure::Connection(m) => Refusal::Failed(HttpError::Connection(m)),
            }),
            // The step's outcome reports the divergence; the component just
            // sees that the "vendor" is unreachable.
            Err(mismatch) => Err(Refusal::Failed(HttpError::Connection(format!(
                "{}, http: {mismatch}",
                self.env.who()
            )))),
        })
    }

    /// When recording, append `request` with what the component got.
    pub(super) fn record(&self, request: RecordedRequest, result: &Result<Response, Refusal>) {
        let tape = &self.env.tape;
        let outcome = match result {
            Ok(r) => Outcome::Ok(RecordedResponse {
                status: r.status,
                headers: r
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), tape.scrub_text(v)))
                    .collect(),
                body: Body(tape.scrub(&r.body)),
            }),
            Err(Refusal::Denied(m)) => Outcome::Error(HttpFailure::Denied(tape.scrub_text(m))),
            Err(Refusal::Failed(e)) => Outcome::Error(match e {
                HttpError::Denied(m) => HttpFailure::Denied(tape.scrub_text(m)),
                HttpError::InvalidRequest(m) => HttpFailure::InvalidRequest(tape.scrub_text(m)),
                HttpError::Timeout(m) => HttpFailure::Timeout(tape.scrub_text(m)),
                HttpError::RateLimited(ms) => HttpFailure::RateLimited(*ms),
                HttpError::ResponseTooLarge(n) => HttpFailure::ResponseTooLarge(*n),
                HttpError::Connection(m) => HttpFailure::Connection(tape.scrub_text(m)),
            }),
        };
        tape.record(request, outcome);
    }
}
