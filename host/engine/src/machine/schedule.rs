//! Which steps run, skip or finish: the join rule, `if`, `for_each`
//! dispatch within its concurrency bound, and finishing the run.
//!
//! The rule (documented in docs/playbooks.md): a step is decided once every
//! step it `needs` has finished. It runs when none of them failed or was
//! skipped, unless its `if` calls a status function (`always()`,
//! `failure()`, `success()`, `cancelled()`), in which case the `if` alone
//! decides. A failed dependency whose `on_error` is `continue` counts as
//! finished well. An error branch runs only when the step it handles failed.

use std::collections::BTreeMap;
use std::sync::Arc;

use allama_expr::{Context, DepsStatus, StepView};
use allama_playbook::{OnError, StepKind};
use serde_json::Value;

use super::{
    Action, Invocation, MAX_ITEMS, Run, RunStatus, StepStatus, Target, Task, TaskState, item_of,
};
use crate::event::{Failure, FailureClass, Millis};

/// `for_each` items in flight when the step gives no `concurrency`.
pub const DEFAULT_FOR_EACH_CONCURRENCY: u32 = 8;

impl Run {
    /// Decides everything that can be decided now. Loops because finishing
    /// one step can let others be decided (a skip cascades at once).
    pub(crate) fn advance(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.status.is_final() {
            return;
        }
        loop {
            let mut changed = false;
            for i in 0..self.steps.len() {
                match self.steps[i].status {
                    StepStatus::Pending if self.deps_done(i) => {
                        self.decide(i, now, out);
                        changed = true;
                    }
                    StepStatus::Running => {
                        self.dispatch(i, now, out);
                        changed |= self.try_complete(i, now);
                    }
                    _ => {}
                }
            }
            if !changed {
                break;
            }
        }
        if self.steps.iter().all(|s| s.status.is_done()) {
            self.finish(out);
        }
    }

    fn deps_done(&self, i: usize) -> bool {
        self.plan
            .deps(i)
            .iter()
            .all(|&d| self.steps[d].status.is_done())
    }

    /// The status functions' view of step `i`'s dependencies, and the first
    /// dependency that blocks the implicit `success()`, for the skip reason.
    fn deps_status(&self, i: usize) -> (DepsStatus, Option<String>) {
        let mut st = DepsStatus {
            cancelled: self.cancelled,
            ..DepsStatus::default()
        };
        let mut blocker = None;
        let handled_by_me = self.plan.branch_of(i);
        for &d in self.plan.deps(i) {
            let id = &self.plan.step(d).id;
            match &self.steps[d].status {
                StepStatus::Failed
                    if self.plan.step(d).on_error != OnError::Continue
                        && handled_by_me != Some(d) =>
                {
                    st.any_failed = true;
                    blocker.get_or_insert_with(|| format!("it needs `{id}`, which failed"));
                }
                StepStatus::Skipped(_) => {
                    st.any_skipped = true;
                    blocker.get_or_insert_with(|| format!("it needs `{id}`, which was skipped"));
                }
                _ => {}
            }
        }
        (st, blocker)
    }

    fn skip(&mut self, i: usize, reason: String, now: Millis) {
        let s = &mut self.steps[i];
        s.status = StepStatus::Skipped(reason);
        s.finished_at = Some(now);
    }

    fn fail_step(&mut self, i: usize, failure: Failure, now: Millis) {
        let s = &mut self.steps[i];
        s.status = StepStatus::Failed;
        s.error = Some(failure);
        s.finished_at = Some(now);
    }

    fn decide(&mut self, i: usize, now: Millis, out: &mut Vec<Action>) {
        if self.cancelled {
            return self.skip(i, "the run was cancelled".into(), now);
        }
        if let Some(src) = self.plan.branch_of(i)
            && self.steps[src].status != StepStatus::Failed
        {
            let id = &self.plan.step(src).id;
            return self.skip(
                i,
                format!("it is the error branch of `{id}`, which did not fail"),
                now,
            );
        }
        let (deps, blocker) = self.deps_status(i);
        let step = self.plan.step(i);
        let opted_in = step
            .if_
            .as_ref()
            .is_some_and(|e| e.references().status_functions);
        if let Some(reason) = &blocker
            && !opted_in
        {
            return self.skip(i, reason.clone(), now);
        }
        if let Some(cond) = &step.if_ {
            let ctx = self.context(i, None, deps, now);
            match cond.eval_bool(&ctx) {
                Ok(true) => {}
                Ok(false) => return self.skip(i, "its `if` was false".into(), now),
                Err(e) => {
                    let f = Failure::new(
                        FailureClass::Expression,
                        "if",
                        format!("step `{}`: `if`: {}", step.id, e.message),
                    );
                    return self.fail_step(i, f, now);
                }
            }
        }
        self.steps[i].started_at = Some(now);
        if step.approval.is_some() {
            self.request_approval(i, now, out);
        } else {
            self.activate(i, now);
        }
    }

