//! Jira Cloud platform REST API v2
//! (<https://developer.atlassian.com/cloud/jira/platform/rest/v2/>): create
//! an issue, comment on one, move one through its workflow.
//!
//! Jira Cloud lives at a per-customer host, `https://<site>.atlassian.net`,
//! so every action takes `site` (the bare host name, e.g.
//! `acme.atlassian.net`), checks it strictly and builds
//! `https://{site}/rest/api/2/...` from it. The manifest requests
//! `https://*.atlassian.net`; an operator's grant narrows that to their own
//! site. Credentials are the secret `JIRA_BASIC`, holding `email:api_token`,
//! sent by handle as HTTP Basic (`Basic {{secret:JIRA_BASIC|base64}}`) and
//! only toward `https://*.atlassian.net`; the component never sees them.
//!
//! v2 is used rather than v3 because v2 takes descriptions and comments as
//! plain strings, where v3 requires Atlassian Document Format.
//!
//! Text from the playbook (summaries, descriptions, comments, labels) often
//! carries data from alerts, which an attacker may control. The host
//! substitutes `{{secret:NAME}}` placeholders anywhere in a request body, so
//! such text could otherwise smuggle `JIRA_BASIC` into a ticket. Bodies are
//! therefore written with `{` of any `{{secret:` escaped as `\u007b`: Jira
//! stores the text exactly as given and the host sees no placeholder.
//!
//! Errors: Jira's `{"errorMessages": [..], "errors": {field: message}}` is
//! put into the message; 400 is `invalid-input`, 401/403 `unauthorized`,
//! 404 `not-found`, 429 `rate-limited` (with `Retry-After`), 5xx a retryable
//! `upstream` error, anything else a non-retryable `upstream` error. Note
//! that Jira has no idempotency keys: retrying `create-issue` after a 5xx
//! may create a second issue if the first attempt did reach Jira.

use allama_sdk::{Context, Error, JsonSchema, Result, actions, http};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The secret holding `email:api_token`.
const SECRET: &str = "JIRA_BASIC";
/// Jira's limit on text fields (description, comment body).
const MAX_TEXT_CHARS: usize = 32_767;
/// Jira's limit on a summary.
const MAX_SUMMARY_CHARS: usize = 255;
/// Jira's limit on a label.
const MAX_LABEL_CHARS: usize = 255;
/// More labels than this on one issue is certainly a mistake.
const MAX_LABELS: usize = 100;

/// `{"site": "acme.atlassian.net", "project": "SEC", "summary": "…"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssue {
    /// The Jira Cloud site: a bare host name such as `acme.atlassian.net` (no scheme, path or port).
    pub site: String,
    /// The project key, e.g. `SEC`: an upper-case letter, then 1 to 9 upper-case letters, digits or `_`.
    pub project: String,
    /// One line, 1 to 255 characters.
    pub summary: String,
    /// Plain text (Jira wiki markup is rendered); at most 32767 characters. Left out when blank.
    #[serde(default)]
    pub description: Option<String>,
    /// The issue type's name; `Task` when absent.
    #[serde(default)]
    pub issue_type: Option<String>,
    /// Labels to set; each without whitespace.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// The issue created.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Created {
    /// Numeric id, as text (`"10001"`).
    pub id: String,
    /// Key (`"SEC-1"`).
    pub key: String,
    /// Link to the issue in Jira's web interface.
    pub url: String,
}

/// `{"site": "acme.atlassian.net", "issue": "SEC-12", "body": "…"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddComment {
    /// The Jira Cloud site: a bare host name such as `acme.atlassian.net`.
    pub site: String,
    /// An issue key (`SEC-12`) or numeric id (`10001`).
    pub issue: String,
    /// The comment: plain text (Jira wiki markup is rendered); at most 32767 characters.
    pub body: String,
}

/// The comment added.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Comment {
    /// Numeric id of the comment, as text.
    pub id: String,
}

/// `{"site": "acme.atlassian.net", "issue": "SEC-12", "to": "In Progress"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// The Jira Cloud site: a bare host name such as `acme.atlassian.net`.
    pub site: String,
    /// An issue key (`SEC-12`) or numeric id (`10001`).
    pub issue: String,
    /// The transition to apply: its name (case-insensitive) or id; failing
    /// those, the name of the status it leads to, if only one leads there.
    pub to: String,
}

