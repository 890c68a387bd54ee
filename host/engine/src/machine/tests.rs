//! The state machine, driven by hand: apply events, assert on actions.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::event::{Decision, Event, Failure, TimerPurpose};
use crate::plan::Plan;

pub(crate) fn plan(yaml: &str) -> Arc<Plan> {
    let pb = allama_playbook::parse(yaml, "test.yaml").unwrap_or_else(|d| panic!("{d}"));
    Plan::new(pb, yaml)
}

/// A run plus the history it was driven with, so tests can replay it.
pub(crate) struct Sim {
    pub run: Run,
    pub history: Vec<Event>,
    pub now: Millis,
}

impl Sim {
    pub fn start(plan: Arc<Plan>, inputs: Value) -> (Self, Vec<Action>) {
        let mut sim = Sim {
            run: Run::new("r1", plan.clone()),
            history: Vec::new(),
            now: 1_000,
        };
        let acts = sim.apply(Event::Started {
            playbook: plan.id().to_string(),
            digest: plan.digest.clone(),
            trigger: Arc::new(json!({"alert": {"ip": "203.0.113.7"}})),
            inputs: Arc::new(inputs),
            parent: None,
            at: 1_000,
        });
        (sim, acts)
    }

    pub fn apply(&mut self, e: Event) -> Vec<Action> {
        self.history.push(e.clone());
        let acts = self.run.apply(&e).expect("event applies");
        // Log every invocation, as the driver does.
        for a in &acts {
            if let Action::Invoke(inv) = a {
                let started = Event::TaskStarted {
                    step: inv.step.clone(),
                    item: inv.item,
                    attempt: inv.attempt,
                    input: inv.input.clone(),
                    at: self.now,
                };
                self.history.push(started.clone());
                assert!(self.run.apply(&started).expect("applies").is_empty());
            }
        }
        acts
    }

    pub fn succeed(&mut self, inv: &Invocation, output: Value) -> Vec<Action> {
        self.now += 10;
        self.apply(Event::TaskSucceeded {
            step: inv.step.clone(),
            item: inv.item,
            attempt: inv.attempt,
            output: Arc::new(output),
            duration_us: 5,
            at: self.now,
        })
    }

    pub fn fail(&mut self, inv: &Invocation, failure: Failure) -> Vec<Action> {
        self.now += 10;
        self.apply(Event::TaskFailed {
            step: inv.step.clone(),
            item: inv.item,
            attempt: inv.attempt,
            failure,
            duration_us: 5,
            at: self.now,
        })
    }

    pub fn status(&self, step: &str) -> StepStatus {
        self.run.step(step).expect("step").status().clone()
    }

    /// Replays the history into a fresh run: must reach the same state.
    pub fn replayed(&self) -> Run {
        let mut r = Run::new("r1", self.run.plan().clone());
        for e in &self.history {
            r.apply(e).expect("replays");
        }
        r
    }
}

pub(crate) fn invokes(acts: &[Action]) -> Vec<Invocation> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Invoke(i) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

fn finished(acts: &[Action]) -> Option<(RunStatus, Option<Arc<Value>>)> {
    acts.iter().find_map(|a| match a {
        Action::Finish { status, output } => Some((status.clone(), output.clone())),
        _ => None,
    })
}

const LINEAR: &str = r#"
id: linear
inputs:
  ip: { type: string, required: true }
steps:
  - id: a
    uses: t/echo@1
    with: { ip: "${{ inputs.ip }}" }
  - id: b
    needs: a
    uses: t/echo@1
    with: { seen: "${{ steps.a.output.ip }}", alert: "${{ trigger.alert.ip }}" }
  - id: c
    needs: b
    uses: t/echo@1
    with: { n: 1 }
outputs:
  b: ${{ steps.b.output }}
"#;

