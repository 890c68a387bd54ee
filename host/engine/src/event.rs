//! What a run's history is made of: the events, and the failure and decision
//! records they carry. Events are facts already decided; the state machine
//! folds them into a run's state (`machine`), the store keeps them in order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Milliseconds since the Unix epoch. Every event carries the time it was
/// decided so that replaying a history computes the same timers.
pub type Millis = u64;

/// One entry of a run's append-only history.
///
/// `P` is how payloads (trigger, inputs, step input and output) are held: as
/// shared JSON values in memory, as [`crate::codec::Payload`] (inline or a
/// blob reference) on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[serde(bound(serialize = "P: Serialize", deserialize = "P: Deserialize<'de>"))]
pub enum Event<P = Arc<Value>> {
    /// The run was accepted. Always the first event.
    Started {
        /// The playbook's id.
        playbook: String,
        /// The playbook version's content digest, so a resumed run uses the
        /// same definition it started with.
        digest: String,
        /// The trigger event.
        trigger: P,
        /// The run's inputs, defaults applied.
        inputs: P,
        /// Set when this run is a child of another run's step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentLink>,
        /// When.
        at: Millis,
    },
    /// An attempt of a task was handed to the executor.
    TaskStarted {
        /// The step's id.
        step: String,
        /// The `for_each` item, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        /// 1 for the first attempt.
        attempt: u32,
        /// The rendered input (secret values never appear: only handles).
        input: P,
        /// When.
        at: Millis,
    },
    /// An attempt returned an output.
    TaskSucceeded {
        /// The step's id.
        step: String,
        /// The `for_each` item, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        /// Which attempt.
        attempt: u32,
        /// Its output.
        output: P,
        /// How long the attempt ran, in microseconds.
        #[serde(default)]
        duration_us: u64,
        /// When.
        at: Millis,
    },
    /// An attempt failed.
    TaskFailed {
        /// The step's id.
        step: String,
        /// The `for_each` item, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        /// Which attempt.
        attempt: u32,
        /// Why.
        failure: Failure,
        /// How long the attempt ran, in microseconds.
        #[serde(default)]
        duration_us: u64,
        /// When.
        at: Millis,
    },
    /// An attempt that had started and not finished when its process
    /// stopped: written when a run resumes after a crash (the process died
    /// under it), or by a graceful shutdown for each attempt it cut short.
    TaskInterrupted {
        /// The step's id.
        step: String,
        /// The `for_each` item, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        /// The attempt that was running.
        attempt: u32,
        /// Written by a graceful shutdown: the attempt runs again, and it
        /// does not count toward quarantine (only crashes do).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shutdown: bool,
        /// When.
        at: Millis,
    },
    /// A stored timer came due.
    TimerFired {
        /// Which timer.
        timer: TimerKey,
        /// When.
        at: Millis,
    },
    /// A person decided an approval.
    ApprovalDecided {
        /// The step's id.
        step: String,
        /// Approve or reject.
        decision: Decision,
        /// Who decided.
        by: String,
        /// Their comment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        /// When.
        at: Millis,
    },
    /// Someone cancelled the run.
    CancelRequested {
        /// Who.
        by: String,
        /// When.
        at: Millis,
    },
}

impl<P> Event<P> {
    /// The same event with its payloads converted by `f`.
    pub fn try_map<Q, E>(self, mut f: impl FnMut(P) -> Result<Q, E>) -> Result<Event<Q>, E> {
        Ok(match self {
            Event::Started {
                playbook,
                digest,
                trigger,
                inputs,
                parent,
                at,
            } => Event::Started {
                playbook,
                digest,
                trigger: f(trigger)?,
                inputs: f(inputs)?,
                parent,
                at,
            },
            Event::TaskStarted {
                step,
                item,
                attempt,
                input,
                at,
            } => Event::TaskStarted {
                step,
                item,
                attempt,
                input: f(input)?,
                at,
            },
            Event::TaskSucceeded {
                step,
                item,
                attempt,
                output,
                duration_us,
                at,
            } => Event::TaskSucceeded {
                step,
                item,
                attempt,
                output: f(output)?,
                duration_us,
                at,
            },
            Event::TaskFailed {
                step,
                item,
                attempt,
                failure,
                duration_us,
                at,
            } => Event::TaskFailed {
                step,
                item,
                attempt,
                failure,
                duration_us,
                at,
            },
            Event::TaskInterrupted {
                step,
                item,
                attempt,
                shutdown,
                at,
            } => Event::TaskInterrupted {
                step,
                item,
                attempt,
                shutdown,
                at,
            },
            Event::TimerFired { timer, at } => Event::TimerFired { timer, at },
            Event::ApprovalDecided {
                step,
                decision,
                by,
                comment,
                at,
            } => Event::ApprovalDecided {
                step,
                decision,
                by,
                comment,
                at,
            },
            Event::CancelRequested { by, at } => Event::CancelRequested { by, at },
        })
    }

