//! Verifying signed webhooks: the Standard Webhooks format, and presets for
//! vendors that post directly (GitHub, Slack).
//!
//! | scheme | signed bytes | headers | replay window |
//! | --- | --- | --- | --- |
//! | `standard` | `{id}.{timestamp}.{body}` | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> …` | yes |
//! | `github` | the body | `X-Hub-Signature-256: sha256=<hex>` (id: `X-GitHub-Delivery`) | none: GitHub signs no time |
//! | `slack` | `v0:{timestamp}:{body}` | `X-Slack-Request-Timestamp`, `X-Slack-Signature: v0=<hex>` | yes |
//!
//! All are HMAC-SHA256, compared in constant time (ring). A trigger may hold
//! several keys, so a secret can be rotated without dropping deliveries.
//! Each check is bounded: header lengths and the number of signatures tried
//! are capped, so a hostile sender cannot make verification expensive.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Which signature format a trigger expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Standard Webhooks (standardwebhooks.com).
    Standard,
    /// GitHub's `X-Hub-Signature-256`.
    Github,
    /// Slack's `v0` signing secret.
    Slack,
}

/// How a trigger's deliveries are checked.
#[derive(Clone, Debug)]
pub struct Signing {
    /// The format.
    pub scheme: Scheme,
    /// Keys any of which may have signed (the newest first).
    pub keys: Vec<Vec<u8>>,
    /// How far a delivery's timestamp may be from now, in seconds.
    pub tolerance_secs: u64,
}

/// Default replay window: five minutes, as Standard Webhooks and Slack say.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Longest signature header looked at.
pub const MAX_SIGNATURE_HEADER: usize = 4096;
/// Most signatures in one header tried.
pub const MAX_SIGNATURES: usize = 16;

/// What a valid delivery said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The sender's delivery id, when the format has one (for deduplication).
    pub id: Option<String>,
    /// Its timestamp (seconds), when the format has one.
    pub timestamp: Option<u64>,
}

/// Why a delivery was refused (answered 401, and audited).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A header the format needs is absent.
    #[error("the `{0}` header is missing")]
    Missing(&'static str),
    /// A header is not what the format says.
    #[error("the `{header}` header is malformed: {why}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Outside the replay window, in the past.
    #[error(
        "the delivery is {age} s old; at most {tolerance} s are accepted (a replay, or a clock far off)"
    )]
    Stale {
        /// Seconds since its timestamp.
        age: u64,
        /// The window.
        tolerance: u64,
    },
    /// Outside the replay window, in the future.
    #[error(
        "the delivery's timestamp is {ahead} s in the future; at most {tolerance} s are accepted"
    )]
    Future {
        /// Seconds ahead.
        ahead: u64,
        /// The window.
        tolerance: u64,
    },
    /// No signature matched any key.
    #[error("no signature in `{0}` matches the trigger's secret")]
    Mismatch(&'static str),
}

/// A trigger secret as given: `whsec_<base64>` (Standard Webhooks), else
/// the bytes of the text itself (GitHub and Slack secrets are plain text).
pub fn parse_secret(text: &str) -> Result<Vec<u8>, String> {
    match text.strip_prefix("whsec_") {
        Some(b64) => match B64.decode(b64) {
            Ok(k) if k.len() >= 16 => Ok(k),
            Ok(k) => Err(format!(
                "the key is {} bytes; at least 16 are needed",
                k.len()
            )),
            Err(e) => Err(format!("`whsec_` must be followed by base64: {e}")),
        },
        None if text.len() >= 16 => Ok(text.as_bytes().to_vec()),
        None => Err("a secret must be at least 16 characters".into()),
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign()
}

fn matches(keys: &[Vec<u8>], parts: &[&[u8]], sig: &[u8]) -> bool {
    keys.iter().any(|k| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, k);
        let mut msg = Vec::new();
        for p in parts {
            msg.extend_from_slice(p);
        }
        hmac::verify(&key, &msg, sig).is_ok()
    })
}

/// The Standard Webhooks signature header value for one key (`v1,<base64>`),
/// as a sender computes it.
pub fn sign_standard(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = mac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", B64.encode(tag.as_ref()))
}

/// GitHub's `X-Hub-Signature-256` value.
pub fn sign_github(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(key, &[body]).as_ref()))
}

/// Slack's `X-Slack-Signature` value.
pub fn sign_slack(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    format!(
        "v0={}",
        hex::encode(mac(key, &[b"v0:", ts.as_bytes(), b":", body]).as_ref())
    )
}

fn header<'h>(
    headers: &'h axum::http::HeaderMap,
    name: &'static str,
) -> Result<&'h str, WebhookError> {
    let v = headers.get(name).ok_or(WebhookError::Missing(name))?;
    let v = v.to_str().map_err(|_| WebhookError::Malformed {
        header: name,
        why: "not visible ASCII".into(),
    })?;
    if v.len() > MAX_SIGNATURE_HEADER {
        return Err(WebhookError::Malformed {
            header: name,
            why: format!("longer than {MAX_SIGNATURE_HEADER} bytes"),
        });
    }
    Ok(v)
}

