//! The driver with an in-memory store and test executors: no Wasm, no disk.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allama_engine::{
    Decision, Engine, EngineConfig, EngineError, Executor, Failure, Invocation, MemoryStore,
    Outcome, Plan, Plans, RunStatus, RunStore, Target, Update,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

fn plan(yaml: &str) -> Arc<Plan> {
    let pb = allama_playbook::parse(yaml, "test.yaml").unwrap_or_else(|d| panic!("{d}"));
    Plan::new(pb, yaml)
}

#[derive(Default)]
struct Library(Mutex<HashMap<String, Arc<Plan>>>);

impl Library {
    fn with(plans: &[&Arc<Plan>]) -> Arc<Self> {
        let lib = Library::default();
        for p in plans {
            lib.0
                .lock()
                .unwrap()
                .insert(p.id().to_string(), (*p).clone());
        }
        Arc::new(lib)
    }
}

impl Plans for Library {
    fn plan(&self, id: &str, digest: Option<&str>) -> Option<Arc<Plan>> {
        let p = self.0.lock().unwrap().get(id).cloned()?;
        match digest {
            Some(d) if d != p.digest => None,
            _ => Some(p),
        }
    }
}

/// Echoes its input as output, after an optional gate; counts calls per
/// idempotency key and tracks concurrency per package.
#[derive(Default)]
struct Echo {
    calls: Mutex<Vec<Invocation>>,
    gate: Option<Arc<Notify>>,
    gated_package: Option<String>,
    in_flight: Mutex<HashMap<String, usize>>,
    max_in_flight: Mutex<HashMap<String, usize>>,
    limit: Option<(String, usize)>,
    fail_step: Option<String>,
}

impl Echo {
    fn calls_for(&self, step: &str) -> Vec<Invocation> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|i| i.step == step)
            .cloned()
            .collect()
    }
}

fn package_of(inv: &Invocation) -> String {
    match &inv.target {
        Target::Action(r) => r.package.clone(),
        Target::Playbook { id, .. } => id.clone(),
    }
}

struct EchoExec(Arc<Echo>);

impl Executor for EchoExec {
    fn invoke(&self, inv: Invocation) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let me = self.0.clone();
        Box::pin(async move {
            let pkg = package_of(&inv);
            me.calls.lock().unwrap().push(inv.clone());
            {
                let mut f = me.in_flight.lock().unwrap();
                let n = f.entry(pkg.clone()).or_default();
                *n += 1;
                let mut m = me.max_in_flight.lock().unwrap();
                let mx = m.entry(pkg.clone()).or_default();
                *mx = (*mx).max(*n);
            }
            if let (Some(gate), Some(gp)) = (&me.gate, &me.gated_package)
                && *gp == pkg
            {
                gate.notified().await;
            }
            *me.in_flight.lock().unwrap().get_mut(&pkg).unwrap() -= 1;
            let result = if me.fail_step.as_deref() == Some(inv.step.as_str()) {
                Err(Failure::action("upstream", "vendor down", false))
            } else {
                Ok(inv.input.clone())
            };
            Outcome {
                result,
                duration: Duration::from_micros(3),
            }
        })
    }

    fn package_limit(&self, package: &str) -> Option<usize> {
        self.0
            .limit
            .as_ref()
            .filter(|(p, _)| p == package)
            .map(|(_, n)| *n)
    }
}

async fn engine(store: Arc<dyn RunStore>, echo: Arc<Echo>, plans: &[&Arc<Plan>]) -> Engine {
    Engine::start(
        store,
        Arc::new(EchoExec(echo)),
        Library::with(plans),
        EngineConfig::default(),
    )
    .await
    .expect("engine starts")
}