#[test]
fn a_linear_run_invokes_each_step_after_its_need_and_renders_outputs() {
    let (mut sim, acts) = Sim::start(plan(LINEAR), json!({"ip": "198.51.100.1"}));
    let a = invokes(&acts);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].step, "a");
    assert_eq!(a[0].attempt, 1);
    assert_eq!(a[0].idempotency_key, "r1/a");
    assert_eq!(*a[0].input, json!({"ip": "198.51.100.1"}));

    let b = invokes(&sim.succeed(&a[0], json!({"ip": "198.51.100.1"})));
    assert_eq!(b.len(), 1);
    assert_eq!(
        *b[0].input,
        json!({"seen": "198.51.100.1", "alert": "203.0.113.7"})
    );
    let c = invokes(&sim.succeed(&b[0], json!({"verdict": "bad"})));
    assert_eq!(c[0].step, "c");
    let end = sim.succeed(&c[0], json!(null));
    let (status, output) = finished(&end).expect("finished");
    assert_eq!(status, RunStatus::Succeeded);
    assert_eq!(*output.expect("outputs"), json!({"b": {"verdict": "bad"}}));
    assert_eq!(sim.replayed().status(), &RunStatus::Succeeded);
}

const DIAMOND: &str = r#"
id: diamond
steps:
  - id: a
    uses: t/echo@1
  - id: b
    uses: t/echo@1
  - id: c
    needs: [a, b]
    uses: t/echo@1
  - id: d
    needs: c
    if: ${{ always() }}
    uses: t/echo@1
"#;

#[test]
fn a_join_waits_for_every_need() {
    let (mut sim, acts) = Sim::start(plan(DIAMOND), Value::Null);
    let first = invokes(&acts);
    assert_eq!(
        first.iter().map(|i| i.step.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(invokes(&sim.succeed(&first[1], json!(2))).is_empty());
    assert_eq!(sim.status("c"), StepStatus::Pending);
    let c = invokes(&sim.succeed(&first[0], json!(1)));
    assert_eq!(c[0].step, "c");
}

#[test]
fn a_failed_need_skips_dependents_unless_their_if_opts_in() {
    let (mut sim, acts) = Sim::start(plan(DIAMOND), Value::Null);
    let first = invokes(&acts);
    sim.succeed(&first[0], json!(1));
    let acts = sim.fail(&first[1], Failure::action("not_found", "no such IP", false));
    // c needs b (failed) → skipped; d needs c (skipped) but says always() → runs.
    assert_eq!(
        sim.status("c"),
        StepStatus::Skipped("it needs `b`, which failed".into())
    );
    let d = invokes(&acts);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].step, "d");
    let end = sim.succeed(&d[0], json!(null));
    match finished(&end).expect("finished").0 {
        RunStatus::Failed(f) => {
            assert!(f.message.contains("step `b` failed"), "{}", f.message);
            assert_eq!(f.code, "not_found");
        }
        other => panic!("expected failure, got {other:?}"),
    }
}

#[test]
fn on_error_continue_lets_dependents_run_and_the_run_succeed() {
    let yaml = r#"
id: cont
steps:
  - id: a
    uses: t/echo@1
    on_error: continue
  - id: b
    needs: a
    uses: t/echo@1
    with: { why: "${{ steps.a.error.message }}", status: "${{ steps.a.status }}" }
"#;
    let (mut sim, acts) = Sim::start(plan(yaml), Value::Null);
    let a = invokes(&acts);
    let b = invokes(&sim.fail(&a[0], Failure::action("upstream", "VT is down", false)));
    assert_eq!(
        *b[0].input,
        json!({"why": "VT is down", "status": "failed"})
    );
    let end = sim.succeed(&b[0], json!(1));
    assert_eq!(finished(&end).expect("finished").0, RunStatus::Succeeded);
}

const BRANCH: &str = r#"
id: branch
steps:
  - id: a
    uses: t/echo@1
    on_error: handle
  - id: next
    needs: a
    uses: t/echo@1
  - id: handle
    uses: t/echo@1
    with: { error: "${{ steps.a.error.code }}" }
"#;

