//! Record and replay of a step's capability exchanges, for playbook tests.
//!
//! `allama playbook run --record` runs each step with [`Tape::Record`]: every
//! capability use that got past the grant (an HTTP request and its response
//! or error, a kv operation and its result, a secret reveal or HMAC) is
//! appended to a [`Recorder`] in call order. `allama playbook test` runs each
//! step with [`Tape::Replay`]: the same uses are served from a [`Cassette`]
//! instead of the network, the kv store or the secret store.
//!
//! Rules (see also `docs/architecture.md`, "Record and replay"):
//! - **Secret values are never recorded.** Requests are recorded as the
//!   component wrote them (`{{secret:NAME}}` placeholders, before
//!   substitution), responses as the component saw them (already scrubbed),
//!   and every granted secret value that still appears anywhere is replaced
//!   by `[REDACTED:NAME]`. `reveal` records only the name; in replay it
//!   returns the stand-in `replayed-secret:NAME` ([`stand_in`]). An HMAC
//!   records name, message and MAC (a MAC does not reveal its key), so replay
//!   is exact.
//! - **The grant still applies in replay**, and nothing touches the network
//!   or the stores. What the grant refuses (a host not allowed, a secret not
//!   granted toward a host, kv not granted, a malformed request) is decided
//!   again at replay and never recorded; whatever happened after the grant
//!   allowed a use (a response, a timeout, a refused redirect, a full quota)
//!   is recorded and served back as it was.
//! - **Matching is in call order**: http by method, URL and body; kv by
//!   operation and key (and limit, for `list-prefix`); secrets by operation
//!   and name (and message, for HMAC). The first difference ends the replay:
//!   the component gets an error and the step's outcome becomes
//!   [`StepError::ReplayMismatch`](crate::StepError::ReplayMismatch).
//!   Exchanges left over are reported by [`Cassette::unused`].
//! - **Bounded**: a recorder keeps at most [`MAX_EXCHANGES`] exchanges and
//!   [`MAX_TAPE_BYTES`] bytes between two [`Recorder::take`]s; past that it
//!   counts what it drops and the step writes one `limit: recording` audit
//!   record. Each recorded body is already capped by the grant.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::capability::http::tape::{HttpFailure, RecordedRequest, RecordedResponse};
pub use crate::capability::kv::tape::{KvFailure, KvRequest, KvResponse};
pub use crate::capability::secrets::tape::{SecretRequest, SecretResponse};

use crate::capability::http::{Marks, scrub, scrub_marks};
use crate::capability::secrets::{SecretValue, Secrets};

/// Most exchanges a recorder keeps between two takes (the per-step audit cap).
pub const MAX_EXCHANGES: usize = crate::audit::MAX_RECORDS_PER_STEP;
/// Most bytes (bodies, URLs, keys, values) a recorder keeps between two takes.
pub const MAX_TAPE_BYTES: u64 = 64 << 20;
/// Longest cassette JSON [`Cassette::from_json`] reads.
pub const MAX_CASSETTE_JSON_BYTES: usize = 128 << 20;

/// What `secrets.reveal(NAME)` returns in replay: the recording never holds
/// the plaintext, so the component gets this deterministic stand-in.
pub fn stand_in(name: &str) -> String {
    format!("replayed-secret:{name}")
}

/// How a step's capability uses are taped.
#[derive(Clone, Debug, Default)]
pub enum Tape {
    /// Not taped: the normal path, at no cost.
    #[default]
    Off,
    /// Every exchange is appended to the recorder.
    Record(Recorder),
    /// Every exchange is served from the cassette; nothing leaves the host.
    Replay(Cassette),
}

/// One capability use and what the component got back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Exchange {
    /// An HTTP request (placeholder form) and its response or error.
    Http {
        /// The request as the component wrote it.
        request: RecordedRequest,
        /// The response as the component saw it, or why there was none.
        response: Outcome<RecordedResponse, HttpFailure>,
    },
    /// A kv operation and its result.
    Kv {
        /// The operation.
        request: KvRequest,
        /// Its result, or the store's failure.
        response: Outcome<KvResponse, KvFailure>,
    },
    /// A secret operation (never the value).
    Secret {
        /// The operation.
        request: SecretRequest,
        /// Its result.
        response: SecretResponse,
    },
}