/// A first process that starts a `LINEAR` run (when `start`) or resumes the
/// stored ones, and is shut down while step `a`, which never returns, runs.
/// Returns the run started, if any, and the call of `a` it made.
async fn stopped_while_a_runs(
    store: Arc<dyn RunStore>,
    p: &Arc<Plan>,
    start: bool,
) -> (Option<String>, Invocation) {
    let stuck = Arc::new(Echo {
        gate: Some(Arc::new(Notify::new())),
        gated_package: Some("t".into()),
        ..Echo::default()
    });
    let e = engine(store, stuck.clone(), &[p]).await;
    let mut updates = e.subscribe();
    let id = if start {
        Some(
            e.start_run(p.clone(), json!({}), json!({"ip": "192.0.2.1"}))
                .await
                .expect("starts"),
        )
    } else {
        None
    };
    while stuck.calls_for("a").is_empty() {
        let _ = tokio::time::timeout(Duration::from_millis(50), updates.recv()).await;
    }
    e.shutdown().await;
    (id, stuck.calls_for("a").remove(0))
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
    with: { got: "${{ steps.a.output.ip }}" }
outputs:
  result: ${{ steps.b.output.got }}
"#;

#[tokio::test]
async fn a_run_goes_through_the_driver_to_its_outputs() {
    let p = plan(LINEAR);
    let echo = Arc::new(Echo::default());
    let e = engine(Arc::new(MemoryStore::new()), echo.clone(), &[&p]).await;
    let id = e
        .start_run(p.clone(), json!({}), json!({"ip": "192.0.2.9"}))
        .await
        .expect("starts");
    let done = e.wait(&id).await.expect("finishes");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(
        *done.output.expect("outputs"),
        json!({"result": "192.0.2.9"})
    );
    assert_eq!(echo.calls_for("a").len(), 1);
    assert_eq!(echo.calls_for("b").len(), 1);
}

#[tokio::test]
async fn waiting_after_the_end_still_gives_the_outputs() {
    let p = plan(LINEAR);
    let e = engine(
        Arc::new(MemoryStore::new()),
        Arc::new(Echo::default()),
        &[&p],
    )
    .await;
    let mut updates = e.subscribe();
    let id = e
        .start_run(p.clone(), json!({}), json!({"ip": "192.0.2.9"}))
        .await
        .expect("starts");
    // Let the run end before anyone waits for it.
    loop {
        if let Update::RunFinished { run, .. } = updates.recv().await.expect("updates")
            && run == id
        {
            break;
        }
    }
    let done = e.wait(&id).await.expect("finished");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(
        done.output.map(|o| (*o).clone()),
        Some(json!({"result": "192.0.2.9"}))
    );
}

#[tokio::test]
async fn bad_inputs_are_refused_before_a_run_exists() {
    let p = plan(LINEAR);
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), Arc::new(Echo::default()), &[&p]).await;
    for (inputs, needle) in [
        (json!({}), "input `ip` is required"),
        (json!({"ip": 7}), "must be string, got a number"),
        (json!({"ip": "x", "zzz": 1}), "unknown input `zzz`"),
        (json!([1]), "must be a map"),
    ] {
        let err = e
            .start_run(p.clone(), Value::Null, inputs)
            .await
            .expect_err("refused");
        assert!(matches!(err, EngineError::Inputs(_)));
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert!(store.summaries(10).expect("list").is_empty());
}

#[tokio::test]
async fn an_unfinished_run_resumes_after_a_restart_with_the_same_idempotency_key() {
    let p = plan(LINEAR);
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    // First process: step `a` never returns.
    let (id, first) = stopped_while_a_runs(store.clone(), &p, true).await;
    let id = id.expect("started");
    // Second process, same store.
    let echo = Arc::new(Echo::default());
    let e2 = engine(store.clone(), echo.clone(), &[&p]).await;
    let done = e2.wait(&id).await.expect("finishes");
    assert_eq!(done.status, RunStatus::Succeeded);
    let again = echo.calls_for("a");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].idempotency_key, first.idempotency_key);
    assert_eq!(again[0].attempt, first.attempt);
    assert_eq!(echo.calls_for("b").len(), 1);
}

#[tokio::test]
async fn a_completed_step_never_runs_again_after_a_restart() {
    let p = plan(LINEAR);
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    // `a` completes; `b`'s package is gated so the run stops in the middle.
    let yaml = LINEAR.replace(
        "needs: a\n    uses: t/echo@1",
        "needs: a\n    uses: slow/echo@1",
    );
    let p2 = plan(&yaml);
    let first = Arc::new(Echo {
        gate: Some(Arc::new(Notify::new())),
        gated_package: Some("slow".into()),
        ..Echo::default()
    });
    let e1 = engine(store.clone(), first.clone(), &[&p2]).await;
    let id = e1
        .start_run(p2.clone(), json!({}), json!({"ip": "192.0.2.1"}))
        .await
        .expect("starts");
    let mut updates = e1.subscribe();
    while first.calls_for("b").is_empty() {
        let _ = tokio::time::timeout(Duration::from_millis(50), updates.recv()).await;
    }
    e1.shutdown().await;
    let second = Arc::new(Echo::default());
    let e2 = engine(store.clone(), second.clone(), &[&p2]).await;
    assert_eq!(
        e2.wait(&id).await.expect("finishes").status,
        RunStatus::Succeeded
    );
    assert!(
        second.calls_for("a").is_empty(),
        "a completed before the restart"
    );
    assert_eq!(second.calls_for("b").len(), 1);
    drop(p);
}