/// The transition applied.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Transitioned {
    /// The issue, as sent to Jira (a key in upper case, or the numeric id).
    pub issue: String,
    /// The id of the transition applied.
    pub transition_id: String,
    /// The status the issue is now in.
    pub status: String,
}

// ---------------------------------------------------------------- checks

/// `acme.atlassian.net`: one DNS label (lower-case letters, digits, `-`,
/// not at either end) before `.atlassian.net`, and nothing else.
fn checked_site(site: &str) -> Result<String> {
    let s = site.trim().to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    match s.strip_suffix(".atlassian.net") {
        Some(label) if label_ok(label) => Ok(s),
        _ => Err(Error::invalid_input(format!(
            "`site`: `{}` is not a Jira Cloud site; give the bare host name, e.g. `acme.atlassian.net` (no scheme, path, port or user)",
            clip(site)
        ))),
    }
}

/// A project key: `[A-Z][A-Z0-9_]{1,9}` (given in any case).
fn is_project_key(k: &str) -> bool {
    let b = k.as_bytes();
    (2..=10).contains(&b.len())
        && b[0].is_ascii_uppercase()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

fn checked_project(project: &str) -> Result<String> {
    let p = project.trim().to_ascii_uppercase();
    if !is_project_key(&p) {
        return Err(Error::invalid_input(format!(
            "`project`: `{}` is not a Jira project key (a letter, then 1 to 9 letters, digits or `_`, e.g. `SEC`)",
            clip(project)
        )));
    }
    Ok(p)
}

/// An issue key (`SEC-12`, normalised to upper case) or numeric id.
fn checked_issue(issue: &str) -> Result<String> {
    let i = issue.trim().to_ascii_uppercase();
    let number = |n: &str| {
        !n.is_empty()
            && n.len() <= 18
            && !n.starts_with('0')
            && n.bytes().all(|b| b.is_ascii_digit())
    };
    let ok = match i.rsplit_once('-') {
        Some((project, n)) => is_project_key(project) && number(n),
        None => number(&i),
    };
    if !ok {
        return Err(Error::invalid_input(format!(
            "`issue`: `{}` is neither an issue key (e.g. `SEC-12`) nor a numeric issue id",
            clip(issue)
        )));
    }
    Ok(i)
}

/// One line of text: trimmed, non-empty, at most `max` characters, no control characters.
fn checked_line(field: &str, value: &str, max: usize) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::invalid_input(format!("`{field}` is empty")));
    }
    if v.chars().any(char::is_control) {
        return Err(Error::invalid_input(format!(
            "`{field}` must be one line, without control characters"
        )));
    }
    let n = v.chars().count();
    if n > max {
        return Err(Error::invalid_input(format!(
            "`{field}` is {n} characters; Jira takes at most {max}"
        )));
    }
    Ok(v.to_string())
}

/// Free text: not blank, at most 32767 characters, no NUL.
fn checked_text(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid_input(format!("`{field}` is empty")));
    }
    if value.contains('\0') {
        return Err(Error::invalid_input(format!(
            "`{field}` contains a NUL character"
        )));
    }
    let n = value.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(Error::invalid_input(format!(
            "`{field}` is {n} characters; Jira takes at most {MAX_TEXT_CHARS}"
        )));
    }
    Ok(())
}

