//! What a peer answers.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{
    CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RETRY_AFTER,
};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::Recorded;
use crate::body::PeerBody;

/// An answer, built fluently: `Reply::json(200, v).header("x-request-id", "1")`.
///
/// Replies are cheap to clone: bodies are reference-counted and the large
/// generated bodies ([`Reply::gzip_bomb`], [`Reply::streamed`]) are produced
/// only while they are being sent.
///
/// Constructors and builders panic on an invalid status code, header name or
/// header value, so a broken test fails where it is written.
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) payload: Payload,
    pub(crate) delay: Option<Duration>,
}

/// The body of a reply.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// A fixed body sent with `Content-Length`.
    Bytes(Bytes),
    /// `len` bytes of `x`, chunked, without `Content-Length`.
    Streamed(u64),
    /// A gzip stream of `len` zero bytes.
    GzipBomb(u64),
}

impl Reply {
    /// An empty body with status `code`.
    pub fn status(code: u16) -> Reply {
        Reply {
            status: status_code(code),
            headers: Vec::new(),
            payload: Payload::Bytes(Bytes::new()),
            delay: None,
        }
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json(code: u16, value: Value) -> Reply {
        let body = serde_json::to_vec(&value).expect("a serde_json::Value always serialises");
        Reply::bytes(code, body).header("content-type", "application/json")
    }

    /// A plain-text body (`Content-Type: text/plain; charset=utf-8`).
    pub fn text(code: u16, body: impl Into<String>) -> Reply {
        Reply::bytes(code, body.into().into_bytes())
            .header("content-type", "text/plain; charset=utf-8")
    }

    /// A binary body (`Content-Type: application/octet-stream`).
    pub fn bytes(code: u16, body: Vec<u8>) -> Reply {
        Reply {
            payload: Payload::Bytes(Bytes::from(body)),
            ..Reply::status(code)
        }
        .header("content-type", "application/octet-stream")
    }

    /// The JSON error shape most vendor APIs use: `{"error": message}`.
    pub fn error(code: u16, message: &str) -> Reply {
        Reply::json(code, json!({ "error": message }))
    }

    /// Sets header `name` to `value`, replacing any earlier value of it
    /// (including the `Content-Type` a constructor chose).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        let (name, value) = header_pair(name, value);
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// Adds another value of header `name`, keeping earlier ones (for
    /// `Set-Cookie`, `Link`, `WWW-Authenticate` and the like).
    pub fn append_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push(header_pair(name, value));
        self
    }

    /// Answers only after `d` has passed. The wait is asynchronous, so many
    /// delayed requests are in flight at once.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }

    /// A redirect (`301`, `302`, `303`, `307`, `308`, or any other 3xx) to
    /// `location`, which is sent as written (absolute or relative).
    ///
    /// # Panics
    /// If `code` is not a 3xx status.
    pub fn redirect(code: u16, location: &str) -> Reply {
        assert!(
            (300..400).contains(&code),
            "Reply::redirect needs a 3xx status, got {code}"
        );
        Reply::status(code).header(LOCATION.as_str(), location)
    }

    /// `429 Too Many Requests` with `Retry-After: retry_after_secs` and a JSON
    /// body `{"error": "rate limited", "retry_after": retry_after_secs}`.
    pub fn rate_limited(retry_after_secs: u64) -> Reply {
        Reply::json(
            429,
            json!({ "error": "rate limited", "retry_after": retry_after_secs }),
        )
        .header(RETRY_AFTER.as_str(), &retry_after_secs.to_string())
    }

    /// `200` with a gzip body (`Content-Encoding: gzip`, with an exact
    /// `Content-Length`) that decompresses to `decompressed_len` zero bytes.
    ///
    /// Building the reply costs nothing; the compressed stream (about a
    /// thousandth of `decompressed_len`) is generated while it is sent, by
    /// repeating one precompressed block, so a 1 GiB bomb is cheap.
    pub fn gzip_bomb(decompressed_len: u64) -> Reply {
        Reply {
            payload: Payload::GzipBomb(decompressed_len),
            ..Reply::status(200)
        }
        .header(CONTENT_TYPE.as_str(), "application/octet-stream")
        .header(CONTENT_ENCODING.as_str(), "gzip")
    }

    /// `len` bytes of `x`, sent chunked without `Content-Length`, so a client
    /// cannot rely on `Content-Length` to refuse it. Generated while sent.
    pub fn streamed(code: u16, len: u64) -> Reply {
        Reply {
            payload: Payload::Streamed(len),
            ..Reply::status(code)
        }
        .header(CONTENT_TYPE.as_str(), "text/plain")
    }

