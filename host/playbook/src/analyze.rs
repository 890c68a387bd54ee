//! From the tree to a playbook: shape, expressions and the step graph, every problem reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use allama_expr::{Expression, ParseError, References, Template, ValueTemplate};
use indexmap::IndexMap;
use serde_json::Value;

use crate::diag::{Sink, did_you_mean, field, index};
use crate::limits::*;
use crate::model::*;
use crate::read::{self, Located, mapping};
use crate::yaml::{self, Kind, Node, Pos, Scalar};

/// Field names, as in the JSON Schema (a test keeps them equal).
pub(crate) const PLAYBOOK_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "inputs",
    "triggers",
    "concurrency",
    "steps",
    "outputs",
];
pub(crate) const INPUT_FIELDS: &[&str] = &["type", "description", "required", "default"];
pub(crate) const STEP_FIELDS: &[&str] = &[
    "id",
    "name",
    "uses",
    "playbook",
    "with",
    "needs",
    "if",
    "for_each",
    "concurrency",
    "retry",
    "timeout",
    "on_error",
    "approval",
];
pub(crate) const RETRY_FIELDS: &[&str] = &["action", "infrastructure"];
pub(crate) const BACKOFF_FIELDS: &[&str] =
    &["max_attempts", "backoff", "delay", "max_delay", "jitter"];
pub(crate) const APPROVAL_FIELDS: &[&str] = &[
    "approvers",
    "message",
    "deadline",
    "on_deadline",
    "escalate_to",
];
pub(crate) const APPROVERS_FIELDS: &[&str] = &["roles", "users"];
pub(crate) const WEBHOOK_FIELDS: &[&str] = &["signature"];
pub(crate) const SCHEDULE_FIELDS: &[&str] = &["cron", "timezone"];
pub(crate) const TRIGGER_KINDS: &[&str] = &["webhook", "schedule", "manual"];

/// Workspace roles an approval may name.
pub(crate) const ROLES: &[&str] = &["admin", "editor", "responder", "viewer"];

/// Contexts an expression may read.
const CONTEXTS: &[&str] = &["inputs", "trigger", "steps", "secrets", "item", "index"];

/// Where an expression appears, which decides what it may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// A step's `with`; `action` is false for a child playbook's inputs.
    With {
        action: bool,
    },
    If,
    ForEach,
    Message,
    Output,
}

/// One parsed expression or template, with what it reads.
pub(crate) struct Site {
    pub pos: Pos,
    pub path: String,
    pub refs: References,
    pub place: Place,
}

/// A step as read, before it is known to be valid.
pub(crate) struct StepDraft<'n> {
    pub path: String,
    pub pos: Pos,
    pub id: Option<Located>,
    pub name: Option<String>,
    pub kind: Option<StepKind>,
    /// The `uses` or `playbook` value, for catalog errors.
    pub kind_node: Option<&'n Node>,
    pub with_node: Option<&'n Node>,
    pub with_json: Value,
    pub with: Option<ValueTemplate>,
    pub needs: Vec<Located>,
    pub if_: Option<Expression>,
    pub for_each: Option<Expression>,
    pub concurrency: Option<u32>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub on_error: OnError,
    pub on_error_node: Option<&'n Node>,
    pub approval: Option<Approval>,
    pub sites: Vec<Site>,
    pub has_for_each: bool,
    /// The step's mapping.
    pub node: &'n Node,
}

impl StepDraft<'_> {
    fn id(&self) -> Option<&str> {
        self.id.as_ref().map(|l| l.text.as_str())
    }
}

/// The playbook as read.
pub(crate) struct Draft<'n> {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub inputs: IndexMap<String, InputSpec>,
    pub triggers: Vec<Trigger>,
    pub concurrency: Option<u32>,
    pub steps: Vec<StepDraft<'n>>,
    pub outputs: IndexMap<String, ValueTemplate>,
    pub output_sites: Vec<Site>,
}

/// Reads and checks everything that needs no catalog.
pub(crate) fn analyze<'n>(root: &'n Node, sink: &mut Sink) -> Draft<'n> {
    let mut draft = Draft {
        id: None,
        name: None,
        description: None,
        inputs: IndexMap::new(),
        triggers: Vec::new(),
        concurrency: None,
        steps: Vec::new(),
        outputs: IndexMap::new(),
        output_sites: Vec::new(),
    };
    if !matches!(root.kind, Kind::Map(_)) {
        sink.err(
            root.pos,
            "",
            format!(
                "a playbook is a mapping with at least `id` and `steps`; found {}",
                root.describe()
            ),
        );
        return draft;
    }
    let Some(top) = mapping(sink, root, "", PLAYBOOK_FIELDS) else {
        return draft;
    };
    if let Some(node) = top.require(sink, "", "id")
        && let Some(id) = read::text(sink, node, "id")
    {
        if valid_playbook_id(&id) {
            draft.id = Some(id);
        } else {
            sink.err(
                    node.pos,
                    "id",
                    format!("`{}` is not a valid playbook id: use 1 to 64 lowercase letters, digits, `_` and `-`, starting with a letter or digit", clip(&id)),
                );
        }
    }
    draft.name = top.get("name").and_then(|n| read::text(sink, n, "name"));
    draft.description = top
        .get("description")
        .and_then(|n| read::text(sink, n, "description"));
    if let Some(node) = top.get("inputs") {
        draft.inputs = inputs(sink, node);
    }
    if let Some(node) = top.get("triggers") {
        draft.triggers = triggers(sink, node);
    }
    draft.concurrency = top
        .get("concurrency")
        .and_then(|n| read::uint(sink, n, "concurrency", 1, MAX_CONCURRENCY));
    if let Some(node) = top.require(sink, "", "steps") {
        draft.steps = steps(sink, node);
    }
    if let Some(node) = top.get("outputs") {
        outputs(sink, node, &mut draft);
    }
    graph(sink, &mut draft);
    draft
}

