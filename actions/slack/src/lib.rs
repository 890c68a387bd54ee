//! Slack Web API (<https://docs.slack.dev/apis/web-api/>): posting messages
//! ([`chat.postMessage`](https://docs.slack.dev/reference/methods/chat.postMessage))
//! and finding a workspace member by email
//! ([`users.lookupByEmail`](https://docs.slack.dev/reference/methods/users.lookupByEmail)).
//!
//! The bot token travels as the handle `SLACK_BOT_TOKEN` in
//! `Authorization: Bearer`; the component never sees it. Slack answers
//! almost everything with HTTP 200 and `{"ok": false, "error": code}`;
//! the codes become typed errors (credentials and scopes: `unauthorized`;
//! unknown channel or user: `not-found`; `ratelimited`: `rate-limited`;
//! anything else: `upstream`, not retryable, with the code in the message).
//! Throttling is the exception: HTTP 429 with `Retry-After`.

use allama_sdk::{Context, Error, JsonSchema, Result, actions, http};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const API: &str = "https://slack.com/api";
/// The secret handle holding the bot token (`xoxb-…`).
const TOKEN: &str = "SLACK_BOT_TOKEN";
/// Slack truncates longer messages; the peer refuses them (`msg_too_long`).
const MAX_TEXT: usize = 40_000;
/// Slack's limit on blocks per message.
const MAX_BLOCKS: usize = 50;

/// `{"channel": "C0123456789", "text": "Host isolated", "thread_ts": "1712345678.000100"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    /// A channel id (`C…`, `G…`), a user id (`U…`, for a direct message),
    /// or a channel name with or without `#`.
    #[schemars(length(min = 1, max = 81))]
    pub channel: String,
    /// The message (Slack `mrkdwn`), at most 40000 characters; with `blocks`,
    /// the fallback shown in notifications.
    #[schemars(length(min = 1, max = 40000))]
    pub text: String,
    /// Block Kit blocks (<https://docs.slack.dev/block-kit/>), at most 50,
    /// each an object with a `type`.
    #[schemars(length(max = 50))]
    pub blocks: Option<Vec<Map<String, Value>>>,
    /// Reply in the thread of this message (its `ts`).
    pub thread_ts: Option<String>,
}

/// A posted message.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Posted {
    /// The id of the channel it went to.
    pub channel: String,
    /// Its timestamp: its id within the channel (a `thread_ts` for replies).
    pub ts: String,
}

/// `{"email": "ana@example.com"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupUserByEmail {
    /// The member's email address.
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
}

/// A workspace member.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct User {
    /// The user id (`U…`).
    pub id: String,
    /// The username.
    pub name: String,
    /// The full name (empty if unset).
    pub real_name: String,
}

/// Slack's error for `method` answering `{"ok": false, "error": code, …}`.
fn slack_error(method: &str, code: &str, body: &Value, retry_after_ms: Option<u64>) -> Error {
    let mut message = format!("Slack {method}: {}", clip(code));
    if let Some(needed) = body["needed"].as_str() {
        message.push_str(&format!(" (needs scope {})", clip(needed)));
    }
    if let Some(details) = body["response_metadata"]["messages"].as_array() {
        let details: Vec<String> = details.iter().filter_map(Value::as_str).map(clip).collect();
        if !details.is_empty() {
            message.push_str(&format!(": {}", details.join("; ")));
        }
    }
    match code {
        "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "token_expired"
        | "missing_scope" => Error::unauthorized(message),
        "channel_not_found" | "users_not_found" | "user_not_found" => Error::not_found(message),
        "ratelimited" => Error::rate_limited(retry_after_ms, message),
        _ => Error::upstream(None, message).retryable(false),
    }
}