const GATED: &str = r#"
id: gated
steps:
  - id: ok
    approval:
      approvers: { roles: [responder] }
      message: "Go?"
  - id: act
    needs: ok
    uses: t/echo@1
    with: { by: "${{ steps.ok.output.by }}" }
outputs:
  by: ${{ steps.act.output.by }}
"#;

#[tokio::test]
async fn approvals_are_listed_checked_and_decided() {
    let p = plan(GATED);
    let e = engine(
        Arc::new(MemoryStore::new()),
        Arc::new(Echo::default()),
        &[&p],
    )
    .await;
    let id = e
        .start_run(p.clone(), json!({}), Value::Null)
        .await
        .expect("starts");
    let pending = loop {
        let p = e.pending_approvals().await.expect("inbox");
        if !p.is_empty() {
            break p;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(pending[0].run, id);
    assert_eq!(pending[0].message, "Go?");
    let refused = e
        .decide(
            &id,
            "ok",
            Decision::Approve,
            "eve",
            &["viewer".into()],
            None,
        )
        .await
        .expect_err("not an approver");
    assert!(
        refused.to_string().contains("eve may not decide"),
        "{refused}"
    );
    e.decide(
        &id,
        "ok",
        Decision::Approve,
        "bob",
        &["responder".into()],
        Some("fine".into()),
    )
    .await
    .expect("decided");
    let done = e.wait(&id).await.expect("finishes");
    assert_eq!(*done.output.expect("outputs"), json!({"by": "bob"}));
    assert!(e.pending_approvals().await.expect("inbox").is_empty());
}

#[tokio::test]
async fn of_two_decisions_at_once_only_the_first_is_acknowledged() {
    let p = plan(GATED);
    let e = engine(
        Arc::new(MemoryStore::new()),
        Arc::new(Echo::default()),
        &[&p],
    )
    .await;
    let id = e
        .start_run(p.clone(), json!({}), Value::Null)
        .await
        .expect("starts");
    while e.pending_approvals().await.expect("inbox").is_empty() {
        tokio::task::yield_now().await;
    }
    let roles = ["responder".to_string()];
    // Both reach the driver in one batch: the second must be checked
    // against the run after the first, not before.
    let (first, second) = tokio::join!(
        e.decide(&id, "ok", Decision::Reject, "bob", &roles, None),
        e.decide(&id, "ok", Decision::Approve, "alice", &roles, None),
    );
    assert!(
        first.is_ok() != second.is_ok(),
        "exactly one decision counts: {first:?} {second:?}"
    );
    let done = e.wait(&id).await.expect("finishes");
    match (first.is_ok(), &done.status) {
        (true, RunStatus::Failed(f)) => assert!(f.message.contains("rejected by bob"), "{f:?}"),
        (false, RunStatus::Succeeded) => {
            assert_eq!(*done.output.expect("outputs"), json!({"by": "alice"}))
        }
        other => panic!("the acknowledged decision did not decide: {other:?}"),
    }
}

#[tokio::test]
async fn cancel_ends_a_run_waiting_for_approval() {
    let p = plan(GATED);
    let e = engine(
        Arc::new(MemoryStore::new()),
        Arc::new(Echo::default()),
        &[&p],
    )
    .await;
    let id = e
        .start_run(p.clone(), json!({}), Value::Null)
        .await
        .expect("starts");
    e.cancel(&id, "carol").await.expect("cancelled");
    assert_eq!(
        e.wait(&id).await.expect("finishes").status,
        RunStatus::Cancelled
    );
    assert!(matches!(
        e.cancel(&id, "carol").await,
        Err(EngineError::NoSuchRun(_))
    ));
}

#[tokio::test]
async fn cancelling_a_run_cancels_its_child_runs() {
    let child = plan(GATED);
    let parent = plan("id: parent\nsteps:\n  - { id: sub, playbook: gated }\n");
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), Arc::new(Echo::default()), &[&child, &parent]).await;
    let id = e
        .start_run(parent.clone(), json!({}), Value::Null)
        .await
        .expect("starts");
    // The child waits for its approval.
    while e.pending_approvals().await.expect("inbox").is_empty() {
        tokio::task::yield_now().await;
    }
    e.cancel(&id, "carol").await.expect("cancelled");
    assert_eq!(
        e.wait(&id).await.expect("finishes").status,
        RunStatus::Cancelled
    );
    let child_id = format!("{id}~sub");
    // A bound, not a wait: a child left running would block here for ever.
    let child_end = tokio::time::timeout(Duration::from_secs(30), e.wait(&child_id))
        .await
        .expect("the child run ends with its parent");
    assert_eq!(child_end.expect("finishes").status, RunStatus::Cancelled);
    assert!(e.pending_approvals().await.expect("inbox").is_empty());
}

