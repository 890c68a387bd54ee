//! Jira Cloud platform REST API v2 and v3
//! (`https://your-domain.atlassian.net/rest/api/{2,3}`).
//!
//! Served under both `/rest/api/2` and `/rest/api/3`: `GET /myself`,
//! `POST /issue`, `GET /issue/{idOrKey}`, `POST` and `GET`
//! `/issue/{idOrKey}/comment` (the list paginated with `startAt` and
//! `maxResults`), `GET` and `POST /issue/{idOrKey}/transitions`.
//!
//! As Jira Cloud does: Basic authentication with `email:api_token`; wrong
//! credentials (or another scheme) are `401` with a plain-text body
//! (`Client must be authenticated to access this resource.`) and
//! `X-Seraph-LoginReason: AUTHENTICATED_FAILED`, before routing; no
//! credentials at all reach the resource as anonymous and are
//! `401 {"errorMessages": ["You are not authenticated. ..."], "errors": {}}`;
//! errors are `{"errorMessages": [...], "errors": {field: message}}`; a `POST`
//! with a form, text or multipart body fails the XSRF check (`403`, unless
//! `X-Atlassian-Token: no-check`) and any other non-JSON body is `415`;
//! unknown issues are `404` ("does not exist or you do not have permission");
//! v3 requires rich text (`description`, comment `body`) in Atlassian
//! Document Format where v2 takes strings. Issues start in `To Do`; the
//! default workflow has the global transitions `11` To Do, `21` In Progress
//! and `31` Done, and lists only those leading elsewhere than the current
//! status.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::{Clock, Faults, base64_decode, civil, lock, media_type, origin};
use crate::{Recorded, Reply, Router};

/// The account the credentials belong to.
pub const ACCOUNT_ID: &str = "5b10ac8d82e05b22cc7d4ef5";
const ADF_REQUIRED: &str =
    "Operation value must be an Atlassian Document (see the Atlassian Document Format)";

/// A Jira Cloud peer. Cloning gives another handle on the same peer.
///
/// ```no_run
/// # use allama_test_peer::{Peer, vendors::Jira};
/// # async fn demo() {
/// let jira = Jira::new("bot@example.com", "api-token").with_project("SEC", "Security");
/// let peer = Peer::start(jira.router()).await;
/// // ... the integration creates SEC-1 and moves it to In Progress ...
/// assert_eq!(jira.issue("SEC-1").unwrap().status, "In Progress");
/// # }
/// ```
#[derive(Clone)]
pub struct Jira {
    shared: Arc<Shared>,
}

/// An issue as the peer holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct JiraIssue {
    /// Numeric id, as text (`"10001"`).
    pub id: String,
    /// Key (`"SEC-1"`).
    pub key: String,
    /// Project key.
    pub project: String,
    /// Issue type name.
    pub issue_type: String,
    /// Summary.
    pub summary: String,
    /// Description as sent (a string in v2, an ADF document in v3).
    pub description: Option<Value>,
    /// Current status name.
    pub status: String,
    /// Every field as sent at creation (and by transitions).
    pub fields: Map<String, Value>,
    /// Comments, oldest first.
    pub comments: Vec<JiraComment>,
    /// Ids of the transitions applied, in order.
    pub transitions: Vec<String>,
}

/// A comment on an issue.
#[derive(Debug, Clone, PartialEq)]
pub struct JiraComment {
    /// Numeric id, as text.
    pub id: String,
    /// Body as sent (a string in v2, an ADF document in v3).
    pub body: Value,
    /// Creation time, as Jira writes it.
    pub created: String,
}

struct Shared {
    state: Mutex<State>,
    faults: Faults,
    clock: Clock,
}

struct State {
    email: String,
    api_token: String,
    projects: Vec<Project>,
    issues: Vec<Stored>,
    next_issue_id: u64,
    next_comment_id: u64,
    workflow: Vec<Transition>,
    default_workflow: bool,
    initial_status: String,
}