/// A result as recorded: `{"ok": …}` or `{"error": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T, E> {
    /// The use succeeded.
    Ok(T),
    /// The use failed after the grant allowed it.
    Error(E),
}

/// Bytes in a recording: UTF-8 text as a JSON string, anything else as
/// `{"base64": "…"}`, so recordings stay readable and diff well.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Body(pub Vec<u8>);

impl Body {
    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "Body({s:?})"),
            Err(_) => write!(f, "Body(<{} binary bytes>)", self.0.len()),
        }
    }
}

/// `"text"`, or `<N binary bytes>`, clipped for messages.
impl fmt::Display for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{:?}", clip(s, 200)),
            Err(_) => write!(f, "<{} binary bytes>", self.0.len()),
        }
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(
                    "base64",
                    &base64::engine::general_purpose::STANDARD.encode(&self.0),
                )?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = Body;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a body: a string, or {\"base64\": \"…\"}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Body, E> {
                Ok(Body(v.as_bytes().to_vec()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
                let mut encoded: Option<String> = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "base64" {
                        return Err(de::Error::unknown_field(&key, &["base64"]));
                    }
                    if encoded.is_some() {
                        return Err(de::Error::duplicate_field("base64"));
                    }
                    encoded = Some(map.next_value()?);
                }
                let encoded = encoded.ok_or_else(|| de::Error::missing_field("base64"))?;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map(Body)
                    .map_err(|e| de::Error::custom(format!("body: `base64` is not base64: {e}")))
            }
        }
        d.deserialize_any(BodyVisitor)
    }
}

/// A recorded call of one kind (http, kv, secrets): how calls are matched,
/// described and checked. Each capability implements it in its `tape.rs`.
pub(crate) trait Call: fmt::Display + Sized {
    /// What the component got back.
    type Response: Clone;
    /// Whether a recorded call answers this one.
    fn same_call(&self, recorded: &Self) -> bool;
    /// This call and its response as an exchange.
    fn into_exchange(self, response: Self::Response) -> Exchange;
    /// The call and response of an exchange of this kind.
    fn of(exchange: &Exchange) -> Option<(&Self, &Self::Response)>;
    /// Whether a response fits this call (a hand-edited recording may not).
    fn check(&self, _response: &Self::Response) -> Result<(), String> {
        Ok(())
    }
    /// Bytes this exchange holds, for the recorder's budget.
    fn weight(&self, response: &Self::Response) -> u64;
}

impl Exchange {
    /// Whether the response fits the request (e.g. a kv `get` answered with a
    /// value, an HMAC with 32 bytes of hex).
    pub fn check(&self) -> Result<(), String> {
        match self {
            Exchange::Http { request, response } => request.check(response),
            Exchange::Kv { request, response } => request.check(response),
            Exchange::Secret { request, response } => request.check(response),
        }
    }

    fn weight(&self) -> u64 {
        match self {
            Exchange::Http { request, response } => request.weight(response),
            Exchange::Kv { request, response } => request.weight(response),
            Exchange::Secret { request, response } => request.weight(response),
        }
    }
}

/// The request side, on one line: `http GET https://…`, `kv get `key``.
impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exchange::Http { request, .. } => request.fmt(f),
            Exchange::Kv { request, .. } => request.fmt(f),
            Exchange::Secret { request, .. } => request.fmt(f),
        }
    }
}