fn timestamp(
    headers: &axum::http::HeaderMap,
    name: &'static str,
    now: u64,
    tolerance: u64,
) -> Result<u64, WebhookError> {
    let text = header(headers, name)?;
    let ts: u64 = text.trim().parse().map_err(|_| WebhookError::Malformed {
        header: name,
        why: "expected whole seconds since 1970".into(),
    })?;
    if ts.saturating_add(tolerance) < now {
        return Err(WebhookError::Stale {
            age: now - ts,
            tolerance,
        });
    }
    if ts > now.saturating_add(tolerance) {
        return Err(WebhookError::Future {
            ahead: ts - now,
            tolerance,
        });
    }
    Ok(ts)
}

fn hex_signature(
    headers: &axum::http::HeaderMap,
    name: &'static str,
    prefix: &str,
) -> Result<Vec<u8>, WebhookError> {
    let v = header(headers, name)?;
    let hexed = v
        .strip_prefix(prefix)
        .ok_or_else(|| WebhookError::Malformed {
            header: name,
            why: format!("expected `{prefix}` and a hex digest"),
        })?;
    hex::decode(hexed.trim()).map_err(|_| WebhookError::Malformed {
        header: name,
        why: "the digest is not hex".into(),
    })
}

/// Checks a delivery's signature (and its timestamp, for formats that sign one).
pub fn verify(
    signing: &Signing,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    now_secs: u64,
) -> Result<Verified, WebhookError> {
    let tol = signing.tolerance_secs;
    match signing.scheme {
        Scheme::Standard => {
            let id = header(headers, "webhook-id")?.to_string();
            // Timestamp first: a stale delivery is refused before any MAC.
            let ts = timestamp(headers, "webhook-timestamp", now_secs, tol)?;
            let sigs = header(headers, "webhook-signature")?;
            let ts_text = ts.to_string();
            let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", body];
            let mut seen_v1 = false;
            for entry in sigs
                .split(' ')
                .filter(|s| !s.is_empty())
                .take(MAX_SIGNATURES)
            {
                // Other versions may appear (v1a: asymmetric); skip them.
                let Some(b64) = entry.strip_prefix("v1,") else {
                    continue;
                };
                seen_v1 = true;
                if let Ok(sig) = B64.decode(b64)
                    && matches(&signing.keys, &parts, &sig)
                {
                    return Ok(Verified {
                        id: Some(id),
                        timestamp: Some(ts),
                    });
                }
            }
            if !seen_v1 {
                return Err(WebhookError::Malformed {
                    header: "webhook-signature",
                    why: "no `v1,<base64>` signature in it".into(),
                });
            }
            Err(WebhookError::Mismatch("webhook-signature"))
        }
        Scheme::Github => {
            let sig = hex_signature(headers, "x-hub-signature-256", "sha256=")?;
            if !matches(&signing.keys, &[body], &sig) {
                return Err(WebhookError::Mismatch("x-hub-signature-256"));
            }
            let id = headers
                .get("x-github-delivery")
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.len() <= 200)
                .map(str::to_string);
            Ok(Verified {
                id,
                timestamp: None,
            })
        }
        Scheme::Slack => {
            let ts = timestamp(headers, "x-slack-request-timestamp", now_secs, tol)?;
            let sig = hex_signature(headers, "x-slack-signature", "v0=")?;
            let ts_text = ts.to_string();
            if !matches(
                &signing.keys,
                &[b"v0:", ts_text.as_bytes(), b":", body],
                &sig,
            ) {
                return Err(WebhookError::Mismatch("x-slack-signature"));
            }
            Ok(Verified {
                id: None,
                timestamp: Some(ts),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn signing(scheme: Scheme, key: &[u8]) -> Signing {
        Signing {
            scheme,
            keys: vec![key.to_vec()],
            tolerance_secs: DEFAULT_TOLERANCE_SECS,
        }
    }

    // The published Standard Webhooks test vector.
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: u64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_standard_webhooks_vector_signs_and_verifies() {
        let key = parse_secret(SW_SECRET).unwrap();
        assert_eq!(sign_standard(&key, SW_ID, SW_TS, SW_BODY), SW_SIG);
        let h = headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", "1614265330"),
            // Several signatures, one of an unknown version: any v1 may match.
            (
                "webhook-signature",
                &format!("v1a,abc v1,bm9wZQ== {SW_SIG}"),
            ),
        ]);
        let v = verify(&signing(Scheme::Standard, &key), &h, SW_BODY, SW_TS + 10).unwrap();
        assert_eq!(v.id.as_deref(), Some(SW_ID));
        assert_eq!(v.timestamp, Some(SW_TS));
    }

    #[test]
    fn standard_webhooks_refusals_say_why() {
        let key = parse_secret(SW_SECRET).unwrap();
        let s = signing(Scheme::Standard, &key);
        let good = [
            ("webhook-id", SW_ID),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", SW_SIG),
        ];
        let with = |k: &'static str, v: &str| {
            let mut h = headers(&good);
            h.insert(k, HeaderValue::from_str(v).unwrap());
            h
        };
        let cases: Vec<(HeaderMap, &[u8], u64, &str)> = vec![
            (
                with("webhook-signature", "v1,AAAA"),
                SW_BODY,
                SW_TS,
                "no signature",
            ),
            (
                headers(&good),
                br#"{"test": 2432232315}"#,
                SW_TS,
                "no signature",
            ),
            (headers(&good), SW_BODY, SW_TS + 301, "301 s old"),
            (headers(&good), SW_BODY, SW_TS - 400, "in the future"),
            (
                with("webhook-timestamp", "soon"),
                SW_BODY,
                SW_TS,
                "whole seconds",
            ),
            (
                with("webhook-timestamp", "-5"),
                SW_BODY,
                SW_TS,
                "whole seconds",
            ),
            (
                with("webhook-timestamp", "18446744073709551615"),
                SW_BODY,
                SW_TS,
                "in the future",
            ),
            (
                with("webhook-timestamp", "99999999999999999999999"),
                SW_BODY,
                SW_TS,
                "whole seconds",
            ),
            (
                with("webhook-signature", "sha256=abc"),
                SW_BODY,
                SW_TS,
                "no `v1,",
            ),
            (
                with("webhook-signature", &"v1,x ".repeat(2000)),
                SW_BODY,
                SW_TS,
                "longer than",
            ),
            (
                with("webhook-id", "msg_other"),
                SW_BODY,
                SW_TS,
                "no signature",
            ),
            (
                headers(&good[1..]),
                SW_BODY,
                SW_TS,
                "`webhook-id` header is missing",
            ),
            (
                headers(&good[..2]),
                SW_BODY,
                SW_TS,
                "`webhook-signature` header is missing",
            ),
        ];
        for (h, body, now, needle) in cases {
            let e = verify(&s, &h, body, now).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
        // A rotated secret: the old key still verifies while both are held.
        let new_key = b"a brand new secret key!!".to_vec();
        let both = Signing {
            keys: vec![new_key.clone(), key.clone()],
            ..s.clone()
        };
        assert!(verify(&both, &headers(&good), SW_BODY, SW_TS).is_ok());
        let only_new = Signing {
            keys: vec![new_key],
            ..s
        };
        assert!(verify(&only_new, &headers(&good), SW_BODY, SW_TS).is_err());
    }

    #[test]
    fn the_github_vector_verifies() {
        // docs.github.com, "Validating webhook deliveries".
        let key = b"It's a Secret to Everybody";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign_github(key, b"Hello, World!"), sig);
        let h = headers(&[("x-hub-signature-256", sig), ("x-github-delivery", "d-1")]);
        let v = verify(&signing(Scheme::Github, key), &h, b"Hello, World!", 0).unwrap();
        assert_eq!(v.id.as_deref(), Some("d-1"));
        let e = verify(&signing(Scheme::Github, key), &h, b"Hello, World?", 0).unwrap_err();
        assert_eq!(e, WebhookError::Mismatch("x-hub-signature-256"));
        let bad = headers(&[("x-hub-signature-256", "sha1=abcd")]);
        assert!(matches!(
            verify(&signing(Scheme::Github, key), &bad, b"", 0),
            Err(WebhookError::Malformed { .. })
        ));
        let bad = headers(&[("x-hub-signature-256", "sha256=zz")]);
        assert!(verify(&signing(Scheme::Github, key), &bad, b"", 0).is_err());
    }

    #[test]
    fn the_slack_vector_verifies_inside_its_window() {
        // api.slack.com, "Verifying requests from Slack".
        let key = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign_slack(key, 1_531_420_618, body), sig);
        let h = headers(&[
            ("x-slack-request-timestamp", "1531420618"),
            ("x-slack-signature", sig),
        ]);
        let s = signing(Scheme::Slack, key);
        assert!(verify(&s, &h, body, 1_531_420_618 + 60).is_ok());
        assert!(matches!(
            verify(&s, &h, body, 1_531_420_618 + 3600),
            Err(WebhookError::Stale { .. })
        ));
        assert!(verify(&s, &h, &body[1..], 1_531_420_618).is_err());
    }

    #[test]
    fn secrets_are_checked() {
        assert_eq!(parse_secret(SW_SECRET).unwrap().len(), 24);
        assert!(parse_secret("whsec_!!!").unwrap_err().contains("base64"));
        assert!(
            parse_secret("whsec_AAAA")
                .unwrap_err()
                .contains("at least 16")
        );
        assert!(parse_secret("short").is_err());
        assert_eq!(
            parse_secret("a plain slack secret").unwrap(),
            b"a plain slack secret"
        );
    }
}
