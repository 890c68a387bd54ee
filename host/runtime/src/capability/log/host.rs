//! The `allama:action/log` host implementation.

use std::sync::Arc;

use super::{Level, StepLog};
use crate::bindings::allama::action::log::{Host, Level as WitLevel};

/// Per-step state of the log capability.
pub struct LogStep {
    log: Arc<StepLog>,
}

impl LogStep {
    pub(crate) fn new(log: Arc<StepLog>) -> Self {
        Self { log }
    }
}

impl From<WitLevel> for Level {
    fn from(l: WitLevel) -> Self {
        match l {
            WitLevel::Trace => Level::Trace,
            WitLevel::Debug => Level::Debug,
            WitLevel::Info => Level::Info,
            WitLevel::Warn => Level::Warn,
            WitLevel::Error => Level::Error,
        }
    }
}

impl Host for LogStep {
    async fn write(&mut self, level: WitLevel, message: String, fields: Vec<(String, String)>) {
        self.log.line(level.into(), message, fields);
    }
}