#[test]
fn an_error_branch_runs_only_when_its_step_fails() {
    let (mut sim, acts) = Sim::start(plan(BRANCH), Value::Null);
    let a = invokes(&acts);
    assert_eq!(a.len(), 1, "the branch waits for `a`");
    let acts = sim.fail(&a[0], Failure::action("unauthorized", "bad key", false));
    let h = invokes(&acts);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].step, "handle");
    assert_eq!(*h[0].input, json!({"error": "unauthorized"}));
    assert!(matches!(sim.status("next"), StepStatus::Skipped(_)));
    let end = sim.succeed(&h[0], json!(null));
    assert_eq!(finished(&end).expect("finished").0, RunStatus::Succeeded);

    let (mut sim, acts) = Sim::start(plan(BRANCH), Value::Null);
    let a = invokes(&acts);
    let next = invokes(&sim.succeed(&a[0], json!(1)));
    assert_eq!(next[0].step, "next");
    assert_eq!(
        sim.status("handle"),
        StepStatus::Skipped("it is the error branch of `a`, which did not fail".into())
    );
}

#[test]
fn an_if_that_is_false_skips_and_one_that_errs_fails_the_step() {
    let yaml = r#"
id: ifs
steps:
  - id: a
    if: ${{ trigger.alert.ip == "10.0.0.1" }}
    uses: t/echo@1
  - id: b
    if: ${{ trigger.nope.deeper > 1 }}
    uses: t/echo@1
"#;
    let (sim, acts) = Sim::start(plan(yaml), Value::Null);
    assert!(invokes(&acts).is_empty());
    assert_eq!(
        sim.status("a"),
        StepStatus::Skipped("its `if` was false".into())
    );
    assert_eq!(sim.status("b"), StepStatus::Failed);
    let err = sim.run.step("b").and_then(|s| s.error()).expect("error");
    assert_eq!(err.class, FailureClass::Expression);
    assert!(err.message.contains("step `b`: `if`"), "{}", err.message);
    assert!(matches!(
        finished(&acts).expect("finished").0,
        RunStatus::Failed(_)
    ));
}

const FAN: &str = r#"
id: fan
steps:
  - id: each
    for_each: ${{ trigger.ips }}
    concurrency: 2
    uses: t/echo@1
    with: { ip: "${{ item }}", n: "${{ index }}" }
outputs:
  all: ${{ steps.each.output }}
"#;

fn start_fan(ips: Value) -> (Sim, Vec<Action>) {
    start_fan_with(plan(FAN), ips)
}

fn start_fan_with(plan: Arc<Plan>, ips: Value) -> (Sim, Vec<Action>) {
    let mut sim = Sim {
        run: Run::new("r1", plan.clone()),
        history: Vec::new(),
        now: 1_000,
    };
    let acts = sim.apply(Event::Started {
        playbook: "fan".into(),
        digest: plan.digest.clone(),
        trigger: Arc::new(json!({ "ips": ips })),
        inputs: Arc::new(json!({})),
        parent: None,
        at: 1_000,
    });
    (sim, acts)
}

#[test]
fn for_each_bounds_concurrency_and_gathers_results_in_input_order() {
    let (mut sim, acts) = start_fan(json!(["a", "b", "c", "d", "e"]));
    let mut running = invokes(&acts);
    assert_eq!(running.len(), 2, "concurrency 2");
    assert_eq!(running[0].idempotency_key, "r1/each/0");
    assert_eq!(*running[1].input, json!({"ip": "b", "n": 1}));
    let mut end = Vec::new();
    // Complete newest first, so completion order differs from input order.
    while let Some(inv) = running.pop() {
        let ip = inv.input["ip"].clone();
        let acts = sim.succeed(&inv, json!({ "ip": ip }));
        let more = invokes(&acts);
        assert!(more.len() <= 1);
        running.extend(more);
        let in_flight = sim.run.steps[0]
            .tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::Running { .. }))
            .count();
        assert!(in_flight <= 2);
        end = acts;
    }
    let (status, output) = finished(&end).expect("finished");
    assert_eq!(status, RunStatus::Succeeded);
    let ips: Vec<Value> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|ip| json!({ "ip": ip }))
        .collect();
    assert_eq!(*output.expect("outputs"), json!({ "all": ips }));
}

