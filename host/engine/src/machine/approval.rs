//! Approvals: a step that needs a person's decision before it runs (or, with
//! no `uses`, whose output is the decision). A request names who may decide;
//! a deadline rejects, approves or escalates to the next level's approvers.

use std::sync::Arc;

use allama_expr::DepsStatus;
use allama_playbook::{Approval, DeadlineAction, StepKind};
use serde_json::json;

use super::{Action, Run, StepStatus, decision_str};
use crate::event::{Decision, Failure, FailureClass, Millis, TimerKey, TimerPurpose};

/// The approval state of a step that asked for one.
#[derive(Clone, Debug)]
pub(crate) struct ApprovalState {
    /// 0 for the first request; +1 per escalation.
    pub(crate) level: u32,
    pub(crate) message: String,
    pub(crate) requested_at: Millis,
    pub(crate) deadline_at: Option<Millis>,
}

/// A pending approval, as the inbox and the notifier see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRequest {
    /// The run.
    pub run: String,
    /// The step.
    pub step: String,
    /// Escalation level (0 = first request).
    pub level: u32,
    /// Roles whose members may decide.
    pub roles: Vec<String>,
    /// Users who may decide.
    pub users: Vec<String>,
    /// The rendered message.
    pub message: String,
    /// When it was asked.
    pub requested_at: Millis,
    /// When the deadline acts, if there is one.
    pub deadline_at: Option<Millis>,
}

/// Why a decision was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecisionError {
    /// No such step.
    #[error("run {run} has no step `{step}`")]
    UnknownStep {
        /// The run.
        run: String,
        /// The step named.
        step: String,
    },
    /// The step is not waiting for a decision.
    #[error("step `{step}` of run {run} is not waiting for approval (it is {status})")]
    NotAwaiting {
        /// The run.
        run: String,
        /// The step.
        step: String,
        /// Its status.
        status: &'static str,
    },
    /// The person is not among the approvers.
    #[error(
        "{user} may not decide step `{step}`: approvers are roles [{roles}] and users [{users}]"
    )]
    NotAnApprover {
        /// Who tried.
        user: String,
        /// The step.
        step: String,
        /// Allowed roles, comma-separated.
        roles: String,
        /// Allowed users, comma-separated.
        users: String,
    },
}

/// The approval configuration in force at an escalation level.
fn at_level(a: &Approval, level: u32) -> &Approval {
    let mut cur = a;
    for _ in 0..level {
        match &cur.on_deadline {
            DeadlineAction::Escalate(next) => cur = next,
            _ => break,
        }
    }
    cur
}

impl Run {
    pub(crate) fn request_approval(&mut self, i: usize, now: Millis, out: &mut Vec<Action>) {
        self.open_level(i, 0, now, out);
    }

    fn open_level(&mut self, i: usize, level: u32, now: Millis, out: &mut Vec<Action>) {
        let step = self.plan.step(i);
        let Some(root) = &step.approval else { return };
        let cfg = at_level(root, level);
        let ctx = self.context(i, None, DepsStatus::default(), now);
        let message = match cfg.message.render(&ctx) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(other) => other.to_string(),
            Err(e) => {
                let f = Failure::new(
                    FailureClass::Expression,
                    "approval",
                    format!("step `{}`: approval message: {}", step.id, e.message),
                );
                let s = &mut self.steps[i];
                s.status = StepStatus::Failed;
                s.error = Some(f);
                s.finished_at = Some(now);
                return;
            }
        };
        let deadline_at = cfg
            .deadline
            .map(|d| now.saturating_add(d.as_millis() as u64));
        let state = ApprovalState {
            level,
            message,
            requested_at: now,
            deadline_at,
        };
        self.steps[i].status = StepStatus::AwaitingApproval;
        out.extend(announce(self, i, &state));
        self.steps[i].approval = Some(state);
    }

    pub(crate) fn on_decision(
        &mut self,
        i: usize,
        decision: Decision,
        by: &str,
        comment: Option<&str>,
        at: Millis,
    ) {
        if self.steps[i].status != StepStatus::AwaitingApproval {
            return;
        }
        self.decided(i, decision, by, comment, at);
    }

    fn decided(
        &mut self,
        i: usize,
        decision: Decision,
        by: &str,
        comment: Option<&str>,
        at: Millis,
    ) {
        let record = Arc::new(json!({
            "decision": decision_str(decision),
            "by": by,
            "comment": comment,
            "at": at,
        }));
        let step = self.plan.step(i);
        match decision {
            Decision::Approve => {
                if matches!(step.kind, StepKind::Approval) {
                    let s = &mut self.steps[i];
                    s.status = StepStatus::Succeeded;
                    s.output = Some(record);
                    s.finished_at = Some(at);
                } else {
                    self.activate(i, at);
                }
            }
            Decision::Reject => {
                let mut f = Failure::new(
                    FailureClass::Rejected,
                    "rejected",
                    match comment {
                        Some(c) => format!("rejected by {by}: {c}"),
                        None => format!("rejected by {by}"),
                    },
                );
                f.retryable = false;
                let s = &mut self.steps[i];
                s.status = StepStatus::Failed;
                s.error = Some(f);
                s.output = Some(record);
                s.finished_at = Some(at);
            }
        }
    }

    pub(crate) fn on_deadline(&mut self, i: usize, level: u32, at: Millis, out: &mut Vec<Action>) {
        let current = self.steps[i].approval.as_ref().map(|a| a.level);
        if self.steps[i].status != StepStatus::AwaitingApproval || current != Some(level) {
            return; // decided already, or a stale timer from an earlier level
        }
        let Some(root) = &self.plan.step(i).approval else {
            return;
        };
        match &at_level(root, level).on_deadline {
            DeadlineAction::Reject => self.decided(
                i,
                Decision::Reject,
                "deadline",
                Some("no decision before the deadline"),
                at,
            ),
            DeadlineAction::Approve => self.decided(
                i,
                Decision::Approve,
                "deadline",
                Some("approved by the deadline rule"),
                at,
            ),
            DeadlineAction::Escalate(_) => self.open_level(i, level + 1, at, out),
        }
    }
}