/// The value converted to JSON, reporting what JSON cannot hold.
fn json(sink: &mut Sink, node: &Node, path: &str) -> Value {
    let mut errors = Vec::new();
    let value = yaml::to_json(node, &mut errors);
    for (pos, message) in errors {
        sink.err(pos, path, message);
    }
    value
}

fn valid_playbook_id(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn valid_step_id(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_package_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// User text for a message: at most 60 characters, control characters escaped (so one
/// diagnostic stays one line).
pub(crate) fn clip(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 57 && s.chars().count() > 60 {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn inputs(sink: &mut Sink, node: &Node) -> IndexMap<String, InputSpec> {
    let mut out = IndexMap::new();
    let Kind::Map(entries) = &node.kind else {
        sink.err(
            node.pos,
            "inputs",
            format!(
                "expected a mapping of input names, found {}",
                node.describe()
            ),
        );
        return out;
    };
    if entries.len() > MAX_INPUTS {
        sink.err(node.pos, "inputs", format!("more than {MAX_INPUTS} inputs"));
        return out;
    }
    for (key, value) in entries {
        let path = field("inputs", &key.text);
        if !valid_name(&key.text) {
            sink.err(
                key.pos,
                &path,
                format!("`{}` is not a valid input name: use letters, digits and `_`, starting with a letter or `_`, at most 64", clip(&key.text)),
            );
        }
        let Some(fields) = mapping(sink, value, &path, INPUT_FIELDS) else {
            continue;
        };
        let kind = fields
            .get("type")
            .and_then(|n| read::choice(sink, n, &field(&path, "type"), INPUT_TYPES))
            .unwrap_or(InputType::String);
        let description = fields
            .get("description")
            .and_then(|n| read::text(sink, n, &field(&path, "description")));
        let required = fields
            .get("required")
            .and_then(|n| read::boolean(sink, n, &field(&path, "required")))
            .unwrap_or(false);
        let default = fields.get("default").map(|n| {
            let p = field(&path, "default");
            let before = sink.count();
            let v = json(sink, n, &p);
            if sink.count() == before && !kind.accepts(&v) {
                sink.err(
                    n.pos,
                    &p,
                    format!(
                        "the default is {}, but the input's type is {}",
                        n.describe(),
                        kind.name()
                    ),
                );
            }
            v
        });
        if required
            && default.is_some()
            && let Some(k) = fields.key("required")
        {
            sink.err(
                k.pos,
                &field(&path, "required"),
                "an input with a default is never missing: remove `required` or the default",
            );
        }
        out.insert(
            key.text.clone(),
            InputSpec {
                kind,
                description,
                required,
                default,
            },
        );
    }
    out
}

const INPUT_TYPES: &[(&str, InputType)] = &[
    ("string", InputType::String),
    ("integer", InputType::Integer),
    ("number", InputType::Number),
    ("boolean", InputType::Boolean),
    ("object", InputType::Object),
    ("array", InputType::Array),
    ("any", InputType::Any),
];

fn triggers(sink: &mut Sink, node: &Node) -> Vec<Trigger> {
    let mut out = Vec::new();
    let Kind::Seq(items) = &node.kind else {
        sink.err(
            node.pos,
            "triggers",
            format!("expected a list of triggers, found {}", node.describe()),
        );
        return out;
    };
    if items.len() > MAX_TRIGGERS {
        sink.err(
            node.pos,
            "triggers",
            format!("more than {MAX_TRIGGERS} triggers"),
        );
        return out;
    }
    let mut seen: HashMap<&'static str, Pos> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = index("triggers", i);
        let Some(fields) = mapping(sink, item, &path, TRIGGER_KINDS) else {
            continue;
        };
        let known: Vec<_> = fields
            .entries
            .iter()
            .filter(|(k, _)| TRIGGER_KINDS.contains(&k.text.as_str()))
            .collect();
        let [(key, value)] = known.as_slice() else {
            if fields.entries.is_empty() || known.len() > 1 {
                sink.err(
                    item.pos,
                    &path,
                    "a trigger has exactly one of `webhook`, `schedule` or `manual`",
                );
            }
            continue;
        };
        let path = field(&path, &key.text);
        let trigger = match key.text.as_str() {
            "webhook" => {
                let signature = if is_null(value) {
                    Some(WebhookSignature::Standard)
                } else {
                    mapping(sink, value, &path, WEBHOOK_FIELDS).map(|f| {
                        f.get("signature")
                            .and_then(|n| {
                                read::choice(sink, n, &field(&path, "signature"), SIGNATURES)
                            })
                            .unwrap_or_default()
                    })
                };
                signature.map(|signature| Trigger::Webhook { signature })
            }
            "schedule" => mapping(sink, value, &path, SCHEDULE_FIELDS).and_then(|f| {
                let cron = f
                    .require(sink, &path, "cron")
                    .and_then(|n| cron(sink, n, &field(&path, "cron")));
                let timezone = f
                    .get("timezone")
                    .and_then(|n| timezone(sink, n, &field(&path, "timezone")));
                Some(Trigger::Schedule {
                    cron: cron?,
                    timezone,
                })
            }),
            _ => {
                if !is_null(value) {
                    mapping(sink, value, &path, &[]);
                }
                Some(Trigger::Manual)
            }
        };
        let kind: &'static str = match key.text.as_str() {
            "webhook" => "webhook",
            "manual" => "manual",
            _ => "schedule",
        };
        if kind != "schedule" {
            if let Some(first) = seen.get(kind) {
                sink.err(
                    key.pos,
                    &path,
                    format!(
                        "a playbook has at most one `{kind}` trigger (first at line {}, column {})",
                        first.line, first.col
                    ),
                );
            } else {
                seen.insert(kind, key.pos);
            }
        }
        out.extend(trigger);
    }
    out
}

const SIGNATURES: &[(&str, WebhookSignature)] = &[
    ("standard", WebhookSignature::Standard),
    ("github", WebhookSignature::Github),
    ("slack", WebhookSignature::Slack),
    ("none", WebhookSignature::None),
];

fn is_null(node: &Node) -> bool {
    node.scalar() == Some(Scalar::Null)
}

fn cron(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    let text = read::text(sink, node, path)?;
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        sink.err(
            node.pos,
            path,
            format!("`{}` is not a cron expression: expected 5 fields (minute hour day month weekday), or 6 with seconds first", clip(&text)),
        );
        return None;
    }
    let parsed = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(&text);
    match parsed {
        Ok(_) => Some(text),
        Err(e) => {
            sink.err(
                node.pos,
                path,
                format!("`{}` is not a cron expression: {e}", clip(&text)),
            );
            None
        }
    }
}

fn timezone(sink: &mut Sink, node: &Node, path: &str) -> Option<String> {
    let text = read::text(sink, node, path)?;
    // The server checks the name against its time zone database; here, only its shape.
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    if ok {
        Some(text)
    } else {
        sink.err(
            node.pos,
            path,
            format!(
                "`{}` is not a time zone name such as `Europe/Paris` or `UTC`",
                clip(&text)
            ),
        );
        None
    }
}

fn steps<'n>(sink: &mut Sink, node: &'n Node) -> Vec<StepDraft<'n>> {
    let Kind::Seq(items) = &node.kind else {
        sink.err(
            node.pos,
            "steps",
            format!("expected a list of steps, found {}", node.describe()),
        );
        return Vec::new();
    };
    if items.is_empty() {
        sink.err(node.pos, "steps", "a playbook needs at least one step");
    }
    if items.len() > MAX_STEPS {
        sink.err(
            node.pos,
            "steps",
            format!("{} steps: at most {MAX_STEPS} are allowed; split the playbook into child playbooks", items.len()),
        );
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| step(sink, item, index("steps", i)))
        .collect()
}

