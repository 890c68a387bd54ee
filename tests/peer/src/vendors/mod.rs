//! Peers that answer the way particular vendors' documented APIs do.
//!
//! Each vendor is a cloneable handle holding the credentials it accepts, its
//! fixture data and everything the peer has been asked to do; build it, give
//! [`router`](VirusTotal::router) to [`Peer::start`](crate::Peer::start), keep
//! the handle, and read what the integration wrote through it:
//!
//! ```no_run
//! use allama_test_peer::Peer;
//! use allama_test_peer::vendors::Slack;
//!
//! # async fn demo() {
//! let slack = Slack::new("xoxb-test").with_channel("C0SOC", "soc-alerts");
//! let peer = Peer::start(slack.router()).await;
//! // Point the integration at `peer.base_url()` instead of https://slack.com,
//! // run it, then:
//! let posted = slack.messages();
//! # }
//! ```
//!
//! The peers serve the vendors' real paths (`/api/v3/...` for VirusTotal,
//! `/api/v2/...` for AbuseIPDB, `/api/...` for Slack, `/rest/api/{2,3}/...`
//! for Jira), so a peer's [`base_url`](crate::Peer::base_url) stands in for
//! the vendor's origin. Links the vendors put in their answers (`self`,
//! `links.self`, `nextPageUrl`) point back at the peer, built from the
//! request's `Host` header.
//!
//! Every vendor has the same knobs for failures, applied before
//! authentication so that nothing is written by a failed request:
//! `fail_next` (the next request), `fail_next_on` (the next request of a
//! method and path prefix), `fail_always` / `stop_failing`, plus vendor-shaped
//! replies to fail with (`rate_limited`, `server_error`, ...). Each peer also
//! has a clock (real time plus an offset) that `advance_clock` moves, for the
//! time-based rules (AbuseIPDB's 15-minute re-report window and daily quotas).

pub mod abuseipdb;
pub mod jira;
pub mod slack;
pub mod virustotal;

pub use abuseipdb::AbuseIpDb;
pub use jira::Jira;
pub use slack::Slack;
pub use virustotal::VirusTotal;

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Recorded, Reply};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Failures a test asked for, consumed before the vendor logic runs.
#[derive(Default)]
pub(crate) struct Faults {
    inner: Mutex<FaultState>,
}

#[derive(Default)]
struct FaultState {
    queue: VecDeque<Fault>,
    always: Option<Reply>,
}

struct Fault {
    /// Uppercase method, or `None` for any.
    method: Option<String>,
    /// Path prefix, or `None` for any path.
    prefix: Option<String>,
    reply: Reply,
}

impl Faults {
    pub(crate) fn push(&self, method: Option<&str>, prefix: Option<&str>, reply: Reply) {
        lock(&self.inner).queue.push_back(Fault {
            method: method.filter(|m| *m != "*").map(str::to_ascii_uppercase),
            prefix: prefix.map(str::to_owned),
            reply,
        });
    }

    pub(crate) fn set_always(&self, reply: Option<Reply>) {
        let mut state = lock(&self.inner);
        state.always = reply;
        if state.always.is_none() {
            state.queue.clear();
        }
    }

    /// The failure to answer `req` with, if any: the first queued one that
    /// matches (removed), else the standing one.
    pub(crate) fn take(&self, req: &Recorded) -> Option<Reply> {
        let mut state = lock(&self.inner);
        let hit = state.queue.iter().position(|f| {
            f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
                && f.prefix.as_deref().is_none_or(|p| req.path.starts_with(p))
        });
        match hit {
            Some(i) => state.queue.remove(i).map(|f| f.reply),
            None => state.always.clone(),
        }
    }
}

/// Real time plus an offset tests can move forward.
#[derive(Default)]
pub(crate) struct Clock {
    offset: Mutex<Duration>,
}

impl Clock {
    /// Seconds since the Unix epoch, as the peer sees them.
    pub(crate) fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        (real + *lock(&self.offset)).as_secs() as i64
    }

    pub(crate) fn advance(&self, by: Duration) {
        *lock(&self.offset) += by;
    }
}

/// The methods every vendor handle has; expects `self.shared.faults` and
/// `self.shared.clock`.
macro_rules! common_methods {
    () => {
        /// Answers the next request, whatever it is, with `reply` instead of
        /// the vendor logic (before authentication, so nothing is written).
        /// Queued failures are used one per request, in order.
        pub fn fail_next(&self, reply: $crate::Reply) {
            self.shared.faults.push(None, None, reply);
        }

        /// Like [`fail_next`](Self::fail_next), but only for the next request
        /// whose method is `method` (`"*"` for any) and whose path starts with
        /// `path_prefix`; other requests are answered normally meanwhile.
        pub fn fail_next_on(&self, method: &str, path_prefix: &str, reply: $crate::Reply) {
            self.shared
                .faults
                .push(Some(method), Some(path_prefix), reply);
        }

        /// Answers every request with `reply` (after any queued failures)
        /// until [`stop_failing`](Self::stop_failing).
        pub fn fail_always(&self, reply: $crate::Reply) {
            self.shared.faults.set_always(Some(reply));
        }

        /// Drops the standing failure and every queued one.
        pub fn stop_failing(&self) {
            self.shared.faults.set_always(None);
        }

        /// Moves the peer's clock forward by `by` (timestamps it writes, time
        /// windows and daily quotas follow it).
        pub fn advance_clock(&self, by: std::time::Duration) {
            self.shared.clock.advance(by);
        }
    };
}
pub(crate) use common_methods;

