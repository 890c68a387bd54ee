//! Audit records: every capability use and every denial, typed.
//!
//! Each capability defines its own event enum (in its `audit` part); this
//! module wraps them in one [`AuditEvent`] and passes them, with the step's
//! scope, to an [`AuditSink`]. The server's store implements the sink with a
//! hash chain; until then [`FileAuditSink`] writes JSON lines.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::capability::wasi::WasiEvent;
use crate::capability::{http::HttpEvent, kv::KvEvent, log::LogEvent, secrets::SecretsEvent};

/// One audited fact about one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The package whose component acted.
    pub package: String,
    /// The action that was running.
    pub action: String,
    /// The run the step belongs to.
    pub run_id: String,
    /// The step within the run.
    pub step_id: String,
    /// What happened.
    pub event: AuditEvent,
}

/// What happened, by capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "capability", rename_all = "kebab-case")]
pub enum AuditEvent {
    /// Outbound HTTP.
    Http(HttpEvent),
    /// Secret use.
    Secrets(SecretsEvent),
    /// Key-value store.
    Kv(KvEvent),
    /// Step log volume.
    Log(LogEvent),
    /// WASI: filesystem, environment, sockets, name lookup.
    Wasi(WasiEvent),
    /// A step limit was hit (time, memory, stack, output).
    Limit(LimitEvent),
}

impl AuditEvent {
    /// Whether this records a refusal (something the grant did not allow).
    pub fn is_denial(&self) -> bool {
        match self {
            AuditEvent::Http(e) => e.is_denial(),
            AuditEvent::Secrets(e) => e.is_denial(),
            AuditEvent::Kv(e) => e.is_denial(),
            AuditEvent::Log(_) => false,
            // Reading the (empty) environment refuses nothing; Python reads it every step.
            AuditEvent::Wasi(e) => !matches!(e, WasiEvent::Environment),
            AuditEvent::Limit(_) => true,
        }
    }
}

/// A step stopped by one of its grant's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "limit", rename_all = "kebab-case")]
pub enum LimitEvent {
    /// Wall time exceeded.
    Timeout {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
    /// Linear memory growth refused.
    Memory {
        /// The limit, in bytes.
        limit_bytes: u64,
        /// The size asked for, in bytes.
        requested_bytes: u64,
    },
    /// The guest's call stack overflowed.
    StackOverflow,
    /// The step wrote more audit records than one step may; the rest were
    /// counted, not written.
    AuditVolume {
        /// Records not written.
        suppressed: u64,
    },
    /// The output was larger than allowed.
    Output {
        /// The limit, in bytes.
        limit_bytes: u64,
        /// The output's size, in bytes.
        size_bytes: u64,
    },
    /// A recorded step made more capability exchanges than a recording holds;
    /// the rest were counted, not recorded (the recording is incomplete).
    Recording {
        /// Exchanges not recorded.
        dropped: u64,
    },
}

/// Where audit records go. Implementations must be cheap and thread-safe:
/// they are called from every step.
pub trait AuditSink: Send + Sync {
    /// Persist one record. Failures are the sink's to report (the runtime
    /// does not stop a step because a record could not be written).
    fn record(&self, record: &AuditRecord);
}

/// Keeps records in memory; for tests and the local runner.
#[derive(Default)]
pub struct MemoryAuditSink {
    records: Mutex<Vec<AuditRecord>>,
}

impl MemoryAuditSink {
    /// A new, empty sink.
    pub fn new() -> Self {
        Self::default()
    }
    /// Every record so far, in order.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.lock().unwrap().clone()
    }
    /// How many records so far.
    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }
    /// Whether no record was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AuditSink for MemoryAuditSink {
    fn record(&self, record: &AuditRecord) {
        self.records.lock().unwrap().push(record.clone());
    }
}

/// Appends one JSON object per line to a file.
pub struct FileAuditSink {
    file: Mutex<std::fs::File>,
}

impl FileAuditSink {
    /// Open (or create) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }
}

impl AuditSink for FileAuditSink {
    fn record(&self, record: &AuditRecord) {
        let mut line = serde_json::to_vec(record).expect("audit records serialize");
        line.push(b'\n');
        // One write per record so concurrent writers never interleave a line.
        if let Err(e) = self.file.lock().unwrap().write_all(&line) {
            tracing::error!(error = %e, "could not write audit record");
        }
    }
}

