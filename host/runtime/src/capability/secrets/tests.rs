use std::sync::Arc;

use super::*;
use crate::bindings::allama::action::secrets::{Host, SecretError};
use crate::capability::testing::{env, events, grant};

fn step(toml: &str, values: &[(&str, &str)]) -> (SecretsStep, Arc<crate::audit::MemoryAuditSink>) {
    let g = grant(toml);
    let mut store = MemorySecretStore::new();
    for (k, v) in values {
        store.insert(*k, *v);
    }
    let cap = Arc::new(Secrets::configure(&g.secrets, Arc::new(store)));
    let (env, sink) = env("pkg", "act");
    (cap.prepare(&env), sink)
}

#[test]
fn secret_values_never_print() {
    let v = SecretValue::new("hunter2");
    assert_eq!(format!("{v}"), "**redacted**");
    assert!(!format!("{v:?}").contains("hunter2"));
    assert_eq!(v.expose(), "hunter2");
}

#[tokio::test]
async fn reveal_needs_the_grant_flag_and_is_audited_either_way() {
    let (mut s, sink) = step(
        "[secrets.A]\nhosts = []\nreveal = true\n[secrets.B]\nhosts = []",
        &[("A", "a"), ("B", "b")],
    );
    assert_eq!(s.reveal("A".into()).await.ok().as_deref(), Some("a"));
    match s.reveal("B".into()).await {
        Err(SecretError::Denied(m)) => assert!(
            m.contains("package `pkg`, action `act`, secrets: secret `B` may not be revealed"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(s.reveal("C".into()).await, Err(SecretError::Denied(m)) if m.contains("not granted"))
    );
    let ev = events(&sink.records());
    assert_eq!(ev[0]["event"], "revealed");
    assert_eq!(ev[1]["event"], "denied");
    assert_eq!(ev[2]["event"], "denied");
    assert!(
        !serde_json::to_string(&sink.records())
            .unwrap()
            .contains("\"a\"")
    );
}

#[tokio::test]
async fn a_granted_secret_without_a_value_is_not_found() {
    let (mut s, _) = step("[secrets.A]\nhosts = []\nreveal = true", &[]);
    assert!(
        matches!(s.reveal("A".into()).await, Err(SecretError::NotFound(m)) if m.contains("no value set"))
    );
}

#[tokio::test]
async fn hmac_matches_ring_and_needs_its_flag() {
    let (mut s, _) = step(
        "[secrets.K]\nhosts = []\nhmac = true\n[secrets.N]\nhosts = []",
        &[("K", "key"), ("N", "n")],
    );
    let expected = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key"),
        b"data",
    );
    assert_eq!(
        s.hmac_sha256("K".into(), b"data".to_vec()).await.unwrap(),
        expected.as_ref()
    );
    assert!(matches!(
        s.hmac_sha256("N".into(), vec![]).await,
        Err(SecretError::Denied(_))
    ));
}

#[test]
fn for_request_checks_the_host() {
    let g = grant("[secrets.VT]\nhosts = [\"https://www.virustotal.com\"]");
    let mut store = MemorySecretStore::new();
    store.insert("VT", "v");
    let s = Secrets::configure(&g.secrets, Arc::new(store));
    let ok = url::Url::parse("https://www.virustotal.com/api/v3/ip_addresses/1.2.3.4").unwrap();
    let bad = url::Url::parse("https://evil.example.com/").unwrap();
    let wrong_port = url::Url::parse("https://www.virustotal.com:8443/").unwrap();
    assert_eq!(s.for_request("VT", &ok).unwrap().expose(), "v");
    assert!(matches!(
        s.for_request("VT", &bad),
        Err(SecretDenial::WrongHost { .. })
    ));
    assert!(matches!(
        s.for_request("VT", &wrong_port),
        Err(SecretDenial::WrongHost { .. })
    ));
    let msg = s.for_request("VT", &bad).unwrap_err().to_string();
    assert!(
        msg.contains("https://evil.example.com:443") && msg.contains("https://www.virustotal.com"),
        "{msg}"
    );
}
