//! The validated playbook: what the engine, the CLI and the server work with.

use std::fmt;
use std::time::Duration;

use allama_expr::{Expression, Template, ValueTemplate};
use indexmap::IndexMap;
use serde_json::Value;

/// A validated playbook. Only [`crate::parse`] and [`crate::validate`] build one, so every
/// value here has passed the checks described in `docs/playbooks.md`.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The playbook's id (`[a-z0-9][a-z0-9_-]{0,63}`), unique in a workspace.
    pub id: String,
    /// A human-readable name.
    pub name: Option<String>,
    /// What the playbook does.
    pub description: Option<String>,
    /// Declared inputs, in file order.
    pub inputs: IndexMap<String, InputSpec>,
    /// How runs start; served by the server.
    pub triggers: Vec<Trigger>,
    /// At most this many steps of this playbook's runs execute at once (all runs together).
    pub concurrency: Option<u32>,
    /// The steps, in file order.
    pub steps: Vec<Step>,
    /// The run's outputs, evaluated when the run finishes, in file order.
    pub outputs: IndexMap<String, ValueTemplate>,
}

impl Playbook {
    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// One declared input of a playbook.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// The JSON type the value must have.
    pub kind: InputType,
    /// Shown to people starting a run.
    pub description: Option<String>,
    /// A run cannot start without it (never true when there is a default).
    pub required: bool,
    /// Used when the run does not give the input; of type `kind`.
    pub default: Option<Value>,
}

/// The type of an input.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// A JSON string.
    String,
    /// A whole number.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// Any JSON value.
    Any,
}

impl InputType {
    /// Whether `value` has this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            InputType::String => value.is_string(),
            InputType::Integer => value.is_i64() || value.is_u64(),
            InputType::Number => value.is_number(),
            InputType::Boolean => value.is_boolean(),
            InputType::Object => value.is_object(),
            InputType::Array => value.is_array(),
            InputType::Any => true,
        }
    }

    /// The name as written in a playbook.
    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::Object => "object",
            InputType::Array => "array",
            InputType::Any => "any",
        }
    }
}

/// How a run of the playbook can start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// An HTTP request to the playbook's webhook URL.
    Webhook {
        /// How the request is authenticated.
        signature: WebhookSignature,
    },
    /// On a cron schedule.
    Schedule {
        /// A cron expression (5 fields, or 6 with seconds first).
        cron: String,
        /// An IANA time zone name (`Europe/Paris`); UTC when absent.
        timezone: Option<String>,
    },
    /// By a person, from the API, CLI or designer.
    Manual,
}

/// How a webhook request is authenticated.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WebhookSignature {
    /// Allama's own HMAC-SHA256 header.
    #[default]
    Standard,
    /// GitHub's `X-Hub-Signature-256`.
    Github,
    /// Slack's `X-Slack-Signature` with its timestamp.
    Slack,
    /// No signature: anyone who knows the URL can start a run.
    None,
}

/// One step of a playbook.
#[derive(Debug, Clone)]
pub struct Step {
    /// The step's id (`[a-z][a-z0-9_]{0,63}`), unique in the playbook; expressions read its
    /// result as `steps.<id>`.
    pub id: String,
    /// A human-readable name.
    pub name: Option<String>,
    /// What the step does.
    pub kind: StepKind,
    /// The action's input, or the child playbook's inputs (an empty object when absent).
    pub with: ValueTemplate,
    /// Steps that must finish first, as written (no duplicates).
    pub needs: Vec<String>,
    /// Run only when this is true; evaluated once, before `for_each`.
    pub if_: Option<Expression>,
    /// Run once per element of this list (`item` and `index` in `with`).
    pub for_each: Option<Expression>,
    /// With `for_each`: at most this many elements run at once (the engine defaults to 8).
    pub concurrency: Option<u32>,
    /// Retries, by error class.
    pub retry: RetryPolicy,
    /// Limit on one attempt of the step.
    pub timeout: Option<Duration>,
    /// What happens when the step fails for good.
    pub on_error: OnError,
    /// Wait for a person's decision before running (or, for an approval step, as the step).
    pub approval: Option<Approval>,
    /// Where the step's mapping starts in the file.
    pub span: Span,
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// An action of an installed package.
    Action(ActionRef),
    /// A child run of another playbook, by id; `with` gives its inputs.
    Playbook(String),
    /// A pure approval gate: the step's output is the decision.
    Approval,
}