fn step<'n>(sink: &mut Sink, node: &'n Node, path: String) -> Option<StepDraft<'n>> {
    let f = mapping(sink, node, &path, STEP_FIELDS)?;
    let mut draft = StepDraft {
        path: path.clone(),
        pos: node.pos,
        id: None,
        name: None,
        kind: None,
        kind_node: None,
        with_node: None,
        with_json: Value::Object(Default::default()),
        with: None,
        needs: Vec::new(),
        if_: None,
        for_each: None,
        concurrency: None,
        retry: RetryPolicy::default(),
        timeout: None,
        on_error: OnError::Fail,
        on_error_node: None,
        approval: None,
        sites: Vec::new(),
        has_for_each: f.get("for_each").is_some(),
        node,
    };
    let p = |name: &str| field(&path, name);
    if let Some(n) = f.require(sink, &path, "id")
        && let Some(id) = read::text(sink, n, &p("id"))
    {
        if !valid_step_id(&id) {
            let hint = if id.contains('-') && valid_step_id(&id.replace('-', "_")) {
                format!(
                    " (try `{}`: expressions read steps as `steps.<id>`, where `-` would be a minus)",
                    id.replace('-', "_")
                )
            } else {
                String::new()
            };
            sink.err(
                    n.pos,
                    &p("id"),
                    format!("`{}` is not a valid step id: use 1 to 64 lowercase letters, digits and `_`, starting with a letter{hint}", clip(&id)),
                );
        }
        // Kept even when invalid (already reported), so `needs: that-id` is not reported too.
        draft.id = Some(Located {
            text: id,
            pos: n.pos,
            path: p("id"),
        });
    }
    draft.name = f.get("name").and_then(|n| read::text(sink, n, &p("name")));

    // What the step runs.
    let uses = f.get("uses");
    let child = f.get("playbook");
    let approval = f.get("approval");
    match (uses, child) {
        (Some(u), Some(_)) => {
            sink.err(
                u.pos,
                &path,
                "a step has either `uses` or `playbook`, not both",
            );
        }
        (Some(u), None) => {
            draft.kind_node = Some(u);
            if let Some(text) = read::text(sink, u, &p("uses")) {
                match action_ref(&text) {
                    Ok(r) => draft.kind = Some(StepKind::Action(r)),
                    Err(message) => sink.err(u.pos, &p("uses"), message),
                }
            }
        }
        (None, Some(c)) => {
            draft.kind_node = Some(c);
            if let Some(id) = read::text(sink, c, &p("playbook")) {
                if valid_playbook_id(&id) {
                    draft.kind = Some(StepKind::Playbook(id));
                } else {
                    sink.err(
                        c.pos,
                        &p("playbook"),
                        format!("`{}` is not a valid playbook id", clip(&id)),
                    );
                }
            }
        }
        (None, None) => {
            if approval.is_some() {
                draft.kind = Some(StepKind::Approval);
            } else {
                sink.err(
                    node.pos,
                    &path,
                    "a step needs `uses` (an action), `playbook` (a child playbook) or `approval` (an approval gate)",
                );
            }
        }
    }
    let gate = uses.is_none() && child.is_none();
    if gate {
        for name in ["with", "for_each", "retry", "timeout"] {
            if let Some(k) = f.key(name) {
                sink.err(
                    k.pos,
                    &p(name),
                    format!("an approval step runs nothing, so `{name}` does not apply: add `uses` or `playbook`, or remove it"),
                );
            }
        }
    }

    // Conditions and fan-out.
    if let Some(n) = f.get("if") {
        draft.if_ = expression(sink, n, &p("if"), Place::If, &mut draft.sites);
    }
    if let Some(n) = f.get("for_each") {
        draft.for_each = expression(sink, n, &p("for_each"), Place::ForEach, &mut draft.sites);
    }
    if let Some(n) = f.get("concurrency") {
        draft.concurrency = read::uint(sink, n, &p("concurrency"), 1, MAX_CONCURRENCY);
        if f.get("for_each").is_none()
            && let Some(k) = f.key("concurrency")
        {
            sink.err(
                    k.pos,
                    &p("concurrency"),
                    "`concurrency` limits the elements of a `for_each` running at once; this step has no `for_each`",
                );
        }
    }

    // Input.
    let before_with = sink.count();
    if let Some(n) = f.get("with")
        && !gate
    {
        let action = uses.is_some();
        let place = Place::With { action };
        if matches!(n.kind, Kind::Map(_)) {
            draft.with_node = Some(n);
            draft.with_json = json(sink, n, &p("with"));
            templates(sink, n, &p("with"), place, &mut draft.sites);
        } else {
            sink.err(
                n.pos,
                &p("with"),
                format!(
                    "expected a mapping of input names to values, found {}",
                    n.describe()
                ),
            );
        }
    }
    match ValueTemplate::parse(&draft.with_json) {
        Ok(t) => draft.with = Some(t),
        Err((pointer, e)) => {
            // Every string was parsed above with its own position; report only what that missed.
            if sink.count() == before_with {
                let pos = draft
                    .with_node
                    .and_then(|w| w.at_pointer(&pointer))
                    .map_or(node.pos, |n| n.pos);
                sink.err(pos, &p("with"), parse_message("template", &e));
            }
        }
    }

    if let Some(n) = f.get("needs") {
        draft.needs = read::string_or_list(sink, n, &p("needs"));
    }
    if let Some(n) = f.get("retry")
        && !gate
        && let Some(r) = retry(sink, n, &p("retry"))
    {
        draft.retry = r;
    }
    if let Some(n) = f.get("timeout")
        && !gate
    {
        draft.timeout = read::duration(sink, n, &p("timeout"), false, MAX_DURATION);
    }
    if let Some(n) = f.get("on_error")
        && let Some(text) = read::text(sink, n, &p("on_error"))
    {
        draft.on_error_node = Some(n);
        draft.on_error = match text.as_str() {
            "fail" => OnError::Fail,
            "continue" => OnError::Continue,
            _ => OnError::Branch(text),
        };
    }
    if let Some(n) = approval {
        draft.approval = approval_of(sink, n, &p("approval"), None, 0, &mut draft.sites);
    }
    Some(draft)
}