struct Project {
    id: String,
    key: String,
    name: String,
    issue_types: Vec<String>,
    read_only: bool,
    next_number: u64,
}

struct Transition {
    id: String,
    name: String,
    to: String,
}

struct Stored {
    issue: JiraIssue,
    created: i64,
    updated: i64,
}

/// Jira's time format: `2024-01-31T12:00:00.000+0000`.
fn jira_time(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.000+0000")
}

/// (id, category key, category id, colour, category name) of a status.
fn status_category(name: &str) -> (&'static str, &'static str, u32, &'static str, &'static str) {
    match name.to_ascii_lowercase().as_str() {
        "to do" | "open" | "backlog" | "new" => ("10000", "new", 2, "blue-gray", "To Do"),
        "done" | "closed" | "resolved" | "cancelled" => ("10001", "done", 3, "green", "Done"),
        _ => ("3", "indeterminate", 4, "yellow", "In Progress"),
    }
}

fn status_json(origin: &str, v: &str, name: &str) -> Value {
    let (default_id, key, category_id, colour, category_name) = status_category(name);
    let id = match name {
        "To Do" | "In Progress" | "Done" => default_id.to_owned(),
        // A stable id per custom name.
        other => (10_100 + other.bytes().map(u32::from).sum::<u32>()).to_string(),
    };
    json!({
        "self": format!("{origin}/rest/api/{v}/status/{id}"),
        "description": "",
        "iconUrl": format!("{origin}/images/icons/statuses/generic.png"),
        "name": name,
        "id": id,
        "statusCategory": {
            "self": format!("{origin}/rest/api/{v}/statuscategory/{category_id}"),
            "id": category_id,
            "key": key,
            "colorName": colour,
            "name": category_name,
        },
    })
}

