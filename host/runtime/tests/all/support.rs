//! Shared set-up: a runtime with an in-memory audit sink, packages bound to
//! grants written as TOML, and the check that the host still serves steps.

use std::net::IpAddr;
use std::sync::Arc;

use allama_grant::Grant;
use allama_runtime::audit::{AuditEvent, AuditRecord, MemoryAuditSink};
use allama_runtime::capability::http::StaticResolver;
use allama_runtime::capability::kv::MemoryKv;
use allama_runtime::capability::secrets::MemorySecretStore;
use allama_runtime::{Package, PackageSpec, Runtime, RuntimeConfig, StepContext, StepReport};
use serde_json::Value;

pub struct Host {
    pub runtime: Runtime,
    #[allow(dead_code)] // kept for tests that inspect the runtime-wide sink
    pub audit: Arc<MemoryAuditSink>,
}

impl Host {
    pub fn new() -> Host {
        Host::with_config(RuntimeConfig {
            max_concurrent_steps: 64,
            ..RuntimeConfig::default()
        })
    }

    pub fn with_resolver(names: &[(&str, IpAddr)]) -> Host {
        let mut r = StaticResolver::new();
        for (n, a) in names {
            r = r.with(n, &[*a]);
        }
        Host::with_config(RuntimeConfig {
            max_concurrent_steps: 64,
            resolver: Arc::new(r),
            ..RuntimeConfig::default()
        })
    }

    pub fn with_config(config: RuntimeConfig) -> Host {
        let audit = Arc::new(MemoryAuditSink::new());
        let runtime = Runtime::new(config, audit.clone()).expect("runtime starts");
        Host { runtime, audit }
    }

    /// Bind a guest to a grant (TOML) with the given secret values.
    pub fn package(&self, guest: &str, grant_toml: &str, secrets: &[(&str, &str)]) -> Package {
        let path = allama_guests::ALL
            .iter()
            .find(|(n, _)| *n == guest)
            .expect("known guest")
            .1;
        let component = self
            .runtime
            .load_file(std::path::Path::new(path))
            .expect("guest loads");
        let grant = Grant::from_toml_str(grant_toml, "test-grant.toml").expect("grant parses");
        let mut store = MemorySecretStore::new();
        for (k, v) in secrets {
            store.insert(*k, *v);
        }
        self.runtime
            .bind(
                &component,
                PackageSpec {
                    name: guest.to_string(),
                    grant,
                    secrets: Arc::new(store),
                    kv: Arc::new(MemoryKv::new()),
                    kv_namespace: None,
                },
            )
            .expect("grant binds")
    }

    /// After anything hostile: a good step on the same runtime still works.
    pub async fn assert_still_serving(&self) {
        let good = self.package("caps", "", &[]);
        let report = good
            .run(
                "echo",
                r#"{"still":"serving"}"#,
                &StepContext::adhoc("echo"),
            )
            .await;
        assert_eq!(
            report.outcome.expect("a good step succeeds"),
            serde_json::json!({"still": "serving"})
        );
    }
}

pub async fn run(package: &Package, action: &str, input: Value) -> StepReport {
    package
        .run(action, &input.to_string(), &StepContext::adhoc(action))
        .await
}

/// The output of a step that must have succeeded.
pub fn output(report: &StepReport) -> &Value {
    match &report.outcome {
        Ok(v) => v,
        Err(e) => panic!("step failed: {e}\nstderr: {}", report.log.stderr),
    }
}

/// Records of the given capability that are denials.
pub fn denials<'a>(report: &'a StepReport, capability: &str) -> Vec<&'a AuditRecord> {
    report
        .audit
        .iter()
        .filter(|r| r.event.is_denial())
        .filter(|r| serde_json::to_value(&r.event).unwrap()["capability"] == capability)
        .collect()
}

pub fn event_json(e: &AuditEvent) -> Value {
    serde_json::to_value(e).unwrap()
}

/// A grant allowing the caps guest to reach a loopback peer.
pub fn peer_grant(peer: &allama_test_peer::Peer, extra: &str) -> String {
    format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{}\"]\n{extra}",
        peer.addr().port()
    )
}
