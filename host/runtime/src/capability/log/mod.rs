//! `log`: levelled, structured lines into the step's log, which also takes
//! the component's stdout and stderr. One volume cap (the grant's
//! `limits.log_kib`) covers all three; past it, output is dropped and
//! counted, and one audit record says so.

mod host;
#[cfg(test)]
mod tests;

pub use host::LogStep;

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

use super::{Capability, StepEnv};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal progress.
    Info,
    /// Handled trouble.
    Warn,
    /// A failure.
    Error,
}

/// One structured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The message.
    pub message: String,
    /// Structured fields.
    pub fields: Vec<(String, String)>,
}

/// What a step wrote, within its cap.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOutput {
    /// Structured lines from the `log` capability.
    pub lines: Vec<LogLine>,
    /// stdout, as written.
    pub stdout: String,
    /// stderr, as written.
    pub stderr: String,
    /// Bytes dropped because the cap was reached.
    pub dropped_bytes: u64,
}

/// Which stream raw output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A step's log, shared by the `log` capability and WASI stdout/stderr.
pub struct StepLog {
    cap: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    used: u64,
    lines: Vec<LogLine>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    dropped: u64,
}

impl Inner {
    /// Take up to `n` bytes of room; returns how many fit.
    fn room(&mut self, cap: u64, n: u64) -> u64 {
        let fit = n.min(cap.saturating_sub(self.used));
        self.used += fit;
        self.dropped += n - fit;
        fit
    }
}

impl StepLog {
    /// A log holding at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self {
            cap,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Add a structured line; dropped whole if it does not fit.
    pub fn line(&self, level: Level, message: String, fields: Vec<(String, String)>) {
        // A fixed cost per line and per field: empty lines still take memory.
        let size = 32
            + message.len() as u64
            + fields
                .iter()
                .map(|(k, v)| 8 + (k.len() + v.len()) as u64)
                .sum::<u64>();
        let mut inner = self.inner.lock().unwrap();
        if inner.used + size > self.cap {
            inner.dropped += size;
            return;
        }
        inner.used += size;
        inner.lines.push(LogLine {
            level,
            message,
            fields,
        });
    }

    /// Add raw output; what does not fit is dropped.
    pub fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap();
        let fit = inner.room(self.cap, bytes.len() as u64) as usize;
        let buf = match stream {
            Stream::Stdout => &mut inner.stdout,
            Stream::Stderr => &mut inner.stderr,
        };
        buf.extend_from_slice(&bytes[..fit]);
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().unwrap().dropped
    }

    /// The last few lines of stderr (a guest's panic message, usually),
    /// without Rust's backtrace hint, joined by " | ".
    pub fn stderr_tail(&self) -> Option<String> {
        let inner = self.inner.lock().unwrap();
        let text = String::from_utf8_lossy(&inner.stderr);
        let mut lines: Vec<&str> = text
            .lines()
            .rev()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .take(3)
            .collect();
        lines.reverse();
        let tail = lines.join(" | ");
        (!tail.is_empty()).then(|| tail.chars().take(500).collect())
    }

    /// Everything written, for the step report.
    pub fn take(&self) -> LogOutput {
        let mut inner = self.inner.lock().unwrap();
        LogOutput {
            lines: std::mem::take(&mut inner.lines),
            stdout: String::from_utf8_lossy(&std::mem::take(&mut inner.stdout)).into_owned(),
            stderr: String::from_utf8_lossy(&std::mem::take(&mut inner.stderr)).into_owned(),
            dropped_bytes: inner.dropped,
        }
    }

    /// The cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }
}

/// The log capability: always granted; the volume is capped.
pub struct Log;

impl Capability for Log {
    const NAME: &'static str = "log";
    type Step = LogStep;
    fn prepare(self: &Arc<Self>, env: &StepEnv) -> LogStep {
        LogStep::new(env.log.clone())
    }
}

/// Audit events of the log capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum LogEvent {
    /// Output past the cap was dropped.
    Truncated {
        /// Bytes dropped.
        dropped_bytes: u64,
        /// The cap.
        cap_bytes: u64,
    },
}
