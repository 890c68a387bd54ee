//! The core: a run's state and the pure function that applies one event to
//! it and returns the actions to take. No I/O, no clocks, no randomness:
//! replaying a history yields the same state and the same decisions, which
//! is what makes recovery after a crash exact. (Restate's state machine is
//! the model: one small handler per event kind, effects returned as values.)
//!
//! - `mod.rs`: the state types and `apply`, which dispatches on the event.
//! - `schedule.rs`: deciding which steps run, skip or finish (the join rule).
//! - `retry.rs`: backoff arithmetic for retries.
//! - `approval.rs`: approval requests, decisions and deadlines.

mod approval;
mod retry;
mod schedule;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use allama_playbook::ActionRef;
use serde_json::Value;

use crate::event::{Decision, Event, Failure, FailureClass, Millis, ParentLink, TimerKey};
use crate::plan::Plan;

pub use approval::{ApprovalRequest, DecisionError};

/// How many times a task's attempts may die with the process before the step
/// is quarantined.
pub const MAX_CRASHES: u32 = 3;

/// Upper bound on `for_each` items, so one expression cannot fan out without
/// limit.
pub const MAX_ITEMS: usize = 10_000;

/// A run's overall status.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    /// Steps are running or waiting.
    Running,
    /// Every step finished and no unhandled failure occurred.
    Succeeded,
    /// A step failed without an error branch, or a step was quarantined.
    Failed(Failure),
    /// Someone cancelled it.
    Cancelled,
}

impl RunStatus {
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed(_) => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the run has finished.
    pub fn is_final(&self) -> bool {
        !matches!(self, RunStatus::Running)
    }
}

/// Where a step is.
#[derive(Clone, Debug, PartialEq)]
pub enum StepStatus {
    /// Waiting for its `needs`.
    Pending,
    /// Waiting for a person.
    AwaitingApproval,
    /// Its tasks are running or waiting to retry.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Not run; the reason says why.
    Skipped(String),
}

impl StepStatus {
    /// The status as expressions see it (`steps.<id>.status`).
    pub fn as_str(&self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::AwaitingApproval => "awaiting_approval",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped(_) => "skipped",
        }
    }

    fn is_done(&self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped(_)
        )
    }
}

/// One attempt chain: a step, or one `for_each` item of a step.
#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub(crate) state: TaskState,
    /// Attempts made so far (the next one is `attempts + 1`).
    pub(crate) attempts: u32,
    pub(crate) action_failures: u32,
    pub(crate) infra_failures: u32,
    pub(crate) crashes: u32,
}

#[derive(Clone, Debug)]
pub(crate) enum TaskState {
    /// Not dispatched yet (a `for_each` item beyond the concurrency bound).
    Idle,
    /// Handed to the executor; `logged` once its `TaskStarted` is in the history.
    Running {
        attempt: u32,
        logged: bool,
        since: Millis,
    },
    /// Waiting for its retry timer.
    Backoff {
        until: Millis,
    },
    Succeeded(Arc<Value>),
    Failed(Failure),
}

impl Task {
    fn new() -> Self {
        Self {
            state: TaskState::Idle,
            attempts: 0,
            action_failures: 0,
            infra_failures: 0,
            crashes: 0,
        }
    }

    fn is_done(&self) -> bool {
        matches!(self.state, TaskState::Succeeded(_) | TaskState::Failed(_))
    }
}

/// A step within a run.
#[derive(Clone, Debug)]
pub struct StepRun {
    pub(crate) status: StepStatus,
    pub(crate) tasks: Vec<Task>,
    /// The `for_each` items, once evaluated.
    pub(crate) items: Option<Vec<Arc<Value>>>,
    pub(crate) output: Option<Arc<Value>>,
    pub(crate) error: Option<Failure>,
    pub(crate) approval: Option<approval::ApprovalState>,
    pub(crate) started_at: Option<Millis>,
    pub(crate) finished_at: Option<Millis>,
}

impl StepRun {
    fn new() -> Self {
        Self {
            status: StepStatus::Pending,
            tasks: Vec::new(),
            items: None,
            output: None,
            error: None,
            approval: None,
            started_at: None,
            finished_at: None,
        }
    }

    /// Where the step is.
    pub fn status(&self) -> &StepStatus {
        &self.status
    }

    /// Its output, once succeeded.
    pub fn output(&self) -> Option<&Arc<Value>> {
        self.output.as_ref()
    }

    /// Its error, once failed.
    pub fn error(&self) -> Option<&Failure> {
        self.error.as_ref()
    }
}

