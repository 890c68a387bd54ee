//! Capabilities: what a component may ask the host to do.
//!
//! Every capability has the same parts (Spin's factors are the model):
//! - its **grant section**, parsed and validated by `allama-grant`;
//! - **configure**: at load time, the grant is turned into the package's
//!   configured state (an HTTP client with a guarded resolver, the secret
//!   grants, the kv quota) — a grant the host cannot honour fails the load;
//! - **prepare**: per step, a small state struct that lives in the wasmtime
//!   `Store` and implements the WIT host trait (`host.rs`);
//! - its **audit events**, one typed enum, emitted through the step's
//!   [`StepAudit`](crate::audit::StepAudit), denials included;
//! - its **tape hook** (`tape.rs`, for capabilities that reach outside the
//!   sandbox: http, kv, secrets): the recorded form of a use and how it is
//!   recorded and replayed (see [`crate::tape`]);
//! - tests that call the host methods directly, without Wasm.
//!
//! The composing struct ([`crate::step::StepData`]) is written by hand.

pub mod http;
pub mod kv;
pub mod log;
pub mod secrets;
pub mod wasi;

use std::sync::Arc;
use std::time::Instant;

use crate::audit::StepAudit;

/// What every capability's per-step state is built from.
#[derive(Clone)]
pub struct StepEnv {
    /// The step's audit trail.
    pub audit: Arc<StepAudit>,
    /// When the step must be finished.
    pub deadline: Instant,
    /// The step's log, shared by `log`, stdout and stderr.
    pub log: Arc<log::StepLog>,
    /// Whether and how the step's capability uses are recorded or replayed.
    pub tape: crate::tape::StepTape,
}

impl StepEnv {
    /// "package `p`, action `a`" — the prefix of every message a user sees.
    pub fn who(&self) -> String {
        let s = self.audit.scope();
        format!("package `{}`, action `{}`", s.package, s.action)
    }
}

/// The shape every capability follows.
pub trait Capability: Send + Sync + Sized + 'static {
    /// The capability's name in grants, audit records and messages.
    const NAME: &'static str;
    /// Per-step state, kept in the wasmtime store.
    type Step: Send + 'static;
    /// Build the per-step state from the configured (load-time) state.
    fn prepare(self: &Arc<Self>, env: &StepEnv) -> Self::Step;
}

/// Test scaffolding: a step environment without Wasm.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::audit::{AuditRecord, MemoryAuditSink, StepScope};
    use std::time::Duration;

    /// A step env for `package`/`action` with a 10 s deadline, and its audit sink.
    pub fn env(package: &str, action: &str) -> (StepEnv, Arc<MemoryAuditSink>) {
        let sink = Arc::new(MemoryAuditSink::new());
        let scope = StepScope {
            package: package.into(),
            action: action.into(),
            run_id: "run-1".into(),
            step_id: "step-1".into(),
        };
        let env = StepEnv {
            audit: Arc::new(StepAudit::new(sink.clone(), scope)),
            deadline: Instant::now() + Duration::from_secs(10),
            log: Arc::new(log::StepLog::new(1024)),
            tape: Default::default(),
        };
        (env, sink)
    }

    /// The audit events as JSON, for compact assertions.
    pub fn events(records: &[AuditRecord]) -> Vec<serde_json::Value> {
        records
            .iter()
            .map(|r| serde_json::to_value(&r.event).unwrap())
            .collect()
    }

    /// A grant from TOML.
    pub fn grant(toml: &str) -> allama_grant::Grant {
        allama_grant::Grant::from_toml_str(toml, "test.toml").expect("test grant parses")
    }
}