/// `package/action@requirement`, as in `uses:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRef {
    /// The package name.
    pub package: String,
    /// The action's name within the package.
    pub action: String,
    /// Which package versions are acceptable (cargo semantics: `1.2` means `^1.2`).
    pub version: semver::VersionReq,
    /// The reference as written.
    pub text: String,
}

impl fmt::Display for ActionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Retry policy of a step, by error class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// For the action's own errors marked `retryable` (default: one attempt, no retry).
    pub action: Backoff,
    /// For the sandbox stopping the step: trap, limit hit, crash (default: 2 attempts, 100 ms).
    pub infrastructure: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            action: Backoff::none(),
            infrastructure: Backoff::infrastructure_default(),
        }
    }
}

/// How many attempts, and how long to wait between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// How the wait grows.
    pub kind: BackoffKind,
    /// The wait before the second attempt.
    pub delay: Duration,
    /// The longest wait (exponential backoff stops growing there).
    pub max_delay: Duration,
    /// Randomise each wait (between half and all of it) so retries do not arrive together.
    pub jitter: bool,
}

impl Backoff {
    /// One attempt, no retry.
    pub fn none() -> Backoff {
        Backoff {
            max_attempts: 1,
            kind: BackoffKind::Fixed,
            delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            jitter: false,
        }
    }

    /// The infrastructure default: 2 attempts, fixed 100 ms.
    pub fn infrastructure_default() -> Backoff {
        Backoff {
            max_attempts: 2,
            kind: BackoffKind::Fixed,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            jitter: false,
        }
    }

    /// The wait before attempt `attempt` (2 for the first retry), without jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        match self.kind {
            BackoffKind::Fixed => self.delay,
            BackoffKind::Exponential => {
                let doublings = attempt.saturating_sub(2).min(32);
                self.delay
                    .saturating_mul(1u32 << doublings.min(31))
                    .min(self.max_delay)
            }
        }
    }
}

/// How the wait between attempts grows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// The same wait every time.
    Fixed,
    /// The wait doubles each time, up to `max_delay`.
    Exponential,
}

/// What happens when a step fails for good.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OnError {
    /// The run fails (steps that need this one are skipped).
    #[default]
    Fail,
    /// The run goes on as if the step had finished well; dependents see its status and error.
    Continue,
    /// The named step (the error branch) runs, reading `steps.<this>.error`; it runs only on
    /// this failure, which then counts as handled.
    Branch(String),
}

/// A human decision the step waits for.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Who may decide.
    pub approvers: Approvers,
    /// What they are asked.
    pub message: Template,
    /// How long to wait; forever when absent.
    pub deadline: Option<Duration>,
    /// What happens when the deadline passes.
    pub on_deadline: DeadlineAction,
}

/// People who may decide an approval: anyone holding one of the roles, or any listed user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Approvers {
    /// Workspace roles (`admin`, `editor`, `responder`, `viewer`).
    pub roles: Vec<String>,
    /// User names.
    pub users: Vec<String>,
}

/// What happens when an approval's deadline passes.
#[derive(Debug, Clone, Default)]
pub enum DeadlineAction {
    /// The request is rejected.
    #[default]
    Reject,
    /// The request is approved.
    Approve,
    /// A new request goes to other approvers (the message is kept unless given anew).
    Escalate(Box<Approval>),
}

/// A position in the playbook file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}