/// `s` for a one-line message: cut at `n` bytes (on a character boundary)
/// with `…` when longer, control characters escaped (a hand-edited
/// recording may hold anything).
pub(crate) fn clip(s: &str, n: usize) -> String {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 4);
    for c in s[..end].chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if end < s.len() {
        out.push('…');
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves plain data behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Collects exchanges in call order; cheap to clone (the clones share one
/// recording). Use one per step (or take between steps): exchanges of steps
/// running at once would interleave.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Recording>>,
}

#[derive(Debug, Default)]
struct Recording {
    exchanges: Vec<Exchange>,
    bytes: u64,
    dropped: u64,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The exchanges so far, in call order; the recorder starts again empty
    /// (and with a fresh budget). Check [`Recorder::dropped`] first.
    pub fn take(&self) -> Vec<Exchange> {
        let mut r = lock(&self.inner);
        r.bytes = 0;
        r.dropped = 0;
        std::mem::take(&mut r.exchanges)
    }

    /// Exchanges not recorded since the last take because the recording was
    /// full ([`MAX_EXCHANGES`], [`MAX_TAPE_BYTES`]): the recording is
    /// incomplete and replaying it will report a missing exchange.
    pub fn dropped(&self) -> u64 {
        lock(&self.inner).dropped
    }

    /// Append one exchange, unless the recording is full. Once full it stays
    /// full, so a recording is always a prefix of what happened.
    fn push(&self, exchange: Exchange) {
        let weight = exchange.weight();
        let mut r = lock(&self.inner);
        if r.dropped > 0
            || r.exchanges.len() >= MAX_EXCHANGES
            || r.bytes.saturating_add(weight) > MAX_TAPE_BYTES
        {
            r.dropped += 1;
            return;
        }
        r.bytes += weight;
        r.exchanges.push(exchange);
    }
}

/// A replay that diverged from its recording: where, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error(
    "replay of step `{step}` diverged at exchange #{position}: the recording has {expected}, but the component did {got}"
)]
pub struct ReplayMismatch {
    /// The step's id.
    pub step: String,
    /// 1-based position of the exchange in the recording.
    pub position: usize,
    /// What the recording holds there.
    pub expected: String,
    /// What the component did instead.
    pub got: String,
}

/// Recorded exchanges, served back in order; cheap to clone (the clones
/// share one position). Use one per step.
#[derive(Clone, Debug)]
pub struct Cassette {
    inner: Arc<Mutex<Reel>>,
}

#[derive(Debug)]
struct Reel {
    exchanges: Vec<Exchange>,
    next: usize,
    step: String,
    mismatch: Option<ReplayMismatch>,
}

/// A recording could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CassetteError {
    /// The text is larger than any recording can be.
    #[error("the recording is {size} bytes; the most is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or not the recording format.
    #[error("the recording is not valid at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// More exchanges than a step can record.
    #[error("the recording has {count} exchanges; a step records at most {limit}")]
    TooManyExchanges {
        /// How many.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An exchange whose response does not fit its request.
    #[error("exchange #{position} ({exchange}): {message}")]
    Invalid {
        /// 1-based position.
        position: usize,
        /// The exchange, summarised.
        exchange: String,
        /// What is wrong.
        message: String,
    },
}

/// A recording as stable, pretty JSON (an array of exchanges; keys in a
/// fixed order), for files kept in git.
pub fn to_json(exchanges: &[Exchange]) -> String {
    // Every part is a string, number, bool, list or struct: cannot fail.
    serde_json::to_string_pretty(exchanges).unwrap_or_else(|_| "[]".into())
}

/// Read a recording written by [`to_json`], checking size, shape and that
/// every response fits its request.
pub fn from_json(text: &str) -> Result<Vec<Exchange>, CassetteError> {
    if text.len() > MAX_CASSETTE_JSON_BYTES {
        return Err(CassetteError::TooLarge {
            size: text.len(),
            limit: MAX_CASSETTE_JSON_BYTES,
        });
    }
    let exchanges: Vec<Exchange> = serde_json::from_str(text).map_err(|e| {
        // serde_json appends the position, which the error carries apart.
        let full = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        CassetteError::Json {
            line: e.line(),
            column: e.column(),
            message: clip(full.strip_suffix(&at).unwrap_or(&full), 500),
        }
    })?;
    validate(&exchanges)?;
    Ok(exchanges)
}

/// Check a recording read some other way (e.g. embedded in a larger file).
pub fn validate(exchanges: &[Exchange]) -> Result<(), CassetteError> {
    if exchanges.len() > MAX_EXCHANGES {
        return Err(CassetteError::TooManyExchanges {
            count: exchanges.len(),
            limit: MAX_EXCHANGES,
        });
    }
    for (i, e) in exchanges.iter().enumerate() {
        e.check().map_err(|message| CassetteError::Invalid {
            position: i + 1,
            exchange: clip(&e.to_string(), 300),
            message,
        })?;
    }
    Ok(())
}

