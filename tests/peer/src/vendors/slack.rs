//! Slack Web API (`https://slack.com/api`).
//!
//! Served: `auth.test`, `chat.postMessage`, `users.lookupByEmail` and
//! `conversations.list` (cursor-paginated), at `/api/{method}`, by `GET` or
//! `POST`.
//!
//! As Slack does: almost every outcome is HTTP 200 with `{"ok": true, ...}`
//! or `{"ok": false, "error": code}`; the token is read from
//! `Authorization: Bearer ...` (or a `token` field of a urlencoded / multipart
//! body, never from the query or a JSON body); none is `not_authed`, a wrong
//! one `invalid_auth`, a revoked one `token_revoked`; each method needs its
//! scope (`missing_scope` with `needed` and `provided`); arguments come from
//! the query and a urlencoded / multipart body, and from a JSON body only for
//! methods that accept JSON (`chat.postMessage` here), so a JSON body sent to
//! `users.lookupByEmail` is not read; a JSON body whose `Content-Type` lacks a
//! charset draws the `missing_charset` warning; a missing argument is
//! `invalid_arguments` with `response_metadata.messages`; an unknown method is
//! `unknown_method`. Rate limiting is the exception: HTTP 429 with
//! `Retry-After` ([`Slack::rate_limited`]).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::{
    Clock, Faults, base64_decode, base64_encode, body_form, content_type_param, lock, media_type,
    param,
};
use crate::{Recorded, Reply, Router};

/// The workspace the bot token belongs to.
pub const TEAM_ID: &str = "T0ALLAMA01";
/// The bot's user id (the `user` of the messages it posts).
pub const BOT_USER_ID: &str = "U0ALLAMABOT";
/// The bot's id (the `bot_id` of the messages it posts).
pub const BOT_ID: &str = "B0ALLAMA01";
/// The app's id.
pub const APP_ID: &str = "A0ALLAMA01";

/// The scopes a new peer's token has.
const DEFAULT_SCOPES: &[&str] = &[
    "chat:write",
    "users:read",
    "users:read.email",
    "channels:read",
    "groups:read",
];

/// A Slack Web API peer. Cloning gives another handle on the same peer.
///
/// ```no_run
/// # use allama_test_peer::{Peer, vendors::Slack};
/// # async fn demo() {
/// let slack = Slack::new("xoxb-1-test")
///     .with_channel("C0SOC00001", "soc-alerts")
///     .with_user("U0ANALYST1", "ana", "Ana Analyst", "ana@example.com");
/// let peer = Peer::start(slack.router()).await;
/// // ... the integration posts ...
/// assert_eq!(slack.messages()[0].channel, "C0SOC00001");
/// # }
/// ```
#[derive(Clone)]
pub struct Slack {
    shared: Arc<Shared>,
}

/// A message posted with `chat.postMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedMessage {
    /// The channel id it went to (a `D...` id for a direct message).
    pub channel: String,
    /// Its `text`, if given.
    pub text: Option<String>,
    /// Its `blocks`, if given (parsed when sent as a JSON string).
    pub blocks: Option<Value>,
    /// Its `thread_ts`, if given.
    pub thread_ts: Option<String>,
    /// The `ts` the peer gave it.
    pub ts: String,
    /// Every argument as received (JSON body, or form/query fields as strings).
    pub args: Value,
}

struct Shared {
    state: Mutex<State>,
    faults: Faults,
    clock: Clock,
}

struct State {
    token: String,
    revoked: bool,
    scopes: Vec<String>,
    channels: Vec<Channel>,
    users: Vec<User>,
    messages: Vec<PostedMessage>,
    seq: u64,
}

struct Channel {
    id: String,
    name: String,
    private: bool,
    member: bool,
    archived: bool,
}

struct User {
    id: String,
    name: String,
    real_name: String,
    email: String,
}

