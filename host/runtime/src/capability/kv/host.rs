//! The `allama:action/kv` host implementation.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::tape::{Codec, KvRequest, KvResponse};
use super::{Kv, KvBackendError, KvEvent, MAX_KEY_BYTES, MAX_LIST, Quota};
use crate::audit::AuditEvent;
use crate::bindings::allama::action::kv::{Host, KvError};
use crate::capability::StepEnv;
use crate::tape::Body;

/// Per-step state of the kv capability.
pub struct KvStep {
    pub(super) cap: Arc<Kv>,
    pub(super) env: StepEnv,
}

impl KvStep {
    pub(crate) fn new(cap: Arc<Kv>, env: StepEnv) -> Self {
        Self { cap, env }
    }

    fn refuse(&self, operation: &str, err: KvError) -> KvError {
        let reason = match &err {
            KvError::Denied(m)
            | KvError::QuotaExceeded(m)
            | KvError::InvalidKey(m)
            | KvError::TooLarge(m)
            | KvError::Unavailable(m) => m.clone(),
        };
        self.env.audit.emit(AuditEvent::Kv(KvEvent::Denied {
            operation: operation.to_string(),
            reason,
        }));
        let who = self.env.who();
        match err {
            KvError::Denied(m) => KvError::Denied(format!("{who}, kv: {m}")),
            KvError::QuotaExceeded(m) => KvError::QuotaExceeded(format!("{who}, kv: {m}")),
            KvError::InvalidKey(m) => KvError::InvalidKey(format!("{who}, kv: {m}")),
            KvError::TooLarge(m) => KvError::TooLarge(format!("{who}, kv: {m}")),
            KvError::Unavailable(m) => KvError::Unavailable(format!("{who}, kv: {m}")),
        }
    }

    /// The grant, or a denial if kv is not granted.
    fn granted(&self, operation: &str) -> Result<&allama_grant::KvGrant, KvError> {
        self.cap.grant.as_ref().ok_or_else(|| {
            self.refuse(
                operation,
                KvError::Denied("kv is not granted to this package".into()),
            )
        })
    }

    fn check_key(&self, operation: &str, key: &str, allow_empty: bool) -> Result<(), KvError> {
        let problem = if key.is_empty() && !allow_empty {
            Some("the key is empty".to_string())
        } else if key.len() > MAX_KEY_BYTES {
            Some(format!(
                "the key is {} bytes; the most is {MAX_KEY_BYTES}",
                key.len()
            ))
        } else if key.chars().any(char::is_control) {
            Some("the key contains a control character".to_string())
        } else {
            None
        };
        match problem {
            Some(p) => Err(self.refuse(operation, KvError::InvalidKey(p))),
            None => Ok(()),
        }
    }

    pub(super) fn backend_error(&self, operation: &str, e: KvBackendError) -> KvError {
        match e {
            KvBackendError::QuotaExceeded(m) => self.refuse(operation, KvError::QuotaExceeded(m)),
            KvBackendError::Unavailable(m) => self.refuse(operation, KvError::Unavailable(m)),
        }
    }
}

impl Host for KvStep {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        self.granted("get")?;
        self.check_key("get", &key, false)?;
        let call = self.taped(|t| KvRequest::Get {
            key: t.scrub_text(&key),
        });
        self.backend(
            "get",
            call,
            || {
                self.cap
                    .backend
                    .get(&self.cap.namespace, &key, SystemTime::now())
            },
            Codec {
                encode: |v, t| KvResponse::Value(v.as_ref().map(|b| Body(t.scrub(b)))),
                decode: |r| match r {
                    KvResponse::Value(v) => Some(v.map(|b| b.0)),
                    _ => None,
                },
            },
        )
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u64>,
    ) -> Result<(), KvError> {
        let grant = self.granted("set")?.clone();
        self.check_key("set", &key, false)?;
        if value.len() as u64 > grant.max_value_bytes {
            return Err(self.refuse(
                "set",
                KvError::TooLarge(format!(
                    "the value is {} bytes; kv.max_value_kib allows {}",
                    value.len(),
                    grant.max_value_bytes
                )),
            ));
        }
        let now = SystemTime::now();
        // A TTL too large to represent simply never expires.
        let expires = ttl_seconds.and_then(|t| now.checked_add(Duration::from_secs(t)));
        let quota = Quota {
            max_keys: grant.max_keys,
            max_total_bytes: grant.max_total_bytes,
        };
        let bytes = value.len() as u64;
        let call = self.taped(|t| KvRequest::Set {
            key: t.scrub_text(&key),
            value: Body(t.scrub(&value)),
            ttl_seconds,
        });
        self.backend(
            "set",
            call,
            || {
                self.cap
                    .backend
                    .set(&self.cap.namespace, &key, value, expires, quota, now)
            },
            Codec {
                encode: |(), _| KvResponse::Stored,
                decode: |r| matches!(r, KvResponse::Stored).then_some(()),
            },
        )?;
        self.env
            .audit
            .emit(AuditEvent::Kv(KvEvent::Set { key, bytes }));
        Ok(())
    }

    async fn delete(&mut self, key: String) -> Result<bool, KvError> {
        self.granted("delete")?;
        self.check_key("delete", &key, false)?;
        let call = self.taped(|t| KvRequest::Delete {
            key: t.scrub_text(&key),
        });
        let existed = self.backend(
            "delete",
            call,
            || {
                self.cap
                    .backend
                    .delete(&self.cap.namespace, &key, SystemTime::now())
            },
            Codec {
                encode: |existed, _| KvResponse::Existed(*existed),
                decode: |r| match r {
                    KvResponse::Existed(e) => Some(e),
                    _ => None,
                },
            },
        )?;
        self.env.audit.emit(AuditEvent::Kv(KvEvent::Delete { key }));
        Ok(existed)
    }

    async fn list_prefix(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, KvError> {
        self.granted("list-prefix")?;
        self.check_key("list-prefix", &prefix, true)?;
        let call = self.taped(|t| KvRequest::ListPrefix {
            prefix: t.scrub_text(&prefix),
            limit,
        });
        self.backend(
            "list-prefix",
            call,
            || {
                self.cap.backend.list_prefix(
                    &self.cap.namespace,
                    &prefix,
                    limit.min(MAX_LIST) as usize,
                    SystemTime::now(),
                )
            },
            Codec {
                encode: |keys, t| KvResponse::Keys(keys.iter().map(|k| t.scrub_text(k)).collect()),
                decode: |r| match r {
                    KvResponse::Keys(k) => Some(k),
                    _ => None,
                },
            },
        )
    }
}
