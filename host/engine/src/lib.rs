//! The playbook engine: durable runs of playbooks as DAGs of steps.
//!
//! - [`machine`]: the pure core. A [`Run`] applies one [`Event`] and returns
//!   [`Action`]s; no I/O, clock or randomness, so a history replays exactly.
//! - [`driver`]: the [`Engine`], which owns live runs, writes events through
//!   a [`RunStore`] with group commit, and executes actions through the
//!   [`Executor`] trait. The engine knows nothing of wasmtime.
//! - [`store`]: the storage traits and an in-memory store; [`codec`]: how
//!   events are written, with big payloads as content-addressed blobs.
//! - [`plan`]: a validated playbook prepared for running; [`inputs`]: run
//!   inputs checked against the playbook.
//!
//! The semantics (join rule, skips, retries, approvals, recovery) are in
//! `docs/engine.md`.

pub mod codec;
pub mod driver;
pub mod event;
pub mod history;
pub mod inputs;
pub mod machine;
pub mod plan;
pub mod store;

pub use driver::{
    Engine, EngineConfig, EngineError, Executor, Finished, MAX_CHILD_DEPTH, Outcome, Plans,
    ResumeScope, RunView, Update,
};
pub use event::{
    Decision, Event, Failure, FailureClass, Millis, ParentLink, TimerKey, TimerPurpose,
};
pub use machine::{Action, ApprovalRequest, Invocation, Run, RunStatus, StepStatus, Target};
pub use plan::Plan;
pub use store::{MemoryStore, RunStore, RunSummary, StoreError};