impl Jira {
    /// A peer accepting Basic `email:api_token`, with no projects.
    pub fn new(email: &str, api_token: &str) -> Jira {
        Jira {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    email: email.to_owned(),
                    api_token: api_token.to_owned(),
                    projects: Vec::new(),
                    issues: Vec::new(),
                    next_issue_id: 10_001,
                    next_comment_id: 10_000,
                    workflow: [("11", "To Do"), ("21", "In Progress"), ("31", "Done")]
                        .into_iter()
                        .map(|(id, name)| Transition {
                            id: id.to_owned(),
                            name: name.to_owned(),
                            to: name.to_owned(),
                        })
                        .collect(),
                    default_workflow: true,
                    initial_status: "To Do".to_owned(),
                }),
                faults: Faults::default(),
                clock: Clock::default(),
            }),
        }
    }

    /// A project the account can create issues in, with the issue types
    /// `Task`, `Bug`, `Story`, `Epic` and `Subtask`.
    pub fn with_project(self, key: &str, name: &str) -> Jira {
        {
            let mut state = lock(&self.shared.state);
            let id = (10_000 + state.projects.len()).to_string();
            state.projects.push(Project {
                id,
                key: key.to_ascii_uppercase(),
                name: name.to_owned(),
                issue_types: ["Task", "Bug", "Story", "Epic", "Subtask"]
                    .map(str::to_owned)
                    .to_vec(),
                read_only: false,
                next_number: 1,
            });
        }
        self
    }

    /// Replaces the issue types of project `key`.
    ///
    /// # Panics
    /// If there is no such project.
    pub fn with_issue_types(self, key: &str, types: &[&str]) -> Jira {
        lock(&self.shared.state).project_mut(key).issue_types =
            types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Makes project `key` read-only for the account: it can see issues but
    /// creating, commenting and transitioning are `403`.
    ///
    /// # Panics
    /// If there is no such project.
    pub fn with_read_only_project(self, key: &str) -> Jira {
        lock(&self.shared.state).project_mut(key).read_only = true;
        self
    }

    /// An existing issue (a `Task` in the initial status) in project `key`;
    /// it takes the project's next key (`SEC-1`, `SEC-2`, ...).
    ///
    /// # Panics
    /// If there is no such project.
    pub fn with_issue(self, key: &str, summary: &str) -> Jira {
        let now = self.shared.clock.now();
        {
            let mut state = lock(&self.shared.state);
            let mut fields = Map::new();
            fields.insert("summary".into(), json!(summary));
            state.create(key, "Task", summary.to_owned(), None, fields, now);
        }
        self
    }

    /// Adds a global transition `id` named `name` leading to status `to`; the
    /// first call replaces the default workflow.
    pub fn with_transition(self, id: &str, name: &str, to: &str) -> Jira {
        {
            let mut state = lock(&self.shared.state);
            if state.default_workflow {
                state.workflow.clear();
                state.default_workflow = false;
            }
            state.workflow.push(Transition {
                id: id.to_owned(),
                name: name.to_owned(),
                to: to.to_owned(),
            });
        }
        self
    }

    /// The status new issues start in (default `To Do`).
    pub fn with_initial_status(self, status: &str) -> Jira {
        lock(&self.shared.state).initial_status = status.to_owned();
        self
    }

    /// Accepts `email:api_token` from now on instead of the previous pair.
    pub fn set_credentials(&self, email: &str, api_token: &str) {
        let mut state = lock(&self.shared.state);
        state.email = email.to_owned();
        state.api_token = api_token.to_owned();
    }

    /// Every issue, in creation order.
    pub fn issues(&self) -> Vec<JiraIssue> {
        lock(&self.shared.state)
            .issues
            .iter()
            .map(|s| s.issue.clone())
            .collect()
    }

    /// The issue with key (or id) `key`, if any.
    pub fn issue(&self, key: &str) -> Option<JiraIssue> {
        let state = lock(&self.shared.state);
        state.find(key).map(|i| state.issues[i].issue.clone())
    }

    super::common_methods!();

    /// A router serving this peer; every router shares the handle's state.
    pub fn router(&self) -> Router {
        let shared = Arc::clone(&self.shared);
        Router::any(move |req| shared.handle(req))
    }

    /// Jira's error shape: `status` with
    /// `{"errorMessages": messages, "errors": {}}`.
    pub fn error(status: u16, messages: &[&str]) -> Reply {
        Reply::json(status, json!({ "errorMessages": messages, "errors": {} }))
    }

    /// `429` with `Retry-After: retry_after_secs` and the `X-RateLimit-*`
    /// headers Jira Cloud sends.
    pub fn rate_limited(retry_after_secs: u64) -> Reply {
        Jira::error(429, &["Rate limit exceeded."])
            .header("retry-after", &retry_after_secs.to_string())
            .header("x-ratelimit-limit", "100")
            .header("x-ratelimit-remaining", "0")
            .header("ratelimit-reason", "jira-quota-based")
    }

    /// A server error `status` in Jira's error shape.
    pub fn server_error(status: u16) -> Reply {
        let message = if status == 503 {
            "Service Unavailable"
        } else {
            "Internal server error"
        };
        Jira::error(status, &[message])
    }

    /// `403` in Jira's error shape.
    pub fn forbidden() -> Reply {
        Jira::error(
            403,
            &["You do not have permission to perform this operation."],
        )
    }
}

fn is_adf(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("doc")
        && value.get("version").and_then(Value::as_u64) == Some(1)
        && value.get("content").is_some_and(Value::is_array)
}

/// Whether `value` is acceptable rich text for API version `v`, and if not
/// the message refusing it; `Ok(false)` for absent or empty.
fn rich_text(v: &str, value: Option<&Value>) -> Result<bool, &'static str> {
    match (v, value) {
        (_, None | Some(Value::Null)) => Ok(false),
        ("2", Some(Value::String(s))) => Ok(!s.trim().is_empty()),
        ("2", Some(_)) => Err("Operation value must be a string"),
        (_, Some(doc)) if is_adf(doc) => Ok(!doc["content"].as_array().is_some_and(Vec::is_empty)),
        _ => Err(ADF_REQUIRED),
    }
}