/// Send with the token by handle; return the body of an `ok` answer.
fn call(method: &str, request: http::Request) -> Result<Value> {
    let response = request.auth(http::bearer(TOKEN)).send()?;
    let code = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(clip));
    if response.status >= 400 {
        // 429 with Retry-After, 5xx (retryable), other 4xx: the SDK's mapping,
        // with Slack's error code in the message when it sent one.
        let status = response.status;
        let mut e = match response.error_for_status() {
            Err(e) => e,
            Ok(_) => Error::upstream(Some(status), String::new()),
        };
        if let Some(code) = code {
            e.message = format!("Slack {method}: {code} (HTTP {status})");
        }
        return Err(e);
    }
    let retry_after_ms = response.retry_after_ms();
    let body: Value = response.json()?;
    match body["ok"].as_bool() {
        Some(true) => Ok(body),
        Some(false) => Err(slack_error(
            method,
            body["error"].as_str().unwrap_or("unknown_error"),
            &body,
            retry_after_ms,
        )),
        None => Err(
            Error::upstream(None, format!("Slack {method}: the answer has no `ok`"))
                .retryable(false),
        ),
    }
}

/// Text without control characters other than line breaks and tabs.
fn plain_text(name: &str, text: &str) -> Result<()> {
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::invalid_input(format!(
            "`{name}` holds control characters (other than line breaks and tabs)"
        )));
    }
    Ok(())
}

/// A channel id, user id or channel name (optionally `#name`).
fn checked_channel(channel: &str) -> Result<&str> {
    let c = channel.trim();
    let name = c.strip_prefix('#').unwrap_or(c);
    let ok = !name.is_empty()
        && name.chars().count() <= 80
        && name
            .chars()
            .all(|ch| ch.is_alphanumeric() || ch == '-' || ch == '_');
    if !ok {
        return Err(Error::invalid_input(format!(
            "`{}` is not a Slack channel id, user id or channel name",
            clip(channel)
        )));
    }
    Ok(c)
}

/// A message timestamp such as `1712345678.000100`, if given.
fn checked_ts(ts: Option<&str>) -> Result<Option<&str>> {
    let Some(ts) = ts.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let ok = ts.len() <= 32
        && ts.split_once('.').is_some_and(|(s, f)| {
            !s.is_empty()
                && !f.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && f.bytes().all(|b| b.is_ascii_digit())
        });
    if !ok {
        return Err(Error::invalid_input(format!(
            "`thread_ts`: `{}` is not a Slack message timestamp such as 1712345678.000100",
            clip(ts)
        )));
    }
    Ok(Some(ts))
}

/// The JSON body of `chat.postMessage`.
#[derive(Serialize)]
struct PostBody<'a> {
    channel: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks: Option<&'a [Map<String, Value>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
}

fn post_message(input: PostMessage, _ctx: &Context) -> Result<Posted> {
    let channel = checked_channel(&input.channel)?;
    let text = input.text.as_str();
    if text.trim().is_empty() {
        return Err(Error::invalid_input("`text` is empty"));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(Error::invalid_input(format!(
            "`text` is longer than {MAX_TEXT} characters"
        )));
    }
    plain_text("text", text)?;
    let blocks = input.blocks.as_deref().filter(|b| !b.is_empty());
    if let Some(blocks) = blocks {
        if blocks.len() > MAX_BLOCKS {
            return Err(Error::invalid_input(format!(
                "`blocks`: at most {MAX_BLOCKS} blocks, not {}",
                blocks.len()
            )));
        }
        if let Some(i) = blocks.iter().position(|b| {
            b.get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        }) {
            return Err(Error::invalid_input(format!("`blocks[{i}]` has no `type`")));
        }
    }
    let thread_ts = checked_ts(input.thread_ts.as_deref())?;
    let body = PostBody {
        channel,
        text,
        blocks,
        thread_ts,
    };
    let bytes = serde_json::to_vec(&body)
        .map_err(|e| Error::internal(format!("the message could not be serialized: {e}")))?;
    let answer = call(
        "chat.postMessage",
        http::post(&format!("{API}/chat.postMessage"))
            .header("content-type", "application/json; charset=utf-8")
            .body(bytes),
    )?;
    let field = |k: &str| {
        answer[k].as_str().map(str::to_string).ok_or_else(|| {
            Error::upstream(
                None,
                format!("Slack chat.postMessage answered without `{k}`"),
            )
            .retryable(false)
        })
    };
    Ok(Posted {
        channel: field("channel")?,
        ts: field("ts")?,
    })
}

