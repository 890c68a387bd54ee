//! The driver: carries out what the state machine decides. One task owns
//! every live run; it takes a batch of messages (results, timers,
//! decisions, new runs), appends their events, waits for one group commit,
//! then applies them and executes the resulting actions. So an effect is
//! never acted on before it is durable, and one sync serves the whole batch.
//!
//! Steps run through the [`Executor`] trait (the runtime's adapter lives
//! outside this crate); playbooks come from [`Plans`]; storage is a
//! [`RunStore`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::codec;
use crate::event::{Decision, Event, Failure, FailureClass, Millis, ParentLink, TimerKey};
use crate::inputs::{InputError, resolve_inputs};
use crate::machine::{Action, ApprovalRequest, DecisionError, Invocation, Run, RunStatus, Target};
use crate::plan::Plan;
use crate::store::{RunStore, RunSummary, StoreError};

/// What an attempt returned.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The output, or why it failed.
    pub result: Result<Arc<Value>, Failure>,
    /// How long it ran.
    pub duration: Duration,
}

/// Runs one attempt of an action. Implemented by the runtime adapter (and by
/// test doubles): the engine knows nothing of how a step executes.
pub trait Executor: Send + Sync + 'static {
    /// Runs the attempt. Must not panic; failures are `Outcome`s.
    fn invoke(&self, invocation: Invocation) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;

    /// The concurrency limit for a package, if the operator set one.
    fn package_limit(&self, _package: &str) -> Option<usize> {
        None
    }
}

/// Where the engine finds playbook versions: to start child runs and to
/// resume runs after a restart with the exact version they started with.
pub trait Plans: Send + Sync + 'static {
    /// The version with this digest, or the current one when `digest` is `None`.
    fn plan(&self, id: &str, digest: Option<&str>) -> Option<Arc<Plan>>;
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Payloads larger than this go to blobs.
    pub blob_threshold: usize,
    /// Most messages handled per group commit.
    pub max_batch: usize,
    /// Which unfinished runs to resume at start.
    pub resume: ResumeScope,
    /// How long a small batch waits for more results while attempts are
    /// running, before it is committed. A pooled Wasm step takes ~10 µs and
    /// an fsync ~300 µs, so two parallel steps finishing microseconds apart
    /// share one commit instead of queueing for two. Default 50 µs.
    pub commit_linger: Duration,
}

/// Which unfinished runs an engine resumes when it starts.
#[derive(Clone, Debug, Default)]
pub enum ResumeScope {
    /// Every one (a server, `allama runs resume`).
    #[default]
    All,
    /// None (a one-off `allama playbook run`).
    None,
    /// These runs and their child runs (`allama runs approve RUN …`).
    Only(Vec<String>),
}

impl ResumeScope {
    fn includes(&self, run: &str) -> bool {
        match self {
            ResumeScope::All => true,
            ResumeScope::None => false,
            ResumeScope::Only(ids) => ids
                .iter()
                .any(|id| run == id || run.starts_with(&format!("{id}~"))),
        }
    }
}

/// A live run at a glance, its live child runs included.
#[derive(Clone, Debug)]
pub struct RunView {
    /// Its status.
    pub status: RunStatus,
    /// Attempts running or waiting to retry, in the run and its child runs
    /// (a step waiting on a live child run is not counted: the child's own
    /// attempts are).
    pub active_tasks: usize,
    /// Approvals it and its child runs wait for (each names its run).
    pub awaiting: Vec<ApprovalRequest>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            blob_threshold: codec::DEFAULT_BLOB_THRESHOLD,
            max_batch: 4096,
            resume: ResumeScope::All,
            commit_linger: Duration::from_micros(50),
        }
    }
}

/// Something that happened, for live views (`allama playbook run`). Missed
/// updates are not an error: the history is the record.
#[derive(Clone, Debug)]
pub enum Update {
    /// A run (or child run) started; its start is durable.
    RunStarted {
        /// The run.
        run: String,
        /// Its playbook's id.
        playbook: String,
    },
    /// An attempt started.
    TaskStarted {
        /// The run.
        run: String,
        /// The step.
        step: String,
        /// The item.
        item: Option<u32>,
        /// The attempt.
        attempt: u32,
    },
    /// An attempt finished.
    TaskFinished {
        /// The run.
        run: String,
        /// The step.
        step: String,
        /// The item.
        item: Option<u32>,
        /// The attempt.
        attempt: u32,
        /// Output or error.
        result: Result<Arc<Value>, Failure>,
        /// How long it ran.
        duration: Duration,
    },
    /// An approval is waiting.
    ApprovalRequested(ApprovalRequest),
    /// A run finished.
    RunFinished {
        /// The run.
        run: String,
        /// How.
        status: RunStatus,
    },
}