fn field_errors(errors: Map<String, Value>) -> Reply {
    Reply::json(400, json!({ "errorMessages": [], "errors": errors }))
}

fn issue_not_found() -> Reply {
    Jira::error(
        404,
        &["Issue does not exist or you do not have permission to see it."],
    )
}

/// A path's API version and the segments after `/rest/api/{v}/`.
fn route(path: &str) -> Option<(&str, Vec<&str>)> {
    let rest = path.strip_prefix("/rest/api/")?;
    let (v, rest) = rest.split_once('/')?;
    matches!(v, "2" | "3").then(|| (v, rest.split('/').collect()))
}

impl Shared {
    fn handle(&self, req: &Recorded) -> Reply {
        if let Some(reply) = self.faults.take(req) {
            return reply;
        }
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let credentials = req.header("authorization");
        let authenticated = match credentials {
            None => false,
            Some(header) => {
                let decoded = header
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                    .and_then(|(_, b64)| base64_decode(b64.trim(), false))
                    .and_then(|raw| String::from_utf8(raw).ok());
                let valid = decoded
                    .as_deref()
                    .and_then(|d| d.split_once(':'))
                    .is_some_and(|(email, token)| {
                        email.eq_ignore_ascii_case(&state.email) && token == state.api_token
                    });
                if !valid {
                    let host = req.header("host").unwrap_or("127.0.0.1");
                    return Reply::text(
                        401,
                        "Client must be authenticated to access this resource.",
                    )
                    .header("x-seraph-loginreason", "AUTHENTICATED_FAILED")
                    .header(
                        "www-authenticate",
                        &format!("OAuth realm=\"http%3A%2F%2F{}\"", host.replace(':', "%3A")),
                    );
                }
                true
            }
        };

        let Some((v, segments)) = route(&req.path) else {
            return Jira::error(404, &["The requested resource could not be found."]);
        };
        let method = req.method.to_ascii_uppercase();
        let allowed: &[&str] = match segments.as_slice() {
            ["myself"] | ["issue", _] => &["GET"],
            ["issue"] => &["POST"],
            ["issue", _, "comment" | "transitions"] => &["GET", "POST"],
            _ => return Jira::error(404, &["The requested resource could not be found."]),
        };
        if !allowed.contains(&method.as_str()) {
            return Reply::status(405).header("allow", &allowed.join(","));
        }
        if !authenticated {
            return Jira::error(
                401,
                &["You are not authenticated. Authentication required to perform this operation."],
            );
        }

        let mut body = Value::Null;
        if method == "POST" {
            let media = media_type(req);
            let xsrf_exempt = req
                .header("x-atlassian-token")
                .is_some_and(|t| t.eq_ignore_ascii_case("no-check"));
            let simple = matches!(
                media.as_str(),
                "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
            );
            if simple && !xsrf_exempt {
                return Reply::text(403, "XSRF check failed");
            }
            if media != "application/json" {
                return Reply::status(415);
            }
            body = match serde_json::from_slice(&req.body) {
                Ok(value) => value,
                Err(e) => {
                    return Jira::error(
                        400,
                        &[&format!("Unexpected character in the request body: {e}")],
                    );
                }
            };
        }

        let origin = origin(req);
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["myself"]) => Reply::json(
                200,
                json!({
                    "self": format!("{origin}/rest/api/{v}/user?accountId={ACCOUNT_ID}"),
                    "accountId": ACCOUNT_ID,
                    "accountType": "atlassian",
                    "emailAddress": state.email,
                    "displayName": "Allama Integration",
                    "active": true,
                    "timeZone": "Etc/UTC",
                    "locale": "en_US",
                }),
            ),
            ("POST", ["issue"]) => state.create_issue(v, &body, &origin, now),
            ("GET", ["issue", key]) => match state.find(key) {
                Some(i) => Reply::json(200, state.issue_json(i, v, &origin)),
                None => issue_not_found(),
            },
            ("POST", ["issue", key, "comment"]) => state.add_comment(v, key, &body, &origin, now),
            ("GET", ["issue", key, "comment"]) => state.list_comments(v, key, req, &origin),
            ("GET", ["issue", key, "transitions"]) => state.list_transitions(v, key, &origin),
            _ => state.transition(v, segments[1], &body, now),
        }
    }
}