/// What the state machine asks the driver to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run one attempt of a task.
    Invoke(Invocation),
    /// Fire `TimerFired { timer }` at `at`.
    StartTimer {
        /// Which timer.
        timer: TimerKey,
        /// When it is due.
        at: Millis,
    },
    /// Tell the approvers.
    RequestApproval(ApprovalRequest),
    /// Abandon the run's attempts in flight (cancellation, quarantine).
    AbortInvocations,
    /// The run is over.
    Finish {
        /// How it ended.
        status: RunStatus,
        /// The rendered `outputs`, if it succeeded.
        output: Option<Arc<Value>>,
    },
}

/// What to run for one attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    /// The run.
    pub run: String,
    /// The id of the playbook the run runs (a server's executor finds the
    /// workspace, and so the packages and grants, from it).
    pub playbook: String,
    /// The step's id.
    pub step: String,
    /// The `for_each` item, if any.
    pub item: Option<u32>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Same on every attempt of this task in this run.
    pub idempotency_key: String,
    /// An action or a child playbook.
    pub target: Target,
    /// The rendered input.
    pub input: Arc<Value>,
    /// Per-attempt time limit from the playbook.
    pub timeout_ms: Option<u64>,
}

/// What an invocation runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A package's action.
    Action(ActionRef),
    /// A child run of another playbook; its id is derived from the parent's.
    Playbook {
        /// The child playbook's id.
        id: String,
        /// The child run's id.
        run: String,
    },
}

/// A run's state: everything needed to decide what happens next.
#[derive(Clone, Debug)]
pub struct Run {
    id: String,
    plan: Arc<Plan>,
    pub(crate) status: RunStatus,
    pub(crate) trigger: Arc<Value>,
    pub(crate) inputs: Arc<Value>,
    pub(crate) steps: Vec<StepRun>,
    pub(crate) parent: Option<ParentLink>,
    pub(crate) output: Option<Arc<Value>>,
    pub(crate) cancelled: bool,
    pub(crate) started_at: Millis,
    pub(crate) updated_at: Millis,
    /// Events applied so far; the next event's sequence number.
    pub(crate) applied: u64,
}

/// An event that does not fit the run's state (a bug in the caller, or a
/// history that does not belong to this plan).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    /// The first event must be `started`, and only the first.
    #[error("run {run}: event {seq} is `{kind}`, but {expected}")]
    OutOfOrder {
        /// The run.
        run: String,
        /// Its position.
        seq: u64,
        /// The event kind.
        kind: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// The event names a step the plan does not have.
    #[error(
        "run {run}: event `{kind}` names step `{step}`, which playbook {playbook} does not have"
    )]
    UnknownStep {
        /// The run.
        run: String,
        /// The event kind.
        kind: &'static str,
        /// The step named.
        step: String,
        /// The playbook.
        playbook: String,
    },
}

impl Run {
    /// An empty run; its first applied event must be `Started`.
    pub fn new(id: impl Into<String>, plan: Arc<Plan>) -> Self {
        let steps = (0..plan.len()).map(|_| StepRun::new()).collect();
        Self {
            id: id.into(),
            plan,
            status: RunStatus::Running,
            trigger: Arc::new(Value::Null),
            inputs: Arc::new(Value::Null),
            steps,
            parent: None,
            output: None,
            cancelled: false,
            started_at: 0,
            updated_at: 0,
            applied: 0,
        }
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The plan it runs.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Its status.
    pub fn status(&self) -> &RunStatus {
        &self.status
    }

    /// The rendered outputs, once succeeded.
    pub fn output(&self) -> Option<&Arc<Value>> {
        self.output.as_ref()
    }

    /// The parent step, for a child run.
    pub fn parent(&self) -> Option<&ParentLink> {
        self.parent.as_ref()
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&StepRun> {
        self.plan.index_of(id).map(|i| &self.steps[i])
    }

    /// Steps in playbook order with their ids.
    pub fn steps(&self) -> impl Iterator<Item = (&str, &StepRun)> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| (self.plan.step(i).id.as_str(), s))
    }