/// Why the engine refused a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The inputs do not match the playbook's `inputs`.
    #[error(transparent)]
    Inputs(#[from] InputError),
    /// A decision was refused.
    #[error(transparent)]
    Decision(#[from] DecisionError),
    /// No such run (or it has finished, for operations on live runs).
    #[error("no running run {0}")]
    NoSuchRun(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
    /// A run id given to [`Engine::start_run_as`] is taken or not a run id.
    #[error("run id {0:?} cannot be used: {1}")]
    RunId(String, &'static str),
}

/// How a run ended, as `wait` reports it.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The run.
    pub run: String,
    /// Its final status.
    pub status: RunStatus,
    /// Its outputs, if it succeeded.
    pub output: Option<Arc<Value>>,
}

enum Msg {
    Start {
        plan: Arc<Plan>,
        trigger: Arc<Value>,
        inputs: Value,
        parent: Option<ParentLink>,
        /// The run id the caller chose (see [`Engine::start_run_as`]).
        id: Option<String>,
        reply: Option<oneshot::Sender<Result<String, EngineError>>>,
    },
    Done {
        run: String,
        step: String,
        item: Option<u32>,
        attempt: u32,
        outcome: Outcome,
    },
    Timer {
        run: String,
        timer: TimerKey,
    },
    Decide {
        run: String,
        step: String,
        decision: Decision,
        user: String,
        roles: Vec<String>,
        comment: Option<String>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Cancel {
        run: String,
        by: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Wait {
        run: String,
        reply: oneshot::Sender<Finished>,
    },
    Pending {
        reply: oneshot::Sender<Vec<ApprovalRequest>>,
    },
    Inspect {
        run: String,
        reply: oneshot::Sender<Option<RunView>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A handle on the running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Msg>,
    updates: broadcast::Sender<Update>,
}

impl Engine {
    /// Starts the engine: resumes every unfinished run in the store, then
    /// serves requests. Returns once the recovered runs are back in flight.
    pub async fn start(
        store: Arc<dyn RunStore>,
        executor: Arc<dyn Executor>,
        plans: Arc<dyn Plans>,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (updates, _) = broadcast::channel(4096);
        let mut driver = Driver {
            runs: HashMap::new(),
            store,
            executor,
            plans,
            config,
            tx: tx.clone(),
            updates: updates.clone(),
            waiters: HashMap::new(),
            inflight: HashMap::new(),
            careful: HashSet::new(),
            limits: HashMap::new(),
            staged: Vec::new(),
            unwritten: Unwritten::default(),
            after_commit: Vec::new(),
        };
        driver.recover().await?;
        tokio::spawn(driver.serve(rx));
        Ok(Engine { tx, updates })
    }

    /// Starts a run. Returns its id once the start is durable.
    pub async fn start_run(
        &self,
        plan: Arc<Plan>,
        trigger: Value,
        inputs: Value,
    ) -> Result<String, EngineError> {
        self.begin(plan, trigger, inputs, None).await
    }

    /// Starts a run under an id the caller made with [`new_run_id`], so it
    /// can record the id before the run exists (a webhook delivery's claim).
    /// Refused if a run with that id exists or the id could not be one.
    pub async fn start_run_as(
        &self,
        id: String,
        plan: Arc<Plan>,
        trigger: Value,
        inputs: Value,
    ) -> Result<String, EngineError> {
        self.begin(plan, trigger, inputs, Some(id)).await
    }

    async fn begin(
        &self,
        plan: Arc<Plan>,
        trigger: Value,
        inputs: Value,
        id: Option<String>,
    ) -> Result<String, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Start {
            plan,
            trigger: Arc::new(trigger),
            inputs,
            parent: None,
            id,
            reply: Some(reply),
        })?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Waits until a run finishes (at once if it has). A run this engine
    /// stops carrying because its store failed is reported with status
    /// `Running`: it is unfinished in the store and resumes at the next start.
    pub async fn wait(&self, run: &str) -> Result<Finished, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Wait {
            run: run.to_string(),
            reply,
        })?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Records an approval decision by `user` (holding `roles`).
    pub async fn decide(
        &self,
        run: &str,
        step: &str,
        decision: Decision,
        user: &str,
        roles: &[String],
        comment: Option<String>,
    ) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Decide {
            run: run.to_string(),
            step: step.to_string(),
            decision,
            user: user.to_string(),
            roles: roles.to_vec(),
            comment,
            reply,
        })?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Cancels a run.
    pub async fn cancel(&self, run: &str, by: &str) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Cancel {
            run: run.to_string(),
            by: by.to_string(),
            reply,
        })?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Approvals waiting for a decision, across live runs.
    pub async fn pending_approvals(&self) -> Result<Vec<ApprovalRequest>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Pending { reply })?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// A live run at a glance; `None` once it has finished (or if unknown).
    pub async fn inspect(&self, run: &str) -> Result<Option<RunView>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Inspect {
            run: run.to_string(),
            reply,
        })?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Live updates.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    /// Stops taking work once everything accepted so far is durable. Runs in
    /// flight stay in the store and resume at the next start.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Msg::Shutdown { reply }).is_ok() {
            let _ = rx.await;
        }
    }

    fn send(&self, msg: Msg) -> Result<(), EngineError> {
        self.tx.send(msg).map_err(|_| EngineError::Stopped)
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new run id: time-ordered, so listings sort naturally, with random bits
/// so ids are not guessable.
pub fn new_run_id() -> String {
    let mut r = [0u8; 6];
    // Without randomness the id is still unique (time + counter); the
    // random part only makes it unguessable.
    let _ = getrandom::fill(&mut r);
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}{:04x}{}",
        first_run_id_at(now_ms()),
        n & 0xffff,
        hex::encode(r)
    )
}