impl State {
    fn project_mut(&mut self, key: &str) -> &mut Project {
        self.projects
            .iter_mut()
            .find(|p| p.key.eq_ignore_ascii_case(key))
            .unwrap_or_else(|| panic!("no Jira project {key:?}"))
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.issues
            .iter()
            .position(|s| s.issue.key.eq_ignore_ascii_case(key) || s.issue.id == key)
    }

    fn project_of(&self, issue: usize) -> &Project {
        let key = &self.issues[issue].issue.project;
        self.projects
            .iter()
            .find(|p| &p.key == key)
            .expect("issues belong to projects")
    }

    fn create(
        &mut self,
        project: &str,
        issue_type: &str,
        summary: String,
        description: Option<Value>,
        fields: Map<String, Value>,
        now: i64,
    ) -> (String, String) {
        let id = self.next_issue_id.to_string();
        self.next_issue_id += 1;
        let status = self.initial_status.clone();
        let project = self.project_mut(project);
        let key = format!("{}-{}", project.key, project.next_number);
        project.next_number += 1;
        let project = project.key.clone();
        self.issues.push(Stored {
            issue: JiraIssue {
                id: id.clone(),
                key: key.clone(),
                project,
                issue_type: issue_type.to_owned(),
                summary,
                description,
                status,
                fields,
                comments: Vec::new(),
                transitions: Vec::new(),
            },
            created: now,
            updated: now,
        });
        (id, key)
    }

    fn create_issue(&mut self, v: &str, body: &Value, origin: &str, now: i64) -> Reply {
        let fields = body
            .get("fields")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut errors = Map::new();

        let project_ref = fields.get("project");
        let project = project_ref.and_then(|p| {
            let key = p.get("key").and_then(Value::as_str);
            let id = p.get("id").and_then(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .or_else(|| i.as_u64().map(|n| n.to_string()))
            });
            self.projects.iter().find(|pr| {
                key.is_some_and(|k| pr.key.eq_ignore_ascii_case(k)) || id.as_deref() == Some(&pr.id)
            })
        });
        if project.is_none() {
            errors.insert("project".into(), json!("Specify a valid project ID or key"));
        }

        let issue_type = fields.get("issuetype");
        let type_name = match (project, issue_type) {
            (_, None) => {
                errors.insert("issuetype".into(), json!("Specify an issue type"));
                None
            }
            (Some(project), Some(t)) => {
                let by_name = t.get("name").and_then(Value::as_str);
                let by_id = t.get("id").and_then(Value::as_str);
                let found = project.issue_types.iter().enumerate().find(|(i, name)| {
                    by_name.is_some_and(|n| n.eq_ignore_ascii_case(name))
                        || by_id == Some(&(10_001 + i).to_string())
                });
                match found {
                    Some((_, name)) => Some(name.clone()),
                    None => {
                        errors.insert(
                            "issuetype".into(),
                            json!("The issue type selected is invalid."),
                        );
                        None
                    }
                }
            }
            (None, Some(_)) => None,
        };

