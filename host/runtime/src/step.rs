//! One step: a fresh `Store` with the step's limits and capabilities, an
//! instance from the component's `InstancePre`, one call to `run`, and a
//! report of what happened.

use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::audit::{AuditEvent, AuditRecord, LimitEvent, StepAudit, StepScope};
use crate::bindings::allama::action::types::{self as wit_types, ErrorKind};
use crate::capability::http::HttpStep;
use crate::capability::kv::KvStep;
use crate::capability::log::{LogEvent, LogOutput, LogStep, StepLog};
use crate::capability::secrets::SecretsStep;
use crate::capability::wasi::{self, WasiGuard};
use crate::capability::{Capability, StepEnv};
use crate::error::{ActionErrorKind, StepError};
use crate::limits::{MemoryLimitHit, StepLimiter, TimeLimitHit};
use crate::runtime::Package;
use crate::tape::{StepTape, Tape};

/// Where a step sits in a run (the WIT `context`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepContext {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step_id: String,
    /// Same on every attempt of this step in this run.
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

impl StepContext {
    /// A context for a one-off run outside any playbook.
    pub fn adhoc(step_id: &str) -> Self {
        let run_id = format!("adhoc-{}", uuid_like());
        Self {
            idempotency_key: format!("{run_id}/{step_id}"),
            run_id,
            step_id: step_id.to_string(),
            attempt: 1,
        }
    }
}

fn uuid_like() -> String {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("system randomness");
    hex::encode(b)
}

/// Everything known about one finished step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The package.
    pub package: String,
    /// The action.
    pub action: String,
    /// The output, or why there is none.
    pub outcome: Result<serde_json::Value, StepError>,
    /// Wall time from admission to report.
    pub duration: Duration,
    /// Time spent waiting for a free slot.
    pub queued: Duration,
    /// What the step logged (capped).
    pub log: LogOutput,
    /// Every capability use and denial, in order.
    pub audit: Vec<AuditRecord>,
}

impl StepReport {
    /// "package `p`, action `a`: <error>" if the step failed.
    pub fn error_message(&self) -> Option<String> {
        self.outcome
            .as_ref()
            .err()
            .map(|e| format!("package `{}`, action `{}`: {e}", self.package, self.action))
    }
}

/// The store data of one step: WASI plus each capability's step state.
pub struct StepData {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: StepLimiter,
    guard: WasiGuard,
    http: HttpStep,
    secrets: SecretsStep,
    kv: KvStep,
    log: LogStep,
}

impl WasiView for StepData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Wire WASI and every capability into the linker (once per runtime).
pub(crate) fn add_to_linker(linker: &mut Linker<StepData>) -> wasmtime::Result<()> {
    use crate::bindings::allama::action::{http, kv, log, secrets};
    wasi::add_to_linker(linker, |d| &mut d.guard)?;
    http::add_to_linker::<StepData, HasSelf<HttpStep>>(linker, |d| &mut d.http)?;
    secrets::add_to_linker::<StepData, HasSelf<SecretsStep>>(linker, |d| &mut d.secrets)?;
    kv::add_to_linker::<StepData, HasSelf<KvStep>>(linker, |d| &mut d.kv)?;
    log::add_to_linker::<StepData, HasSelf<LogStep>>(linker, |d| &mut d.log)?;
    Ok(())
}

/// Longest action error message kept.
const MAX_ERROR_MESSAGE: usize = 16 * 1024;

/// After the deadline, how long the outer timeout waits for the in-Wasm
/// deadline (which yields a cleaner error) before cancelling the call.
const OUTER_GRACE: Duration = Duration::from_millis(20);

impl From<wit_types::ActionError> for StepError {
    fn from(e: wit_types::ActionError) -> Self {
        let kind = match e.kind {
            ErrorKind::InvalidInput => ActionErrorKind::InvalidInput,
            ErrorKind::Unauthorized => ActionErrorKind::Unauthorized,
            ErrorKind::NotFound => ActionErrorKind::NotFound,
            ErrorKind::RateLimited(ms) => ActionErrorKind::RateLimited { retry_after_ms: ms },
            ErrorKind::Upstream(status) => ActionErrorKind::Upstream { status },
            ErrorKind::Timeout => ActionErrorKind::Timeout,
            ErrorKind::Denied => ActionErrorKind::Denied,
            ErrorKind::Internal => ActionErrorKind::Internal,
        };
        // The message is the guest's: cap it like any output.
        let mut message = e.message;
        if message.len() > MAX_ERROR_MESSAGE {
            let mut end = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str("… (truncated)");
        }
        StepError::Action {
            kind,
            message,
            retryable: e.retryable,
        }
    }
}

fn classify(
    err: wasmtime::Error,
    limiter: &StepLimiter,
    log: &StepLog,
    limit_ms: u64,
) -> StepError {
    if let Some(hit) = err
        .downcast_ref::<MemoryLimitHit>()
        .copied()
        .or(limiter.hit)
    {
        return StepError::MemoryLimit {
            limit_bytes: hit.limit,
            requested_bytes: hit.requested,
        };
    }
    if err.downcast_ref::<TimeLimitHit>().is_some() {
        return StepError::Timeout { limit_ms };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => StepError::StackOverflow,
        Some(Trap::Interrupt) => StepError::Timeout { limit_ms },
        Some(trap) => StepError::Trap {
            message: trap.to_string(),
            stderr_tail: log.stderr_tail(),
        },
        None => StepError::Trap {
            message: format!("{err:#}"),
            stderr_tail: log.stderr_tail(),
        },
    }
}