#[test]
fn for_each_over_nothing_succeeds_with_an_empty_list_and_over_a_non_list_fails() {
    let (_, acts) = start_fan(json!([]));
    assert_eq!(
        finished(&acts).expect("finished").1.map(|v| (*v).clone()),
        Some(json!({"all": []}))
    );
    let (sim, acts) = start_fan(json!("not a list"));
    assert!(matches!(
        finished(&acts).expect("finished").0,
        RunStatus::Failed(_)
    ));
    let e = sim.run.step("each").and_then(|s| s.error()).expect("error");
    assert!(
        e.message.contains("must give a list, it gave a string"),
        "{}",
        e.message
    );
}

#[test]
fn a_failed_item_stops_new_items_and_fails_the_step_naming_the_item() {
    let (mut sim, acts) = start_fan(json!(["a", "b", "c", "d"]));
    let running = invokes(&acts);
    let acts = sim.fail(
        &running[1],
        Failure::action("invalid_input", "bad ip", false),
    );
    assert!(invokes(&acts).is_empty(), "no new item after a failure");
    let end = sim.succeed(&running[0], json!(1));
    match finished(&end).expect("finished").0 {
        RunStatus::Failed(f) => assert_eq!(f.item, Some(1)),
        other => panic!("{other:?}"),
    }
}

const RETRY: &str = r#"
id: retry
steps:
  - id: a
    uses: t/echo@1
    retry:
      action: { max_attempts: 3, backoff: exponential, delay: 1s, max_delay: 10s, jitter: false }
      infrastructure: { max_attempts: 2, backoff: fixed, delay: 200ms }
"#;

fn timer_at(acts: &[Action]) -> Option<(TimerKey, Millis)> {
    acts.iter().find_map(|a| match a {
        Action::StartTimer { timer, at } => Some((timer.clone(), *at)),
        _ => None,
    })
}

#[test]
fn retryable_action_errors_back_off_exponentially_then_fail() {
    let (mut sim, acts) = Sim::start(plan(RETRY), Value::Null);
    let mut inv = invokes(&acts).remove(0);
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        assert_eq!(inv.attempt, attempt);
        let acts = sim.fail(&inv, Failure::action("upstream", "502", true));
        match timer_at(&acts) {
            Some((timer, at)) => {
                assert_eq!(timer.purpose, TimerPurpose::Retry);
                delays.push(at - sim.now);
                sim.now = at;
                let acts = sim.apply(Event::TimerFired { timer, at });
                inv = invokes(&acts).remove(0);
                assert_eq!(inv.idempotency_key, "r1/a", "same key on every attempt");
            }
            None => {
                assert!(matches!(
                    finished(&acts).expect("finished").0,
                    RunStatus::Failed(_)
                ));
            }
        }
    }
    assert_eq!(delays, [1_000, 2_000]);
}

#[test]
fn non_retryable_errors_fail_at_once_and_retry_after_is_honoured() {
    let (mut sim, acts) = Sim::start(plan(RETRY), Value::Null);
    let inv = invokes(&acts).remove(0);
    let acts = sim.fail(&inv, Failure::action("invalid_input", "bad", false));
    assert!(timer_at(&acts).is_none());
    assert!(finished(&acts).is_some());

    let (mut sim, acts) = Sim::start(plan(RETRY), Value::Null);
    let inv = invokes(&acts).remove(0);
    let mut f = Failure::action("rate_limited", "slow down", true);
    f.retry_after_ms = Some(30_000);
    let acts = sim.fail(&inv, f);
    let (_, at) = timer_at(&acts).expect("timer");
    assert_eq!(at - sim.now, 30_000);
}

#[test]
fn infrastructure_failures_have_their_own_policy() {
    let (mut sim, acts) = Sim::start(plan(RETRY), Value::Null);
    let inv = invokes(&acts).remove(0);
    let acts = sim.fail(&inv, Failure::infrastructure("trap", "unreachable"));
    let (timer, at) = timer_at(&acts).expect("one infrastructure retry");
    assert_eq!(at - sim.now, 200);
    let acts = sim.apply(Event::TimerFired { timer, at });
    let inv = invokes(&acts).remove(0);
    let acts = sim.fail(&inv, Failure::infrastructure("trap", "unreachable"));
    assert!(timer_at(&acts).is_none());
    assert!(finished(&acts).is_some());
}