    /// `200` echoing the request as JSON, as httpbin does:
    /// `{"method", "path", "query", "headers": {name: value}, "body"}`.
    /// Repeated headers are joined with `", "`; the body is text (invalid
    /// UTF-8 replaced). Usable directly as a handler: `Router::any(Reply::echo)`.
    pub fn echo(req: &Recorded) -> Reply {
        let mut headers = Map::new();
        for (name, value) in &req.headers {
            match headers.get_mut(name) {
                Some(Value::String(joined)) => {
                    joined.push_str(", ");
                    joined.push_str(value);
                }
                _ => {
                    headers.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        Reply::json(
            200,
            json!({
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "headers": headers,
                "body": req.body_str(),
            }),
        )
    }

    /// Gzip-compresses the body and sets `Content-Encoding: gzip`, for vendors
    /// that compress their answers.
    ///
    /// # Panics
    /// On a [`Reply::streamed`] or [`Reply::gzip_bomb`] reply.
    pub fn gzipped(mut self) -> Reply {
        let Payload::Bytes(plain) = &self.payload else {
            panic!("Reply::gzipped only applies to fixed bodies");
        };
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(plain)
            .and_then(|()| encoder.try_finish())
            .expect("compressing into memory cannot fail");
        self.payload = Payload::Bytes(Bytes::from(encoder.get_ref().clone()));
        self.header(CONTENT_ENCODING.as_str(), "gzip")
    }

    /// The status code this reply answers with.
    pub fn code(&self) -> u16 {
        self.status.as_u16()
    }

    /// The value of header `name` this reply sets, if any (case-insensitive).
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.to_str().ok())
    }

    /// Turns the reply into a response (the delay is applied by the caller).
    pub(crate) fn into_response(self) -> Response<PeerBody> {
        let body = match self.payload {
            Payload::Bytes(bytes) => PeerBody::full(bytes),
            Payload::Streamed(len) => PeerBody::streamed(len),
            Payload::GzipBomb(len) => PeerBody::gzip_bomb(len),
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

fn status_code(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or_else(|_| panic!("invalid HTTP status code {code}"))
}

fn header_pair(name: &str, value: &str) -> (HeaderName, HeaderValue) {
    let name = HeaderName::from_bytes(name.as_bytes())
        .unwrap_or_else(|_| panic!("invalid header name {name:?}"));
    let value =
        HeaderValue::from_str(value).unwrap_or_else(|_| panic!("invalid header value {value:?}"));
    (name, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_replaces_and_append_header_adds() {
        let reply = Reply::json(200, json!({}))
            .header("Content-Type", "application/vnd.api+json")
            .append_header("link", "<a>")
            .append_header("link", "<b>");
        assert_eq!(
            reply.header_value("content-type"),
            Some("application/vnd.api+json")
        );
        let response = reply.into_response();
        assert_eq!(response.headers().get_all("content-type").iter().count(), 1);
        assert_eq!(response.headers().get_all("link").iter().count(), 2);
    }

    #[test]
    fn rate_limited_has_retry_after() {
        let reply = Reply::rate_limited(17);
        assert_eq!(reply.code(), 429);
        assert_eq!(reply.header_value("retry-after"), Some("17"));
    }

    #[test]
    #[should_panic(expected = "3xx")]
    fn redirect_rejects_non_3xx() {
        let _ = Reply::redirect(200, "/x");
    }

    #[test]
    #[should_panic(expected = "invalid HTTP status code")]
    fn invalid_status_panics() {
        let _ = Reply::status(42);
    }

    #[test]
    fn echo_joins_repeated_headers() {
        let req = Recorded {
            method: "POST".into(),
            path: "/anything".into(),
            query: Some("a=1".into()),
            headers: vec![
                ("x-a".into(), "1".into()),
                ("x-a".into(), "2".into()),
                ("authorization".into(), "Bearer t".into()),
            ],
            body: b"hello".to_vec(),
        };
        let Payload::Bytes(body) = Reply::echo(&req).payload else {
            panic!("echo has a fixed body");
        };
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            json!({
                "method": "POST",
                "path": "/anything",
                "query": "a=1",
                "headers": {"x-a": "1, 2", "authorization": "Bearer t"},
                "body": "hello",
            })
        );
    }

    #[test]
    fn gzipped_round_trips() {
        let reply = Reply::text(200, "hello hello hello").gzipped();
        assert_eq!(reply.header_value("content-encoding"), Some("gzip"));
        let Payload::Bytes(body) = reply.payload else {
            panic!("fixed body");
        };
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
            .unwrap();
        assert_eq!(out, "hello hello hello");
    }
}