    /// Turns a decided step into tasks: one, or one per `for_each` item.
    pub(crate) fn activate(&mut self, i: usize, now: Millis) {
        let step = self.plan.step(i);
        self.steps[i].status = StepStatus::Running;
        if self.steps[i].started_at.is_none() {
            self.steps[i].started_at = Some(now);
        }
        let Some(each) = &step.for_each else {
            self.steps[i].tasks = vec![Task::new()];
            return;
        };
        let ctx = self.context(i, None, DepsStatus::default(), now);
        let list = match each.eval(&ctx) {
            Ok(Value::Array(list)) => list,
            Ok(other) => {
                let f = Failure::new(
                    FailureClass::Expression,
                    "for_each",
                    format!(
                        "step `{}`: `for_each` must give a list, it gave {}",
                        step.id,
                        crate::inputs::kind(&other)
                    ),
                );
                return self.fail_step(i, f, now);
            }
            Err(e) => {
                let f = Failure::new(
                    FailureClass::Expression,
                    "for_each",
                    format!("step `{}`: `for_each`: {}", step.id, e.message),
                );
                return self.fail_step(i, f, now);
            }
        };
        if list.len() > MAX_ITEMS {
            let f = Failure::new(
                FailureClass::Expression,
                "for_each",
                format!(
                    "step `{}`: `for_each` gave {} items; at most {MAX_ITEMS} are allowed",
                    step.id,
                    list.len()
                ),
            );
            return self.fail_step(i, f, now);
        }
        self.steps[i].tasks = (0..list.len()).map(|_| Task::new()).collect();
        self.steps[i].items = Some(list.into_iter().map(Arc::new).collect());
    }

    /// Hands idle tasks to the executor, up to the step's concurrency. After a
    /// task has failed for good no new item starts (fail fast); those in
    /// flight finish.
    fn dispatch(&mut self, i: usize, now: Millis, out: &mut Vec<Action>) {
        let fanned = self.steps[i].items.is_some();
        let limit = if fanned {
            self.plan
                .step(i)
                .concurrency
                .unwrap_or(DEFAULT_FOR_EACH_CONCURRENCY)
                .max(1) as usize
        } else {
            1
        };
        let tasks = &self.steps[i].tasks;
        if tasks
            .iter()
            .any(|t| matches!(t.state, TaskState::Failed(_)))
        {
            return;
        }
        let mut in_flight = tasks
            .iter()
            .filter(|t| {
                matches!(
                    t.state,
                    TaskState::Running { .. } | TaskState::Backoff { .. }
                )
            })
            .count();
        for t in 0..self.steps[i].tasks.len() {
            if in_flight >= limit {
                break;
            }
            if !matches!(self.steps[i].tasks[t].state, TaskState::Idle) {
                continue;
            }
            let item = item_of(fanned, t);
            match self.invocation(i, item, now) {
                Ok(inv) => {
                    let task = &mut self.steps[i].tasks[t];
                    task.attempts += 1;
                    let attempt = task.attempts;
                    task.state = TaskState::Running {
                        attempt,
                        logged: false,
                        since: now,
                    };
                    out.push(Action::Invoke(Invocation { attempt, ..inv }));
                    in_flight += 1;
                }
                Err(f) => {
                    self.steps[i].tasks[t].state = TaskState::Failed(f);
                    return;
                }
            }
        }
    }

    fn invocation(&self, i: usize, item: Option<u32>, now: Millis) -> Result<Invocation, Failure> {
        let step = self.plan.step(i);
        let ctx = self.context(i, item, DepsStatus::default(), now);
        let input = step.with.render(&ctx).map_err(|e| {
            let mut f = Failure::new(
                FailureClass::Expression,
                "with",
                format!("step `{}`: `with`: {}", step.id, e.message),
            );
            f.item = item;
            f
        })?;
        let key = match item {
            Some(n) => format!("{}/{}/{n}", self.id, step.id),
            None => format!("{}/{}", self.id, step.id),
        };
        let target = match &step.kind {
            StepKind::Action(r) => Target::Action(r.clone()),
            StepKind::Playbook(id) => Target::Playbook {
                id: id.clone(),
                run: key.replace('/', "~"),
            },
            StepKind::Approval => {
                // A pure approval gate finishes with its decision; nothing runs.
                return Err(Failure::new(
                    FailureClass::Expression,
                    "approval",
                    format!(
                        "step `{}` is an approval gate and has nothing to run",
                        step.id
                    ),
                ));
            }
        };
        Ok(Invocation {
            run: self.id.clone(),
            playbook: self.plan.id().to_string(),
            step: step.id.clone(),
            item,
            attempt: 0,
            idempotency_key: key,
            target,
            input: Arc::new(input),
            timeout_ms: step.timeout.map(|d| d.as_millis() as u64),
        })
    }