/// Parses `uses`: `package/action@requirement`.
pub(crate) fn action_ref(text: &str) -> Result<ActionRef, String> {
    let example = "write `package/action@version`, for example `virustotal/ip-report@1`";
    let Some((name, version)) = text.split_once('@') else {
        return Err(format!("`{}` has no version: {example}", clip(text)));
    };
    let Some((package, action)) = name.split_once('/') else {
        return Err(format!("`{}` names no action: {example}", clip(text)));
    };
    if !valid_package_name(package) {
        return Err(format!(
            "`{}` is not a package name: lowercase letters, digits and `-`, starting with a letter",
            clip(package)
        ));
    }
    if !valid_package_name(action) {
        return Err(format!(
            "`{}` is not an action name: lowercase letters, digits and `-`, starting with a letter",
            clip(action)
        ));
    }
    let version = semver::VersionReq::parse(version).map_err(|e| {
        format!(
            "`{}` is not a version requirement ({e}): use `1`, `1.2`, `^1.2.3` or `=1.2.3`",
            clip(version)
        )
    })?;
    Ok(ActionRef {
        package: package.to_string(),
        action: action.to_string(),
        version,
        text: text.to_string(),
    })
}

/// A message for a parse error of an expression or template.
fn parse_message(what: &str, e: &ParseError) -> String {
    format!("invalid {what} (at character {}): {}", e.offset, e.message)
}