#[tokio::test]
async fn playbooks_that_start_each_other_stop_at_the_depth_limit() {
    let ping = plan("id: ping\nsteps:\n  - { id: call, playbook: pong }\n");
    let pong = plan("id: pong\nsteps:\n  - { id: call, playbook: ping }\n");
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), Arc::new(Echo::default()), &[&ping, &pong]).await;
    let id = e
        .start_run(ping.clone(), json!({}), Value::Null)
        .await
        .expect("starts");
    match e.wait(&id).await.expect("finishes").status {
        RunStatus::Failed(f) => {
            assert!(f.message.contains("levels deep"), "{}", f.message);
            assert!(f.message.contains("cycle"), "{}", f.message);
        }
        other => panic!("{other:?}"),
    }
    // The root plus MAX_CHILD_DEPTH children, every one finished.
    let all = store.summaries(usize::MAX).expect("index");
    assert_eq!(all.len(), 1 + allama_engine::MAX_CHILD_DEPTH);
    assert!(all.iter().all(|s| s.status == "failed"), "{all:?}");
}

#[tokio::test]
async fn a_child_playbook_runs_as_its_own_run_and_returns_its_outputs() {
    let child = plan(
        r#"
id: child
inputs:
  domain: { type: string, required: true }
steps:
  - id: look
    uses: t/echo@1
    with: { d: "${{ inputs.domain }}" }
outputs:
  seen: ${{ steps.look.output.d }}
"#,
    );
    let parent = plan(
        r#"
id: parent
steps:
  - id: sub
    playbook: child
    with: { domain: "${{ trigger.domain }}" }
outputs:
  child: ${{ steps.sub.output.seen }}
"#,
    );
    let echo = Arc::new(Echo::default());
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), echo.clone(), &[&child, &parent]).await;
    let id = e
        .start_run(
            parent.clone(),
            json!({"domain": "evil.example"}),
            Value::Null,
        )
        .await
        .expect("starts");
    let done = e.wait(&id).await.expect("finishes");
    assert_eq!(
        *done.output.expect("outputs"),
        json!({"child": "evil.example"})
    );
    let child_run = format!("{id}~sub");
    let s = store
        .summary(&child_run)
        .expect("read")
        .expect("child run exists");
    assert_eq!(s.status, "succeeded");
    assert_eq!(s.parent.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn a_saturated_package_holds_back_only_its_own_steps() {
    let p = plan(
        r#"
id: limits
steps:
  - id: slow
    for_each: ${{ trigger.items }}
    concurrency: 10
    uses: slow/echo@1
  - id: fast
    for_each: ${{ trigger.items }}
    concurrency: 10
    uses: fast/echo@1
"#,
    );
    let gate = Arc::new(Notify::new());
    let echo = Arc::new(Echo {
        gate: Some(gate.clone()),
        gated_package: Some("slow".into()),
        limit: Some(("slow".into(), 2)),
        ..Echo::default()
    });
    let e = engine(Arc::new(MemoryStore::new()), echo.clone(), &[&p]).await;
    let items: Vec<u32> = (0..6).collect();
    let id = e
        .start_run(p.clone(), json!({ "items": items }), Value::Null)
        .await
        .expect("starts");
    let mut updates = e.subscribe();
    // Every `fast` item finishes while `slow` is stuck behind its limit.
    let mut fast_done = 0;
    while fast_done < 6 {
        if let Ok(Ok(Update::TaskFinished { step, .. })) =
            tokio::time::timeout(Duration::from_secs(5), updates.recv()).await
            && step == "fast"
        {
            fast_done += 1;
        }
    }
    assert_eq!(
        echo.calls_for("slow").len(),
        2,
        "only two slow steps admitted"
    );
    let opened = Arc::new(AtomicUsize::new(0));
    while echo.calls_for("slow").len() < 6 || echo.in_flight.lock().unwrap()["slow"] > 0 {
        gate.notify_waiters();
        opened.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    assert_eq!(
        e.wait(&id).await.expect("finishes").status,
        RunStatus::Succeeded
    );
    assert_eq!(echo.max_in_flight.lock().unwrap()["slow"], 2);
}

#[tokio::test]
async fn a_big_trigger_is_stored_once_however_many_steps_receive_it() {
    let p = plan(
        r#"
id: big
steps:
  - id: s1
    uses: t/echo@1
    with: { event: "${{ trigger }}" }
  - id: s2
    needs: s1
    uses: t/echo@1
    with: { event: "${{ trigger }}" }
  - id: s3
    needs: s2
    uses: t/echo@1
    with: { event: "${{ steps.s2.output.event }}" }
"#,
    );
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), Arc::new(Echo::default()), &[&p]).await;
    let big: Vec<String> = (0..20_000).map(|i| format!("indicator-{i}")).collect();
    let id = e
        .start_run(p.clone(), json!({ "iocs": big }), Value::Null)
        .await
        .expect("starts");
    assert_eq!(
        e.wait(&id).await.expect("finishes").status,
        RunStatus::Succeeded
    );
    assert_eq!(
        store.blob_count(),
        1,
        "one blob for the alert, referred to by every event"
    );
    // And the history reads back whole.
    let records = store.history(&id).expect("history");
    let mut cache = HashMap::new();
    let started = allama_engine::codec::decode(&id, 0, &records[0], store.as_ref(), &mut cache)
        .expect("decodes");
    match started {
        allama_engine::Event::Started { trigger, .. } => {
            assert_eq!(trigger["iocs"].as_array().map(Vec::len), Some(20_000));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_failing_step_fails_the_run_with_the_step_named() {
    let p = plan(LINEAR);
    let echo = Arc::new(Echo {
        fail_step: Some("b".into()),
        ..Echo::default()
    });
    let e = engine(Arc::new(MemoryStore::new()), echo, &[&p]).await;
    let id = e
        .start_run(p.clone(), json!({}), json!({"ip": "192.0.2.1"}))
        .await
        .expect("starts");
    match e.wait(&id).await.expect("finishes").status {
        RunStatus::Failed(f) => assert_eq!(f.message, "step `b` failed: vendor down"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn graceful_shutdowns_rerun_an_attempt_without_quarantining_it() {
    let p = plan(LINEAR);
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let mut id = None;
    let mut keys = Vec::new();
    // Far more deploys during one long step than it takes crashes to quarantine it.
    for _ in 0..allama_engine::machine::MAX_CRASHES * 2 {
        let (started, call) = stopped_while_a_runs(store.clone(), &p, id.is_none()).await;
        id = id.or(started);
        keys.push(call.idempotency_key);
    }
    let id = id.expect("started");
    let echo = Arc::new(Echo::default());
    let e = engine(store.clone(), echo.clone(), &[&p]).await;
    assert_eq!(
        e.wait(&id).await.expect("finishes").status,
        RunStatus::Succeeded
    );
    keys.push(echo.calls_for("a")[0].idempotency_key.clone());
    keys.dedup();
    assert_eq!(keys.len(), 1, "every re-run is the same call: {keys:?}");
    let history = allama_engine::history::events(store.as_ref(), &id).expect("history");
    let stops = history
        .iter()
        .filter(|e| {
            matches!(
                e,
                allama_engine::Event::TaskInterrupted { shutdown: true, .. }
            )
        })
        .count();
    assert_eq!(stops, allama_engine::machine::MAX_CRASHES as usize * 2);
}

/// A store whose commits fail on demand: `fail_after(n)` lets `n` more
/// commits through, then fails the next one.
struct FlakyStore {
    inner: MemoryStore,
    countdown: Mutex<Option<u32>>,
}

impl FlakyStore {
    fn fail_after(&self, n: u32) {
        *self.countdown.lock().unwrap() = Some(n);
    }
}

impl RunStore for FlakyStore {
    fn append(
        &self,
        run: &str,
        first_seq: u64,
        records: &[Vec<u8>],
    ) -> Result<(), allama_engine::StoreError> {
        self.inner.append(run, first_seq, records)
    }
    fn history(&self, run: &str) -> Result<Vec<Vec<u8>>, allama_engine::StoreError> {
        self.inner.history(run)
    }
    fn put_summary(&self, s: &allama_engine::RunSummary) -> Result<(), allama_engine::StoreError> {
        self.inner.put_summary(s)
    }
    fn summary(
        &self,
        run: &str,
    ) -> Result<Option<allama_engine::RunSummary>, allama_engine::StoreError> {
        self.inner.summary(run)
    }
    fn summaries(
        &self,
        limit: usize,
    ) -> Result<Vec<allama_engine::RunSummary>, allama_engine::StoreError> {
        self.inner.summaries(limit)
    }
    fn active(&self) -> Result<Vec<String>, allama_engine::StoreError> {
        self.inner.active()
    }
    fn put_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), allama_engine::StoreError> {
        self.inner.put_blob(hash, bytes)
    }
    fn get_blob(&self, hash: &str) -> Result<Option<Vec<u8>>, allama_engine::StoreError> {
        self.inner.get_blob(hash)
    }
    fn commit(&self) -> allama_engine::store::CommitFuture {
        let mut c = self.countdown.lock().unwrap();
        let fail = match c.as_mut() {
            Some(0) => {
                *c = None;
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        };
        Box::pin(async move {
            if fail {
                Err(allama_engine::StoreError::Io("disk full".into()))
            } else {
                Ok(())
            }
        })
    }
}

/// Arms the store when step `a` runs, then returns.
struct ArmingExec {
    store: Arc<FlakyStore>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Executor for ArmingExec {
    fn invoke(&self, inv: Invocation) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        self.calls.lock().unwrap().push(inv.step.clone());
        if inv.step == "a" {
            // `a`'s result commits; the commit of `b`'s start fails.
            self.store.fail_after(1);
        }
        Box::pin(async move {
            Outcome {
                result: Ok(inv.input.clone()),
                duration: Duration::from_micros(3),
            }
        })
    }
}

#[tokio::test]
async fn a_resumed_run_whose_attempt_cannot_be_logged_stops_and_resumes_later() {
    let p = plan(LINEAR);
    let store = Arc::new(FlakyStore {
        inner: MemoryStore::new(),
        countdown: Mutex::new(None),
    });
    // First process: stopped while `a` runs, so the run resumes "careful".
    let (id, _) = stopped_while_a_runs(store.clone(), &p, true).await;
    let id = id.expect("started");
    // Second process: `a` completes; logging `b`'s start fails.
    let calls = Arc::new(Mutex::new(Vec::new()));
    let e2 = Engine::start(
        store.clone(),
        Arc::new(ArmingExec {
            store: store.clone(),
            calls: calls.clone(),
        }),
        Library::with(&[&p]),
        EngineConfig::default(),
    )
    .await
    .expect("engine starts");
    // A bound, not a wait: a run held in memory with nothing running never ends.
    let stopped = tokio::time::timeout(Duration::from_secs(30), e2.wait(&id))
        .await
        .expect("the waiter hears that the run stopped")
        .expect("answer");
    assert_eq!(stopped.status, RunStatus::Running);
    assert_eq!(*calls.lock().unwrap(), ["a"], "b must not run unlogged");
    assert!(e2.inspect(&id).await.expect("inspect").is_none());
    e2.shutdown().await;
    // Third process: the run carries on from its history.
    let echo = Arc::new(Echo::default());
    let e3 = engine(store.clone(), echo.clone(), &[&p]).await;
    assert_eq!(
        e3.wait(&id).await.expect("finishes").status,
        RunStatus::Succeeded
    );
    assert!(echo.calls_for("a").is_empty());
    assert_eq!(echo.calls_for("b").len(), 1);
}

#[tokio::test]
async fn a_parent_waiting_on_its_childs_approval_shows_as_waiting() {
    let child = plan(GATED);
    let parent = plan("id: parent\nsteps:\n  - { id: sub, playbook: gated }\n");
    let e = engine(
        Arc::new(MemoryStore::new()),
        Arc::new(Echo::default()),
        &[&child, &parent],
    )
    .await;
    let id = e
        .start_run(parent.clone(), json!({}), Value::Null)
        .await
        .expect("starts");
    let view = loop {
        let v = e.inspect(&id).await.expect("inspect").expect("live");
        if !v.awaiting.is_empty() {
            break v;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(view.active_tasks, 0, "only a person can move it on");
    assert_eq!(view.awaiting[0].run, format!("{id}~sub"));
    assert_eq!(view.awaiting[0].step, "ok");
    e.decide(
        &view.awaiting[0].run,
        "ok",
        Decision::Approve,
        "dana",
        &["responder".to_string()],
        None,
    )
    .await
    .expect("decided");
    assert_eq!(
        e.wait(&id).await.expect("finishes").status,
        RunStatus::Succeeded
    );
}

#[tokio::test]
async fn cancelling_a_stored_run_never_dispatches_its_interrupted_attempt_again() {
    let p = plan(LINEAR);
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let (id, _) = stopped_while_a_runs(store.clone(), &p, true).await;
    let id = id.expect("started");
    let lib = Library::with(&[&p]);
    let cancelled =
        allama_engine::history::cancel_stored(store.as_ref(), lib.as_ref(), &id, "erin")
            .await
            .expect("cancelled");
    assert_eq!(cancelled, std::slice::from_ref(&id));
    let echo = Arc::new(Echo::default());
    let e2 = engine(store.clone(), echo.clone(), &[&p]).await;
    assert_eq!(
        e2.wait(&id).await.expect("finishes").status,
        RunStatus::Cancelled
    );
    assert!(echo.calls_for("a").is_empty(), "nothing ran again");
    assert_eq!(store.summary(&id).unwrap().unwrap().status, "cancelled");
    // A finished run has nothing to cancel.
    let again = allama_engine::history::cancel_stored(store.as_ref(), lib.as_ref(), &id, "erin")
        .await
        .expect("read");
    assert!(again.is_empty());
}

#[tokio::test]
async fn a_run_whose_start_never_reached_the_history_is_ended_not_left_running() {
    let p = plan(LINEAR);
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    // The index entry survived the crash; the `started` event did not.
    store
        .put_summary(&allama_engine::RunSummary {
            id: "r-half".into(),
            playbook: "linear".into(),
            status: "running".into(),
            started_at: 1,
            finished_at: None,
            error: None,
            parent: None,
        })
        .unwrap();
    let echo = Arc::new(Echo::default());
    let _e = engine(store.clone(), echo.clone(), &[&p]).await;
    let s = store.summary("r-half").unwrap().unwrap();
    assert_eq!(s.status, "failed");
    assert!(s.error.unwrap().contains("never started"));
    assert!(store.active().unwrap().is_empty());
    assert!(echo.calls_for("a").is_empty());
}

/// A store that checks, at every index entry saying "running", that the
/// run's history already holds its `started` event: the store may be left
/// holding any prefix of the writes (a crash, a backup), and an entry with
/// no history is a run that can neither resume nor show.
struct HistoryFirst {
    inner: MemoryStore,
    violations: Mutex<Vec<String>>,
}

impl RunStore for HistoryFirst {
    fn append(
        &self,
        run: &str,
        first_seq: u64,
        records: &[Vec<u8>],
    ) -> Result<(), allama_engine::store::StoreError> {
        self.inner.append(run, first_seq, records)
    }
    fn history(&self, run: &str) -> Result<Vec<Vec<u8>>, allama_engine::store::StoreError> {
        self.inner.history(run)
    }
    fn put_summary(
        &self,
        s: &allama_engine::RunSummary,
    ) -> Result<(), allama_engine::store::StoreError> {
        if s.status == "running" && self.inner.history(&s.id)?.is_empty() {
            self.violations.lock().unwrap().push(s.id.clone());
        }
        self.inner.put_summary(s)
    }
    fn summary(
        &self,
        run: &str,
    ) -> Result<Option<allama_engine::RunSummary>, allama_engine::store::StoreError> {
        self.inner.summary(run)
    }
    fn summaries(
        &self,
        limit: usize,
    ) -> Result<Vec<allama_engine::RunSummary>, allama_engine::store::StoreError> {
        self.inner.summaries(limit)
    }
    fn active(&self) -> Result<Vec<String>, allama_engine::store::StoreError> {
        self.inner.active()
    }
    fn put_blob(&self, hash: &str, bytes: &[u8]) -> Result<(), allama_engine::store::StoreError> {
        self.inner.put_blob(hash, bytes)
    }
    fn get_blob(&self, hash: &str) -> Result<Option<Vec<u8>>, allama_engine::store::StoreError> {
        self.inner.get_blob(hash)
    }
    fn commit(&self) -> allama_engine::store::CommitFuture {
        self.inner.commit()
    }
}

#[tokio::test]
async fn a_run_is_written_to_its_history_before_the_index_says_running() {
    let p = plan(LINEAR);
    let store = Arc::new(HistoryFirst {
        inner: MemoryStore::new(),
        violations: Mutex::default(),
    });
    let echo = Arc::new(Echo::default());
    let e = engine(store.clone(), echo, &[&p]).await;
    for _ in 0..3 {
        let id = e
            .start_run(p.clone(), json!({}), json!({"ip": "192.0.2.9"}))
            .await
            .expect("starts");
        assert_eq!(
            e.wait(&id).await.expect("finishes").status,
            RunStatus::Succeeded
        );
    }
    assert_eq!(*store.violations.lock().unwrap(), Vec::<String>::new());
}

/// A caller may choose a run's id (a webhook claim records it first), but
/// only a fresh id of the shape `new_run_id` makes: a taken id, a child
/// run's id or anything else is refused, and nothing is stored for it.
#[tokio::test]
async fn a_chosen_run_id_must_be_fresh_and_well_formed() {
    let p = plan(LINEAR);
    let store = Arc::new(MemoryStore::new());
    let e = engine(store.clone(), Arc::new(Echo::default()), &[&p]).await;
    let id = allama_engine::driver::new_run_id();
    let inputs = || json!({"ip": "192.0.2.4"});
    let got = e
        .start_run_as(id.clone(), p.clone(), json!({}), inputs())
        .await
        .expect("a fresh id starts");
    assert_eq!(got, id);
    assert_eq!(e.wait(&id).await.unwrap().status, RunStatus::Succeeded);
    let err = e
        .start_run_as(id.clone(), p.clone(), json!({}), inputs())
        .await
        .expect_err("taken");
    assert!(
        matches!(err, EngineError::RunId(ref i, _) if *i == id),
        "{err}"
    );
    let mut upper = allama_engine::driver::new_run_id();
    upper.make_ascii_uppercase();
    let child = format!("{}~a", allama_engine::driver::new_run_id());
    let hostile = [
        String::new(),
        "../../etc/passwd".into(),
        "r1".into(),
        upper,
        child,
        format!("r{}", "☃".repeat(9)),
        format!("r{}", "g".repeat(27)),
        format!("{}\0", &allama_engine::driver::new_run_id()[..27]),
    ];
    for bad in hostile {
        let err = e
            .start_run_as(bad.clone(), p.clone(), json!({}), inputs())
            .await
            .expect_err("refused");
        assert!(matches!(err, EngineError::RunId(..)), "{bad:?}: {err}");
        assert!(store.summary(&bad).unwrap().is_none(), "{bad:?}");
        assert!(store.history(&bad).unwrap().is_empty(), "{bad:?}");
    }
}

/// Events are written to the store just before a commit; when the driver
/// has nothing else to do, what it encoded goes to the store at once, so a
/// step still running shows as started in the run's history.
#[tokio::test]
async fn a_running_step_is_in_the_history_before_it_ends() {
    let p = plan(LINEAR);
    let store = Arc::new(MemoryStore::new());
    let stuck = Arc::new(Echo {
        gate: Some(Arc::new(Notify::new())),
        gated_package: Some("t".into()),
        ..Echo::default()
    });
    let e = engine(store.clone(), stuck.clone(), &[&p]).await;
    let mut updates = e.subscribe();
    let id = e
        .start_run(p.clone(), json!({}), json!({"ip": "192.0.2.5"}))
        .await
        .expect("starts");
    let started_a = |store: &MemoryStore| {
        allama_engine::history::events(store, &id)
            .unwrap()
            .iter()
            .any(|ev| matches!(ev, allama_engine::Event::TaskStarted { step, .. } if step == "a"))
    };
    // Step `a` never returns while this waits; bounded, not timed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !started_a(&store) {
        assert!(
            std::time::Instant::now() < deadline,
            "a's start never reached the history while a ran"
        );
        let _ = tokio::time::timeout(Duration::from_millis(20), updates.recv()).await;
    }
    assert_eq!(stuck.calls_for("a").len(), 1);
    assert!(stuck.calls_for("b").is_empty());
    e.shutdown().await;
}

/// The store's active mark relies on this: an id made at or after a time
/// sorts at or above `first_run_id_at` of that time, and below that of
/// any later millisecond only if it was made before it.
#[test]
fn run_ids_sort_by_the_time_they_were_made() {
    use allama_engine::driver::{first_run_id_at, new_run_id, now_ms};
    let before = now_ms();
    let ids: Vec<String> = (0..100).map(|_| new_run_id()).collect();
    let after = now_ms();
    for id in &ids {
        assert!(id.as_str() >= first_run_id_at(before).as_str(), "{id}");
        assert!(id.as_str() < first_run_id_at(after + 1).as_str(), "{id}");
    }
    // A child run's id sorts right after its parent's, below a later mark.
    let child = format!("{}~1", ids[0]);
    assert!(child.as_str() < first_run_id_at(after + 1).as_str());
    assert!(first_run_id_at(before) < first_run_id_at(before + 1));
}