    /// Completes a step whose tasks have all finished.
    fn try_complete(&mut self, i: usize, now: Millis) -> bool {
        let s = &self.steps[i];
        if s.status != StepStatus::Running {
            return false;
        }
        if s.tasks.iter().any(|t| {
            matches!(
                t.state,
                TaskState::Running { .. } | TaskState::Backoff { .. }
            )
        }) {
            return false;
        }
        let failed = s.tasks.iter().find_map(|t| match &t.state {
            TaskState::Failed(f) => Some(f.clone()),
            _ => None,
        });
        if let Some(f) = failed {
            self.fail_step(i, f, now);
            return true;
        }
        if s.tasks.iter().any(|t| !t.is_done()) {
            return false;
        }
        let output = if s.items.is_some() {
            Arc::new(Value::Array(
                s.tasks
                    .iter()
                    .map(|t| match &t.state {
                        TaskState::Succeeded(v) => (**v).clone(),
                        _ => Value::Null,
                    })
                    .collect(),
            ))
        } else {
            match s.tasks.first().map(|t| &t.state) {
                Some(TaskState::Succeeded(v)) => v.clone(),
                _ => Arc::new(Value::Null),
            }
        };
        let s = &mut self.steps[i];
        s.output = Some(output);
        s.status = StepStatus::Succeeded;
        s.finished_at = Some(now);
        true
    }

    fn finish(&mut self, out: &mut Vec<Action>) {
        let status = if self.cancelled {
            RunStatus::Cancelled
        } else if let Some((i, f)) = self.steps.iter().enumerate().find_map(|(i, s)| {
            (s.status == StepStatus::Failed && self.plan.step(i).on_error == OnError::Fail)
                .then(|| (i, s.error.clone()))
        }) {
            let id = &self.plan.step(i).id;
            let mut f = f.unwrap_or_else(|| Failure::new(FailureClass::Action, "failed", ""));
            f.message = format!("step `{id}` failed: {}", f.message);
            RunStatus::Failed(f)
        } else {
            let ctx = self.context_all();
            let mut map = serde_json::Map::new();
            let mut error = None;
            for (name, t) in &self.plan.playbook.outputs {
                match t.render(&ctx) {
                    Ok(v) => {
                        map.insert(name.clone(), v);
                    }
                    Err(e) => {
                        error = Some(Failure::new(
                            FailureClass::Expression,
                            "outputs",
                            format!("`outputs.{name}`: {}", e.message),
                        ));
                        break;
                    }
                }
            }
            match error {
                None => {
                    self.output = Some(Arc::new(Value::Object(map)));
                    RunStatus::Succeeded
                }
                Some(f) => RunStatus::Failed(f),
            }
        };
        self.status = status.clone();
        out.push(Action::Finish {
            status,
            output: self.output.clone(),
        });
    }

    fn view(&self, d: usize) -> StepView {
        let s = &self.steps[d];
        StepView {
            status: s.status.as_str(),
            output: s.output.clone(),
            error: s.error.as_ref().map(|f| Arc::new(f.to_value())),
        }
    }

    /// What step `i`'s expressions can see: the steps it reads (all of which
    /// are among its transitive `needs`, validation guarantees it).
    pub(crate) fn context(
        &self,
        i: usize,
        item: Option<u32>,
        deps: DepsStatus,
        now: Millis,
    ) -> Context {
        let mut steps = BTreeMap::new();
        for &d in self.plan.reads(i) {
            steps.insert(self.plan.step(d).id.clone(), self.view(d));
        }
        let item_value = item.and_then(|n| {
            self.steps[i]
                .items
                .as_ref()
                .and_then(|items| items.get(n as usize).cloned())
        });
        let mut ctx = Context {
            trigger: self.trigger.clone(),
            inputs: self.inputs.clone(),
            steps,
            item: item_value,
            index: item.map(u64::from),
            deps,
            ..Context::default()
        };
        ctx.now = Some(now);
        ctx
    }

    fn context_all(&self) -> Context {
        let steps = (0..self.steps.len())
            .map(|d| (self.plan.step(d).id.clone(), self.view(d)))
            .collect();
        Context {
            trigger: self.trigger.clone(),
            inputs: self.inputs.clone(),
            steps,
            now: Some(self.updated_at),
            ..Context::default()
        }
    }
}