/// The actions that (re-)announce a pending approval: notify, arm the deadline.
pub(crate) fn announce(run: &Run, i: usize, state: &ApprovalState) -> Vec<Action> {
    let mut out = Vec::new();
    let step = run.plan.step(i);
    let Some(root) = &step.approval else {
        return out;
    };
    let cfg = at_level(root, state.level);
    out.push(Action::RequestApproval(ApprovalRequest {
        run: run.id.clone(),
        step: step.id.clone(),
        level: state.level,
        roles: cfg.approvers.roles.clone(),
        users: cfg.approvers.users.clone(),
        message: state.message.clone(),
        requested_at: state.requested_at,
        deadline_at: state.deadline_at,
    }));
    if let Some(at) = state.deadline_at {
        out.push(Action::StartTimer {
            timer: TimerKey {
                step: step.id.clone(),
                item: None,
                purpose: TimerPurpose::Deadline { level: state.level },
            },
            at,
        });
    }
    out
}

pub(crate) fn check(
    run: &Run,
    step: &str,
    user: &str,
    roles: &[String],
) -> Result<(), DecisionError> {
    let Some(i) = run.plan.index_of(step) else {
        return Err(DecisionError::UnknownStep {
            run: run.id.clone(),
            step: step.to_string(),
        });
    };
    let s = &run.steps[i];
    let (Some(state), Some(root)) = (&s.approval, &run.plan.step(i).approval) else {
        return Err(DecisionError::NotAwaiting {
            run: run.id.clone(),
            step: step.to_string(),
            status: s.status.as_str(),
        });
    };
    if s.status != StepStatus::AwaitingApproval || run.status.is_final() {
        return Err(DecisionError::NotAwaiting {
            run: run.id.clone(),
            step: step.to_string(),
            status: s.status.as_str(),
        });
    }
    let cfg = at_level(root, state.level);
    let allowed = cfg.approvers.users.iter().any(|u| u == user)
        || cfg.approvers.roles.iter().any(|r| roles.contains(r));
    if allowed {
        Ok(())
    } else {
        Err(DecisionError::NotAnApprover {
            user: user.to_string(),
            step: step.to_string(),
            roles: cfg.approvers.roles.join(", "),
            users: cfg.approvers.users.join(", "),
        })
    }
}

pub(crate) fn pending(run: &Run, _now: Millis) -> Vec<ApprovalRequest> {
    let mut out = Vec::new();
    if run.status.is_final() {
        return out;
    }
    for (i, s) in run.steps.iter().enumerate() {
        if s.status == StepStatus::AwaitingApproval
            && let Some(state) = &s.approval
        {
            for a in announce(run, i, state) {
                if let Action::RequestApproval(r) = a {
                    out.push(r);
                }
            }
        }
    }
    out
}