fn checked_labels(labels: &[String]) -> Result<Vec<String>> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid_input(format!(
            "`labels`: {} labels; at most {MAX_LABELS}",
            labels.len()
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(labels.len());
    for (i, l) in labels.iter().enumerate() {
        let l = l.trim();
        if l.is_empty()
            || l.chars().count() > MAX_LABEL_CHARS
            || l.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::invalid_input(format!(
                "`labels[{i}]`: `{}` is not a Jira label (1 to {MAX_LABEL_CHARS} characters, no spaces)",
                clip(l)
            )));
        }
        if !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- requests

fn api(site: &str, path: &str) -> String {
    format!("https://{site}/rest/api/2/{path}")
}

/// A JSON body in which no `{{secret:` survives: its `{` become `\u007b`,
/// which JSON decoders read back as `{`. (In serialized JSON a `{` followed
/// by `{` can only be inside a string, and serde_json never leaves a lone
/// `\` before one, so the replacement is always a valid escape.)
fn inert_json(body: &Value) -> Vec<u8> {
    body.to_string()
        .replace("{{secret:", "\\u007b\\u007bsecret:")
        .into_bytes()
}

fn get(url: &str) -> http::Request {
    http::get(url)
        .auth(http::basic(SECRET))
        .header("accept", "application/json")
}

fn post(url: &str, body: &Value) -> http::Request {
    http::post(url)
        .auth(http::basic(SECRET))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(inert_json(body))
}

/// Send, map error statuses to typed errors with Jira's messages, and hand back the 2xx response.
fn send(request: http::Request) -> Result<http::Response> {
    let resp = request.send()?;
    match resp.status {
        200..=299 => Ok(resp),
        _ => Err(jira_error(&resp)),
    }
}

/// Jira's `{"errorMessages": [..], "errors": {field: message}}`, or the text, in a typed error.
fn jira_error(resp: &http::Response) -> Error {
    let s = resp.status;
    let detail = match serde_json::from_slice::<Value>(&resp.body) {
        Ok(v) if v.get("errorMessages").is_some() || v.get("errors").is_some() => {
            let mut parts: Vec<String> = v["errorMessages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            if let Some(errors) = v["errors"].as_object() {
                parts.extend(errors.iter().map(|(field, m)| {
                    format!(
                        "{field}: {}",
                        m.as_str().map_or_else(|| m.to_string(), str::to_string)
                    )
                }));
            }
            parts.join("; ")
        }
        _ => resp.text().trim().chars().take(300).collect(),
    };
    let detail = if detail.is_empty() {
        "(no message)".to_string()
    } else {
        detail
    };
    let message = format!("Jira {s}: {detail}");
    match s {
        400 => Error::invalid_input(message),
        401 | 403 => Error::unauthorized(message),
        404 => Error::not_found(message),
        429 => Error::rate_limited(resp.retry_after_ms(), message),
        500..=599 => Error::upstream(Some(s), message),
        _ => Error::upstream(Some(s), message).retryable(false),
    }
}

/// A string (or number) field of a Jira answer, or a non-retryable upstream error.
fn field(v: &Value, name: &str, what: &str) -> Result<String> {
    match &v[name] {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(
            Error::upstream(None, format!("Jira answered {what} without `{name}`"))
                .retryable(false),
        ),
    }
}

// ---------------------------------------------------------------- actions

fn create_issue(input: CreateIssue, _ctx: &Context) -> Result<Created> {
    let site = checked_site(&input.site)?;
    let project = checked_project(&input.project)?;
    let summary = checked_line("summary", &input.summary, MAX_SUMMARY_CHARS)?;
    let issue_type = match &input.issue_type {
        Some(t) => checked_line("issue_type", t, 255)?,
        None => "Task".to_string(),
    };
    // A blank description (an empty alert field, say) is left out rather than refused.
    let description = input.description.filter(|d| !d.trim().is_empty());
    if let Some(d) = &description {
        checked_text("description", d)?;
    }
    let labels = checked_labels(&input.labels)?;

    let mut fields = json!({
        "project": {"key": project},
        "summary": summary,
        "issuetype": {"name": issue_type},
    });
    if let Some(d) = description {
        fields["description"] = json!(d);
    }
    if !labels.is_empty() {
        fields["labels"] = json!(labels);
    }
    let v: Value = send(post(&api(&site, "issue"), &json!({ "fields": fields })))?.json()?;
    let key = field(&v, "key", "the new issue")?;
    Ok(Created {
        id: field(&v, "id", "the new issue")?,
        url: format!("https://{site}/browse/{key}"),
        key,
    })
}

fn add_comment(input: AddComment, _ctx: &Context) -> Result<Comment> {
    let site = checked_site(&input.site)?;
    let issue = checked_issue(&input.issue)?;
    checked_text("body", &input.body)?;
    let v: Value = send(post(
        &api(&site, &format!("issue/{issue}/comment")),
        &json!({ "body": input.body }),
    ))?
    .json()?;
    Ok(Comment {
        id: field(&v, "id", "the new comment")?,
    })
}

/// One entry of `GET /issue/{issue}/transitions`.
struct Available {
    id: String,
    name: String,
    status: String,
}

/// The transition `to` names: by id, else by name (case-insensitive), else
/// by target status when exactly one transition leads there.
fn pick<'a>(available: &'a [Available], to: &str) -> Option<&'a Available> {
    available
        .iter()
        .find(|t| t.id == to)
        .or_else(|| available.iter().find(|t| t.name.eq_ignore_ascii_case(to)))
        .or_else(|| {
            let mut to_status = available
                .iter()
                .filter(|t| t.status.eq_ignore_ascii_case(to));
            match (to_status.next(), to_status.next()) {
                (Some(t), None) => Some(t),
                _ => None,
            }
        })
}

