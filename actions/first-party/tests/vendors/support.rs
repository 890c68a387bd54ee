//! Shared set-up: a signed package per action, a runtime that reaches the
//! peer under the vendor's name, and steps run under the manifest's request.

use std::collections::HashMap;
use std::sync::Arc;

use allama_package::{Package, SigningKey, TrustPolicy};
use allama_runtime::audit::MemoryAuditSink;
use allama_runtime::capability::kv::MemoryKv;
use allama_runtime::capability::secrets::MemorySecretStore;
use allama_runtime::{PackageSpec, Runtime, RuntimeConfig, StepContext, StepReport};
use allama_test_peer::{Peer, Router};

/// A vendor peer over HTTPS at `host`, and a package bound to a runtime
/// that reaches it there.
pub struct Vendor {
    /// The peer.
    pub peer: Peer,
    /// The bound package.
    pub package: allama_runtime::Package,
    /// The verified package file.
    pub verified: Package,
}

impl Vendor {
    /// Start `router` as `host` and bind the first-party package `name`,
    /// signed by a first-party key and verified against a policy trusting it.
    pub async fn start(name: &str, host: &str, router: Router, secrets: &[(&str, &str)]) -> Vendor {
        let key = SigningKey::generate().unwrap().0;
        let bytes = allama_first_party::package(allama_first_party::get(name), &key)
            .expect("package builds");
        Self::start_package(name, "allama", &key, bytes, host, router, secrets).await
    }

    /// Like [`Vendor::start`] for a package built elsewhere (an operator's
    /// re-packaging), signed by `key` for `publisher`.
    pub async fn start_package(
        name: &str,
        publisher: &str,
        key: &SigningKey,
        bytes: Vec<u8>,
        host: &str,
        router: Router,
        secrets: &[(&str, &str)],
    ) -> Vendor {
        let peer = Peer::start_tls(router, &[host]).await;
        let mut policy = TrustPolicy {
            require_signatures: true,
            ..Default::default()
        };
        policy
            .publishers
            .insert(publisher.into(), vec![key.public_key()]);
        let verified = Package::open(&bytes, &format!("{name}.allama"), &policy)
            .expect("first-party package verifies");
        let config = RuntimeConfig {
            max_concurrent_steps: 16,
            pinned_hosts: HashMap::from([(host.to_string(), vec![peer.addr()])]),
            extra_root_certs: vec![peer.ca_pem().unwrap().to_string()],
            ..RuntimeConfig::default()
        };
        let runtime = Runtime::new(config, Arc::new(MemoryAuditSink::new())).unwrap();
        let component = runtime.load(name, verified.component()).unwrap();
        let mut store = MemorySecretStore::new();
        for (k, v) in secrets {
            store.insert(*k, *v);
        }
        let package = runtime
            .bind(
                &component,
                PackageSpec {
                    name: name.into(),
                    grant: verified.effective_grant(None).unwrap(),
                    secrets: Arc::new(store),
                    kv: Arc::new(MemoryKv::new()),
                    kv_namespace: None,
                },
            )
            .unwrap();
        Vendor {
            peer,
            package,
            verified,
        }
    }

    /// Run one step.
    pub async fn run(&self, action: &str, input: serde_json::Value) -> StepReport {
        self.package
            .run(action, &input.to_string(), &StepContext::adhoc(action))
            .await
    }
}

/// The output of a step that must have succeeded.
pub fn output(r: &StepReport) -> &serde_json::Value {
    match &r.outcome {
        Ok(v) => v,
        Err(e) => panic!("{}: {e}\nstderr: {}", r.action, r.log.stderr),
    }
}

/// The typed action error of a step that must have failed that way.
pub fn action_error(r: &StepReport) -> (allama_runtime::ActionErrorKind, String) {
    match &r.outcome {
        Err(allama_runtime::StepError::Action { kind, message, .. }) => {
            (kind.clone(), message.clone())
        }
        other => panic!("{}: expected an action error, got {other:?}", r.action),
    }
}