/// The smallest id [`new_run_id`] gives at `ms` (and after): ids sort by
/// the time they were made, so a store can find the runs made since then.
pub fn first_run_id_at(ms: u64) -> String {
    format!("r{ms:011x}")
}

/// Whether `id` has the shape [`new_run_id`] gives (a chosen id is never a
/// child run's id, nor anything a key or a path could misread).
fn is_run_id(id: &str) -> bool {
    id.len() == 28
        && id.starts_with('r')
        && id[1..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

struct Live {
    run: Run,
    next_seq: u64,
}

/// What the driver has encoded for the store since the last commit,
/// written just before the next one: each run's records as one append
/// (one store write for all the events a batch gave a run, where one
/// write per event cost more than the steps), then the index entries of
/// runs that started, after the histories they point to.
#[derive(Default)]
struct Unwritten {
    /// Per run, the first record's seq and the records, in write order.
    histories: Vec<(String, u64, Vec<Vec<u8>>)>,
    /// Where each run's entry is in `histories`.
    index: HashMap<String, usize>,
    summaries: Vec<RunSummary>,
}

impl Unwritten {
    fn push(&mut self, run: &str, seq: u64, bytes: Vec<u8>) {
        if let Some(&i) = self.index.get(run) {
            let (_, first, records) = &mut self.histories[i];
            // Seqs of a run are consecutive between two writes.
            debug_assert_eq!(*first + records.len() as u64, seq);
            records.push(bytes);
            return;
        }
        self.index.insert(run.to_string(), self.histories.len());
        self.histories.push((run.to_string(), seq, vec![bytes]));
    }

    fn is_empty(&self) -> bool {
        self.histories.is_empty() && self.summaries.is_empty()
    }

    /// Writes everything to the store; on failure, says which runs' writes
    /// may be missing.
    fn write_to(&mut self, store: &dyn RunStore) -> Result<(), (StoreError, Vec<String>)> {
        self.index.clear();
        let histories = std::mem::take(&mut self.histories);
        let summaries = std::mem::take(&mut self.summaries);
        let mut failed = None;
        for (run, first, records) in &histories {
            if let Err(e) = store.append(run, *first, records) {
                failed = Some(e);
                break;
            }
        }
        if failed.is_none() {
            for summary in &summaries {
                if let Err(e) = store.put_summary(summary) {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            None => Ok(()),
            Some(e) => Err((
                e,
                histories
                    .into_iter()
                    .map(|(run, _, _)| run)
                    .chain(summaries.into_iter().map(|s| s.id))
                    .collect(),
            )),
        }
    }
}

struct Driver {
    runs: HashMap<String, Live>,
    store: Arc<dyn RunStore>,
    executor: Arc<dyn Executor>,
    plans: Arc<dyn Plans>,
    config: EngineConfig,
    tx: mpsc::UnboundedSender<Msg>,
    updates: broadcast::Sender<Update>,
    waiters: HashMap<String, Vec<oneshot::Sender<Finished>>>,
    inflight: HashMap<String, Vec<AbortHandle>>,
    /// Runs resumed after a crash: each of their attempts is durable before
    /// it starts, so a step that kills the process is counted every time.
    careful: HashSet<String>,
    limits: HashMap<String, Arc<Semaphore>>,
    /// Events appended in this batch, applied after the commit.
    staged: Vec<(String, Event)>,
    /// Records encoded since the last commit and not yet in the store.
    unwritten: Unwritten,
    /// Replies to send after the commit.
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
}

/// Batches at least this big are committed without lingering.
const LINGER_BELOW: usize = 64;

impl Driver {
    /// Whether any attempt is running now.
    fn attempts_running(&self) -> bool {
        self.inflight.values().flatten().any(|h| !h.is_finished())
    }

    async fn serve(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut batch = Vec::new();
        loop {
            let Some(first) = rx.recv().await else { break };
            batch.push(first);
            // Let results that are about to arrive join this commit.
            tokio::task::yield_now().await;
            let mut linger = None;
            while batch.len() < self.config.max_batch {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => {
                        // A busy engine fills its batches by itself; a quiet
                        // one waits a little for the attempts still running.
                        if batch.len() >= LINGER_BELOW {
                            break;
                        }
                        let until = *linger.get_or_insert_with(|| {
                            self.attempts_running()
                                .then(|| std::time::Instant::now() + self.config.commit_linger)
                        });
                        match until {
                            Some(t) if std::time::Instant::now() < t => {
                                tokio::task::yield_now().await
                            }
                            _ => break,
                        }
                    }
                }
            }
            let mut shutdown = None;
            for msg in batch.drain(..) {
                if let Msg::Shutdown { reply } = msg {
                    shutdown = Some(reply);
                    continue;
                }
                // A decision is checked against the run as it is; if this
                // batch already holds events for the run (a deadline that
                // escalated, another decision), apply them first, so the
                // check sees who may decide now and that the step still waits.
                if let Msg::Decide { run, .. } = &msg
                    && self.staged.iter().any(|(r, _)| r == run)
                {
                    self.commit_and_apply().await;
                }
                self.stage(msg);
            }
            self.commit_and_apply().await;
            // Idle: what the last apply encoded (the starts of the attempts
            // it spawned) goes to the store now, so a long step's timeline
            // shows it started. Busy, it joins the next batch's writes.
            if rx.is_empty() {
                let _ = self.write_unwritten();
            }
            if let Some(reply) = shutdown {
                self.stop_attempts().await;
                let _ = reply.send(());
                break;
            }
        }
    }

    /// Stops every attempt in flight and records each as interrupted by a
    /// shutdown, so it runs again at the next start without counting as a
    /// crash toward quarantine.
    async fn stop_attempts(&mut self) {
        for handles in self.inflight.values() {
            for h in handles {
                h.abort();
            }
        }
        let at = now_ms();
        let ids: Vec<String> = self.runs.keys().cloned().collect();
        for id in ids {
            let started = match self.runs.get(&id) {
                Some(live) => live.run.started_attempts(),
                None => continue,
            };
            for (step, item, attempt) in started {
                let event = Event::TaskInterrupted {
                    step,
                    item,
                    attempt,
                    shutdown: true,
                    at,
                };
                // If this cannot be written, the next start sees a crash:
                // the attempt still runs again, it only counts toward quarantine.
                if self.write(&id, &event).is_err() {
                    break;
                }
            }
        }
        if let Err(e) = self.durable().await {
            tracing::error!(error = %e, "could not record the attempts stopped by the shutdown");
        }
    }

    /// Appends the events a message implies; replies that need durability
    /// are deferred to after the commit.
    fn stage(&mut self, msg: Msg) {
        match msg {
            Msg::Start {
                plan,
                trigger,
                inputs,
                parent,
                id: chosen,
                reply,
            } => {
                let inputs = match resolve_inputs(&plan.playbook, inputs) {
                    Ok(v) => v,
                    Err(e) => {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(e.into()));
                        } else if let Some(p) = parent {
                            // A child whose inputs do not fit fails the parent's task.
                            let f = Failure::new(FailureClass::Expression, "inputs", e.to_string());
                            self.deliver_child(&p, Err(f));
                        }
                        return;
                    }
                };
                let id = match (&parent, chosen) {
                    (Some(p), _) => child_run_id(p),
                    (None, None) => new_run_id(),
                    (None, Some(id)) => {
                        let refused = if !is_run_id(&id) {
                            Some("not an id `new_run_id` makes")
                        } else if self.runs.contains_key(&id)
                            || !matches!(self.store.summary(&id), Ok(None))
                        {
                            Some("a run has it")
                        } else {
                            None
                        };
                        if let Some(why) = refused {
                            if let Some(reply) = reply {
                                let _ = reply.send(Err(EngineError::RunId(id, why)));
                            }
                            return;
                        }
                        id
                    }
                };
                if parent.is_some()
                    && (self.runs.contains_key(&id)
                        || matches!(self.store.summary(&id), Ok(Some(_))))
                {
                    return; // this child exists; never start it twice
                }
                let at = now_ms();
                let summary = RunSummary {
                    id: id.clone(),
                    playbook: plan.id().to_string(),
                    status: "running".into(),
                    started_at: at,
                    finished_at: None,
                    error: None,
                    parent: parent.as_ref().map(|p| p.run.clone()),
                };
                let event = Event::Started {
                    playbook: plan.id().to_string(),
                    digest: plan.digest.clone(),
                    trigger,
                    inputs: Arc::new(inputs),
                    parent,
                    at,
                };
                self.runs.insert(
                    id.clone(),
                    Live {
                        run: Run::new(id.clone(), plan),
                        next_seq: 0,
                    },
                );
                // The history first, then the index entry that says
                // "running" (see `Unwritten`): the store (a crash, a backup) may hold any
                // prefix of these writes, and an index entry with no
                // history would be a run that can neither resume nor show.
                // A history without an index entry is an unacknowledged
                // start nobody sees.
                if let Err(e) = self.append(&id, event) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(e));
                    }
                    return;
                }
                // Written after the histories, before the commit.
                let updates = self.updates.clone();
                let (id2, playbook) = (id.clone(), summary.playbook.clone());
                self.unwritten.summaries.push(summary);
                self.after_commit.push(Box::new(move || {
                    let _ = updates.send(Update::RunStarted {
                        run: id2.clone(),
                        playbook,
                    });
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(id2));
                    }
                }));
            }
            Msg::Done {
                run,
                step,
                item,
                attempt,
                outcome,
            } => {
                if !self.runs.contains_key(&run) {
                    return; // finished or cancelled meanwhile
                }
                let _ = self.updates.send(Update::TaskFinished {
                    run: run.clone(),
                    step: step.clone(),
                    item,
                    attempt,
                    result: outcome.result.clone(),
                    duration: outcome.duration,
                });
                let at = now_ms();
                let duration_us = outcome.duration.as_micros() as u64;
                let event = match outcome.result {
                    Ok(output) => Event::TaskSucceeded {
                        step,
                        item,
                        attempt,
                        output,
                        duration_us,
                        at,
                    },
                    Err(failure) => Event::TaskFailed {
                        step,
                        item,
                        attempt,
                        failure,
                        duration_us,
                        at,
                    },
                };
                // Nothing to acknowledge: if the write fails, the run resumes after a restart.
                let _ = self.append(&run, event);
            }
            Msg::Timer { run, timer } => {
                if self.runs.contains_key(&run) {
                    // Nothing to acknowledge: if the write fails, the run resumes after a restart.
                    let _ = self.append(
                        &run,
                        Event::TimerFired {
                            timer,
                            at: now_ms(),
                        },
                    );
                }
            }
            Msg::Decide {
                run,
                step,
                decision,
                user,
                roles,
                comment,
                reply,
            } => {
                let Some(live) = self.runs.get(&run) else {
                    let _ = reply.send(Err(EngineError::NoSuchRun(run)));
                    return;
                };
                if let Err(e) = live.run.check_decision(&step, &user, &roles) {
                    let _ = reply.send(Err(e.into()));
                    return;
                }
                match self.append(
                    &run,
                    Event::ApprovalDecided {
                        step,
                        decision,
                        by: user,
                        comment,
                        at: now_ms(),
                    },
                ) {
                    Ok(()) => self
                        .after_commit
                        .push(Box::new(move || drop(reply.send(Ok(()))))),
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
            Msg::Cancel { run, by, reply } => {
                if !self.runs.contains_key(&run) {
                    let _ = reply.send(Err(EngineError::NoSuchRun(run)));
                    return;
                }
                match self.append(&run, Event::CancelRequested { by, at: now_ms() }) {
                    Ok(()) => self
                        .after_commit
                        .push(Box::new(move || drop(reply.send(Ok(()))))),
                    Err(e) => drop(reply.send(Err(e))),
                }
            }
            Msg::Wait { run, reply } => {
                if self.runs.contains_key(&run) {
                    self.waiters.entry(run).or_default().push(reply);
                } else {
                    let _ = reply.send(self.finished_from_store(&run));
                }
            }
            Msg::Pending { reply } => {
                let now = now_ms();
                let mut all: Vec<ApprovalRequest> = self
                    .runs
                    .values()
                    .flat_map(|l| l.run.pending_approvals(now))
                    .collect();
                all.sort_by(|a, b| a.requested_at.cmp(&b.requested_at).then(a.run.cmp(&b.run)));
                let _ = reply.send(all);
            }
            Msg::Inspect { run, reply } => {
                let _ = reply.send(self.view(&run));
            }
            Msg::Shutdown { .. } => {}
        }
    }

    /// A live run with its live child runs (and theirs) taken together: a
    /// parent whose only activity is a child waiting for a person is itself
    /// waiting for that person, not busy.
    fn view(&self, run: &str) -> Option<RunView> {
        let root = self.runs.get(run)?;
        let now = now_ms();
        let prefix = format!("{run}~");
        let mut active = root.run.active_tasks();
        let mut awaiting = root.run.pending_approvals(now);
        let mut children = 0;
        for (id, live) in &self.runs {
            if id.starts_with(&prefix) {
                children += 1;
                active += live.run.active_tasks();
                awaiting.extend(live.run.pending_approvals(now));
            }
        }
        // Each live child run stands for one running task of its parent.
        awaiting.sort_by(|a, b| a.requested_at.cmp(&b.requested_at).then(a.run.cmp(&b.run)));
        Some(RunView {
            status: root.run.status().clone(),
            active_tasks: active.saturating_sub(children),
            awaiting,
        })
    }

    /// How a run that is no longer live ended, with its outputs: rebuilt from
    /// its history (the index alone holds neither outputs nor the failure's
    /// class), falling back to the index when the history cannot be read.
    fn finished_from_store(&self, run: &str) -> Finished {
        if let Ok((state, _)) =
            crate::history::rebuild(self.store.as_ref(), self.plans.as_ref(), run)
            && state.status().is_final()
        {
            return Finished {
                run: run.to_string(),
                status: state.status().clone(),
                output: state.output().cloned(),
            };
        }
        let status = match self.store.summary(run) {
            Ok(Some(s)) => match s.status.as_str() {
                "succeeded" => RunStatus::Succeeded,
                "cancelled" => RunStatus::Cancelled,
                _ => RunStatus::Failed(Failure::new(
                    FailureClass::Action,
                    "failed",
                    s.error.unwrap_or_default(),
                )),
            },
            _ => RunStatus::Failed(Failure::new(
                FailureClass::Infrastructure,
                "unknown_run",
                format!("no run {run}"),
            )),
        };
        Finished {
            run: run.to_string(),
            status,
            output: None,
        }
    }

    /// Writes an event to the store (not yet durable) and stages it to be
    /// applied after the next commit. An error means nothing was staged: the
    /// caller must not acknowledge the event.
    fn append(&mut self, run: &str, event: Event) -> Result<(), EngineError> {
        self.write(run, &event)?;
        self.staged.push((run.to_string(), event));
        Ok(())
    }

    /// Encodes an event for the store (written and made durable by the next
    /// [`Driver::durable`]). On failure the run is dropped from memory: it
    /// stays in the store and resumes after a restart.
    fn write(&mut self, run: &str, event: &Event) -> Result<(), EngineError> {
        let Some(live) = self.runs.get_mut(run) else {
            return Err(EngineError::NoSuchRun(run.to_string()));
        };
        let seq = live.next_seq;
        match codec::encode(event, self.config.blob_threshold, self.store.as_ref()) {
            Ok(bytes) => {
                self.unwritten.push(run, seq, bytes);
                live.next_seq += 1;
                Ok(())
            }
            Err(e) => {
                tracing::error!(run, error = %e, "could not write an event; the run stops here and resumes after a restart");
                self.drop_live(run);
                Err(e.into())
            }
        }
    }

    /// Writes what was encoded since the last commit, then commits. If the
    /// writes fail, the runs they belong to are dropped from memory (their
    /// history in the store may now lack records the driver counted); they
    /// resume from the store after a restart.
    async fn durable(&mut self) -> Result<(), StoreError> {
        self.write_unwritten()?;
        self.store.commit().await
    }

    /// Writes what was encoded since the last commit (durable with the next
    /// commit, or the store's periodic sync).
    fn write_unwritten(&mut self) -> Result<(), StoreError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        self.unwritten
            .write_to(self.store.as_ref())
            .map_err(|(e, runs)| {
                tracing::error!(error = %e, runs = runs.len(), "could not write to the store; these runs stop here and resume after a restart");
                for run in runs {
                    self.drop_live(&run);
                }
                e
            })
    }

    async fn commit_and_apply(&mut self) {
        loop {
            if self.staged.is_empty() && self.after_commit.is_empty() {
                return;
            }
            if let Err(e) = self.durable().await {
                // Nothing staged may be acted on: it might not survive. The
                // runs stay in the store and resume after a restart.
                tracing::error!(error = %e, "group commit failed; staged runs are dropped from memory");
                for (run, _) in std::mem::take(&mut self.staged) {
                    self.drop_live(&run);
                }
                self.after_commit.clear();
                return;
            }
            for reply in std::mem::take(&mut self.after_commit) {
                reply();
            }
            let staged = std::mem::take(&mut self.staged);
            let mut careful_invocations = Vec::new();
            for (run, event) in staged {
                let Some(live) = self.runs.get_mut(&run) else {
                    continue;
                };
                match live.run.apply(&event) {
                    Ok(actions) => self.execute(&run, actions, &mut careful_invocations),
                    Err(e) => {
                        tracing::error!(run, error = %e, "event does not fit the run");
                    }
                }
            }
            // Attempts of resumed runs wait for their `task_started` to be
            // durable (one more commit); then they start.
            if careful_invocations.is_empty() {
                if self.staged.is_empty() {
                    return;
                }
                // Events staged while executing (task_started of ordinary
                // runs) need no wait; they ride on the next commit.
                return;
            }
            if let Err(e) = self.durable().await {
                // Their attempts may not start before `task_started` is
                // durable; held back for ever, the runs would look alive
                // with nothing running. They resume after a restart.
                tracing::error!(error = %e, "group commit failed; resumed runs are dropped from memory");
                for inv in careful_invocations {
                    self.drop_live(&inv.run);
                }
                return;
            }
            for inv in careful_invocations {
                self.spawn_invocation(inv);
            }
        }
    }

    fn execute(&mut self, run: &str, actions: Vec<Action>, careful: &mut Vec<Invocation>) {
        for action in actions {
            match action {
                Action::Invoke(inv) => {
                    let event = Event::TaskStarted {
                        step: inv.step.clone(),
                        item: inv.item,
                        attempt: inv.attempt,
                        input: inv.input.clone(),
                        at: now_ms(),
                    };
                    // Applied at once (the state machine already counts the
                    // attempt as running); durable with the next commit.
                    if self.write(run, &event).is_err() {
                        continue;
                    }
                    if let Some(live) = self.runs.get_mut(run) {
                        let _ = live.run.apply(&event);
                    }
                    let _ = self.updates.send(Update::TaskStarted {
                        run: run.to_string(),
                        step: inv.step.clone(),
                        item: inv.item,
                        attempt: inv.attempt,
                    });
                    if self.careful.contains(run) {
                        careful.push(inv);
                    } else {
                        self.spawn_invocation(inv);
                    }
                }
                Action::StartTimer { timer, at } => {
                    let tx = self.tx.clone();
                    let run = run.to_string();
                    let wait = at.saturating_sub(now_ms());
                    let h = tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        let _ = tx.send(Msg::Timer { run, timer });
                    });
                    drop(h);
                }
                Action::RequestApproval(req) => {
                    let _ = self.updates.send(Update::ApprovalRequested(req));
                }
                Action::AbortInvocations => {
                    if let Some(handles) = self.inflight.remove(run) {
                        for h in handles {
                            h.abort();
                        }
                    }
                    // Child runs in flight are abandoned too: cancel each
                    // direct child (it cancels its own children in turn).
                    let prefix = format!("{run}~");
                    let children: Vec<String> = self
                        .runs
                        .keys()
                        .filter(|id| {
                            // `<run>~<step>` or `<run>~<step>~<item>`: one level down.
                            id.strip_prefix(&prefix).is_some_and(|rest| {
                                let mut parts = rest.split('~');
                                parts.next().is_some()
                                    && parts.next().is_none_or(|i| i.parse::<u32>().is_ok())
                                    && parts.next().is_none()
                            })
                        })
                        .cloned()
                        .collect();
                    for child in children {
                        let (reply, _) = oneshot::channel();
                        let _ = self.tx.send(Msg::Cancel {
                            run: child,
                            by: format!("its parent run {run}"),
                            reply,
                        });
                    }
                }
                Action::Finish { status, output } => self.finish(run, status, output),
            }
        }
    }

    fn spawn_invocation(&mut self, inv: Invocation) {
        let run = inv.run.clone();
        match &inv.target {
            Target::Playbook { id, run: child } => {
                let parent = ParentLink {
                    run: inv.run.clone(),
                    step: inv.step.clone(),
                    item: inv.item,
                };
                if self.runs.contains_key(child) {
                    return; // live already; its finish reaches the parent
                }
                match self.store.summary(child) {
                    // Being resumed (recovery order is not parent-first).
                    Ok(Some(s)) if s.status == "running" => return,
                    Ok(Some(_)) => {
                        let f = self.finished_from_store(child);
                        self.deliver_child(&parent, child_result(&f));
                        return;
                    }
                    _ => {}
                }
                let depth = child_depth(child);
                if depth > MAX_CHILD_DEPTH {
                    let f = Failure::new(
                        FailureClass::Expression,
                        "child_depth",
                        format!(
                            "step `{}` would start `{id}` as a child run {depth} levels deep (at most {MAX_CHILD_DEPTH}): do playbooks start each other in a cycle?",
                            inv.step
                        ),
                    );
                    self.deliver_child(&parent, Err(f));
                    return;
                }
                match self.plans.plan(id, None) {
                    Some(plan) => {
                        let _ = self.tx.send(Msg::Start {
                            plan,
                            trigger: Arc::new(Value::Null),
                            inputs: (*inv.input).clone(),
                            parent: Some(parent),
                            id: None,
                            reply: None,
                        });
                    }
                    None => {
                        let f = Failure::new(
                            FailureClass::Infrastructure,
                            "unknown_playbook",
                            format!("child playbook `{id}` is not installed"),
                        );
                        self.deliver_child(&parent, Err(f));
                    }
                }
            }
            Target::Action(r) => {
                let limits = self.semaphores(&run, &r.package);
                let executor = self.executor.clone();
                let tx = self.tx.clone();
                let handle = tokio::spawn(async move {
                    let mut permits = Vec::new();
                    for s in &limits {
                        if let Ok(p) = s.clone().acquire_owned().await {
                            permits.push(p);
                        }
                    }
                    let (step, item, attempt, run) =
                        (inv.step.clone(), inv.item, inv.attempt, inv.run.clone());
                    let timeout = inv.timeout_ms;
                    let started = Instant::now();
                    let call = executor.invoke(inv);
                    let outcome = match timeout {
                        Some(ms) => {
                            match tokio::time::timeout(Duration::from_millis(ms), call).await {
                                Ok(o) => o,
                                Err(_) => Outcome {
                                    result: Err(Failure::step_timeout(ms)),
                                    duration: started.elapsed(),
                                },
                            }
                        }
                        None => call.await,
                    };
                    drop(permits);
                    let _ = tx.send(Msg::Done {
                        run,
                        step,
                        item,
                        attempt,
                        outcome,
                    });
                });
                let list = self.inflight.entry(run).or_default();
                list.retain(|h| !h.is_finished());
                list.push(handle.abort_handle());
            }
        }
    }

    /// The playbook's and the package's concurrency limits; each is its own
    /// semaphore, so a saturated package holds back only its own steps.
    fn semaphores(&mut self, run: &str, package: &str) -> Vec<Arc<Semaphore>> {
        let mut out = Vec::new();
        if let Some(live) = self.runs.get(run)
            && let Some(n) = live.run.plan().playbook.concurrency
        {
            let key = format!("playbook:{}", live.run.plan().id());
            out.push(
                self.limits
                    .entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(n.max(1) as usize)))
                    .clone(),
            );
        }
        if let Some(n) = self.executor.package_limit(package) {
            let key = format!("package:{package}");
            out.push(
                self.limits
                    .entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(n.max(1))))
                    .clone(),
            );
        }
        out
    }

    fn deliver_child(&mut self, parent: &ParentLink, result: Result<Arc<Value>, Failure>) {
        let attempt = self
            .runs
            .get(&parent.run)
            .and_then(|l| l.run.running_attempt_of(&parent.step, parent.item))
            .unwrap_or(1);
        let _ = self.tx.send(Msg::Done {
            run: parent.run.clone(),
            step: parent.step.clone(),
            item: parent.item,
            attempt,
            outcome: Outcome {
                result,
                duration: Duration::ZERO,
            },
        });
    }

    /// Stops carrying a run in this process after a store failure: its
    /// attempts stop, and whoever waits for it hears that it is still
    /// `running` (it stays in the store and resumes at the next start).
    fn drop_live(&mut self, run: &str) {
        if self.runs.remove(run).is_none() {
            return;
        }
        self.careful.remove(run);
        if let Some(handles) = self.inflight.remove(run) {
            for h in handles {
                h.abort();
            }
        }
        for w in self.waiters.remove(run).unwrap_or_default() {
            let _ = w.send(Finished {
                run: run.to_string(),
                status: RunStatus::Running,
                output: None,
            });
        }
    }

    fn finish(&mut self, run: &str, status: RunStatus, output: Option<Arc<Value>>) {
        let Some(live) = self.runs.remove(run) else {
            return;
        };
        self.careful.remove(run);
        if let Some(handles) = self.inflight.remove(run) {
            for h in handles {
                h.abort();
            }
        }
        let (started_at, _) = live.run.times();
        let summary = RunSummary {
            id: run.to_string(),
            playbook: live.run.plan().id().to_string(),
            status: status.as_str().to_string(),
            started_at,
            finished_at: Some(now_ms()),
            error: match &status {
                RunStatus::Failed(f) => Some(f.message.clone()),
                _ => None,
            },
            parent: live.run.parent().map(|p| p.run.clone()),
        };
        if let Err(e) = self.store.put_summary(&summary) {
            tracing::error!(run, error = %e, "could not record the run's end");
        }
        let finished = Finished {
            run: run.to_string(),
            status: status.clone(),
            output,
        };
        if let Some(parent) = live.run.parent().cloned() {
            self.deliver_child(&parent, child_result(&finished));
        }
        for w in self.waiters.remove(run).unwrap_or_default() {
            let _ = w.send(finished.clone());
        }
        let _ = self.updates.send(Update::RunFinished {
            run: run.to_string(),
            status,
        });
    }

    /// Rebuilds every unfinished run from its history and carries it on.
    async fn recover(&mut self) -> Result<(), EngineError> {
        let now = now_ms();
        for id in self.store.active()? {
            if !self.config.resume.includes(&id) {
                continue;
            }
            let mut run = match crate::history::rebuild(
                self.store.as_ref(),
                self.plans.as_ref(),
                &id,
            ) {
                Ok((run, _)) => run,
                Err(crate::history::RebuildError::NotFound(_)) => {
                    // Its index entry reached the disk but its `started`
                    // did not: the start was never acknowledged (that waits
                    // for the commit) and nothing ran. Left "running", it
                    // would wait to be resumed for ever.
                    if let Ok(Some(s)) = self.store.summary(&id) {
                        let _ = self.store.put_summary(&RunSummary {
                            status: "failed".into(),
                            finished_at: Some(now),
                            error: Some(
                                "the run never started: the process stopped before its start was written".into(),
                            ),
                            ..s
                        });
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(run = id, error = %e, "cannot resume this run; it stays paused");
                    continue;
                }
            };
            let events_len = run.applied();
            let resume = run.resume(now);
            self.runs.insert(
                id.clone(),
                Live {
                    run,
                    next_seq: events_len,
                },
            );
            self.careful.insert(id.clone());
            let mut careful = Vec::new();
            self.execute(&id, resume.actions, &mut careful);
            for (step, item, attempt) in resume.interrupted {
                // Nothing to acknowledge: if the write fails, the run resumes after a restart.
                let _ = self.append(
                    &id,
                    Event::TaskInterrupted {
                        step,
                        item,
                        attempt,
                        shutdown: false,
                        at: now,
                    },
                );
            }
            self.commit_and_apply().await;
            self.durable().await?;
            for inv in careful {
                self.spawn_invocation(inv);
            }
        }
        Ok(())
    }
}