/// An email address: `local@domain`, no spaces or control characters.
fn checked_email(email: &str) -> Result<&str> {
    let e = email.trim();
    let bad = || Error::invalid_input(format!("`{}` is not an email address", clip(email)));
    if e.len() > 254 || e.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad());
    }
    let (local, domain) = e.rsplit_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_ascii() || (c.is_ascii_graphic() && !"\"(),:;<>@[\\]".contains(c)));
    let domain_ok = domain.contains('.')
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if !(local_ok && domain_ok) {
        return Err(bad());
    }
    Ok(e)
}

#[derive(Deserialize)]
struct LookupAnswer {
    user: SlackUser,
}

#[derive(Deserialize)]
struct SlackUser {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    real_name: Option<String>,
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    #[serde(default)]
    real_name: Option<String>,
}

fn lookup_user_by_email(input: LookupUserByEmail, _ctx: &Context) -> Result<User> {
    let email = checked_email(&input.email)?;
    let answer = call(
        "users.lookupByEmail",
        http::get(&format!("{API}/users.lookupByEmail")).query("email", email),
    )?;
    let LookupAnswer { user } = serde_json::from_value(answer).map_err(|e| {
        Error::upstream(
            None,
            format!("Slack users.lookupByEmail answered without a user: {e}"),
        )
        .retryable(false)
    })?;
    let real_name = user
        .real_name
        .filter(|n| !n.is_empty())
        .or(user.profile.and_then(|p| p.real_name))
        .unwrap_or_default();
    Ok(User {
        id: user.id,
        name: user.name.unwrap_or_default(),
        real_name,
    })
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

actions! {
    "post-message" => post_message,
    "lookup-user-by-email" => lookup_user_by_email,
}

#[cfg(test)]
mod tests {
    use super::*;
    use allama_sdk::ErrorKind;
    use allama_sdk::testing::{MockHost, Reply};
    use serde_json::json;

    const POST: &str = "https://slack.com/api/chat.postMessage";
    const LOOKUP: &str = "https://slack.com/api/users.lookupByEmail";

    fn host() -> MockHost {
        MockHost::new().secret(TOKEN, "xoxb-1-test")
    }

    fn slack(body: Value) -> Reply {
        Reply::json(200, body).header("content-type", "application/json; charset=utf-8")
    }

    fn posted(channel: &str) -> Reply {
        slack(
            json!({"ok": true, "channel": channel, "ts": "1712345678.000200", "message": {"type": "message", "text": "x"}}),
        )
    }

    #[test]
    fn post_message_sends_json_with_a_charset_and_the_token_by_handle() {
        let host = host().on("POST", POST, posted("C0SOC00001"));
        let out = host
            .run(
                Actions::dispatch,
                "post-message",
                json!({"channel": "#soc-alerts", "text": "Host *web-1* isolated & quarantined"}),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({"channel": "C0SOC00001", "ts": "1712345678.000200"})
        );
        let sent = host.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(sent[0].url, POST);
        assert_eq!(sent[0].header("authorization"), Some("Bearer xoxb-1-test"));
        assert_eq!(
            sent[0].header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            sent[0]
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
        assert_eq!(
            serde_json::from_slice::<Value>(sent[0].body.as_deref().unwrap()).unwrap(),
            json!({"channel": "#soc-alerts", "text": "Host *web-1* isolated & quarantined"})
        );
    }

    #[test]
    fn post_message_with_blocks_in_a_thread() {
        let host = host().on("POST", POST, posted("C0SOC00001"));
        let blocks = json!([
            {"type": "header", "text": {"type": "plain_text", "text": "Alert"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*203.0.113.7* scored 87\n`../etc/passwd`"}},
        ]);
        host.run(
            Actions::dispatch,
            "post-message",
            json!({"channel": " C0SOC00001 ", "text": "Alert: 203.0.113.7", "blocks": blocks, "thread_ts": "1712345678.000100"}),
        )
        .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(host.requests()[0].body.as_deref().unwrap()).unwrap(),
            json!({"channel": "C0SOC00001", "text": "Alert: 203.0.113.7", "blocks": blocks, "thread_ts": "1712345678.000100"})
        );
    }

    #[test]
    fn empty_optional_fields_are_left_out() {
        let host = host().on("POST", POST, posted("D0ANALYST1"));
        host.run(
            Actions::dispatch,
            "post-message",
            json!({"channel": "U0ANALYST1", "text": "hi", "blocks": [], "thread_ts": "", }),
        )
        .unwrap();
        assert_eq!(
            host.requests()[0].body_text(),
            r#"{"channel":"U0ANALYST1","text":"hi"}"#
        );
        let host = self::host().on("POST", POST, posted("D0ANALYST1"));
        host.run(
            Actions::dispatch,
            "post-message",
            json!({"channel": "U0ANALYST1", "text": "hi", "blocks": null, "thread_ts": null}),
        )
        .unwrap();
        assert_eq!(
            host.requests()[0].body_text(),
            r#"{"channel":"U0ANALYST1","text":"hi"}"#
        );
    }

    #[test]
    fn lookup_is_a_get_with_the_email_percent_encoded() {
        let host = host().on(
            "GET",
            LOOKUP,
            slack(json!({"ok": true, "user": {
                "id": "U0ANALYST1", "team_id": "T0ALLAMA01", "name": "ana", "real_name": "Ana Analyst",
                "profile": {"real_name": "Ana Analyst", "email": "a&b+soc@example.com"}}})),
        );
        let out = host
            .run(
                Actions::dispatch,
                "lookup-user-by-email",
                json!({"email": " a&b+soc@example.com "}),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({"id": "U0ANALYST1", "name": "ana", "real_name": "Ana Analyst"})
        );
        let sent = &host.requests()[0];
        assert_eq!(sent.method, "GET");
        assert_eq!(
            sent.url,
            "https://slack.com/api/users.lookupByEmail?email=a%26b%2Bsoc%40example.com"
        );
        assert_eq!(sent.header("authorization"), Some("Bearer xoxb-1-test"));
        assert_eq!(sent.header("content-type"), None);
        assert_eq!(sent.body, None);
    }

    #[test]
    fn lookup_falls_back_to_the_profile_name() {
        let host = host().on(
            "GET",
            LOOKUP,
            slack(json!({"ok": true, "user": {"id": "U0B", "name": "bob", "profile": {"real_name": "Bob B"}}})),
        );
        let out = host
            .run(
                Actions::dispatch,
                "lookup-user-by-email",
                json!({"email": "bob@example.com"}),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({"id": "U0B", "name": "bob", "real_name": "Bob B"})
        );
    }

    #[test]
    fn slack_error_codes_become_typed_errors() {
        let cases = [
            ("invalid_auth", ErrorKind::Unauthorized, false),
            ("not_authed", ErrorKind::Unauthorized, false),
            ("account_inactive", ErrorKind::Unauthorized, false),
            ("token_revoked", ErrorKind::Unauthorized, false),
            ("missing_scope", ErrorKind::Unauthorized, false),
            ("channel_not_found", ErrorKind::NotFound, false),
            ("users_not_found", ErrorKind::NotFound, false),
            ("user_not_found", ErrorKind::NotFound, false),
            ("ratelimited", ErrorKind::RateLimited(None), true),
            ("not_in_channel", ErrorKind::Upstream(None), false),
            ("is_archived", ErrorKind::Upstream(None), false),
            ("invalid_blocks", ErrorKind::Upstream(None), false),
            ("internal_error", ErrorKind::Upstream(None), false),
        ];
        for (code, kind, retryable) in cases {
            for (action, method, url, input) in [
                (
                    "post-message",
                    "POST",
                    POST,
                    json!({"channel": "C0SOC00001", "text": "x"}),
                ),
                (
                    "lookup-user-by-email",
                    "GET",
                    LOOKUP,
                    json!({"email": "ana@example.com"}),
                ),
            ] {
                let host = host().on(method, url, slack(json!({"ok": false, "error": code})));
                let e = host.run(Actions::dispatch, action, input).unwrap_err();
                assert_eq!(e.kind, kind, "{action} {code}: {e}");
                assert_eq!(e.retryable, retryable, "{action} {code}: {e}");
                assert!(e.message.contains(code), "{action}: {e}");
                assert!(e.message.starts_with("Slack "), "{e}");
            }
        }
    }

    #[test]
    fn error_details_reach_the_message() {
        let host = host().on(
            "GET",
            LOOKUP,
            slack(
                json!({"ok": false, "error": "missing_scope", "needed": "users:read.email", "provided": "chat:write"}),
            ),
        );
        let e = host
            .run(
                Actions::dispatch,
                "lookup-user-by-email",
                json!({"email": "ana@example.com"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(
            e.message,
            "Slack users.lookupByEmail: missing_scope (needs scope users:read.email)"
        );
        let host = self::host().on(
            "POST",
            POST,
            slack(json!({"ok": false, "error": "invalid_blocks",
                "response_metadata": {"messages": ["[ERROR] missing required field: type [json-pointer:/blocks/0]"]}})),
        );
        let e = host
            .run(
                Actions::dispatch,
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream(None));
        assert_eq!(
            e.message,
            "Slack chat.postMessage: invalid_blocks: [ERROR] missing required field: type [json-pointer:/blocks/0]"
        );
    }

    #[test]
    fn http_429_is_rate_limited_with_retry_after() {
        let host = host().on(
            "POST",
            POST,
            Reply::json(429, json!({"ok": false, "error": "ratelimited"}))
                .header("retry-after", "30"),
        );
        let e = host
            .run(
                Actions::dispatch,
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited(Some(30_000)));
        assert!(e.retryable);
        assert_eq!(e.message, "Slack chat.postMessage: ratelimited (HTTP 429)");
        // Without a body, still rate limited.
        let host = self::host().on(
            "GET",
            LOOKUP,
            Reply::text(429, "").header("Retry-After", "5"),
        );
        let e = host
            .run(
                Actions::dispatch,
                "lookup-user-by-email",
                json!({"email": "ana@example.com"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited(Some(5_000)));
    }

    #[test]
    fn server_errors_and_odd_answers_are_upstream() {
        let host = host().on(
            "POST",
            POST,
            Reply::json(503, json!({"ok": false, "error": "service_unavailable"})),
        );
        let e = host
            .run(
                Actions::dispatch,
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream(Some(503)));
        assert!(e.retryable);
        assert_eq!(
            e.message,
            "Slack chat.postMessage: service_unavailable (HTTP 503)"
        );
        for body in [
            Reply::text(200, "<html>oops</html>"),
            slack(json!({"no": "ok"})),
            slack(json!({"ok": true})),
        ] {
            let host = self::host().on("POST", POST, body);
            let e = host
                .run(
                    Actions::dispatch,
                    "post-message",
                    json!({"channel": "C0SOC00001", "text": "x"}),
                )
                .unwrap_err();
            assert!(matches!(e.kind, ErrorKind::Upstream(_)), "{e}");
            assert!(!e.retryable, "{e}");
        }
        let host = self::host().on(
            "GET",
            LOOKUP,
            slack(json!({"ok": true, "user": {"name": "x"}})),
        );
        let e = host
            .run(
                Actions::dispatch,
                "lookup-user-by-email",
                json!({"email": "ana@example.com"}),
            )
            .unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Upstream(None)), "{e}");
    }

    #[test]
    fn bad_input_is_refused_before_any_request() {
        let host = host();
        let many_blocks: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        for (action, input) in [
            ("post-message", json!({})),
            ("post-message", json!({"channel": "C0SOC00001"})),
            ("post-message", json!({"text": "x"})),
            ("post-message", json!({"channel": 5, "text": "x"})),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": ["x"]}),
            ),
            ("post-message", json!({"channel": "", "text": "x"})),
            ("post-message", json!({"channel": "#", "text": "x"})),
            (
                "post-message",
                json!({"channel": "../api/auth.test", "text": "x"}),
            ),
            (
                "post-message",
                json!({"channel": "C01&token=x", "text": "x"}),
            ),
            (
                "post-message",
                json!({"channel": "soc alerts", "text": "x"}),
            ),
            ("post-message", json!({"channel": "C01\u{0}", "text": "x"})),
            (
                "post-message",
                json!({"channel": "c".repeat(81), "text": "x"}),
            ),
            ("post-message", json!({"channel": "C0SOC00001", "text": ""})),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": " \n "}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x".repeat(40_001)}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "bell\u{7}"}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "blocks": "[]"}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "blocks": [1]}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "blocks": [{"text": "no type"}]}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "blocks": [{"type": 3}]}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "blocks": many_blocks}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "thread_ts": "yesterday"}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "thread_ts": "1.2&x=y"}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "thread_ts": 1712345678.0001}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "as_user": true}),
            ),
            (
                "post-message",
                json!({"channel": "C0SOC00001", "text": "x", "token": "xoxb-other"}),
            ),
            ("lookup-user-by-email", json!({})),
            ("lookup-user-by-email", json!({"email": 7})),
            ("lookup-user-by-email", json!({"email": "not-an-email"})),
            ("lookup-user-by-email", json!({"email": "@example.com"})),
            ("lookup-user-by-email", json!({"email": "ana@"})),
            ("lookup-user-by-email", json!({"email": "ana@localhost"})),
            ("lookup-user-by-email", json!({"email": "ana@example..com"})),
            (
                "lookup-user-by-email",
                json!({"email": "ana@exa/../mple.com"}),
            ),
            ("lookup-user-by-email", json!({"email": "a na@example.com"})),
            (
                "lookup-user-by-email",
                json!({"email": "ana@example.com\r\nX-Injected: 1"}),
            ),
            (
                "lookup-user-by-email",
                json!({"email": format!("{}@example.com", "a".repeat(300))}),
            ),
            (
                "lookup-user-by-email",
                json!({"email": "ana@example.com", "team_id": "T1"}),
            ),
            ("post", json!({"channel": "C0SOC00001", "text": "x"})),
        ] {
            let e = host
                .run(Actions::dispatch, action, input.clone())
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{action} {input}: {e}");
            assert!(!e.retryable);
            assert!(
                e.message.len() < 600,
                "{action}: the message echoes too much"
            );
        }
        assert!(host.requests().is_empty());
    }

    #[test]
    fn unicode_channel_names_and_long_texts_within_limits_are_sent() {
        let host = host().on("POST", POST, posted("C0SOC00002"));
        host.run(
            Actions::dispatch,
            "post-message",
            json!({"channel": "#sécurité_ops-2", "text": "é".repeat(40_000)}),
        )
        .unwrap();
        assert_eq!(host.requests().len(), 1);
    }

    #[test]
    fn schemas_are_derived_from_the_types() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
        allama_sdk::schema::check_file::<PostMessage>(&format!("{dir}/post-message.input.json"))
            .unwrap();
        allama_sdk::schema::check_file::<Posted>(&format!("{dir}/post-message.output.json"))
            .unwrap();
        allama_sdk::schema::check_file::<LookupUserByEmail>(&format!(
            "{dir}/lookup-user-by-email.input.json"
        ))
        .unwrap();
        allama_sdk::schema::check_file::<User>(&format!("{dir}/lookup-user-by-email.output.json"))
            .unwrap();
    }
}
