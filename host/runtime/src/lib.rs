//! Allama's sandboxed component runtime.
//!
//! A component is a WebAssembly component built against `wit/action.wit`. The
//! runtime compiles it once (cached on disk), links it against the
//! capabilities in [`capability`], and runs each step in a fresh, limited
//! store. The runtime knows nothing of playbooks: it runs one action with one
//! input under one grant and reports what happened.
//!
//! ```no_run
//! # async fn demo(wasm: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use allama_runtime::{Runtime, RuntimeConfig, PackageSpec, StepContext};
//! use allama_runtime::audit::MemoryAuditSink;
//! use allama_runtime::capability::{kv::MemoryKv, secrets::MemorySecretStore};
//!
//! let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(MemoryAuditSink::new()))?;
//! let component = runtime.load("example", wasm)?;
//! let package = runtime.bind(&component, PackageSpec {
//!     name: "example".into(),
//!     grant: allama_grant::Grant::deny_all(),
//!     secrets: Arc::new(MemorySecretStore::new()),
//!     kv: Arc::new(MemoryKv::new()),
//!     kv_namespace: None,
//! })?;
//! let report = package.run("echo", r#"{"hello":"world"}"#, &StepContext::adhoc("echo")).await;
//! println!("{:?}", report.outcome);
//! # Ok(()) }
//! ```

pub mod audit;
#[allow(missing_docs)] // generated; documented in wit/action.wit
pub mod bindings;
pub mod cache;
pub mod capability;
pub mod error;
pub mod limits;
mod runtime;
mod step;
pub mod tape;

pub use error::{ActionErrorKind, LoadError, RuntimeError, StepError};
pub use runtime::{LoadedComponent, Package, PackageSpec, Runtime, RuntimeConfig};
pub use step::{StepContext, StepData, StepReport};
pub use tape::{Cassette, Exchange, Recorder, ReplayMismatch, Tape};