#[test]
fn a_late_result_from_an_old_attempt_is_ignored() {
    let (mut sim, acts) = Sim::start(plan(RETRY), Value::Null);
    let inv = invokes(&acts).remove(0);
    let acts = sim.fail(&inv, Failure::action("upstream", "502", true));
    assert!(timer_at(&acts).is_some());
    // Attempt 1 answers again (a duplicate delivery): nothing changes.
    assert!(sim.succeed(&inv, json!(1)).is_empty());
    assert_eq!(sim.status("a"), StepStatus::Running);
}

const GATE: &str = r#"
id: gate
steps:
  - id: ok
    approval:
      approvers: { roles: [responder], users: [alice] }
      message: "Block ${{ trigger.alert.ip }}?"
      deadline: 1h
      on_deadline: escalate
      escalate_to:
        approvers: { roles: [admin] }
        deadline: 30m
        on_deadline: reject
  - id: block
    needs: ok
    uses: t/block@1
    with: { by: "${{ steps.ok.output.by }}" }
"#;

fn approval(acts: &[Action]) -> ApprovalRequest {
    acts.iter()
        .find_map(|a| match a {
            Action::RequestApproval(r) => Some(r.clone()),
            _ => None,
        })
        .expect("an approval request")
}

#[test]
fn an_approval_waits_for_an_approver_then_runs_what_follows() {
    let (mut sim, acts) = Sim::start(plan(GATE), Value::Null);
    let req = approval(&acts);
    assert_eq!(req.message, "Block 203.0.113.7?");
    assert_eq!(req.roles, ["responder"]);
    assert_eq!(req.deadline_at, Some(1_000 + 3_600_000));
    assert_eq!(sim.status("ok"), StepStatus::AwaitingApproval);
    assert!(matches!(
        sim.run.check_decision("ok", "mallory", &["viewer".into()]),
        Err(DecisionError::NotAnApprover { .. })
    ));
    assert!(sim.run.check_decision("ok", "alice", &[]).is_ok());
    assert!(
        sim.run
            .check_decision("ok", "bob", &["responder".into()])
            .is_ok()
    );
    assert!(matches!(
        sim.run.check_decision("block", "alice", &[]),
        Err(DecisionError::NotAwaiting { .. })
    ));
    let acts = sim.apply(Event::ApprovalDecided {
        step: "ok".into(),
        decision: Decision::Approve,
        by: "alice".into(),
        comment: Some("go".into()),
        at: 2_000,
    });
    let block = invokes(&acts);
    assert_eq!(*block[0].input, json!({"by": "alice"}));
    // The stale deadline timer does nothing now.
    let acts = sim.apply(Event::TimerFired {
        timer: TimerKey {
            step: "ok".into(),
            item: None,
            purpose: TimerPurpose::Deadline { level: 0 },
        },
        at: 3_601_000,
    });
    assert!(acts.is_empty());
}

#[test]
fn a_deadline_escalates_then_rejects() {
    let (mut sim, acts) = Sim::start(plan(GATE), Value::Null);
    let req = approval(&acts);
    let deadline = TimerKey {
        step: "ok".into(),
        item: None,
        purpose: TimerPurpose::Deadline { level: 0 },
    };
    let acts = sim.apply(Event::TimerFired {
        timer: deadline,
        at: req.deadline_at.expect("deadline"),
    });
    let esc = approval(&acts);
    assert_eq!(esc.level, 1);
    assert_eq!(esc.roles, ["admin"]);
    assert!(esc.users.is_empty());
    assert!(
        sim.run.check_decision("ok", "alice", &[]).is_err(),
        "level 1 is admins only"
    );
    let acts = sim.apply(Event::TimerFired {
        timer: TimerKey {
            step: "ok".into(),
            item: None,
            purpose: TimerPurpose::Deadline { level: 1 },
        },
        at: esc.deadline_at.expect("deadline"),
    });
    assert_eq!(sim.status("ok"), StepStatus::Failed);
    assert_eq!(
        sim.run.step("ok").and_then(|s| s.error()).map(|e| e.class),
        Some(FailureClass::Rejected)
    );
    assert!(matches!(sim.status("block"), StepStatus::Skipped(_)));
    assert!(matches!(
        finished(&acts).expect("finished").0,
        RunStatus::Failed(_)
    ));
}