/// Discards records; for benchmarks of the bare path only.
pub struct NullAuditSink;

impl AuditSink for NullAuditSink {
    fn record(&self, _record: &AuditRecord) {}
}

/// Who is acting: the scope every record of a step carries.
#[derive(Debug, Clone)]
pub struct StepScope {
    /// Package name.
    pub package: String,
    /// Action name.
    pub action: String,
    /// Run id.
    pub run_id: String,
    /// Step id.
    pub step_id: String,
}

/// The audit trail of one step: writes to the sink and keeps a copy for the
/// step's report.
pub struct StepAudit {
    sink: Arc<dyn AuditSink>,
    scope: StepScope,
    kept: Mutex<Vec<AuditRecord>>,
    suppressed: std::sync::atomic::AtomicU64,
}

/// Most audit records one step may write: a guest looping on cheap denials
/// must not grow the host's memory or the audit log without bound.
pub const MAX_RECORDS_PER_STEP: usize = 1000;

impl StepAudit {
    /// A trail for one step.
    pub fn new(sink: Arc<dyn AuditSink>, scope: StepScope) -> Self {
        Self {
            sink,
            scope,
            kept: Mutex::new(Vec::new()),
            suppressed: Default::default(),
        }
    }

    /// Record one event (past [`MAX_RECORDS_PER_STEP`], only counted).
    pub fn emit(&self, event: AuditEvent) {
        if self.kept.lock().unwrap().len() >= MAX_RECORDS_PER_STEP {
            self.suppressed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        self.write(event);
    }

    /// At the end of a step: one record saying how many were not written.
    pub fn finish(&self) {
        let n = self
            .suppressed
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        if n > 0 {
            self.write(AuditEvent::Limit(LimitEvent::AuditVolume { suppressed: n }));
        }
    }

    fn write(&self, event: AuditEvent) {
        let record = AuditRecord {
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            package: self.scope.package.clone(),
            action: self.scope.action.clone(),
            run_id: self.scope.run_id.clone(),
            step_id: self.scope.step_id.clone(),
            event,
        };
        self.sink.record(&record);
        self.kept.lock().unwrap().push(record);
    }

    /// The scope of this step.
    pub fn scope(&self) -> &StepScope {
        &self.scope
    }

    /// Take the records kept so far.
    pub fn take(&self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.kept.lock().unwrap())
    }
}

