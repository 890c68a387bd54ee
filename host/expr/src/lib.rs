//! Playbook expressions: `${{ … }}` templates over CEL.
//!
//! A playbook value such as `"seen ${{ size(steps.extract.output.ips) }} IPs"` is parsed once
//! into a [`Template`]; a bare condition (`if:`, `for_each:`) into an [`Expression`]; a whole
//! JSON tree of them (a step's `with:`) into a [`ValueTemplate`]. Each is evaluated against a
//! [`Context`] that shares the run's values through `Arc`s.
//!
//! The language is CEL (through the `cel` crate) with the analyst function library of
//! [`functions()`], under a cost bound: source length, nesting depth and comprehension nesting
//! are checked before anything runs, every value a function or `+` produces is capped, regexes
//! are linear-time with a compile-size limit, and an evaluation budget meters comprehension
//! iterations and produced data. The limits are the `MAX_*` constants and [`EVAL_BUDGET`];
//! `docs/expressions.md` explains the argument.
//!
//! There is no ambient access: no environment, no I/O, and the clock only through `now()`,
//! which reads [`Context::now`] when the caller pins it.

mod analyze;
mod convert;
mod error;
mod expression;
mod functions;
mod limits;
mod meter;
mod path;
mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

pub use error::{EvalError, ParseError};
pub use expression::Expression;
pub use functions::{FunctionDoc, functions};
pub use limits::{
    EVAL_BUDGET, MAX_COMPREHENSION_NESTING, MAX_EXPRESSION_LEN, MAX_LIST_ITEMS, MAX_NESTING,
    MAX_REGEX_SIZE, MAX_STRING_BYTES, MAX_TEMPLATE_EXPRESSIONS,
};
pub use template::{Template, ValueTemplate};

/// What a template or an expression reads, known at parse time.
///
/// Validation uses it to report unknown names and steps that are read but not depended on;
/// the engine uses `steps` to decide which step views to put in the [`Context`], and
/// `status_functions` to decide whether an `if:` is implicitly `success() && …`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct References {
    /// Root names used: `trigger`, `inputs`, `steps`, `item`, `index`, `secrets`.
    pub contexts: BTreeSet<String>,
    /// Step ids read through `steps.<id>…` (or `steps["<id>"]`).
    pub steps: BTreeSet<String>,
    /// Secret names read through `secrets.<name>`.
    pub secrets: BTreeSet<String>,
    /// Whether `always()`, `success()`, `failure()` or `cancelled()` is called.
    pub status_functions: bool,
    /// Root identifiers that are not a known context; evaluating them is an error.
    pub unknown: BTreeSet<String>,
}

impl References {
    /// Adds everything `other` reads to `self`.
    pub fn merge(&mut self, other: &References) {
        self.contexts.extend(other.contexts.iter().cloned());
        self.steps.extend(other.steps.iter().cloned());
        self.secrets.extend(other.secrets.iter().cloned());
        self.unknown.extend(other.unknown.iter().cloned());
        self.status_functions |= other.status_functions;
    }

    /// Whether nothing at all is read.
    pub fn is_empty(&self) -> bool {
        self == &References::default()
    }
}

/// What an expression can see. Cheap to build per step: big values are shared, not copied.
#[derive(Clone, Debug)]
pub struct Context {
    /// The event that started the run.
    pub trigger: Arc<Value>,
    /// The playbook's inputs.
    pub inputs: Arc<Value>,
    /// The steps this expression may read, by id.
    pub steps: BTreeMap<String, StepView>,
    /// The current element inside `for_each`.
    pub item: Option<Arc<Value>>,
    /// The current element's position inside `for_each`.
    pub index: Option<u64>,
    /// Summary of this step's dependencies, for the status functions.
    pub deps: DepsStatus,
    /// What `now()` returns, in milliseconds since the Unix epoch. The engine pins it (to the
    /// time recorded in the run's history) so that a replay evaluates every expression the
    /// same way; when `None`, `now()` reads the system clock.
    pub now: Option<u64>,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            trigger: Arc::new(Value::Object(Default::default())),
            inputs: Arc::new(Value::Object(Default::default())),
            steps: BTreeMap::new(),
            item: None,
            index: None,
            deps: DepsStatus::default(),
            now: None,
        }
    }
}

/// One step as seen by expressions: `steps.<id>.status`, `.output`, `.error`.
#[derive(Clone, Debug)]
pub struct StepView {
    /// `"succeeded"`, `"failed"`, `"skipped"`, `"running"`, `"pending"` or `"cancelled"`.
    pub status: &'static str,
    /// The step's output, once it succeeded; `null` to expressions otherwise.
    pub output: Option<Arc<Value>>,
    /// The step's error, once it failed; `null` to expressions otherwise.
    pub error: Option<Arc<Value>>,
}

/// For the status functions in `if:` — summary of this step's dependencies.
#[derive(Clone, Copy, Debug, Default)]
pub struct DepsStatus {
    /// Some dependency failed.
    pub any_failed: bool,
    /// Some dependency was skipped.
    pub any_skipped: bool,
    /// The run is cancelled.
    pub cancelled: bool,
}

impl DepsStatus {
    /// `success()`: no dependency failed, was skipped, and the run is not cancelled.
    pub fn success(&self) -> bool {
        !self.any_failed && !self.any_skipped && !self.cancelled
    }
}