/// Parses an `if` or `for_each` expression.
fn expression(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    place: Place,
    sites: &mut Vec<Site>,
) -> Option<Expression> {
    let text = read::text(sink, node, path)?;
    match Expression::parse(&text) {
        Ok(e) => {
            sites.push(Site {
                pos: node.pos,
                path: path.to_string(),
                refs: e.references().clone(),
                place,
            });
            Some(e)
        }
        Err(e) => {
            sink.err(node.pos, path, parse_message("expression", &e));
            None
        }
    }
}

/// Parses a template string (an approval message).
fn template(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    place: Place,
    sites: &mut Vec<Site>,
) -> Option<Template> {
    let text = read::text(sink, node, path)?;
    match Template::parse(&text) {
        Ok(t) => {
            sites.push(Site {
                pos: node.pos,
                path: path.to_string(),
                refs: t.references().clone(),
                place,
            });
            Some(t)
        }
        Err(e) => {
            sink.err(node.pos, path, parse_message("template", &e));
            None
        }
    }
}

/// Parses every string below `node` as a template, each with its own position.
fn templates(sink: &mut Sink, node: &Node, path: &str, place: Place, sites: &mut Vec<Site>) {
    match &node.kind {
        Kind::Map(entries) => {
            for (k, v) in entries {
                templates(sink, v, &field(path, &k.text), place, sites);
            }
        }
        Kind::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                templates(sink, v, &index(path, i), place, sites);
            }
        }
        Kind::Scalar { .. } => {
            if let Some(Scalar::Str(text)) = node.scalar() {
                match Template::parse(text) {
                    Ok(t) => sites.push(Site {
                        pos: node.pos,
                        path: path.to_string(),
                        refs: t.references().clone(),
                        place,
                    }),
                    Err(e) => sink.err(node.pos, path, parse_message("template", &e)),
                }
            }
        }
    }
}

fn retry(sink: &mut Sink, node: &Node, path: &str) -> Option<RetryPolicy> {
    let f = mapping(sink, node, path, RETRY_FIELDS)?;
    let mut policy = RetryPolicy::default();
    if let Some(n) = f.get("action") {
        let defaults = Backoff {
            max_attempts: 3,
            kind: BackoffKind::Exponential,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            jitter: true,
        };
        policy.action = backoff(sink, n, &field(path, "action"), defaults)?;
    }
    if let Some(n) = f.get("infrastructure") {
        let defaults = Backoff::infrastructure_default();
        policy.infrastructure = backoff(sink, n, &field(path, "infrastructure"), defaults)?;
    }
    Some(policy)
}

fn backoff(sink: &mut Sink, node: &Node, path: &str, defaults: Backoff) -> Option<Backoff> {
    let f = mapping(sink, node, path, BACKOFF_FIELDS)?;
    let before = sink.count();
    let p = |name: &str| field(path, name);
    let max_attempts = f
        .get("max_attempts")
        .and_then(|n| read::uint(sink, n, &p("max_attempts"), 1, MAX_ATTEMPTS))
        .unwrap_or(defaults.max_attempts);
    let kind = f
        .get("backoff")
        .and_then(|n| {
            read::choice(
                sink,
                n,
                &p("backoff"),
                &[
                    ("fixed", BackoffKind::Fixed),
                    ("exponential", BackoffKind::Exponential),
                ],
            )
        })
        .unwrap_or(defaults.kind);
    let delay = f
        .get("delay")
        .and_then(|n| read::duration(sink, n, &p("delay"), true, MAX_RETRY_DELAY))
        .unwrap_or(defaults.delay);
    let max_delay = match f.get("max_delay") {
        Some(n) => {
            let max = read::duration(sink, n, &p("max_delay"), true, MAX_RETRY_DELAY)?;
            if max < delay {
                sink.err(
                    n.pos,
                    &p("max_delay"),
                    format!(
                        "`max_delay` ({}) is shorter than `delay` ({})",
                        read::short(max),
                        read::short(delay)
                    ),
                );
            }
            max
        }
        None => match kind {
            BackoffKind::Fixed => delay,
            BackoffKind::Exponential => defaults.max_delay.max(delay),
        },
    };
    let jitter = f
        .get("jitter")
        .and_then(|n| read::boolean(sink, n, &p("jitter")))
        .unwrap_or(defaults.jitter);
    (sink.count() == before).then_some(Backoff {
        max_attempts,
        kind,
        delay,
        max_delay,
        jitter,
    })
}