/// One line a person can read; values of secrets never appear (events never hold them).
impl std::fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::capability::http::HttpEvent as H;
        use crate::capability::kv::KvEvent as K;
        use crate::capability::log::LogEvent as L;
        use crate::capability::secrets::SecretsEvent as S;
        match self {
            AuditEvent::Http(H::Request {
                method,
                url,
                status,
                bytes_received,
                secrets,
                redirects,
                ..
            }) => {
                write!(
                    f,
                    "http: {method} {url} -> {status} ({bytes_received} bytes"
                )?;
                if *redirects > 0 {
                    write!(f, ", {redirects} redirects")?;
                }
                if !secrets.is_empty() {
                    write!(f, ", with secrets {}", secrets.join(", "))?;
                }
                f.write_str(")")
            }
            AuditEvent::Http(H::Denied {
                method,
                url,
                reason,
            }) => write!(f, "http: {method} {url} denied: {reason}"),
            AuditEvent::Http(H::Failed {
                method, url, error, ..
            }) => write!(f, "http: {method} {url} failed: {error}"),
            AuditEvent::Http(H::RateLimited {
                origin,
                wait_ms,
                waited: true,
            }) => {
                write!(f, "http: waited {wait_ms} ms for {origin} (Retry-After)")
            }
            AuditEvent::Http(H::RateLimited {
                origin,
                wait_ms,
                waited: false,
            }) => {
                write!(
                    f,
                    "http: refused, {origin} asked us to wait {wait_ms} ms (Retry-After)"
                )
            }
            AuditEvent::Secrets(S::Sent { name, origin }) => {
                write!(f, "secrets: {name} sent to {origin}")
            }
            AuditEvent::Secrets(S::Revealed { name }) => {
                write!(f, "secrets: {name} revealed to the component")
            }
            AuditEvent::Secrets(S::Hmac { name }) => {
                write!(f, "secrets: HMAC computed with {name}")
            }
            AuditEvent::Secrets(S::Denied {
                name,
                operation,
                reason,
            }) => {
                write!(f, "secrets: {operation} of {name} denied: {reason}")
            }
            AuditEvent::Kv(K::Set { key, bytes }) => write!(f, "kv: set {key} ({bytes} bytes)"),
            AuditEvent::Kv(K::Delete { key }) => write!(f, "kv: delete {key}"),
            AuditEvent::Kv(K::Denied { operation, reason }) => {
                write!(f, "kv: {operation} denied: {reason}")
            }
            AuditEvent::Log(L::Truncated {
                dropped_bytes,
                cap_bytes,
            }) => {
                write!(
                    f,
                    "log: {dropped_bytes} bytes dropped at the {cap_bytes}-byte cap"
                )
            }
            AuditEvent::Wasi(WasiEvent::Filesystem) => {
                f.write_str("wasi: filesystem access denied (no directories are granted)")
            }
            AuditEvent::Wasi(WasiEvent::Environment) => {
                f.write_str("wasi: environment read (it is empty in the sandbox)")
            }
            AuditEvent::Wasi(WasiEvent::Socket { protocol }) => write!(
                f,
                "wasi: {protocol} socket denied (use the http capability)"
            ),
            AuditEvent::Wasi(WasiEvent::NameLookup { name }) => {
                write!(f, "wasi: name lookup of {name} denied")
            }
            AuditEvent::Limit(LimitEvent::Timeout { limit_ms }) => {
                write!(f, "limit: time limit of {limit_ms} ms reached")
            }
            AuditEvent::Limit(LimitEvent::Memory {
                limit_bytes,
                requested_bytes,
            }) => {
                write!(
                    f,
                    "limit: memory limit of {limit_bytes} bytes reached (asked for {requested_bytes})"
                )
            }
            AuditEvent::Limit(LimitEvent::AuditVolume { suppressed }) => {
                write!(
                    f,
                    "limit: {suppressed} more audit records were counted, not written"
                )
            }
            AuditEvent::Limit(LimitEvent::StackOverflow) => {
                f.write_str("limit: call stack overflowed")
            }
            AuditEvent::Limit(LimitEvent::Output {
                limit_bytes,
                size_bytes,
            }) => {
                write!(
                    f,
                    "limit: output of {size_bytes} bytes over the {limit_bytes}-byte cap"
                )
            }
            AuditEvent::Limit(LimitEvent::Recording { dropped }) => {
                write!(
                    f,
                    "limit: {dropped} capability exchanges were not recorded (the recording is full)"
                )
            }
        }
    }
}

impl AuditEvent {
    /// How long the audited operation took, where that is known.
    pub fn duration_us(&self) -> Option<u64> {
        match self {
            AuditEvent::Http(crate::capability::http::HttpEvent::Request {
                duration_us, ..
            })
            | AuditEvent::Http(crate::capability::http::HttpEvent::Failed {
                duration_us, ..
            }) => Some(*duration_us),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::wasi::WasiEvent;

    #[test]
    fn a_flood_of_events_is_bounded_and_counted() {
        let sink = Arc::new(MemoryAuditSink::new());
        let scope = StepScope {
            package: "p".into(),
            action: "a".into(),
            run_id: "r".into(),
            step_id: "s".into(),
        };
        let audit = StepAudit::new(sink.clone(), scope);
        for _ in 0..MAX_RECORDS_PER_STEP + 500 {
            audit.emit(AuditEvent::Wasi(WasiEvent::Socket {
                protocol: "tcp".into(),
            }));
        }
        audit.finish();
        let records = sink.records();
        assert_eq!(records.len(), MAX_RECORDS_PER_STEP + 1);
        assert_eq!(
            records.last().unwrap().event,
            AuditEvent::Limit(LimitEvent::AuditVolume { suppressed: 500 })
        );
        assert_eq!(audit.take().len(), MAX_RECORDS_PER_STEP + 1);
    }
}