    /// Attempts running or waiting to retry (child runs included).
    pub fn active_tasks(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.tasks)
            .filter(|t| {
                matches!(
                    t.state,
                    TaskState::Running { .. } | TaskState::Backoff { .. }
                )
            })
            .count()
    }

    /// How many events have been applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// When the run started and when it last changed.
    pub fn times(&self) -> (Millis, Millis) {
        (self.started_at, self.updated_at)
    }

    /// Applies one event and returns what to do about it.
    pub fn apply(&mut self, event: &Event) -> Result<Vec<Action>, ApplyError> {
        let seq = self.applied;
        let first = matches!(event, Event::Started { .. });
        if first != (seq == 0) {
            return Err(ApplyError::OutOfOrder {
                run: self.id.clone(),
                seq,
                kind: event.kind(),
                expected: if seq == 0 {
                    "a history must begin with `started`"
                } else {
                    "`started` may only come first"
                },
            });
        }
        self.applied += 1;
        self.updated_at = self.updated_at.max(event.at());
        if self.status.is_final() {
            // Late results for a finished run (an attempt abandoned by a
            // cancel) change nothing.
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        match event {
            Event::Started {
                trigger,
                inputs,
                parent,
                at,
                ..
            } => {
                self.trigger = trigger.clone();
                self.inputs = inputs.clone();
                self.parent = parent.clone();
                self.started_at = *at;
            }
            Event::TaskStarted {
                step,
                item,
                attempt,
                at,
                ..
            } => {
                let i = self.step_index(step, event)?;
                self.on_task_started(i, *item, *attempt, *at);
            }
            Event::TaskSucceeded {
                step,
                item,
                attempt,
                output,
                at,
                ..
            } => {
                let i = self.step_index(step, event)?;
                self.on_task_succeeded(i, *item, *attempt, output.clone(), *at);
            }
            Event::TaskFailed {
                step,
                item,
                attempt,
                failure,
                at,
                ..
            } => {
                let i = self.step_index(step, event)?;
                self.on_task_failed(i, *item, *attempt, failure, *at, &mut out);
            }
            Event::TaskInterrupted {
                step,
                item,
                attempt,
                shutdown,
                at,
            } => {
                let i = self.step_index(step, event)?;
                self.on_task_interrupted(i, *item, *attempt, *shutdown, *at, &mut out);
            }
            Event::TimerFired { timer, at } => {
                let i = self.step_index(&timer.step, event)?;
                self.on_timer(i, timer, *at, &mut out);
            }
            Event::ApprovalDecided {
                step,
                decision,
                by,
                comment,
                at,
            } => {
                let i = self.step_index(step, event)?;
                self.on_decision(i, *decision, by, comment.as_deref(), *at);
            }
            Event::CancelRequested { at, .. } => {
                self.cancelled = true;
                for s in &mut self.steps {
                    if !s.status.is_done() {
                        s.status = StepStatus::Skipped("the run was cancelled".into());
                        s.finished_at = Some(*at);
                    }
                }
                out.push(Action::AbortInvocations);
            }
        }
        self.advance(event.at(), &mut out);
        Ok(out)
    }

    fn step_index(&self, step: &str, event: &Event) -> Result<usize, ApplyError> {
        self.plan
            .index_of(step)
            .ok_or_else(|| ApplyError::UnknownStep {
                run: self.id.clone(),
                kind: event.kind(),
                step: step.to_string(),
                playbook: self.plan.id().to_string(),
            })
    }

    fn task_mut(&mut self, i: usize, item: Option<u32>) -> Option<&mut Task> {
        let idx = item.unwrap_or(0) as usize;
        self.steps[i].tasks.get_mut(idx)
    }

    fn on_task_started(&mut self, i: usize, item: Option<u32>, attempt: u32, at: Millis) {
        if let Some(task) = self.task_mut(i, item)
            && let TaskState::Running {
                attempt: a,
                logged,
                since,
            } = &mut task.state
            && *a == attempt
        {
            *logged = true;
            *since = at;
        }
    }

    /// Results are accepted only for the attempt that is running: a late
    /// answer from an abandoned attempt must not count twice.
    fn running_attempt(&self, i: usize, item: Option<u32>) -> Option<u32> {
        let idx = item.unwrap_or(0) as usize;
        match self.steps[i].tasks.get(idx).map(|t| &t.state) {
            Some(TaskState::Running { attempt, .. }) => Some(*attempt),
            _ => None,
        }
    }

    /// The attempt running for a task, by step id.
    pub(crate) fn running_attempt_of(&self, step: &str, item: Option<u32>) -> Option<u32> {
        self.plan
            .index_of(step)
            .and_then(|i| self.running_attempt(i, item))
    }

    fn on_task_succeeded(
        &mut self,
        i: usize,
        item: Option<u32>,
        attempt: u32,
        output: Arc<Value>,
        _at: Millis,
    ) {
        if self.running_attempt(i, item) != Some(attempt) {
            return;
        }
        if let Some(task) = self.task_mut(i, item) {
            task.state = TaskState::Succeeded(output);
        }
    }

    fn on_task_failed(
        &mut self,
        i: usize,
        item: Option<u32>,
        attempt: u32,
        failure: &Failure,
        at: Millis,
        out: &mut Vec<Action>,
    ) {
        if self.running_attempt(i, item) != Some(attempt) {
            return;
        }
        let policy = self.plan.step(i).retry.clone();
        let step_id = self.plan.step(i).id.clone();
        let run_id = self.id.clone();
        let Some(task) = self.task_mut(i, item) else {
            return;
        };
        let backoff = match failure.class {
            FailureClass::Action if failure.retryable => {
                task.action_failures += 1;
                (task.action_failures < policy.action.max_attempts).then_some(&policy.action)
            }
            FailureClass::Infrastructure => {
                task.infra_failures += 1;
                (task.infra_failures < policy.infrastructure.max_attempts)
                    .then_some(&policy.infrastructure)
            }
            _ => None,
        };
        match backoff {
            Some(b) => {
                let n = match failure.class {
                    FailureClass::Action => task.action_failures,
                    _ => task.infra_failures,
                };
                let delay = retry::delay_ms(b, n, failure.retry_after_ms, &run_id, &step_id, item);
                let until = at.saturating_add(delay);
                task.state = TaskState::Backoff { until };
                out.push(Action::StartTimer {
                    timer: TimerKey {
                        step: step_id,
                        item,
                        purpose: crate::event::TimerPurpose::Retry,
                    },
                    at: until,
                });
            }
            None => {
                let mut failure = failure.clone();
                failure.item = item;
                task.state = TaskState::Failed(failure);
            }
        }
    }

    fn on_task_interrupted(
        &mut self,
        i: usize,
        item: Option<u32>,
        attempt: u32,
        shutdown: bool,
        at: Millis,
        out: &mut Vec<Action>,
    ) {
        if self.running_attempt(i, item) != Some(attempt) {
            return;
        }
        let step_id = self.plan.step(i).id.clone();
        // A child run survives a crash on its own (it is resumed and its end
        // reaches this step); only attempts that ran in this process count,
        // and only when the process died under them: a graceful shutdown
        // (a deploy, a restart) says nothing about the step.
        let counts = !shutdown
            && !matches!(
                self.plan.step(i).kind,
                allama_playbook::StepKind::Playbook(_)
            );
        let Some(task) = self.task_mut(i, item) else {
            return;
        };
        if counts {
            task.crashes += 1;
        }
        if task.crashes >= MAX_CRASHES {
            let mut failure = Failure::new(
                FailureClass::Quarantined,
                "quarantined",
                format!(
                    "step `{step_id}` was quarantined: its attempts were cut short by {} process crashes; it will not be retried",
                    task.crashes
                ),
            );
            failure.item = item;
            task.state = TaskState::Failed(failure.clone());
            // A step that takes the process down fails the whole run, whatever
            // its on_error says: continuing would risk crashing again.
            self.steps[i].status = StepStatus::Failed;
            self.steps[i].error = Some(failure.clone());
            self.steps[i].finished_at = Some(at);
            self.fail_run(failure, at, out);
            return;
        }
        // Same attempt number, same idempotency key: the vendor sees the
        // same call again, which is what idempotency keys are for.
        task.state = TaskState::Idle;
        task.attempts = attempt - 1;
    }

    fn on_timer(&mut self, i: usize, timer: &TimerKey, at: Millis, out: &mut Vec<Action>) {
        match timer.purpose {
            crate::event::TimerPurpose::Retry => {
                if let Some(task) = self.task_mut(i, timer.item)
                    && matches!(task.state, TaskState::Backoff { .. })
                {
                    task.state = TaskState::Idle;
                }
            }
            crate::event::TimerPurpose::Deadline { level } => {
                self.on_deadline(i, level, at, out);
            }
        }
    }

    fn fail_run(&mut self, failure: Failure, at: Millis, out: &mut Vec<Action>) {
        for s in &mut self.steps {
            if !s.status.is_done() {
                s.status = StepStatus::Skipped("the run failed".into());
                s.finished_at = Some(at);
            }
        }
        self.status = RunStatus::Failed(failure);
        out.push(Action::AbortInvocations);
        out.push(Action::Finish {
            status: self.status.clone(),
            output: None,
        });
    }

    /// Checks a decision before it is written: the step must be waiting for
    /// approval and the person must be among its approvers.
    pub fn check_decision(
        &self,
        step: &str,
        user: &str,
        roles: &[String],
    ) -> Result<(), DecisionError> {
        approval::check(self, step, user, roles)
    }

    /// Pending approvals, for the inbox.
    pub fn pending_approvals(&self, now: Millis) -> Vec<ApprovalRequest> {
        approval::pending(self, now)
    }

    /// Attempts logged as started and not finished: (step, item, attempt).
    /// A graceful shutdown records each as interrupted; so does a resume
    /// after a crash.
    pub fn started_attempts(&self) -> Vec<(String, Option<u32>, u32)> {
        let mut out = Vec::new();
        for (i, s) in self.steps.iter().enumerate() {
            let fanned = s.items.is_some();
            for (t, task) in s.tasks.iter().enumerate() {
                if let TaskState::Running {
                    attempt,
                    logged: true,
                    ..
                } = task.state
                {
                    out.push((
                        self.plan.step(i).id.clone(),
                        fanned.then_some(t as u32),
                        attempt,
                    ));
                }
            }
        }
        out
    }

    /// The actions that carry on a run rebuilt from its history after a
    /// restart: attempts that were decided but not logged are invoked again,
    /// timers re-armed, approvals re-announced. Attempts that were logged as
    /// started and never finished are returned in `interrupted`; the driver
    /// records a `TaskInterrupted` for each (which re-runs or quarantines).
    ///
    /// A run whose history already ends it (the process died after the last
    /// event was durable, before the end was acted on) is finished again: the
    /// driver then records its end in the index and tells its parent.
    pub fn resume(&mut self, now: Millis) -> Resume {
        let mut resume = Resume::default();
        if self.status.is_final() {
            resume.actions.push(Action::Finish {
                status: self.status.clone(),
                output: self.output.clone(),
            });
            return resume;
        }
        resume.interrupted = self.started_attempts();
        for i in 0..self.steps.len() {
            let step_id = self.plan.step(i).id.clone();
            let fanned = self.steps[i].items.is_some();
            for (t, task) in self.steps[i].tasks.iter_mut().enumerate() {
                let item = fanned.then_some(t as u32);
                match task.state {
                    TaskState::Running { logged: false, .. } => {
                        // Decided, never handed over: dispatch again below.
                        task.state = TaskState::Idle;
                        task.attempts = task.attempts.saturating_sub(1);
                    }
                    TaskState::Backoff { until } => resume.actions.push(Action::StartTimer {
                        timer: TimerKey {
                            step: step_id.clone(),
                            item,
                            purpose: crate::event::TimerPurpose::Retry,
                        },
                        at: until,
                    }),
                    _ => {}
                }
            }
            if let Some(a) = &self.steps[i].approval
                && self.steps[i].status == StepStatus::AwaitingApproval
            {
                resume.actions.extend(approval::announce(self, i, a));
            }
        }
        self.advance(now, &mut resume.actions);
        resume
    }

    /// The earliest time by which the run should make progress: the first
    /// timer, approval deadline or attempt time limit. `None` when it is only
    /// waiting for a person with no deadline, or finished.
    pub fn deadline(&self) -> Option<Millis> {
        if self.status.is_final() {
            return None;
        }
        let mut earliest: Option<Millis> = None;
        let mut note = |t: Millis| earliest = Some(earliest.map_or(t, |e| e.min(t)));
        for (i, s) in self.steps.iter().enumerate() {
            let timeout = self.plan.step(i).timeout.map(|d| d.as_millis() as u64);
            for task in &s.tasks {
                match task.state {
                    TaskState::Backoff { until } => note(until),
                    TaskState::Running { since, .. } => {
                        note(since.saturating_add(timeout.unwrap_or(DEFAULT_ATTEMPT_DEADLINE_MS)))
                    }
                    _ => {}
                }
            }
            if let Some(a) = &s.approval
                && s.status == StepStatus::AwaitingApproval
                && let Some(d) = a.deadline_at
            {
                note(d);
            }
        }
        earliest
    }
}

/// How long an attempt without a `timeout` may run before its run counts as
/// stuck: one hour.
pub const DEFAULT_ATTEMPT_DEADLINE_MS: u64 = 3_600_000;

/// What a rebuilt run needs to carry on; see [`Run::resume`].
#[derive(Debug, Default)]
pub struct Resume {
    /// Actions to carry out.
    pub actions: Vec<Action>,
    /// `(step, item, attempt)` of attempts that were running when the
    /// process stopped.
    pub interrupted: Vec<(String, Option<u32>, u32)>,
}

pub(crate) fn item_of(fanned: bool, t: usize) -> Option<u32> {
    fanned.then_some(t as u32)
}

pub(crate) fn decision_str(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
    }
}