impl Cassette {
    /// A cassette serving `exchanges` in order. (An exchange whose response
    /// does not fit its request is reported as a mismatch when reached;
    /// [`Cassette::from_json`] refuses it up front.)
    pub fn new(exchanges: Vec<Exchange>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Reel {
                exchanges,
                next: 0,
                step: String::new(),
                mismatch: None,
            })),
        }
    }

    /// A cassette from a recording's JSON (see [`from_json`]).
    pub fn from_json(text: &str) -> Result<Self, CassetteError> {
        from_json(text).map(Self::new)
    }

    /// The exchanges not (yet) served: after the step, these are what the
    /// recording expected but the component never did.
    pub fn unused(&self) -> Vec<Exchange> {
        let r = lock(&self.inner);
        r.exchanges.get(r.next..).unwrap_or_default().to_vec()
    }

    /// The first divergence, if the replay diverged.
    pub fn mismatch(&self) -> Option<ReplayMismatch> {
        lock(&self.inner).mismatch.clone()
    }

    /// After the step: a divergence, or the first exchange left unused
    /// (with how many more), as one message.
    pub fn finish(&self) -> Result<(), ReplayMismatch> {
        let r = lock(&self.inner);
        if let Some(m) = &r.mismatch {
            return Err(m.clone());
        }
        match r.exchanges.get(r.next) {
            None => Ok(()),
            Some(e) => {
                let more = r.exchanges.len() - r.next - 1;
                Err(ReplayMismatch {
                    step: r.step.clone(),
                    position: r.next + 1,
                    expected: if more == 0 {
                        e.to_string()
                    } else {
                        format!("{e} (and {more} more)")
                    },
                    got: "nothing more: the step ended".into(),
                })
            }
        }
    }

    /// Serve the next exchange for `call`, or record the divergence.
    fn serve<C: Call>(&self, call: &C) -> Result<C::Response, ReplayMismatch> {
        let mut r = lock(&self.inner);
        if let Some(m) = &r.mismatch {
            // The replay already diverged: nothing after it can be trusted.
            return Err(m.clone());
        }
        let position = r.next + 1;
        let diverged = |expected: String| ReplayMismatch {
            step: r.step.clone(),
            position,
            expected,
            got: call.to_string(),
        };
        let result = match r.exchanges.get(r.next) {
            None => Err(diverged(format!(
                "nothing more (it holds {} exchanges)",
                r.exchanges.len()
            ))),
            Some(e) => match C::of(e) {
                Some((recorded, response)) if call.same_call(recorded) => {
                    match recorded.check(response) {
                        Ok(()) => Ok(response.clone()),
                        Err(why) => Err(diverged(format!("{e}, which is malformed: {why}"))),
                    }
                }
                _ => Err(diverged(e.to_string())),
            },
        };
        match &result {
            Ok(_) => r.next += 1,
            Err(m) => r.mismatch = Some(m.clone()),
        }
        result
    }
}

/// A step's view of its tape: nothing when off (no allocation on the hot
/// path), else the recorder or cassette, the step id, and how to scrub secret
/// values (real ones when recording, stand-ins when replaying).
#[derive(Clone, Default)]
pub struct StepTape {
    inner: Option<Arc<StepTapeInner>>,
}

struct StepTapeInner {
    mode: Mode,
    marks: Marks,
    dropped_before: u64,
}

enum Mode {
    Record(Recorder),
    Replay(Cassette),
}

impl StepTape {
    /// The tape of one step of `secrets`' package.
    pub(crate) fn new(tape: &Tape, step: &str, secrets: &Secrets) -> Self {
        let (mode, marks, dropped_before) = match tape {
            Tape::Off => return Self::default(),
            Tape::Record(r) => (
                Mode::Record(r.clone()),
                scrub_marks(&secrets.granted_values()),
                r.dropped(),
            ),
            Tape::Replay(c) => {
                lock(&c.inner).step = step.to_string();
                let stand_ins: Vec<(String, SecretValue)> = secrets
                    .granted_names()
                    .map(|n| (n.to_string(), SecretValue::new(stand_in(n))))
                    .collect();
                (Mode::Replay(c.clone()), scrub_marks(&stand_ins), 0)
            }
        };
        Self {
            inner: Some(Arc::new(StepTapeInner {
                mode,
                marks,
                dropped_before,
            })),
        }
    }

