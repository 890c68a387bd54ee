//! Errors a user of the runtime sees. Each names what was wrong and where.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A component could not be loaded or bound to its grant.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("could not read component {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("component `{name}` is not a valid WebAssembly component: {message}")]
    Compile {
        /// Component name (file name or package).
        name: String,
        /// wasmtime's explanation.
        message: String,
    },
    /// The component imports something Allama does not provide.
    #[error(
        "component `{name}` cannot be linked: {message} (Allama provides only allama:action capabilities and an empty WASI p2)"
    )]
    Link {
        /// Component name.
        name: String,
        /// The missing or mismatched import.
        message: String,
    },
    /// The component does not export the `allama:action` world's `run`.
    #[error("component `{name}` is not an Allama action: {message}")]
    NotAnAction {
        /// Component name.
        name: String,
        /// What is missing.
        message: String,
    },
    /// The grant cannot be honoured by this runtime.
    #[error("package `{package}`: the grant cannot be applied: {message}")]
    Grant {
        /// Package name.
        package: String,
        /// Why.
        message: String,
    },
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the configuration (e.g. the pool could not be reserved).
    #[error("could not configure the wasm engine: {0}")]
    Engine(String),
    /// An extra root certificate is not valid PEM.
    #[error("extra root certificates: {0}")]
    Tls(String),
    /// The compiled-code cache directory is unusable.
    #[error("could not open the compiled-code cache at {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The kind of a typed error an action returned (mirrors the WIT `error-kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ActionErrorKind {
    /// Bad input.
    InvalidInput,
    /// Credentials refused.
    Unauthorized,
    /// Not found.
    NotFound,
    /// Throttled.
    RateLimited {
        /// Retry after, ms.
        retry_after_ms: Option<u64>,
    },
    /// Vendor failure.
    Upstream {
        /// HTTP status.
        status: Option<u16>,
    },
    /// Took too long.
    Timeout,
    /// A capability was refused.
    Denied,
    /// Component bug.
    Internal,
}

impl std::fmt::Display for ActionErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionErrorKind::InvalidInput => f.write_str("invalid-input"),
            ActionErrorKind::Unauthorized => f.write_str("unauthorized"),
            ActionErrorKind::NotFound => f.write_str("not-found"),
            ActionErrorKind::RateLimited {
                retry_after_ms: Some(ms),
            } => write!(f, "rate-limited, retry after {ms} ms"),
            ActionErrorKind::RateLimited {
                retry_after_ms: None,
            } => f.write_str("rate-limited"),
            ActionErrorKind::Upstream { status: Some(s) } => write!(f, "upstream {s}"),
            ActionErrorKind::Upstream { status: None } => f.write_str("upstream"),
            ActionErrorKind::Timeout => f.write_str("timeout"),
            ActionErrorKind::Denied => f.write_str("denied"),
            ActionErrorKind::Internal => f.write_str("internal"),
        }
    }
}

/// Why a step did not produce output. `Action` is the component's own typed
/// error; every other variant is the sandbox stopping or refusing the step
/// (an infrastructure failure, in the engine's retry terms).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "kebab-case")]
pub enum StepError {
    /// The action returned a typed error.
    #[error("the action failed ({kind}): {message}")]
    Action {
        /// What kind of failure.
        kind: ActionErrorKind,
        /// The component's message.
        message: String,
        /// Whether the component says a retry may succeed.
        retryable: bool,
    },
    /// The step ran past its wall-time limit.
    #[error("the step exceeded its time limit of {limit_ms} ms (limits.timeout_ms)")]
    Timeout {
        /// The limit.
        limit_ms: u64,
    },
    /// The step tried to grow linear memory past its limit.
    #[error(
        "the step exceeded its memory limit of {limit_bytes} bytes (limits.memory_mib); it asked for {requested_bytes}"
    )]
    MemoryLimit {
        /// The limit.
        limit_bytes: u64,
        /// What it asked for.
        requested_bytes: u64,
    },
    /// The guest's call stack overflowed.
    #[error("the step overflowed its call stack (runaway recursion)")]
    StackOverflow,
    /// The guest trapped (panic, abort, unreachable, division by zero…).
    #[error("the component trapped: {message}{}", stderr_tail.as_ref().map(|t| format!(" (stderr: {t})")).unwrap_or_default())]
    Trap {
        /// wasmtime's description.
        message: String,
        /// The last lines the guest wrote to stderr (often its panic message).
        stderr_tail: Option<String>,
    },
    /// The output exceeded the grant's cap.
    #[error("the output is {size_bytes} bytes; limits.output_kib allows {limit_bytes}")]
    OutputTooLarge {
        /// Output size.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// The output is not JSON.
    #[error("the output is not valid JSON: {message}")]
    OutputNotJson {
        /// The parser's explanation.
        message: String,
    },
    /// The component could not be instantiated for this step.
    #[error("the component could not be instantiated: {message}")]
    Instantiate {
        /// Why.
        message: String,
    },
    /// A replayed step did something its recording does not hold (a
    /// different request, one too many); whatever the component made of the
    /// error it got, this is the step's outcome.
    #[error("{0}")]
    ReplayMismatch(crate::tape::ReplayMismatch),
}

impl StepError {
    /// Whether the sandbox (not the action) ended the step.
    pub fn is_infrastructure(&self) -> bool {
        !matches!(self, StepError::Action { .. })
    }
}