        let summary = fields
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if summary.trim().is_empty() {
            errors.insert(
                "summary".into(),
                json!("You must specify a summary of the issue."),
            );
        } else if summary.chars().count() > 255 {
            errors.insert(
                "summary".into(),
                json!("Summary must be less than 255 characters."),
            );
        }
        if let Err(message) = rich_text(v, fields.get("description")) {
            errors.insert("description".into(), json!(message));
        }
        if !errors.is_empty() {
            return field_errors(errors);
        }
        let project = project.expect("validated");
        if project.read_only {
            return Jira::error(
                403,
                &["You do not have permission to create issues in this project."],
            );
        }
        let project_key = project.key.clone();
        let description = fields.get("description").filter(|d| !d.is_null()).cloned();
        let (id, key) = self.create(
            &project_key,
            &type_name.expect("validated"),
            summary,
            description,
            fields,
            now,
        );
        Reply::json(
            201,
            json!({
                "id": id,
                "key": key,
                "self": format!("{origin}/rest/api/{v}/issue/{id}"),
            }),
        )
    }

    fn author(&self, origin: &str, v: &str) -> Value {
        json!({
            "self": format!("{origin}/rest/api/{v}/user?accountId={ACCOUNT_ID}"),
            "accountId": ACCOUNT_ID,
            "emailAddress": self.email,
            "displayName": "Allama Integration",
            "active": true,
            "timeZone": "Etc/UTC",
            "accountType": "atlassian",
        })
    }

    fn comment_json(&self, issue: usize, comment: &JiraComment, v: &str, origin: &str) -> Value {
        let issue_id = &self.issues[issue].issue.id;
        json!({
            "self": format!("{origin}/rest/api/{v}/issue/{issue_id}/comment/{}", comment.id),
            "id": comment.id,
            "author": self.author(origin, v),
            "body": comment.body,
            "updateAuthor": self.author(origin, v),
            "created": comment.created,
            "updated": comment.created,
            "jsdPublic": true,
        })
    }

    fn push_comment(&mut self, issue: usize, body: Value, now: i64) -> JiraComment {
        let comment = JiraComment {
            id: self.next_comment_id.to_string(),
            body,
            created: jira_time(now),
        };
        self.next_comment_id += 1;
        let stored = &mut self.issues[issue];
        stored.issue.comments.push(comment.clone());
        stored.updated = now;
        comment
    }

    fn add_comment(&mut self, v: &str, key: &str, body: &Value, origin: &str, now: i64) -> Reply {
        let Some(issue) = self.find(key) else {
            return issue_not_found();
        };
        let text = body.get("body");
        match rich_text(v, text) {
            Err(message) => {
                let mut errors = Map::new();
                errors.insert("comment".into(), json!(message));
                return field_errors(errors);
            }
            Ok(false) => {
                let mut errors = Map::new();
                errors.insert("comment".into(), json!("Comment body can not be empty!"));
                return field_errors(errors);
            }
            Ok(true) => {}
        }
        if self.project_of(issue).read_only {
            return Jira::error(
                403,
                &["You do not have the permission to comment on this issue."],
            );
        }
        let comment = self.push_comment(issue, text.cloned().unwrap_or_default(), now);
        Reply::json(201, self.comment_json(issue, &comment, v, origin))
    }

    fn list_comments(&self, v: &str, key: &str, req: &Recorded, origin: &str) -> Reply {
        let Some(issue) = self.find(key) else {
            return issue_not_found();
        };
        let number = |name: &str, default: usize| {
            req.query_param(name)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(default)
        };
        let start_at = number("startAt", 0);
        let max_results = number("maxResults", 50).clamp(1, 5000);
        let all = &self.issues[issue].issue.comments;
        let comments: Vec<Value> = all
            .iter()
            .skip(start_at)
            .take(max_results)
            .map(|c| self.comment_json(issue, c, v, origin))
            .collect();
        Reply::json(
            200,
            json!({
                "startAt": start_at,
                "maxResults": max_results,
                "total": all.len(),
                "comments": comments,
            }),
        )
    }

    fn available(&self, issue: usize) -> impl Iterator<Item = &Transition> {
        let status = &self.issues[issue].issue.status;
        self.workflow.iter().filter(move |t| &t.to != status)
    }

    fn list_transitions(&self, v: &str, key: &str, origin: &str) -> Reply {
        let Some(issue) = self.find(key) else {
            return issue_not_found();
        };
        let transitions: Vec<Value> = self
            .available(issue)
            .map(|t| {
                json!({
                    "id": t.id,
                    "name": t.name,
                    "to": status_json(origin, v, &t.to),
                    "hasScreen": false,
                    "isGlobal": true,
                    "isInitial": false,
                    "isAvailable": true,
                    "isConditional": false,
                    "isLooped": false,
                })
            })
            .collect();
        Reply::json(
            200,
            json!({ "expand": "transitions", "transitions": transitions }),
        )
    }

    fn transition(&mut self, v: &str, key: &str, body: &Value, now: i64) -> Reply {
        let Some(issue) = self.find(key) else {
            return issue_not_found();
        };
        let id = body
            .get("transition")
            .and_then(|t| t.get("id"))
            .and_then(|id| {
                id.as_str()
                    .map(str::to_owned)
                    .or_else(|| id.as_u64().map(|n| n.to_string()))
            });
        let Some(id) = id else {
            return Jira::error(400, &["Missing 'transition' identifier"]);
        };
        let Some(target) = self
            .available(issue)
            .find(|t| t.id == id)
            .map(|t| t.to.clone())
        else {
            return Jira::error(
                400,
                &[&format!(
                    "Transition id '{id}' is not valid for this issue."
                )],
            );
        };
        if self.project_of(issue).read_only {
            return Jira::error(
                403,
                &["You do not have permission to transition this issue."],
            );
        }
        let comments: Vec<Value> = body
            .pointer("/update/comment")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|op| op.pointer("/add/body").cloned())
            .collect();
        for comment in &comments {
            if let Err(message) = rich_text(v, Some(comment)) {
                let mut errors = Map::new();
                errors.insert("comment".into(), json!(message));
                return field_errors(errors);
            }
        }
        for comment in comments {
            self.push_comment(issue, comment, now);
        }
        let stored = &mut self.issues[issue];
        if let Some(Value::Object(fields)) = body.get("fields") {
            stored
                .issue
                .fields
                .extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        stored.issue.status = target;
        stored.issue.transitions.push(id);
        stored.updated = now;
        Reply::status(204)
    }

    fn issue_json(&self, issue: usize, v: &str, origin: &str) -> Value {
        let stored = &self.issues[issue];
        let project = self.project_of(issue);
        let type_index = project
            .issue_types
            .iter()
            .position(|t| *t == stored.issue.issue_type)
            .unwrap_or(0);
        let mut fields = stored.issue.fields.clone();
        let comments: Vec<Value> = stored
            .issue
            .comments
            .iter()
            .map(|c| self.comment_json(issue, c, v, origin))
            .collect();
        let known = json!({
            "summary": stored.issue.summary,
            "description": stored.issue.description,
            "issuetype": {
                "self": format!("{origin}/rest/api/{v}/issuetype/{}", 10_001 + type_index),
                "id": (10_001 + type_index).to_string(),
                "name": stored.issue.issue_type,
                "subtask": stored.issue.issue_type == "Subtask",
            },
            "project": {
                "self": format!("{origin}/rest/api/{v}/project/{}", project.id),
                "id": project.id,
                "key": project.key,
                "name": project.name,
                "projectTypeKey": "software",
            },
            "status": status_json(origin, v, &stored.issue.status),
            "created": jira_time(stored.created),
            "updated": jira_time(stored.updated),
            "creator": self.author(origin, v),
            "reporter": self.author(origin, v),
            "comment": {
                "comments": comments,
                "self": format!("{origin}/rest/api/{v}/issue/{}/comment", stored.issue.id),
                "maxResults": comments.len(),
                "total": comments.len(),
                "startAt": 0,
            },
        });
        if let Value::Object(known) = known {
            fields.extend(known);
        }
        json!({
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": stored.issue.id,
            "self": format!("{origin}/rest/api/{v}/issue/{}", stored.issue.id),
            "key": stored.issue.key,
            "fields": fields,
        })
    }
}