/// Deepest nesting of child runs. Validation refuses a playbook that starts
/// itself, but not `a` → `b` → `a`; this bound stops such a cycle after a
/// few levels instead of starting runs without end.
pub const MAX_CHILD_DEPTH: usize = 8;

/// How many child levels below the root run `run` is (its id is
/// `<root>~<step>[~<item>]…`; step ids start with a letter, items are numbers).
fn child_depth(run: &str) -> usize {
    run.split('~')
        .skip(1)
        .filter(|s| s.parse::<u32>().is_err())
        .count()
}

fn child_run_id(p: &ParentLink) -> String {
    match p.item {
        Some(i) => format!("{}~{}~{i}", p.run, p.step),
        None => format!("{}~{}", p.run, p.step),
    }
}

fn child_result(f: &Finished) -> Result<Arc<Value>, Failure> {
    match &f.status {
        RunStatus::Succeeded => Ok(f.output.clone().unwrap_or_else(|| Arc::new(Value::Null))),
        RunStatus::Failed(fl) => Err(Failure::new(
            FailureClass::Action,
            "child_failed",
            format!("child run {} failed: {}", f.run, fl.message),
        )),
        RunStatus::Cancelled => Err(Failure::new(
            FailureClass::Cancelled,
            "child_cancelled",
            format!("child run {} was cancelled", f.run),
        )),
        RunStatus::Running => Err(Failure::new(
            FailureClass::Infrastructure,
            "child_running",
            format!("child run {} has not finished", f.run),
        )),
    }
}