/// `http://HOST` from the request's `Host` header, for the links vendors put
/// in their answers.
pub(crate) fn origin(req: &Recorded) -> String {
    format!("http://{}", req.header("host").unwrap_or("127.0.0.1"))
}

/// The request's media type, lowercase, without parameters (`""` if none).
pub(crate) fn media_type(req: &Recorded) -> String {
    req.header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Parameter `name` of the `Content-Type` header (e.g. `charset`), unquoted.
pub(crate) fn content_type_param(req: &Recorded, name: &str) -> Option<String> {
    req.header("content-type")?
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// `application/x-www-form-urlencoded` pairs, decoded.
pub(crate) fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                crate::recorded::percent_decode(name),
                crate::recorded::percent_decode(value),
            )
        })
        .collect()
}

/// The body's form fields when it is urlencoded or `multipart/form-data`
/// (text fields only); empty otherwise.
pub(crate) fn body_form(req: &Recorded) -> Vec<(String, String)> {
    match media_type(req).as_str() {
        "application/x-www-form-urlencoded" => form_pairs(&req.body_str()),
        "multipart/form-data" => content_type_param(req, "boundary")
            .map(|b| multipart_fields(&req.body, &b))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The named text fields of a `multipart/form-data` body.
fn multipart_fields(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let name = head
            .lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with("content-disposition: form-data")
            })
            .and_then(|l| l.split(';').find_map(|p| p.trim().strip_prefix("name=")))
            .map(|n| n.trim_matches('"').to_owned());
        if let Some(name) = name {
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            fields.push((name, value.to_owned()));
        }
    }
    fields
}

/// The value of `name` among `pairs`, if present.
pub(crate) fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 of `bytes`: the standard alphabet with padding, or the URL-safe
/// alphabet without (RFC 4648 §5, as VirusTotal's URL identifiers use it).
pub(crate) fn base64_encode(bytes: &[u8], url_safe: bool) -> String {
    let alphabet = if url_safe { URL_SAFE } else { STANDARD };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url_safe {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 strictly: the standard alphabet with correct padding, or
/// the URL-safe alphabet with no padding at all. `None` on anything else.
pub(crate) fn base64_decode(text: &str, url_safe: bool) -> Option<Vec<u8>> {
    let alphabet = if url_safe { URL_SAFE } else { STANDARD };
    let data = if url_safe {
        text
    } else {
        if !text.len().is_multiple_of(4) {
            return None;
        }
        text.trim_end_matches('=')
    };
    if text.len() - data.len() > 2 || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in data.bytes() {
        let v = alphabet.iter().position(|&a| a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, as in canonical encodings.
    (acc == 0).then_some(out)
}

/// SHA-256 of `data`, lowercase hex (VirusTotal's URL identifiers).
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (slot, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *slot = slot.wrapping_add(v);
        }
    }
    h.iter().map(|v| format!("{v:08x}")).collect()
}

/// UTC calendar fields of a Unix time: (year, month, day, hour, minute, second).
pub(crate) fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2024-01-31T12:00:00+00:00` (the form AbuseIPDB uses).
pub(crate) fn iso8601(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+00:00")
}

/// Start of the next UTC day.
pub(crate) fn next_midnight(secs: i64) -> i64 {
    (secs.div_euclid(86_400) + 1) * 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn base64_round_trips_and_is_strict() {
        for input in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let standard = base64_encode(input, false);
            assert_eq!(base64_decode(&standard, false).as_deref(), Some(input));
            let url = base64_encode(input, true);
            assert!(!url.contains('='));
            assert_eq!(base64_decode(&url, true).as_deref(), Some(input));
        }
        assert_eq!(base64_encode(b"foobar", false), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo", false), "Zm8=");
        assert_eq!(base64_encode(b"\xfb\xff", true), "-_8");
        assert_eq!(base64_decode("Zm8", false), None, "padding is required");
        assert_eq!(base64_decode("Zm8=", true), None, "padding is refused");
        assert_eq!(base64_decode("-_8", false), None, "alphabets differ");
        assert_eq!(base64_decode("Zm9=", false), None, "non-canonical");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20+00:00");
        assert_eq!(next_midnight(1_700_000_000), 1_700_006_400);
    }

    #[test]
    fn multipart_text_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\nhttps://a.example/x\r\n--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\n1\r\n--XyZ--\r\n";
        assert_eq!(
            multipart_fields(body, "XyZ"),
            [
                ("url".to_owned(), "https://a.example/x".to_owned()),
                ("other".to_owned(), "1".to_owned())
            ]
        );
    }
}