fn approval_of(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    inherited: Option<&Template>,
    depth: usize,
    sites: &mut Vec<Site>,
) -> Option<Approval> {
    let f = mapping(sink, node, path, APPROVAL_FIELDS)?;
    let p = |name: &str| field(path, name);
    let approvers = f
        .require(sink, path, "approvers")
        .and_then(|n| approvers(sink, n, &p("approvers")));
    let message = match (f.get("message"), inherited) {
        (Some(n), _) => template(sink, n, &p("message"), Place::Message, sites),
        (None, Some(t)) => Some(t.clone()),
        (None, None) => {
            sink.err(
                node.pos,
                path,
                "missing `message`: what are the approvers asked?",
            );
            None
        }
    };
    let deadline = f
        .get("deadline")
        .and_then(|n| read::duration(sink, n, &p("deadline"), false, MAX_DURATION));
    let action = f.get("on_deadline").and_then(|n| {
        read::choice(
            sink,
            n,
            &p("on_deadline"),
            &[("reject", 0u8), ("approve", 1), ("escalate", 2)],
        )
    });
    if let (Some(k), None) = (f.key("on_deadline"), f.get("deadline")) {
        sink.err(k.pos, &p("on_deadline"), "`on_deadline` needs a `deadline`");
    }
    let escalate_to = f.get("escalate_to");
    let on_deadline = match (action, escalate_to) {
        (Some(2), Some(n)) => {
            if depth + 1 >= MAX_ESCALATIONS {
                sink.err(
                    n.pos,
                    &p("escalate_to"),
                    format!("at most {MAX_ESCALATIONS} escalations in a chain"),
                );
                None
            } else {
                approval_of(
                    sink,
                    n,
                    &p("escalate_to"),
                    message.as_ref(),
                    depth + 1,
                    sites,
                )
                .map(|a| DeadlineAction::Escalate(Box::new(a)))
            }
        }
        (Some(2), None) => {
            if let Some(n) = f.get("on_deadline") {
                sink.err(
                    n.pos,
                    &p("on_deadline"),
                    "`escalate` needs `escalate_to`: who is asked next",
                );
            }
            None
        }
        (_, Some(_)) => {
            if let Some(k) = f.key("escalate_to") {
                sink.err(
                    k.pos,
                    &p("escalate_to"),
                    "`escalate_to` applies only with `on_deadline: escalate`",
                );
            }
            None
        }
        (Some(1), None) => Some(DeadlineAction::Approve),
        _ => Some(DeadlineAction::Reject),
    };
    Some(Approval {
        approvers: approvers?,
        message: message?,
        deadline,
        on_deadline: on_deadline?,
    })
}

fn approvers(sink: &mut Sink, node: &Node, path: &str) -> Option<Approvers> {
    let f = mapping(sink, node, path, APPROVERS_FIELDS)?;
    let mut out = Approvers::default();
    if let Some(n) = f.get("roles") {
        let p = field(path, "roles");
        out.roles = read::strict_string_list(sink, n, &p);
        if let Kind::Seq(items) = &n.kind {
            for (role, item) in out.roles.iter().zip(items) {
                if !ROLES.contains(&role.as_str()) {
                    sink.err(
                        item.pos,
                        &p,
                        format!(
                            "`{}` is not a role; roles are {}{}",
                            clip(role),
                            ROLES.join(", "),
                            did_you_mean(role, ROLES.iter().copied())
                        ),
                    );
                }
            }
        }
    }
    if let Some(n) = f.get("users") {
        out.users = read::strict_string_list(sink, n, &field(path, "users"));
    }
    if out.roles.is_empty() && out.users.is_empty() {
        sink.err(
            node.pos,
            path,
            "no one could approve: give at least one role or user",
        );
        return None;
    }
    Some(out)
}

