use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::bindings::allama::action::kv::{Host, KvError};
use crate::capability::testing::{env, events, grant};

fn step(
    toml: &str,
    backend: Arc<MemoryKv>,
    ns: &str,
) -> (KvStep, Arc<crate::audit::MemoryAuditSink>) {
    let g = grant(toml);
    let cap = Arc::new(Kv::configure(g.kv.as_ref(), backend, ns.into()));
    let (env, sink) = env("pkg", "act");
    (cap.prepare(&env), sink)
}

#[tokio::test]
async fn not_granted_means_every_call_is_denied_and_audited() {
    let (mut s, sink) = step("", Arc::new(MemoryKv::new()), "pkg");
    assert!(
        matches!(s.get("a".into()).await, Err(KvError::Denied(m)) if m.contains("kv is not granted"))
    );
    assert!(matches!(
        s.set("a".into(), vec![1], None).await,
        Err(KvError::Denied(_))
    ));
    assert!(matches!(
        s.delete("a".into()).await,
        Err(KvError::Denied(_))
    ));
    assert!(matches!(
        s.list_prefix("".into(), 10).await,
        Err(KvError::Denied(_))
    ));
    assert_eq!(events(&sink.records()).len(), 4);
}

#[tokio::test]
async fn namespaces_do_not_see_each_other() {
    let backend = Arc::new(MemoryKv::new());
    let (mut a, _) = step("[kv]", backend.clone(), "workspace-1/pkg");
    let (mut b, _) = step("[kv]", backend, "workspace-2/pkg");
    a.set("k".into(), b"a".to_vec(), None).await.unwrap();
    assert_eq!(b.get("k".into()).await.unwrap(), None);
    assert_eq!(
        b.list_prefix("".into(), 10).await.unwrap(),
        Vec::<String>::new()
    );
    assert!(!b.delete("k".into()).await.unwrap());
    assert_eq!(a.get("k".into()).await.unwrap(), Some(b"a".to_vec()));
}

#[tokio::test]
async fn quotas_on_keys_bytes_and_value_size() {
    let (mut s, sink) = step(
        "[kv]\nmax_keys = 2\nmax_total_kib = 1\nmax_value_kib = 1",
        Arc::new(MemoryKv::new()),
        "ns",
    );
    s.set("a".into(), vec![0; 10], None).await.unwrap();
    s.set("b".into(), vec![0; 10], None).await.unwrap();
    // Overwriting an existing key does not count as a new key.
    s.set("a".into(), vec![0; 20], None).await.unwrap();
    assert!(
        matches!(s.set("c".into(), vec![0; 1], None).await, Err(KvError::QuotaExceeded(m)) if m.contains("kv.max_keys = 2"))
    );
    assert!(matches!(
        s.set("a".into(), vec![0; 1025], None).await,
        Err(KvError::TooLarge(_))
    ));
    assert!(
        matches!(s.set("b".into(), vec![0; 1020], None).await, Err(KvError::QuotaExceeded(m)) if m.contains("max_total_kib"))
    );
    s.delete("b".into()).await.unwrap();
    s.set("c".into(), vec![0; 1], None).await.unwrap();
    let denied = events(&sink.records())
        .into_iter()
        .filter(|e| e["event"] == "denied")
        .count();
    assert_eq!(denied, 3);
}

#[tokio::test]
async fn hostile_keys_are_refused() {
    let (mut s, _) = step("[kv]", Arc::new(MemoryKv::new()), "ns");
    for key in [
        "".to_string(),
        "k".repeat(513),
        "line\nbreak".into(),
        "nul\0".into(),
    ] {
        assert!(
            matches!(
                s.set(key.clone(), vec![], None).await,
                Err(KvError::InvalidKey(_))
            ),
            "{key:?}"
        );
    }
    // Unicode keys are fine.
    s.set("indicator/😈/ünïcode".into(), b"x".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        s.list_prefix("indicator/".into(), 10).await.unwrap(),
        vec!["indicator/😈/ünïcode".to_string()]
    );
    // A huge TTL never expires rather than overflowing.
    s.set("forever".into(), b"x".to_vec(), Some(u64::MAX))
        .await
        .unwrap();
    assert_eq!(s.get("forever".into()).await.unwrap(), Some(b"x".to_vec()));
}

#[test]
fn expired_entries_vanish_and_free_their_quota() {
    let kv = MemoryKv::new();
    let now = SystemTime::now();
    let quota = Quota {
        max_keys: 1,
        max_total_bytes: 1 << 20,
    };
    kv.set(
        "ns",
        "a",
        b"1".to_vec(),
        Some(now + Duration::from_secs(5)),
        quota,
        now,
    )
    .unwrap();
    assert_eq!(kv.get("ns", "a", now).unwrap(), Some(b"1".to_vec()));
    let later = now + Duration::from_secs(6);
    assert_eq!(kv.get("ns", "a", later).unwrap(), None);
    assert!(kv.list_prefix("ns", "", 10, later).unwrap().is_empty());
    // The expired key no longer counts against max_keys = 1.
    kv.set("ns", "b", b"2".to_vec(), None, quota, later)
        .unwrap();
    assert!(
        kv.set("ns", "c", b"3".to_vec(), None, quota, later)
            .is_err()
    );
}

#[test]
fn list_prefix_is_ordered_and_limited() {
    let kv = MemoryKv::new();
    let now = SystemTime::now();
    let q = Quota {
        max_keys: 100,
        max_total_bytes: 1 << 20,
    };
    for k in ["b/2", "a/1", "b/1", "b/3", "c"] {
        kv.set("ns", k, vec![], None, q, now).unwrap();
    }
    assert_eq!(
        kv.list_prefix("ns", "b/", 2, now).unwrap(),
        vec!["b/1", "b/2"]
    );
    assert_eq!(
        kv.list_prefix("ns", "", 100, now).unwrap(),
        vec!["a/1", "b/1", "b/2", "b/3", "c"]
    );
}