impl Package {
    /// Run `action` with `input` (JSON text) in a fresh sandbox.
    pub async fn run(&self, action: &str, input: &str, ctx: &StepContext) -> StepReport {
        self.run_taped(action, input, ctx, &Tape::Off).await
    }

    /// [`Package::run`], with the step's capability uses recorded to, or
    /// replayed from, `tape` (see [`crate::tape`]). A replay that diverges
    /// from its recording ends as [`StepError::ReplayMismatch`]; exchanges
    /// left over are in [`Cassette::unused`](crate::tape::Cassette::unused).
    pub async fn run_taped(
        &self,
        action: &str,
        input: &str,
        ctx: &StepContext,
        tape: &Tape,
    ) -> StepReport {
        let admitted = Instant::now();
        let _permit = self
            .rt
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the step semaphore is never closed");
        let started = Instant::now();
        let limits = &self.limits;
        let deadline = started + limits.timeout;
        let scope = StepScope {
            package: self.name.clone(),
            action: action.to_string(),
            run_id: ctx.run_id.clone(),
            step_id: ctx.step_id.clone(),
        };
        let env = StepEnv {
            audit: Arc::new(StepAudit::new(
                self.audit.clone().unwrap_or_else(|| self.rt.audit.clone()),
                scope,
            )),
            deadline,
            log: Arc::new(StepLog::new(limits.log_bytes)),
            tape: StepTape::new(tape, &ctx.step_id, &self.secrets),
        };
        let data = StepData {
            wasi: wasi::context(&env.log),
            table: ResourceTable::new(),
            limiter: StepLimiter::new(limits.memory_bytes),
            guard: WasiGuard::new(env.clone()),
            http: self.http.prepare(&env),
            secrets: self.secrets.prepare(&env),
            kv: self.kv.prepare(&env),
            log: self.log.prepare(&env),
        };
        let mut store = Store::new(&self.rt.engine, data);
        store.limiter(|d| &mut d.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(TimeLimitHit.into())
            } else {
                // Yield each tick so a busy guest never starves other steps.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let wit_ctx = wit_types::Context {
            run_id: ctx.run_id.clone(),
            step_id: ctx.step_id.clone(),
            idempotency_key: ctx.idempotency_key.clone(),
            attempt: ctx.attempt,
        };
        let limit_ms = limits.timeout.as_millis() as u64;
        let call = async {
            let instance = self
                .component
                .pre
                .instantiate_async(&mut store)
                .await
                .map_err(|e| (e, true))?;
            instance
                .call_run(&mut store, action, &input.to_string(), &wit_ctx)
                .await
                .map_err(|e| (e, false))
        };
        let result = tokio::time::timeout_at((deadline + OUTER_GRACE).into(), call).await;
        let data = store.data();
        let outcome = match result {
            Err(_elapsed) => Err(StepError::Timeout { limit_ms }),
            Ok(Err((e, instantiating))) => match classify(e, &data.limiter, &env.log, limit_ms) {
                StepError::Trap { message, .. } if instantiating => {
                    Err(StepError::Instantiate { message })
                }
                other => Err(other),
            },
            Ok(Ok(Err(action_error))) => Err(action_error.into()),
            Ok(Ok(Ok(output))) => self.parse_output(&output),
        };
        drop(store);
        let limit_event = match &outcome {
            Err(StepError::Timeout { limit_ms }) => Some(LimitEvent::Timeout {
                limit_ms: *limit_ms,
            }),
            Err(StepError::MemoryLimit {
                limit_bytes,
                requested_bytes,
            }) => Some(LimitEvent::Memory {
                limit_bytes: *limit_bytes,
                requested_bytes: *requested_bytes,
            }),
            Err(StepError::StackOverflow) => Some(LimitEvent::StackOverflow),
            Err(StepError::OutputTooLarge {
                size_bytes,
                limit_bytes,
            }) => Some(LimitEvent::Output {
                limit_bytes: *limit_bytes,
                size_bytes: *size_bytes,
            }),
            _ => None,
        };
        if let Some(e) = limit_event {
            env.audit.emit(AuditEvent::Limit(e));
        }
        // A divergence from the recording is the root cause of whatever the
        // component did next (the limits it hit are still audited above), so
        // it is the outcome.
        let outcome = match env.tape.mismatch() {
            Some(m) => Err(StepError::ReplayMismatch(m)),
            None => outcome,
        };
        let unrecorded = env.tape.dropped();
        if unrecorded > 0 {
            env.audit.emit(AuditEvent::Limit(LimitEvent::Recording {
                dropped: unrecorded,
            }));
        }
        let dropped = env.log.dropped();
        if dropped > 0 {
            env.audit.emit(AuditEvent::Log(LogEvent::Truncated {
                dropped_bytes: dropped,
                cap_bytes: env.log.cap(),
            }));
        }
        env.audit.finish();
        StepReport {
            package: self.name.clone(),
            action: action.to_string(),
            outcome,
            duration: admitted.elapsed(),
            queued: started - admitted,
            log: env.log.take(),
            audit: env.audit.take(),
        }
    }

    fn parse_output(&self, output: &str) -> Result<serde_json::Value, StepError> {
        let size = output.len() as u64;
        if size > self.limits.output_bytes {
            return Err(StepError::OutputTooLarge {
                size_bytes: size,
                limit_bytes: self.limits.output_bytes,
            });
        }
        serde_json::from_str(output).map_err(|e| StepError::OutputNotJson {
            message: e.to_string(),
        })
    }
}