#[test]
fn a_rejection_fails_the_step_with_who_and_why() {
    let (mut sim, _) = Sim::start(plan(GATE), Value::Null);
    sim.apply(Event::ApprovalDecided {
        step: "ok".into(),
        decision: Decision::Reject,
        by: "alice".into(),
        comment: Some("false positive".into()),
        at: 2_000,
    });
    let e = sim.run.step("ok").and_then(|s| s.error()).expect("error");
    assert_eq!(e.message, "rejected by alice: false positive");
}

#[test]
fn resume_reinvokes_interrupted_attempts_and_quarantines_after_three_crashes() {
    let (mut sim, acts) = Sim::start(plan(LINEAR), json!({"ip": "192.0.2.1"}));
    let a = invokes(&acts).remove(0);
    for crash in 1..=MAX_CRASHES {
        // The process dies; a fresh process rebuilds the run from its history.
        let mut rebuilt = sim.replayed();
        let resume = rebuilt.resume(sim.now);
        assert_eq!(resume.interrupted, [("a".to_string(), None, a.attempt)]);
        sim.run = rebuilt;
        let acts = sim.apply(Event::TaskInterrupted {
            step: "a".into(),
            item: None,
            attempt: a.attempt,
            shutdown: false,
            at: sim.now,
        });
        if crash < MAX_CRASHES {
            let again = invokes(&acts);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].idempotency_key, a.idempotency_key);
            assert_eq!(
                again[0].attempt, a.attempt,
                "the interrupted attempt runs again"
            );
        } else {
            match finished(&acts).expect("finished").0 {
                RunStatus::Failed(f) => {
                    assert_eq!(f.class, FailureClass::Quarantined);
                    assert!(f.message.contains("quarantined"), "{}", f.message);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn shutdown_interruptions_rerun_the_attempt_and_never_quarantine() {
    let (mut sim, acts) = Sim::start(plan(LINEAR), json!({"ip": "192.0.2.1"}));
    let a = invokes(&acts).remove(0);
    // Far more graceful stops than MAX_CRASHES: each re-runs the attempt.
    for _ in 0..MAX_CRASHES * 3 {
        assert_eq!(
            sim.run.started_attempts(),
            [("a".to_string(), None, a.attempt)]
        );
        let acts = sim.apply(Event::TaskInterrupted {
            step: "a".into(),
            item: None,
            attempt: a.attempt,
            shutdown: true,
            at: sim.now,
        });
        let again = invokes(&acts);
        assert_eq!(again.len(), 1, "{acts:?}");
        assert_eq!(again[0].idempotency_key, a.idempotency_key);
        assert!(finished(&acts).is_none());
    }
    // Crashes still count: MAX_CRASHES of them quarantine the step.
    let mut last = Vec::new();
    for _ in 0..MAX_CRASHES {
        last = sim.apply(Event::TaskInterrupted {
            step: "a".into(),
            item: None,
            attempt: a.attempt,
            shutdown: false,
            at: sim.now,
        });
    }
    match finished(&last).expect("finished").0 {
        RunStatus::Failed(f) => assert_eq!(f.class, FailureClass::Quarantined),
        other => panic!("{other:?}"),
    }
}

#[test]
fn resume_redispatches_attempts_that_were_decided_but_never_logged() {
    let plan = plan(LINEAR);
    let mut run = Run::new("r1", plan.clone());
    run.apply(&Event::Started {
        playbook: "linear".into(),
        digest: plan.digest.clone(),
        trigger: Arc::new(json!({})),
        inputs: Arc::new(json!({"ip": "192.0.2.1"})),
        parent: None,
        at: 1,
    })
    .expect("applies");
    // No task_started was written before the crash.
    let resume = run.resume(5);
    assert!(resume.interrupted.is_empty());
    let again = invokes(&resume.actions);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 1);
}

#[test]
fn resume_finishes_a_run_whose_history_already_ends_it() {
    // The process died after the last step's result was durable but before
    // the run's end was recorded in the index: resuming must finish it again,
    // or it would stay "running" for ever.
    let (mut sim, acts) = Sim::start(plan(LINEAR), json!({"ip": "192.0.2.1"}));
    let mut next = invokes(&acts);
    let mut last = Vec::new();
    while let Some(inv) = next.pop() {
        last = sim.succeed(&inv, json!({"ip": "192.0.2.1"}));
        next.extend(invokes(&last));
    }
    let (status, output) = finished(&last).expect("the live run finished");
    let mut rebuilt = sim.replayed();
    let resume = rebuilt.resume(sim.now);
    assert!(resume.interrupted.is_empty());
    assert_eq!(finished(&resume.actions), Some((status, output.clone())));
    assert!(output.is_some(), "outputs are kept");
    assert!(invokes(&resume.actions).is_empty(), "nothing runs again");
}

#[test]
fn cancel_skips_what_is_left_and_ignores_late_results() {
    let (mut sim, acts) = Sim::start(plan(LINEAR), json!({"ip": "192.0.2.1"}));
    let a = invokes(&acts).remove(0);
    let acts = sim.apply(Event::CancelRequested {
        by: "bob".into(),
        at: 1_500,
    });
    assert!(acts.contains(&Action::AbortInvocations));
    assert_eq!(finished(&acts).expect("finished").0, RunStatus::Cancelled);
    assert!(sim.succeed(&a, json!(1)).is_empty());
    assert_eq!(
        sim.status("b"),
        StepStatus::Skipped("the run was cancelled".into())
    );
}

#[test]
fn a_history_must_start_with_started_and_name_known_steps() {
    let plan = plan(LINEAR);
    let mut run = Run::new("r1", plan);
    let e = run
        .apply(&Event::CancelRequested {
            by: "x".into(),
            at: 1,
        })
        .expect_err("out of order");
    assert!(matches!(e, ApplyError::OutOfOrder { .. }));
    let (mut sim, _) = Sim::start(super::tests::plan(LINEAR), json!({"ip": "x"}));
    let e = sim
        .run
        .apply(&Event::TaskInterrupted {
            step: "ghost".into(),
            item: None,
            attempt: 1,
            shutdown: false,
            at: 1,
        })
        .expect_err("unknown step");
    assert!(e.to_string().contains("`ghost`"), "{e}");
}

// ---- Random DAGs -------------------------------------------------------

/// A random DAG: step i may need any earlier step; each step either
/// succeeds or fails; some opt in with `always()`.
#[derive(Debug, Clone)]
struct Dag {
    needs: Vec<Vec<usize>>,
    fails: Vec<bool>,
    always: Vec<bool>,
}

fn dag() -> impl Strategy<Value = Dag> {
    (1usize..9).prop_flat_map(|n| {
        let needs = (0..n)
            .map(|i| proptest::collection::vec(0..i.max(1), 0..=i.min(3)))
            .collect::<Vec<_>>();
        (
            needs,
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(proptest::bool::weighted(0.2), n),
        )
            .prop_map(|(needs, fails, always)| {
                let needs = needs
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut v)| {
                        v.retain(|&d| d < i);
                        v.sort();
                        v.dedup();
                        v
                    })
                    .collect();
                Dag {
                    needs,
                    fails,
                    always,
                }
            })
    })
}