fn outputs(sink: &mut Sink, node: &Node, draft: &mut Draft<'_>) {
    let Kind::Map(entries) = &node.kind else {
        sink.err(
            node.pos,
            "outputs",
            format!(
                "expected a mapping of output names, found {}",
                node.describe()
            ),
        );
        return;
    };
    if entries.len() > MAX_INPUTS {
        sink.err(
            node.pos,
            "outputs",
            format!("more than {MAX_INPUTS} outputs"),
        );
        return;
    }
    for (key, value) in entries {
        let path = field("outputs", &key.text);
        if !valid_name(&key.text) {
            sink.err(
                key.pos,
                &path,
                format!("`{}` is not a valid output name: use letters, digits and `_`, starting with a letter or `_`, at most 64", clip(&key.text)),
            );
        }
        let before = sink.count();
        let v = json(sink, value, &path);
        templates(sink, value, &path, Place::Output, &mut draft.output_sites);
        if sink.count() > before {
            continue;
        }
        match ValueTemplate::parse(&v) {
            Ok(t) => {
                draft.outputs.insert(key.text.clone(), t);
            }
            Err((pointer, e)) => {
                let pos = value.at_pointer(&pointer).map_or(value.pos, |n| n.pos);
                sink.err(pos, &path, parse_message("template", &e));
            }
        }
    }
}

/// Ids, `needs`, `on_error`, cycles, and what every expression reads.
fn graph(sink: &mut Sink, draft: &mut Draft<'_>) {
    // Ids: format was checked per step; here, duplicates.
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in draft.steps.iter().enumerate() {
        let Some(id) = &s.id else { continue };
        if let Some(&first) = by_id.get(id.text.as_str()) {
            let at = draft.steps[first]
                .id
                .as_ref()
                .map_or(Pos::default(), |l| l.pos);
            sink.err(
                id.pos,
                &id.path,
                format!(
                    "duplicate step id `{}` (also at line {}, column {})",
                    id.text, at.line, at.col
                ),
            );
        } else {
            by_id.insert(&id.text, i);
        }
    }
    let ids: Vec<&str> = by_id.keys().copied().collect();

    // Predecessors: what each step waits for (its needs, and the steps whose error branch it is).
    let n = draft.steps.len();
    let mut preds: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for (i, s) in draft.steps.iter().enumerate() {
        let mut listed = BTreeSet::new();
        for need in &s.needs {
            if !listed.insert(need.text.as_str()) {
                sink.err(
                    need.pos,
                    &need.path,
                    format!("`{}` is listed twice", clip(&need.text)),
                );
                continue;
            }
            match by_id.get(need.text.as_str()) {
                Some(_) if Some(need.text.as_str()) == s.id() => {
                    sink.err(need.pos, &need.path, "a step cannot need itself");
                }
                Some(&j) => {
                    preds[i].insert(j);
                }
                None => sink.err(
                    need.pos,
                    &need.path,
                    format!(
                        "unknown step `{}`{}",
                        clip(&need.text),
                        did_you_mean(&need.text, ids.iter().copied())
                    ),
                ),
            }
        }
        if let (OnError::Branch(target), Some(node)) = (&s.on_error, s.on_error_node) {
            let path = field(&s.path, "on_error");
            match by_id.get(target.as_str()) {
                _ if Some(target.as_str()) == s.id() => {
                    sink.err(node.pos, &path, "a step cannot be its own error branch");
                }
                Some(&j) => {
                    preds[j].insert(i);
                }
                None => sink.err(
                    node.pos,
                    &path,
                    format!(
                        "unknown step `{}`: `on_error` is `fail`, `continue` or the id of a step to run instead{}",
                        clip(target),
                        did_you_mean(target, ids.iter().copied().chain(["fail", "continue"]))
                    ),
                ),
            }
        }
        if let (Some(StepKind::Playbook(child)), Some(id)) = (&s.kind, &draft.id)
            && child == id
            && let Some(node) = s.kind_node
        {
            sink.err(
                node.pos,
                &field(&s.path, "playbook"),
                "a playbook cannot start itself as a child",
            );
        }
    }
    cycles(sink, draft, &preds);

    // Ancestors: every step certainly finished before this one starts.
    let ancestors: Vec<BTreeSet<usize>> = (0..n)
        .map(|i| {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<usize> = preds[i].iter().copied().collect();
            while let Some(j) = todo.pop() {
                if seen.insert(j) {
                    todo.extend(preds[j].iter().copied());
                }
            }
            seen
        })
        .collect();

    for (i, s) in draft.steps.iter().enumerate() {
        let ctx = Context {
            ids: &ids,
            by_id: &by_id,
            me: s.id(),
            ancestors: Some(&ancestors[i]),
            for_each: s.has_for_each,
        };
        for site in &s.sites {
            check_site(sink, site, &ctx);
        }
    }
    let ctx = Context {
        ids: &ids,
        by_id: &by_id,
        me: None,
        ancestors: None,
        for_each: false,
    };
    for site in &draft.output_sites {
        check_site(sink, site, &ctx);
    }
}