    /// Whether the step is not taped.
    pub fn is_off(&self) -> bool {
        self.inner.is_none()
    }

    /// Whether uses are served from a cassette.
    pub(crate) fn replaying(&self) -> bool {
        matches!(
            self.inner.as_deref(),
            Some(StepTapeInner {
                mode: Mode::Replay(_),
                ..
            })
        )
    }

    /// `bytes` with every secret value (real or stand-in) replaced by its mark.
    pub(crate) fn scrub(&self, bytes: &[u8]) -> Vec<u8> {
        match &self.inner {
            Some(t) if !t.marks.is_empty() => scrub(bytes.to_vec(), &t.marks),
            _ => bytes.to_vec(),
        }
    }

    /// [`StepTape::scrub`] for text.
    pub(crate) fn scrub_text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.scrub(text.as_bytes())).into_owned()
    }

    /// Record a use (when recording).
    pub(crate) fn record<C: Call>(&self, call: C, response: C::Response) {
        if let Some(StepTapeInner {
            mode: Mode::Record(r),
            ..
        }) = self.inner.as_deref()
        {
            r.push(call.into_exchange(response));
        }
    }

    /// Serve a use from the cassette: `None` when not replaying.
    pub(crate) fn replay<C: Call>(&self, call: &C) -> Option<Result<C::Response, ReplayMismatch>> {
        match self.inner.as_deref() {
            Some(StepTapeInner {
                mode: Mode::Replay(c),
                ..
            }) => Some(c.serve(call)),
            _ => None,
        }
    }

    /// After the step: exchanges this step could not record, if any.
    pub(crate) fn dropped(&self) -> u64 {
        match self.inner.as_deref() {
            Some(StepTapeInner {
                mode: Mode::Record(r),
                dropped_before,
                ..
            }) => r.dropped().saturating_sub(*dropped_before),
            _ => 0,
        }
    }

    /// After the step: how the replay diverged, if it did.
    pub(crate) fn mismatch(&self) -> Option<ReplayMismatch> {
        match self.inner.as_deref() {
            Some(StepTapeInner {
                mode: Mode::Replay(c),
                ..
            }) => c.mismatch(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv_set(value: Vec<u8>) -> Exchange {
        Exchange::Kv {
            request: KvRequest::Set {
                key: "k".into(),
                value: Body(value),
                ttl_seconds: None,
            },
            response: Outcome::Ok(KvResponse::Stored),
        }
    }

    #[test]
    fn bodies_are_text_when_they_can_be_and_base64_otherwise() {
        for bytes in [b"plain \xe2\x9c\x93".to_vec(), vec![0, 0xff, 0x80], vec![]] {
            let json = serde_json::to_string(&Body(bytes.clone())).unwrap();
            let text = std::str::from_utf8(&bytes).is_ok();
            assert_eq!(json.starts_with('"'), text, "{json}");
            assert_eq!(serde_json::from_str::<Body>(&json).unwrap(), Body(bytes));
        }
        assert!(serde_json::from_str::<Body>(r#"{"base64":"AA==","base64":"AA=="}"#).is_err());
        assert!(serde_json::from_str::<Body>("{}").is_err());
        assert!(serde_json::from_str::<Body>("null").is_err());
    }

    #[test]
    fn the_recorder_stops_at_its_byte_budget_and_stays_stopped() {
        let r = Recorder::new();
        r.push(kv_set(vec![b'a'; 16]));
        r.push(kv_set(vec![b'a'; MAX_TAPE_BYTES as usize]));
        // Small enough, but after a drop: a recording is always a prefix.
        r.push(kv_set(vec![b'a'; 16]));
        assert_eq!(r.dropped(), 2);
        assert_eq!(r.take().len(), 1);
        assert_eq!(r.dropped(), 0);
        r.push(kv_set(vec![b'a'; 16]));
        assert_eq!(r.take().len(), 1);
    }

    #[test]
    fn messages_stay_on_one_line_and_short() {
        assert_eq!(clip("a\r\nb", 10), "a\\r\\nb");
        assert_eq!(clip("☃☃☃", 4), "☃…");
        assert_eq!(clip("", 0), "");
    }
}