    /// When the event was decided.
    pub fn at(&self) -> Millis {
        match self {
            Event::Started { at, .. }
            | Event::TaskStarted { at, .. }
            | Event::TaskSucceeded { at, .. }
            | Event::TaskFailed { at, .. }
            | Event::TaskInterrupted { at, .. }
            | Event::TimerFired { at, .. }
            | Event::ApprovalDecided { at, .. }
            | Event::CancelRequested { at, .. } => *at,
        }
    }

    /// The event's kind as written in the history (`started`, `task_failed`…).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::TaskStarted { .. } => "task_started",
            Event::TaskSucceeded { .. } => "task_succeeded",
            Event::TaskFailed { .. } => "task_failed",
            Event::TaskInterrupted { .. } => "task_interrupted",
            Event::TimerFired { .. } => "timer_fired",
            Event::ApprovalDecided { .. } => "approval_decided",
            Event::CancelRequested { .. } => "cancel_requested",
        }
    }
}

/// The step of another run that started this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent run.
    pub run: String,
    /// The parent's step.
    pub step: String,
    /// The parent's `for_each` item, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
}

/// A timer is stored data: it is implied by the history (a failed attempt
/// with a retry left, an approval with a deadline), re-armed on resume, and
/// its firing is an event.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimerKey {
    /// The step.
    pub step: String,
    /// The `for_each` item, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    /// What the timer is for.
    pub purpose: TimerPurpose,
}

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerPurpose {
    /// The backoff before the next attempt.
    Retry,
    /// An approval's deadline at this escalation level (0 = first request).
    Deadline {
        /// Escalation level.
        level: u32,
    },
}

/// An approval decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead.
    Approve,
    /// Do not.
    Reject,
}

/// Which retry policy applies to a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The action returned a typed error (`retryable` decides).
    Action,
    /// The sandbox or the host stopped the attempt: trap, limit, timeout, crash.
    Infrastructure,
    /// An expression could not be evaluated or the input could not be rendered.
    Expression,
    /// An approver rejected the step, or its deadline rejected it.
    Rejected,
    /// The step's attempts crashed the process too many times.
    Quarantined,
    /// The run was cancelled while the step ran.
    Cancelled,
}

/// Why an attempt, a step or a run failed. This is what `steps.<id>.error`
/// shows to expressions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Which policy applies.
    pub class: FailureClass,
    /// A short machine-readable code (`rate_limited`, `timeout`, `trap`…).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Whether the action says a retry may succeed (action errors only).
    #[serde(default)]
    pub retryable: bool,
    /// The vendor's `Retry-After`, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Which `for_each` item failed, when a fanned-out step fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
}

impl Failure {
    /// A failure of the given class.
    pub fn new(class: FailureClass, code: &str, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.to_string(),
            message: message.into(),
            retryable: false,
            retry_after_ms: None,
            item: None,
        }
    }

    /// A typed action error.
    pub fn action(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            retryable,
            ..Self::new(FailureClass::Action, code, message)
        }
    }

    /// The sandbox or host stopped the attempt.
    pub fn infrastructure(code: &str, message: impl Into<String>) -> Self {
        Self::new(FailureClass::Infrastructure, code, message)
    }

    /// The attempt ran past its step's `timeout` (`ms`) and was stopped.
    pub fn step_timeout(ms: u64) -> Self {
        Self::infrastructure(
            "timeout",
            format!("the attempt ran past the step's timeout of {ms} ms"),
        )
    }

    /// As a JSON value, for `steps.<id>.error`.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)?;
        if let Some(i) = self.item {
            write!(f, " [item {i}]")?;
        }
        Ok(())
    }
}