impl Slack {
    /// A peer accepting the bot token `token`, with the scopes
    /// `chat:write`, `users:read`, `users:read.email`, `channels:read` and
    /// `groups:read`, and no channels or users.
    pub fn new(token: &str) -> Slack {
        Slack {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    token: token.to_owned(),
                    revoked: false,
                    scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                    channels: Vec::new(),
                    users: Vec::new(),
                    messages: Vec::new(),
                    seq: 0,
                }),
                faults: Faults::default(),
                clock: Clock::default(),
            }),
        }
    }

    fn channel(self, id: &str, name: &str, private: bool, member: bool, archived: bool) -> Slack {
        lock(&self.shared.state).channels.push(Channel {
            id: id.to_owned(),
            name: name.trim_start_matches('#').to_owned(),
            private,
            member,
            archived,
        });
        self
    }

    /// A public channel the bot is a member of (postable by id, `name` or
    /// `#name`).
    pub fn with_channel(self, id: &str, name: &str) -> Slack {
        self.channel(id, name, false, true, false)
    }

    /// A private channel the bot is a member of.
    pub fn with_private_channel(self, id: &str, name: &str) -> Slack {
        self.channel(id, name, true, true, false)
    }

    /// A public channel the bot has not joined: posting is `not_in_channel`
    /// unless the token has `chat:write.public`.
    pub fn with_channel_not_joined(self, id: &str, name: &str) -> Slack {
        self.channel(id, name, false, false, false)
    }

    /// An archived public channel: posting is `is_archived`.
    pub fn with_archived_channel(self, id: &str, name: &str) -> Slack {
        self.channel(id, name, false, true, true)
    }

    /// A workspace member, found by `users.lookupByEmail` (case-insensitive)
    /// and reachable by direct message when `chat.postMessage` is given the
    /// user id as channel.
    pub fn with_user(self, id: &str, name: &str, real_name: &str, email: &str) -> Slack {
        lock(&self.shared.state).users.push(User {
            id: id.to_owned(),
            name: name.to_owned(),
            real_name: real_name.to_owned(),
            email: email.to_owned(),
        });
        self
    }

    /// Replaces the token's scopes.
    pub fn with_scopes(self, scopes: &[&str]) -> Slack {
        lock(&self.shared.state).scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Revokes the token: every call is `token_revoked` from now on.
    pub fn revoke_token(&self) {
        lock(&self.shared.state).revoked = true;
    }

    /// Accepts `token` from now on (and un-revokes).
    pub fn set_token(&self, token: &str) {
        let mut state = lock(&self.shared.state);
        state.token = token.to_owned();
        state.revoked = false;
    }

    /// Every message posted so far, in order.
    pub fn messages(&self) -> Vec<PostedMessage> {
        lock(&self.shared.state).messages.clone()
    }

    super::common_methods!();

    /// A router serving this peer; every router shares the handle's state.
    pub fn router(&self) -> Router {
        let shared = Arc::clone(&self.shared);
        Router::any(move |req| shared.handle(req))
    }

    /// HTTP 200 `{"ok": false, "error": code}`, as Slack answers most errors.
    pub fn error(code: &str) -> Reply {
        slack_json(200, json!({ "ok": false, "error": code }))
    }

    /// HTTP 429 with `Retry-After: retry_after_secs` and
    /// `{"ok": false, "error": "ratelimited"}`.
    pub fn rate_limited(retry_after_secs: u64) -> Reply {
        slack_json(429, json!({ "ok": false, "error": "ratelimited" }))
            .header("retry-after", &retry_after_secs.to_string())
    }

    /// A server error `status` with the matching Slack error code
    /// (`internal_error`, `service_unavailable`, `request_timeout`, or
    /// `fatal_error`).
    pub fn server_error(status: u16) -> Reply {
        let code = match status {
            500 => "internal_error",
            503 => "service_unavailable",
            504 => "request_timeout",
            _ => "fatal_error",
        };
        slack_json(status, json!({ "ok": false, "error": code }))
    }
}

fn slack_json(status: u16, value: Value) -> Reply {
    Reply::json(status, value).header("content-type", "application/json; charset=utf-8")
}

/// The call's arguments: query, form body, and a JSON body when `json`.
fn arguments(req: &Recorded, accepts_json: bool) -> Value {
    let mut args = serde_json::Map::new();
    for (name, value) in req.query_params().into_iter().chain(body_form(req)) {
        args.insert(name, Value::String(value));
    }
    if accepts_json
        && media_type(req) == "application/json"
        && let Some(Value::Object(body)) = req.body_json()
    {
        args.extend(body);
    }
    Value::Object(args)
}

