//! The playbook file as written: serde types whose doc comments become the JSON Schema's
//! descriptions, and which tools that write playbooks (the designer) can serialize.
//!
//! [`crate::parse`] does not deserialize these: it reads the file with its own walker so it
//! can report every problem with a position, not only the first. Tests keep the two in step.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{BackoffKind, InputType, WebhookSignature};

/// An Allama playbook: a DAG of steps, each an action of an installed package, a child
/// playbook or an approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Allama playbook")]
pub struct RawPlaybook {
    /// Unique id in the workspace: lowercase letters, digits, `_` and `-`, at most 64.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub id: String,
    /// A human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the playbook does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Inputs a run is started with, read as `inputs.<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,63}$" }))]
    pub inputs: BTreeMap<String, RawInput>,
    /// How runs start (served by the server).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<RawTrigger>,
    /// At most this many steps of this playbook's runs execute at once, all runs together.
    #[schemars(range(min = 1, max = 10000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The steps, each run when all of its `needs` have finished.
    #[schemars(length(min = 1, max = 500))]
    pub steps: Vec<RawStep>,
    /// Values the run returns when it finishes: `${{ }}` templates over `steps`, `inputs`
    /// and `trigger`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,63}$" }))]
    pub outputs: BTreeMap<String, Value>,
}

/// A declared input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// The JSON type the value must have (default `string`).
    #[serde(rename = "type")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<InputType>,
    /// Shown to people starting a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A run cannot start without it (default false; not allowed with `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Used when the run does not give the input; must have the input's type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// One way to start a run: a mapping with exactly one of these keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawTrigger {
    /// An HTTP request to the playbook's webhook URL; its JSON body is `trigger`.
    Webhook(RawWebhook),
    /// On a cron schedule.
    Schedule(RawSchedule),
    /// By a person, from the API, CLI or designer.
    Manual(RawManual),
}

/// Webhook trigger settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// How requests are authenticated (default `standard`: Allama's HMAC-SHA256 header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<WebhookSignature>,
}

/// Schedule trigger settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// A cron expression: 5 fields (minute hour day month weekday), or 6 with seconds first.
    #[schemars(extend("examples" = ["*/15 * * * *"]))]
    pub cron: String,
    /// An IANA time zone such as `Europe/Paris` (default UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// Manual trigger (no settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawManual {}

/// A step. It has exactly one of `uses` or `playbook`, or neither but an `approval` (a pure
/// approval gate whose output is the decision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Unique in the playbook: a lowercase letter, then lowercase letters, digits and `_`
    /// (expressions read the step as `steps.<id>`).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,63}$"))]
    pub id: String,
    /// A human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The action to run: `package/action@version`, where the version is a requirement with
    /// cargo's semantics (`1.2` means `^1.2`, `=1.2.3` exactly that).
    #[schemars(extend("examples" = ["virustotal/ip-report@1"]))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// Run another playbook (by id) as a child run; `with` gives its inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    /// The action's input (or the child playbook's inputs); strings may hold `${{ }}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<serde_json::Map<String, Value>>,
    /// Steps that must finish before this one: an id or a list of ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<RawNeeds>,
    /// Run only when this expression is true (`${{ ... }}` or bare); evaluated once, before
    /// `for_each`. Status functions (`always()`, `success()`, `failure()`, `cancelled()`) decide
    /// whether a failed or skipped dependency still lets the step run.
    #[serde(rename = "if")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_: Option<RawCondition>,
    /// Run once per element of this list; `with` reads the element as `item`, its position as
    /// `index`. Results are gathered in the list's order.
    #[schemars(extend("examples" = ["${{ steps.vt.output.related_ips }}"]))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// With `for_each`: at most this many elements run at once (default 8).
    #[schemars(range(min = 1, max = 10000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Retries by error class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RawRetry>,
    /// Limit on one attempt, such as `30s`, `5m` (units ms, s, m, h, d).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// What happens when the step fails for good: `fail` (default), `continue`, or the id of
    /// a step to run instead (the error branch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    /// Wait for a person's decision before the step runs (or, alone, as the step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<RawApproval>,
}

/// One step id or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawNeeds {
    /// One step id.
    One(String),
    /// Several step ids.
    Many(Vec<String>),
}

/// An expression, or a constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawCondition {
    /// An expression such as `${{ steps.vt.output.malicious > 3 }}`.
    Expression(String),
    /// A constant.
    Constant(bool),
}

/// Retries, by error class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// For the action's own errors marked `retryable` (default: no retry). When given, unset
    /// fields default to 3 attempts, exponential, 1s, at most 60s, with jitter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<RawBackoff>,
    /// For the sandbox stopping the step: trap, limit hit, crash (default: 2 attempts, fixed
    /// 100ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<RawBackoff>,
}

/// Attempts and waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    /// Attempts in all, the first included (1 = no retry).
    #[schemars(range(min = 1, max = 100))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// `fixed` or `exponential` (the wait doubles each time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffKind>,
    /// The wait before the first retry, such as `1s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// The longest wait (default 60s for exponential, `delay` for fixed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
    /// Randomise each wait so retries from many runs do not arrive together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

/// An approval request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    /// Who may decide: anyone with one of the roles, or one of the users.
    pub approvers: RawApprovers,
    /// What they are asked (a template). Required on the step's approval; an escalation
    /// keeps it unless it gives its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How long to wait, such as `4h`; forever when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// What happens at the deadline: `reject` (default), `approve`, or `escalate` (to
    /// `escalate_to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_deadline: Option<RawDeadlineAction>,
    /// The next request when `on_deadline` is `escalate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalate_to: Option<Box<RawApproval>>,
}

/// Who may decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApprovers {
    /// Workspace roles: `admin`, `editor`, `responder`, `viewer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// User names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
}

/// What happens when an approval's deadline passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawDeadlineAction {
    /// The request is rejected.
    Reject,
    /// The request is approved.
    Approve,
    /// A new request goes to `escalate_to`.
    Escalate,
}

/// The JSON Schema of the playbook format (draft 2020-12), for editors and the designer.
pub fn json_schema() -> Value {
    schemars::schema_for!(RawPlaybook).to_value()
}

/// The property names of a definition in the schema (for the walker's known-field lists).
#[cfg(test)]
pub(crate) fn properties(schema: &Value, definition: Option<&str>) -> Vec<String> {
    let node = match definition {
        None => schema,
        Some(name) => &schema["$defs"][name],
    };
    let mut names: Vec<String> = node["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}