fn transition(input: Transition, _ctx: &Context) -> Result<Transitioned> {
    let site = checked_site(&input.site)?;
    let issue = checked_issue(&input.issue)?;
    let to = checked_line("to", &input.to, 255)?;
    let url = api(&site, &format!("issue/{issue}/transitions"));

    let v: Value = send(get(&url))?.json()?;
    let available: Vec<Available> = v["transitions"]
        .as_array()
        .ok_or_else(|| {
            Error::upstream(
                None,
                "Jira answered the transitions request without `transitions`",
            )
            .retryable(false)
        })?
        .iter()
        .filter_map(|t| {
            Some(Available {
                id: field(t, "id", "a transition").ok()?,
                name: t["name"].as_str().unwrap_or_default().to_string(),
                status: t["to"]["name"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect();
    let Some(chosen) = pick(&available, &to) else {
        let names: Vec<String> = available
            .iter()
            .map(|t| format!("`{}` ({}, to {})", t.name, t.id, t.status))
            .collect();
        return Err(Error::invalid_input(format!(
            "{issue} has no transition `{}`; available: {}",
            clip(&to),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    send(post(&url, &json!({"transition": {"id": chosen.id}})))?;
    Ok(Transitioned {
        issue,
        transition_id: chosen.id.clone(),
        status: chosen.status.clone(),
    })
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

actions! {
    "create-issue" => create_issue,
    "add-comment" => add_comment,
    "transition" => transition,
}

#[cfg(test)]
mod tests {
    use super::*;
    use allama_sdk::ErrorKind;
    use allama_sdk::testing::{MockHost, Reply};
    use base64::Engine;

    const SITE: &str = "acme.atlassian.net";
    const CREDS: &str = "bot@example.com:api-token";

    fn jira() -> MockHost {
        MockHost::new().secret(SECRET, CREDS)
    }

    fn expected_auth() -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(CREDS)
        )
    }

    fn body_json(sent: &allama_sdk::testing::Sent) -> Value {
        serde_json::from_slice(sent.body.as_deref().unwrap()).unwrap()
    }

    fn transitions() -> Reply {
        Reply::json(
            200,
            json!({"expand": "transitions", "transitions": [
                {"id": "21", "name": "Start Progress", "to": {"name": "In Progress", "id": "3"}, "hasScreen": false},
                {"id": "31", "name": "Done", "to": {"name": "Done", "id": "10001"}, "hasScreen": false},
            ]}),
        )
    }

    #[test]
    fn create_issue_posts_v2_fields_with_basic_auth() {
        let host = jira().on(
            "POST",
            "https://acme.atlassian.net/rest/api/2/issue",
            Reply::json(201, json!({"id": "10001", "key": "SEC-1", "self": "https://acme.atlassian.net/rest/api/2/issue/10001"})),
        );
        let out = host
            .run(
                Actions::dispatch,
                "create-issue",
                json!({"site": " Acme.Atlassian.net ", "project": "sec", "summary": "  Phishing report from j.doe  "}),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({"id": "10001", "key": "SEC-1", "url": "https://acme.atlassian.net/browse/SEC-1"})
        );
        let sent = host.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(sent[0].url, "https://acme.atlassian.net/rest/api/2/issue");
        assert_eq!(
            sent[0].header("authorization"),
            Some(expected_auth().as_str())
        );
        assert_eq!(sent[0].header("content-type"), Some("application/json"));
        assert_eq!(sent[0].header("accept"), Some("application/json"));
        assert_eq!(
            body_json(&sent[0]),
            json!({"fields": {"project": {"key": "SEC"}, "summary": "Phishing report from j.doe", "issuetype": {"name": "Task"}}})
        );
    }

    #[test]
    fn create_issue_sends_description_type_and_labels() {
        let blank = jira().on(
            "POST",
            "https://acme.atlassian.net/rest/api/2/issue",
            Reply::json(201, json!({"id": "10003", "key": "SEC-3"})),
        );
        blank.run(Actions::dispatch, "create-issue", json!({"site": SITE, "project": "SEC", "summary": "s", "description": " \n", "labels": []})).unwrap();
        assert_eq!(
            body_json(&blank.requests()[0])["fields"],
            json!({"project": {"key": "SEC"}, "summary": "s", "issuetype": {"name": "Task"}})
        );

        let host = jira().on(
            "POST",
            "https://acme.atlassian.net/rest/api/2/issue",
            Reply::json(201, json!({"id": "10002", "key": "SEC-2"})),
        );
        let input = json!({"site": SITE, "project": "SEC", "summary": "s", "description": "line 1\nline 2",
            "issue_type": "Bug", "labels": ["phishing", "allama", "phishing"]});
        let out = host.run(Actions::dispatch, "create-issue", input).unwrap();
        assert_eq!(out["key"], "SEC-2");
        assert_eq!(
            body_json(&host.requests()[0]),
            json!({"fields": {"project": {"key": "SEC"}, "summary": "s", "issuetype": {"name": "Bug"},
                "description": "line 1\nline 2", "labels": ["phishing", "allama"]}})
        );
    }

    #[test]
    fn secret_placeholders_in_text_are_sent_inert() {
        let host = jira().on(
            "POST",
            "https://acme.atlassian.net/rest/api/2/issue",
            Reply::json(201, json!({"id": "1", "key": "SEC-3"})),
        );
        let hostile =
            "see {{secret:JIRA_BASIC}} and {{secret:JIRA_BASIC|base64}} and {{secret:OTHER}}";
        let input = json!({"site": SITE, "project": "SEC", "summary": hostile, "description": hostile, "labels": ["{{secret:JIRA_BASIC}}"]});
        host.run(Actions::dispatch, "create-issue", input).unwrap();
        let sent = &host.requests()[0];
        let text = sent.body_text();
        assert!(!text.contains("{{secret:"), "{text}");
        assert!(!text.contains("api-token"), "{text}");
        let body = body_json(sent);
        assert_eq!(body["fields"]["summary"], hostile);
        assert_eq!(body["fields"]["description"], hostile);
        assert_eq!(body["fields"]["labels"][0], "{{secret:JIRA_BASIC}}");
    }

    #[test]
    fn add_comment_posts_the_body() {
        let host = jira().on(
            "POST",
            "https://acme.atlassian.net/rest/api/2/issue/SEC-12/comment",
            Reply::json(201, json!({"id": "10000", "body": "Blocked at the proxy.", "created": "2024-01-31T12:00:00.000+0000"})),
        );
        let out = host
            .run(
                Actions::dispatch,
                "add-comment",
                json!({"site": SITE, "issue": "sec-12", "body": "Blocked at the proxy."}),
            )
            .unwrap();
        assert_eq!(out, json!({"id": "10000"}));
        let sent = host.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, "POST");
        assert_eq!(
            sent[0].url,
            "https://acme.atlassian.net/rest/api/2/issue/SEC-12/comment"
        );
        assert_eq!(
            sent[0].header("authorization"),
            Some(expected_auth().as_str())
        );
        assert_eq!(sent[0].header("content-type"), Some("application/json"));
        assert_eq!(
            body_json(&sent[0]),
            json!({"body": "Blocked at the proxy."})
        );
    }

    #[test]
    fn add_comment_takes_a_numeric_issue_id() {
        let host = jira().on(
            "POST",
            "https://acme.atlassian.net/rest/api/2/issue/10001/comment",
            Reply::json(201, json!({"id": 10005})),
        );
        let out = host
            .run(
                Actions::dispatch,
                "add-comment",
                json!({"site": SITE, "issue": "10001", "body": "x"}),
            )
            .unwrap();
        assert_eq!(out["id"], "10005");
    }

    #[test]
    fn transition_looks_up_by_name_then_posts_the_id() {
        let url = "https://acme.atlassian.net/rest/api/2/issue/SEC-1/transitions";
        let host = jira()
            .on("GET", url, transitions())
            .on("POST", url, Reply::text(204, ""));
        let out = host
            .run(
                Actions::dispatch,
                "transition",
                json!({"site": SITE, "issue": "SEC-1", "to": "start PROGRESS"}),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({"issue": "SEC-1", "transition_id": "21", "status": "In Progress"})
        );
        let sent = host.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (sent[0].method.as_str(), sent[0].url.as_str()),
            ("GET", url)
        );
        assert_eq!(
            sent[0].header("authorization"),
            Some(expected_auth().as_str())
        );
        assert_eq!(sent[0].body, None);
        assert_eq!(
            (sent[1].method.as_str(), sent[1].url.as_str()),
            ("POST", url)
        );
        assert_eq!(
            sent[1].header("authorization"),
            Some(expected_auth().as_str())
        );
        assert_eq!(sent[1].header("content-type"), Some("application/json"));
        assert_eq!(body_json(&sent[1]), json!({"transition": {"id": "21"}}));
    }

    #[test]
    fn transition_by_id_and_by_target_status() {
        let url = "https://acme.atlassian.net/rest/api/2/issue/SEC-1/transitions";
        for (to, id, status) in [
            ("31", "31", "Done"),
            ("in progress", "21", "In Progress"),
            ("Done", "31", "Done"),
        ] {
            let host = jira()
                .on("GET", url, transitions())
                .on("POST", url, Reply::text(204, ""));
            let out = host
                .run(
                    Actions::dispatch,
                    "transition",
                    json!({"site": SITE, "issue": "SEC-1", "to": to}),
                )
                .unwrap();
            assert_eq!(out["transition_id"], id, "{to}");
            assert_eq!(out["status"], status, "{to}");
            assert_eq!(
                body_json(&host.requests()[1]),
                json!({"transition": {"id": id}})
            );
        }
    }

    #[test]
    fn an_unknown_transition_lists_the_available_ones_and_posts_nothing() {
        let url = "https://acme.atlassian.net/rest/api/2/issue/SEC-1/transitions";
        let host = jira()
            .on("GET", url, transitions())
            .on("POST", url, Reply::text(204, ""));
        let e = host
            .run(
                Actions::dispatch,
                "transition",
                json!({"site": SITE, "issue": "SEC-1", "to": "Closed"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
        assert!(
            e.message.contains("`Start Progress` (21, to In Progress)")
                && e.message.contains("`Done` (31, to Done)"),
            "{e}"
        );
        assert_eq!(host.requests().len(), 1);

        let host = jira().on("GET", url, Reply::json(200, json!({"transitions": []})));
        let e = host
            .run(
                Actions::dispatch,
                "transition",
                json!({"site": SITE, "issue": "SEC-1", "to": "Done"}),
            )
            .unwrap_err();
        assert!(e.message.ends_with("available: none"), "{e}");
    }

    #[test]
    fn jira_errors_become_typed_errors() {
        let url = "https://acme.atlassian.net/rest/api/2/issue";
        let cases = [
            (
                Reply::json(
                    400,
                    json!({"errorMessages": [], "errors": {"issuetype": "The issue type selected is invalid.", "project": "Specify a valid project ID or key"}}),
                ),
                ErrorKind::InvalidInput,
                false,
                "Jira 400: issuetype: The issue type selected is invalid.; project: Specify a valid project ID or key",
            ),
            (
                Reply::text(401, "Client must be authenticated to access this resource.")
                    .header("x-seraph-loginreason", "AUTHENTICATED_FAILED"),
                ErrorKind::Unauthorized,
                false,
                "Jira 401: Client must be authenticated to access this resource.",
            ),
            (
                Reply::json(
                    403,
                    json!({"errorMessages": ["You do not have permission to create issues in this project."], "errors": {}}),
                ),
                ErrorKind::Unauthorized,
                false,
                "Jira 403: You do not have permission to create issues in this project.",
            ),
            (
                Reply::json(
                    404,
                    json!({"errorMessages": ["The requested resource could not be found."], "errors": {}}),
                ),
                ErrorKind::NotFound,
                false,
                "Jira 404: The requested resource could not be found.",
            ),
            (
                Reply::json(
                    429,
                    json!({"errorMessages": ["Rate limit exceeded."], "errors": {}}),
                )
                .header("retry-after", "7"),
                ErrorKind::RateLimited(Some(7_000)),
                true,
                "Jira 429: Rate limit exceeded.",
            ),
            (
                Reply::json(429, json!({"errorMessages": ["Rate limit exceeded."]})),
                ErrorKind::RateLimited(None),
                true,
                "Jira 429: Rate limit exceeded.",
            ),
            (
                Reply::json(
                    500,
                    json!({"errorMessages": ["Internal server error"], "errors": {}}),
                ),
                ErrorKind::Upstream(Some(500)),
                true,
                "Jira 500: Internal server error",
            ),
            (
                Reply::json(
                    503,
                    json!({"errorMessages": ["Service Unavailable"], "errors": {}}),
                ),
                ErrorKind::Upstream(Some(503)),
                true,
                "Jira 503: Service Unavailable",
            ),
            (
                Reply::text(502, "<html>Bad gateway</html>"),
                ErrorKind::Upstream(Some(502)),
                true,
                "Jira 502: <html>Bad gateway</html>",
            ),
            (
                Reply::text(415, ""),
                ErrorKind::Upstream(Some(415)),
                false,
                "Jira 415: (no message)",
            ),
        ];
        for (reply, kind, retryable, message) in cases {
            let host = jira().on("POST", url, reply);
            let e = host
                .run(
                    Actions::dispatch,
                    "create-issue",
                    json!({"site": SITE, "project": "SEC", "summary": "s"}),
                )
                .unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
            assert_eq!(e.retryable, retryable, "{e}");
            assert_eq!(e.message, message);
        }
    }

    #[test]
    fn errors_map_the_same_on_every_action() {
        let comment = "https://acme.atlassian.net/rest/api/2/issue/SEC-9/comment";
        let moves = "https://acme.atlassian.net/rest/api/2/issue/SEC-9/transitions";
        let missing = Reply::json(
            404,
            json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}),
        );
        let host = jira()
            .on("POST", comment, missing.clone())
            .on("GET", moves, missing);
        let e = host
            .run(
                Actions::dispatch,
                "add-comment",
                json!({"site": SITE, "issue": "SEC-9", "body": "x"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(
            e.message,
            "Jira 404: Issue does not exist or you do not have permission to see it."
        );
        let e = host
            .run(
                Actions::dispatch,
                "transition",
                json!({"site": SITE, "issue": "SEC-9", "to": "Done"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);

        // A transition refused after the lookup (e.g. a read-only project).
        let host = jira()
            .on("GET", moves, transitions())
            .on("POST", moves, Reply::json(403, json!({"errorMessages": ["You do not have permission to transition this issue."], "errors": {}})));
        let e = host
            .run(
                Actions::dispatch,
                "transition",
                json!({"site": SITE, "issue": "SEC-9", "to": "Done"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthorized);
        assert_eq!(host.requests().len(), 2);

        let host = jira().on("POST", comment, Reply::json(400, json!({"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}})));
        let e = host
            .run(
                Actions::dispatch,
                "add-comment",
                json!({"site": SITE, "issue": "SEC-9", "body": "x"}),
            )
            .unwrap_err();
        assert_eq!(
            (e.kind, e.message.as_str()),
            (
                ErrorKind::InvalidInput,
                "Jira 400: comment: Comment body can not be empty!"
            )
        );
    }

    #[test]
    fn malformed_answers_are_non_retryable_upstream_errors() {
        let url = "https://acme.atlassian.net/rest/api/2/issue";
        for reply in [
            Reply::json(201, json!({"self": "x"})),
            Reply::text(200, "<html>login</html>"),
        ] {
            let host = jira().on("POST", url, reply);
            let e = host
                .run(
                    Actions::dispatch,
                    "create-issue",
                    json!({"site": SITE, "project": "SEC", "summary": "s"}),
                )
                .unwrap_err();
            assert!(matches!(e.kind, ErrorKind::Upstream(_)), "{e}");
            assert!(!e.retryable, "{e}");
        }
    }

    #[test]
    fn a_missing_secret_is_denied() {
        let host = MockHost::new().on(
            "POST",
            "https://acme.atlassian.net/rest/api/2/issue",
            Reply::json(201, json!({"id": "1", "key": "SEC-1"})),
        );
        let e = host
            .run(
                Actions::dispatch,
                "create-issue",
                json!({"site": SITE, "project": "SEC", "summary": "s"}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Denied, "{e}");
    }

    #[test]
    fn bad_input_is_refused_before_any_request() {
        let host = jira();
        let create = |site: &str, project: &str, summary: &str| json!({"site": site, "project": project, "summary": summary});
        let mut cases = vec![];
        for site in [
            "https://acme.atlassian.net",
            "acme.atlassian.net/rest",
            "acme.atlassian.net:443",
            "bot@acme.atlassian.net",
            "acme.atlassian.net.",
            "acme.atlassian.net.evil.com",
            "acme.atlassian.net?x",
            "acme.atlassian.net#x",
            "atlassian.net",
            ".atlassian.net",
            "a..atlassian.net",
            "a.b.atlassian.net",
            "-acme.atlassian.net",
            "acme-.atlassian.net",
            "ac_me.atlassian.net",
            "acme .atlassian.net",
            "evil.com",
            "127.0.0.1",
            "",
        ] {
            cases.push(("create-issue", create(site, "SEC", "s")));
        }
        for project in ["S", "1SEC", "SEC-1", "SECURITYOPS", "S C", "", "SÉC"] {
            cases.push(("create-issue", create(SITE, project, "s")));
        }
        let long = "x".repeat(256);
        for summary in ["", "   ", "two\nlines", "a\rb", "tab\there", long.as_str()] {
            cases.push(("create-issue", create(SITE, "SEC", summary)));
        }
        cases.extend([
            ("create-issue", json!({"site": SITE, "project": "SEC", "summary": "s", "labels": ["two words"]})),
            ("create-issue", json!({"site": SITE, "project": "SEC", "summary": "s", "labels": [""]})),
            ("create-issue", json!({"site": SITE, "project": "SEC", "summary": "s", "issue_type": ""})),
            ("create-issue", json!({"site": SITE, "project": "SEC", "summary": "s", "description": "x".repeat(32_768)})),
            ("create-issue", json!({"site": SITE, "project": "SEC", "summary": "s", "description": "a\0b"})),
            ("create-issue", json!({"site": SITE, "project": "SEC", "summary": "s", "assignee": "me"})),
            ("create-issue", json!({"site": SITE, "project": "SEC"})),
            ("create-issue", json!({"site": SITE, "project": "SEC", "summary": 7})),
        ]);
        for issue in [
            "SEC-0",
            "SEC-",
            "SEC-01",
            "-12",
            "S-1",
            "SEC-1/comment",
            "../../myself",
            "SEC-1?x=1",
            "0",
            "1 OR 1",
            "",
            "12345678901234567890",
        ] {
            cases.push((
                "add-comment",
                json!({"site": SITE, "issue": issue, "body": "x"}),
            ));
            cases.push((
                "transition",
                json!({"site": SITE, "issue": issue, "to": "Done"}),
            ));
        }
        cases.extend([
            (
                "add-comment",
                json!({"site": SITE, "issue": "SEC-1", "body": ""}),
            ),
            (
                "add-comment",
                json!({"site": SITE, "issue": "SEC-1", "body": " \n "}),
            ),
            (
                "add-comment",
                json!({"site": "https://acme.atlassian.net/", "issue": "SEC-1", "body": "x"}),
            ),
            (
                "transition",
                json!({"site": SITE, "issue": "SEC-1", "to": ""}),
            ),
            (
                "transition",
                json!({"site": SITE, "issue": "SEC-1", "to": "Done\r\nX-Injected: 1"}),
            ),
            (
                "transition",
                json!({"site": "evil.example", "issue": "SEC-1", "to": "Done"}),
            ),
            ("transition", json!({"site": SITE, "issue": "SEC-1"})),
            ("no-such-action", json!({})),
        ]);
        for (action, input) in cases {
            let e = host
                .run(Actions::dispatch, action, input.clone())
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{action} {input}: {e}");
        }
        assert!(host.requests().is_empty());
    }

    #[test]
    fn good_input_is_normalised() {
        assert_eq!(
            checked_site(" ACME-2.atlassian.net ").unwrap(),
            "acme-2.atlassian.net"
        );
        assert_eq!(checked_issue(" sec-12 ").unwrap(), "SEC-12");
        assert_eq!(checked_issue("A_1-9").unwrap(), "A_1-9");
        assert_eq!(checked_issue("10001").unwrap(), "10001");
        assert_eq!(checked_project("ab_12").unwrap(), "AB_12");
        assert_eq!(
            checked_line("summary", &"é".repeat(255), 255)
                .unwrap()
                .chars()
                .count(),
            255
        );
    }

    #[test]
    fn inert_json_round_trips() {
        let v = json!({"a": "{{secret:X}}", "b": "\\{{secret:Y|base64}}", "c": ["{{x}}", "{{{secret:Z}}}"], "{{secret:K}}": 1});
        let bytes = inert_json(&v);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("{{secret:"), "{text}");
        assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), v);
    }

    #[test]
    fn schemas_are_derived_from_the_types() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
        allama_sdk::schema::check_file::<CreateIssue>(&format!("{dir}/create-issue.json")).unwrap();
        allama_sdk::schema::check_file::<Created>(&format!("{dir}/created.json")).unwrap();
        allama_sdk::schema::check_file::<AddComment>(&format!("{dir}/add-comment.json")).unwrap();
        allama_sdk::schema::check_file::<Comment>(&format!("{dir}/comment.json")).unwrap();
        allama_sdk::schema::check_file::<Transition>(&format!("{dir}/transition.json")).unwrap();
        allama_sdk::schema::check_file::<Transitioned>(&format!("{dir}/transitioned.json"))
            .unwrap();
    }
}