fn string_arg(args: &Value, name: &str) -> Option<String> {
    match args.get(name)? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn invalid_arguments(message: &str) -> Value {
    json!({
        "ok": false,
        "error": "invalid_arguments",
        "response_metadata": { "messages": [format!("[ERROR] {message}")] },
    })
}

fn failure(code: &str) -> Value {
    json!({ "ok": false, "error": code })
}

impl Shared {
    fn handle(&self, req: &Recorded) -> Reply {
        if let Some(reply) = self.faults.take(req) {
            return reply;
        }
        let Some(method) = req.path.strip_prefix("/api/") else {
            return Reply::text(404, "Not Found");
        };
        let body = self.call(req, method);
        // Slack warns about JSON bodies without a charset, whatever the outcome.
        let body = if media_type(req) == "application/json"
            && content_type_param(req, "charset").is_none()
        {
            let mut body = body;
            body["warning"] = json!("missing_charset");
            let metadata = body
                .as_object_mut()
                .expect("answers are objects")
                .entry("response_metadata")
                .or_insert_with(|| json!({}));
            metadata["warnings"] = json!(["missing_charset"]);
            body
        } else {
            body
        };
        slack_json(200, body)
    }

    fn call(&self, req: &Recorded, method: &str) -> Value {
        let (scope, accepts_json) = match method {
            "auth.test" => (None, true),
            "chat.postMessage" => (Some("chat:write"), true),
            "users.lookupByEmail" => (Some("users:read.email"), false),
            "conversations.list" => (None, false),
            _ => return json!({ "ok": false, "error": "unknown_method", "req_method": method }),
        };
        let mut state = lock(&self.state);
        let bearer = req.header("authorization").and_then(|h| {
            let (scheme, token) = h.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
        let token = bearer.or_else(|| param(&body_form(req), "token"));
        match token.as_deref() {
            None | Some("") => return failure("not_authed"),
            Some(t) if t != state.token => return failure("invalid_auth"),
            Some(_) if state.revoked => return failure("token_revoked"),
            Some(_) => {}
        }
        if let Some(scope) = scope
            && let Some(missing) = state.missing_scope(scope)
        {
            return missing;
        }
        let args = arguments(req, accepts_json);
        match method {
            "auth.test" => json!({
                "ok": true,
                "url": "https://allama-test.slack.com/",
                "team": "Allama Test",
                "user": "allama",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": false,
            }),
            "chat.postMessage" => {
                let now = self.clock.now();
                state.post(args, now)
            }
            "users.lookupByEmail" => state.lookup(&args),
            _ => state.list(&args),
        }
    }
}

impl State {
    fn missing_scope(&self, needed: &str) -> Option<Value> {
        (!self.scopes.iter().any(|s| s == needed)).then(|| {
            json!({
                "ok": false,
                "error": "missing_scope",
                "needed": needed,
                "provided": self.scopes.join(","),
            })
        })
    }

    fn post(&mut self, args: Value, now: i64) -> Value {
        let Some(target) = string_arg(&args, "channel") else {
            return invalid_arguments("missing required field: channel");
        };
        let channel_id = if let Some(user) = self.users.iter().find(|u| u.id == target) {
            format!("D{}", &user.id[1..])
        } else {
            let name = target.strip_prefix('#');
            let Some(channel) = self.channels.iter().find(|c| match name {
                Some(name) => c.name == name,
                None => c.id == target || c.name == target,
            }) else {
                return failure("channel_not_found");
            };
            if channel.archived {
                return failure("is_archived");
            }
            let public_ok =
                !channel.private && self.scopes.iter().any(|s| s == "chat:write.public");
            if !channel.member && !public_ok {
                return failure("not_in_channel");
            }
            channel.id.clone()
        };

        let text = string_arg(&args, "text");
        let blocks = match args.get("blocks") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(v) => Some(v),
                Err(_) => return failure("invalid_blocks_format"),
            },
            Some(other) => Some(other.clone()),
        };
        if let Some(blocks) = &blocks {
            let problem = match blocks.as_array() {
                None => Some("must be an array [json-pointer:/blocks]".to_owned()),
                Some(list) if list.len() > 50 => {
                    Some("no more than 50 items allowed [json-pointer:/blocks]".to_owned())
                }
                Some(list) => list
                    .iter()
                    .position(|b| !b.get("type").is_some_and(Value::is_string))
                    .map(|i| format!("missing required field: type [json-pointer:/blocks/{i}]")),
            };
            if let Some(problem) = problem {
                return json!({
                    "ok": false,
                    "error": "invalid_blocks",
                    "response_metadata": { "messages": [format!("[ERROR] {problem}")] },
                });
            }
        }
        let has_attachments = args.get("attachments").is_some_and(|a| !a.is_null());
        if text.is_none() && blocks.is_none() && !has_attachments {
            return failure("no_text");
        }
        if text.as_ref().is_some_and(|t| t.chars().count() > 40_000) {
            return failure("msg_too_long");
        }

        self.seq += 1;
        let ts = format!("{now}.{:06}", (self.seq * 100) % 1_000_000);
        let thread_ts = string_arg(&args, "thread_ts");
        let shown_blocks = blocks.clone().unwrap_or_else(|| {
            json!([{
                "type": "rich_text",
                "block_id": format!("b{}", self.seq),
                "elements": [{
                    "type": "rich_text_section",
                    "elements": [{ "type": "text", "text": text.clone().unwrap_or_default() }],
                }],
            }])
        });
        let mut message = json!({
            "user": BOT_USER_ID,
            "type": "message",
            "ts": ts,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "text": text.clone().unwrap_or_default(),
            "team": TEAM_ID,
            "bot_profile": {
                "id": BOT_ID,
                "app_id": APP_ID,
                "name": "allama",
                "icons": { "image_36": "https://a.slack-edge.com/80588/img/plugins/app/bot_36.png" },
                "deleted": false,
                "updated": now - 86_400,
                "team_id": TEAM_ID,
            },
            "blocks": shown_blocks,
        });
        if let Some(thread_ts) = &thread_ts {
            message["thread_ts"] = json!(thread_ts);
            message["parent_user_id"] = json!(BOT_USER_ID);
        }
        self.messages.push(PostedMessage {
            channel: channel_id.clone(),
            text,
            blocks,
            thread_ts,
            ts: ts.clone(),
            args,
        });
        json!({ "ok": true, "channel": channel_id, "ts": ts, "message": message })
    }

    fn lookup(&self, args: &Value) -> Value {
        let Some(email) = string_arg(args, "email") else {
            return invalid_arguments("missing required field: email");
        };
        let Some(user) = self
            .users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email.trim()))
        else {
            return failure("users_not_found");
        };
        json!({
            "ok": true,
            "user": {
                "id": user.id,
                "team_id": TEAM_ID,
                "name": user.name,
                "deleted": false,
                "color": "9f69e7",
                "real_name": user.real_name,
                "tz": "Europe/Amsterdam",
                "tz_label": "Central European Time",
                "tz_offset": 3600,
                "profile": {
                    "title": "",
                    "phone": "",
                    "real_name": user.real_name,
                    "real_name_normalized": user.real_name,
                    "display_name": user.name,
                    "display_name_normalized": user.name,
                    "status_text": "",
                    "status_emoji": "",
                    "email": user.email,
                    "team": TEAM_ID,
                },
                "is_admin": false,
                "is_owner": false,
                "is_primary_owner": false,
                "is_restricted": false,
                "is_ultra_restricted": false,
                "is_bot": false,
                "is_app_user": false,
                "updated": 1_700_000_000,
                "has_2fa": true,
            }
        })
    }

    fn list(&self, args: &Value) -> Value {
        let types = string_arg(args, "types").unwrap_or_else(|| "public_channel".to_owned());
        let mut public = false;
        let mut private = false;
        for kind in types.split(',').map(str::trim) {
            match kind {
                "public_channel" => public = true,
                "private_channel" => private = true,
                "im" | "mpim" => {}
                _ => return failure("invalid_types"),
            }
        }
        for (wanted, scope) in [(public, "channels:read"), (private, "groups:read")] {
            if wanted && let Some(missing) = self.missing_scope(scope) {
                return missing;
            }
        }
        let limit = match string_arg(args, "limit") {
            None => 100,
            Some(text) => match text.parse::<usize>() {
                Ok(n) => n.clamp(1, 1000),
                Err(_) => return failure("invalid_limit"),
            },
        };
        let exclude_archived =
            string_arg(args, "exclude_archived").is_some_and(|v| v == "true" || v == "1");
        let listed: Vec<&Channel> = self
            .channels
            .iter()
            .filter(|c| if c.private { private } else { public })
            .filter(|c| !(exclude_archived && c.archived))
            .collect();
        let start = match string_arg(args, "cursor") {
            None => 0,
            Some(cursor) => {
                let id = base64_decode(&cursor, false)
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|text| text.strip_prefix("team:").map(str::to_owned));
                match id.and_then(|id| listed.iter().position(|c| c.id == id)) {
                    Some(start) => start,
                    None => return failure("invalid_cursor"),
                }
            }
        };
        let end = (start + limit).min(listed.len());
        let next_cursor = listed
            .get(end)
            .map(|c| base64_encode(format!("team:{}", c.id).as_bytes(), false))
            .unwrap_or_default();
        let channels: Vec<Value> = listed[start..end]
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "name": c.name,
                    "is_channel": true,
                    "is_group": false,
                    "is_im": false,
                    "is_mpim": false,
                    "is_private": c.private,
                    "created": 1_600_000_000,
                    "is_archived": c.archived,
                    "is_general": false,
                    "unlinked": 0,
                    "name_normalized": c.name,
                    "is_shared": false,
                    "is_org_shared": false,
                    "is_pending_ext_shared": false,
                    "pending_shared": [],
                    "context_team_id": TEAM_ID,
                    "creator": "U0ALLAMAADM",
                    "is_ext_shared": false,
                    "shared_team_ids": [TEAM_ID],
                    "is_member": c.member,
                    "num_members": 4,
                    "topic": { "value": "", "creator": "", "last_set": 0 },
                    "purpose": { "value": "", "creator": "", "last_set": 0 },
                    "previous_names": [],
                })
            })
            .collect();
        json!({
            "ok": true,
            "channels": channels,
            "response_metadata": { "next_cursor": next_cursor },
        })
    }
}
