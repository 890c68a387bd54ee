//! Write Allama actions in Rust.
//!
//! An action is a plain function from a serde input type to a serde output
//! type, returning [`Result`]. [`actions!`] turns a list of them into a
//! component (when built for `wasm32-wasip2`) and into a native dispatcher
//! that [`testing`] runs with mocked capabilities, so actions are tested
//! with `cargo test`, without building Wasm.
//!
//! ```
//! use allama_sdk::{actions, http, Context, Error, Result};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, allama_sdk::JsonSchema)]
//! pub struct Lookup { ip: String }
//!
//! #[derive(Serialize, allama_sdk::JsonSchema)]
//! pub struct Verdict { malicious: u64 }
//!
//! fn ip_report(input: Lookup, _ctx: &Context) -> Result<Verdict> {
//!     let ip: std::net::IpAddr = input.ip.parse().map_err(|_| Error::invalid_input("`ip` is not an IP address"))?;
//!     let body: serde_json::Value = http::get(&format!("https://www.virustotal.com/api/v3/ip_addresses/{ip}"))
//!         .auth(http::header("x-apikey", "VT_API_KEY"))
//!         .send_json()?;
//!     Ok(Verdict { malicious: body["data"]["attributes"]["last_analysis_stats"]["malicious"].as_u64().unwrap_or(0) })
//! }
//!
//! actions! {
//!     "ip-report" => ip_report,
//! }
//! # fn main() {}
//! ```
//!
//! Capabilities: [`http`] (secrets travel as handles: [`http::bearer`],
//! [`http::basic`], [`http::header`], [`http::Request::query_secret`]),
//! [`kv`], [`log`], and [`secrets`] for the rare action that must sign
//! or read a secret itself.

mod backend;
pub mod http;
pub mod kv;
pub mod log;
pub mod schema;
pub mod secrets;
pub mod testing;

#[doc(hidden)]
pub mod bindings;

pub use schemars::{self, JsonSchema};
pub use serde_json::{Value, json};

/// Where this call sits in a playbook run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step_id: String,
    /// Same on every attempt of this step in this run: send it to vendors
    /// that take idempotency keys.
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// What kind of failure an action reports; the engine's retry policy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input did not match what the action expects.
    InvalidInput,
    /// The vendor refused the credentials.
    Unauthorized,
    /// The thing asked about does not exist.
    NotFound,
    /// The vendor is throttling; retry after this many milliseconds if known.
    RateLimited(Option<u64>),
    /// The vendor failed, with its HTTP status if any.
    Upstream(Option<u16>),
    /// Something took too long.
    Timeout,
    /// The host refused a capability use.
    Denied,
    /// A bug or unexpected state.
    Internal,
}

/// An action's typed error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind.
    pub kind: ErrorKind,
    /// What failed, for the analyst.
    pub message: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// An error of `kind`; retryable as the kind usually is.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retryable = matches!(
            kind,
            ErrorKind::RateLimited(_) | ErrorKind::Upstream(_) | ErrorKind::Timeout
        );
        Error {
            kind,
            message: message.into(),
            retryable,
        }
    }
    /// Bad input.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// Credentials refused.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }
    /// Not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// Throttled.
    pub fn rate_limited(retry_after_ms: Option<u64>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited(retry_after_ms), message)
    }
    /// Vendor failure.
    pub fn upstream(status: Option<u16>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream(status), message)
    }
    /// Refused by the host.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    /// A bug or unexpected state.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Override whether a retry may help.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }
}

/// An action's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Run one typed action on JSON input: the glue [`actions!`] uses.
pub fn call<I, O>(f: fn(I, &Context) -> Result<O>, input: &str, ctx: &Context) -> Result<String>
where
    I: serde::de::DeserializeOwned,
    O: serde::Serialize,
{
    let de = &mut serde_json::Deserializer::from_str(input);
    let input: I = serde_path_to_error(de)?;
    let output = f(input, ctx)?;
    serde_json::to_string(&output)
        .map_err(|e| Error::internal(format!("the output could not be serialized: {e}")))
}

/// Deserialize with the JSON position in the message.
fn serde_path_to_error<'de, I: serde::Deserialize<'de>>(
    de: &mut serde_json::Deserializer<serde_json::de::StrRead<'de>>,
) -> Result<I> {
    I::deserialize(&mut *de).map_err(|e| Error::invalid_input(format!("input: {e}")))
}

/// Declare the component's actions: `"name" => function` pairs, each
/// function `fn(Input, &Context) -> Result<Output>`.
///
/// Generates `Actions::dispatch` (used by [`testing`]), `Actions::NAMES`,
/// and, on `wasm32`, the component's `run` export.
#[macro_export]
macro_rules! actions {
    ($($name:literal => $func:path),+ $(,)?) => {
        /// The actions this component provides.
        pub struct Actions;

        impl Actions {
            /// Every action name.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// Run the action `name` with JSON `input`.
            pub fn dispatch(name: &str, input: &str, ctx: &$crate::Context) -> $crate::Result<String> {
                match name {
                    $($name => $crate::call($func, input, ctx),)+
                    other => Err($crate::Error::invalid_input(format!(
                        "unknown action `{other}`; this component provides: {}",
                        Self::NAMES.join(", ")
                    ))),
                }
            }
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Component;
            impl $crate::bindings::Guest for Component {
                fn run(
                    action: ::std::string::String,
                    input: ::std::string::String,
                    ctx: $crate::bindings::allama::action::types::Context,
                ) -> ::core::result::Result<::std::string::String, $crate::bindings::allama::action::types::ActionError> {
                    $crate::bindings::run(Actions::dispatch, &action, &input, ctx)
                }
            }
            $crate::bindings::export_component!(Component with_types_in $crate::bindings);
        };
    };
}