fn dag_yaml(d: &Dag) -> String {
    let mut y = String::from("id: dag\nsteps:\n");
    for (i, needs) in d.needs.iter().enumerate() {
        y += &format!("  - id: s{i}\n    uses: t/echo@1\n");
        if !needs.is_empty() {
            let n: Vec<String> = needs.iter().map(|d| format!("s{d}")).collect();
            y += &format!("    needs: [{}]\n", n.join(", "));
        }
        if d.always[i] {
            y += "    if: ${{ always() }}\n";
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Each step runs at most once, only after all its needs finished, and
    /// runs exactly when the documented skip rule says so; any completion
    /// order gives the same statuses, and the history replays to them.
    #[test]
    fn random_dags_follow_the_join_and_skip_rule(d in dag(), order in proptest::collection::vec(any::<prop::sample::Index>(), 16)) {
        let p = plan(&dag_yaml(&d));
        let (mut sim, acts) = Sim::start(p, Value::Null);
        let mut running = invokes(&acts);
        let mut ran = vec![0u32; d.needs.len()];
        let mut order = order.into_iter().cycle();
        let mut done = vec![false; d.needs.len()];
        while !running.is_empty() {
            let pick = order.next().map(|ix| ix.index(running.len())).unwrap_or(0);
            let inv = running.remove(pick);
            let i: usize = inv.step[1..].parse().expect("step index");
            ran[i] += 1;
            for &n in &d.needs[i] {
                prop_assert!(done[n], "s{i} ran before its need s{n} finished");
            }
            let acts = if d.fails[i] {
                sim.fail(&inv, Failure::action("x", "boom", false))
            } else {
                sim.succeed(&inv, json!(i))
            };
            done[i] = true;
            for (j, s) in sim.run.steps.iter().enumerate() {
                if s.status.is_done() { done[j] = true; }
            }
            running.extend(invokes(&acts));
        }
        // Model of the rule: a step runs iff all needs are "ok", or it says always().
        let mut expect_ran = vec![false; d.needs.len()];
        let mut ok = vec![false; d.needs.len()];
        for i in 0..d.needs.len() {
            let deps_ok = d.needs[i].iter().all(|&n| ok[n]);
            expect_ran[i] = deps_ok || d.always[i];
            ok[i] = expect_ran[i] && !d.fails[i];
        }
        for i in 0..d.needs.len() {
            prop_assert!(ran[i] <= 1, "s{i} ran {} times", ran[i]);
            prop_assert_eq!(ran[i] == 1, expect_ran[i], "s{} ran={} expected={}", i, ran[i], expect_ran[i]);
        }
        prop_assert!(sim.run.status().is_final());
        let expect_failed = (0..d.needs.len()).any(|i| expect_ran[i] && d.fails[i]);
        prop_assert_eq!(matches!(sim.run.status(), RunStatus::Failed(_)), expect_failed);
        let replayed = sim.replayed();
        prop_assert_eq!(replayed.status(), sim.run.status());
        for (a, b) in replayed.steps.iter().zip(&sim.run.steps) {
            prop_assert_eq!(&a.status, &b.status);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// `for_each` never has more than `concurrency` items in flight, runs
    /// each item exactly once, and gathers results in input order, whatever
    /// order the items finish in.
    #[test]
    fn for_each_parallelism_is_bounded_in_any_completion_order(
        items in 0usize..40,
        concurrency in 1usize..6,
        order in proptest::collection::vec(any::<prop::sample::Index>(), 64),
    ) {
        let yaml = FAN.replace("concurrency: 2", &format!("concurrency: {concurrency}"));
        let ips: Vec<Value> = (0..items).map(|i| json!(format!("10.0.0.{i}"))).collect();
        let (mut sim, acts) = start_fan_with(plan(&yaml), json!(ips));
        let mut running = invokes(&acts);
        let mut ran = vec![0u32; items];
        let mut order = order.into_iter().cycle();
        let mut end = acts;
        while !running.is_empty() {
            prop_assert!(running.len() <= concurrency, "{} in flight, bound {concurrency}", running.len());
            let pick = order.next().map(|ix| ix.index(running.len())).unwrap_or(0);
            let inv = running.remove(pick);
            let i = inv.item.expect("an item") as usize;
            ran[i] += 1;
            let acts = sim.succeed(&inv, json!({ "n": i }));
            running.extend(invokes(&acts));
            end = acts;
        }
        prop_assert!(ran.iter().all(|&n| n == 1), "{ran:?}");
        let (status, output) = finished(&end).expect("finished");
        prop_assert_eq!(status, RunStatus::Succeeded);
        let expect: Vec<Value> = (0..items).map(|i| json!({ "n": i })).collect();
        prop_assert_eq!((*output.expect("outputs")).clone(), json!({ "all": expect }));
    }
}