/// Reports each cycle once, in run order, starting from its first step in the file.
fn cycles(sink: &mut Sink, draft: &Draft<'_>, preds: &[BTreeSet<usize>]) {
    let n = preds.len();
    // Successor lists, from the predecessor sets.
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ps) in preds.iter().enumerate() {
        for &p in ps {
            succs[p].push(i);
        }
    }
    let mut state = vec![0u8; n]; // 0 new, 1 on the path, 2 done
    let mut reported: BTreeSet<Vec<usize>> = BTreeSet::new();
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        // Iterative DFS: (node, next successor to visit).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if let Some(&w) = succs[v].get(*next) {
                *next += 1;
                match state[w] {
                    0 => {
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(x, _)| x == w).unwrap_or(0);
                        let mut members: Vec<usize> =
                            stack[from..].iter().map(|&(x, _)| x).collect();
                        let first = members
                            .iter()
                            .enumerate()
                            .min_by_key(|&(_, &m)| m)
                            .map_or(0, |(k, _)| k);
                        members.rotate_left(first);
                        let mut key = members.clone();
                        key.sort_unstable();
                        if reported.insert(key) {
                            report_cycle(sink, draft, &members);
                        }
                    }
                    _ => {}
                }
            } else {
                state[v] = 2;
                stack.pop();
            }
        }
    }
}

fn report_cycle(sink: &mut Sink, draft: &Draft<'_>, members: &[usize]) {
    let name = |i: usize| draft.steps[i].id().unwrap_or("?").to_string();
    let mut chain: Vec<String> = members.iter().map(|&i| name(i)).collect();
    chain.push(name(members[0]));
    let first = &draft.steps[members[0]];
    // Point at what closes the loop: the first step's `needs` entry naming the last one.
    let last = name(members[members.len() - 1]);
    let (pos, path) = first
        .needs
        .iter()
        .find(|l| l.text == last)
        .map_or((first.pos, first.path.clone()), |l| (l.pos, l.path.clone()));
    sink.err(
        pos,
        &path,
        format!(
            "these steps wait for each other, so none can start: {} (each waits for the one before it)",
            chain.join(" -> ")
        ),
    );
}

struct Context<'a> {
    ids: &'a [&'a str],
    by_id: &'a BTreeMap<&'a str, usize>,
    me: Option<&'a str>,
    /// `None` for playbook outputs, which run after every step.
    ancestors: Option<&'a BTreeSet<usize>>,
    for_each: bool,
}

fn check_site(sink: &mut Sink, site: &Site, ctx: &Context<'_>) {
    let refs = &site.refs;
    for name in &refs.unknown {
        sink.err(
            site.pos,
            &site.path,
            format!(
                "unknown name `{}` in expression{}; expressions read {}",
                clip(name),
                did_you_mean(name, CONTEXTS.iter().copied()),
                CONTEXTS.join(", ")
            ),
        );
    }
    let per_item =
        site.place == Place::With { action: true } || site.place == Place::With { action: false };
    for name in ["item", "index"] {
        if refs.contexts.contains(name) && !(per_item && ctx.for_each) {
            sink.err(
                site.pos,
                &site.path,
                format!("`{name}` is only defined in the `with` of a step that has `for_each`"),
            );
        }
    }
    if !refs.secrets.is_empty() && site.place != (Place::With { action: true }) {
        sink.err(
            site.pos,
            &site.path,
            "secrets can only be passed to an action in `with` (the host puts the value in at call time, so it never enters run state or logs)",
        );
    }
    if refs.status_functions && site.place != Place::If {
        sink.err(
            site.pos,
            &site.path,
            "status functions (`always()`, `success()`, `failure()`, `cancelled()`) only mean something in `if`",
        );
    }
    for step in &refs.steps {
        match ctx.by_id.get(step.as_str()) {
            None => sink.err(
                site.pos,
                &site.path,
                format!(
                    "unknown step `{}`{}",
                    clip(step),
                    did_you_mean(step, ctx.ids.iter().copied())
                ),
            ),
            Some(_) if ctx.me == Some(step.as_str()) => sink.err(
                site.pos,
                &site.path,
                format!("a step cannot read its own result (`steps.{step}`)"),
            ),
            Some(j) => {
                if let Some(ancestors) = ctx.ancestors
                    && !ancestors.contains(j)
                {
                    sink.err(
                            site.pos,
                            &site.path,
                            format!(
                                "reads `steps.{step}`, but `{step}` is not among this step's needs (directly or through other steps), so it may not have finished: add `needs: {step}`"
                            ),
                        );
                }
            }
        }
    }
}

/// Builds the playbook when nothing was wrong.
pub(crate) fn assemble(draft: Draft<'_>) -> Option<Playbook> {
    let mut steps = Vec::with_capacity(draft.steps.len());
    for s in draft.steps {
        steps.push(Step {
            id: s.id?.text,
            name: s.name,
            kind: s.kind?,
            with: s.with?,
            needs: s.needs.into_iter().map(|l| l.text).collect(),
            if_: s.if_,
            for_each: s.for_each,
            concurrency: s.concurrency,
            retry: s.retry,
            timeout: s.timeout,
            on_error: s.on_error,
            approval: s.approval,
            span: Span {
                line: s.pos.line,
                col: s.pos.col,
            },
        });
    }
    Some(Playbook {
        id: draft.id?,
        name: draft.name,
        description: draft.description,
        inputs: draft.inputs,
        triggers: draft.triggers,
        concurrency: draft.concurrency,
        steps,
        outputs: draft.outputs,
    })
}
