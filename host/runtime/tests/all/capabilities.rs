//! Each capability used as intended, from inside Wasm.

use allama_runtime::{ActionErrorKind, StepError};
use allama_test_peer::{Peer, Reply, Router, sequence};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};

use crate::support::{Host, event_json, output, peer_grant, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_reaches_the_component() {
    let host = Host::new();
    let p = host.package("caps", "", &[]);
    let ctx = allama_runtime::StepContext {
        run_id: "run-1".into(),
        step_id: "enrich".into(),
        idempotency_key: "run-1/enrich".into(),
        attempt: 3,
    };
    let r = p.run("context", "{}", &ctx).await;
    assert_eq!(
        output(&r),
        &json!({"run_id": "run-1", "step_id": "enrich", "idempotency_key": "run-1/enrich", "attempt": 3})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_action_errors_come_back_typed() {
    let host = Host::new();
    let p = host.package("caps", "", &[]);
    let r = run(
        &p,
        "fail",
        json!({ "kind": "rate-limited", "retry_after_ms": 1500 }),
    )
    .await;
    assert_eq!(
        r.outcome,
        Err(StepError::Action {
            kind: ActionErrorKind::RateLimited {
                retry_after_ms: Some(1500)
            },
            message: "asked to fail".into(),
            retryable: true
        })
    );
    let r = run(&p, "no-such-action", json!({})).await;
    assert!(matches!(
        r.outcome,
        Err(StepError::Action {
            kind: ActionErrorKind::InvalidInput,
            ..
        })
    ));
    assert!(
        r.error_message()
            .unwrap()
            .contains("package `caps`, action `no-such-action`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_with_a_secret_header_and_query_reaches_the_vendor_and_is_scrubbed() {
    let peer = Peer::start(Router::any(Reply::echo)).await;
    let grant = peer_grant(
        &peer,
        &format!(
            "[secrets.VT_KEY]\nhosts = [\"http://127.0.0.1:{}\"]\n",
            peer.addr().port()
        ),
    );
    let host = Host::new();
    let p = host.package("caps", &grant, &[("VT_KEY", "k&y=v@lue")]);
    let r = run(
        &p,
        "http",
        json!({
            "method": "POST",
            "url": peer.url("/api/v3/ip?apikey={{secret:VT_KEY}}&q=1"),
            "headers": [["x-apikey", "{{secret:VT_KEY}}"], ["content-type", "application/json"]],
            "body": "{\"key\":\"{{secret:VT_KEY}}\"}"
        }),
    )
    .await;
    let out = output(&r);
    assert_eq!(out["status"], 200);
    let seen = &peer.requests()[0];
    assert_eq!(seen.header("x-apikey"), Some("k&y=v@lue"));
    assert_eq!(seen.query_param("apikey").as_deref(), Some("k&y=v@lue"));
    assert_eq!(seen.query_param("q").as_deref(), Some("1"));
    assert_eq!(seen.body_str(), "{\"key\":\"k&y=v@lue\"}");
    // The echo carried the secret back; the component sees only the mark.
    let body = out["body"].as_str().unwrap();
    assert!(
        !body.contains("k&y=v@lue") && !body.contains("k%26y%3Dv%40lue"),
        "{body}"
    );
    assert!(body.contains("[REDACTED:VT_KEY]"));
    // The audit names the secret and the URL as written, never the value.
    let audit = serde_json::to_string(&r.audit).unwrap();
    assert!(!audit.contains("v@lue") && audit.contains("{{secret:VT_KEY}}"));
    assert!(
        r.audit
            .iter()
            .any(|a| event_json(&a.event)["event"] == "sent")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_granted_as_private_may_reach_a_private_address() {
    let peer = Peer::start(Router::any(|_| Reply::json(200, json!({"ok": true})))).await;
    let host = Host::with_resolver(&[("jira.corp.internal", IpAddr::V4(Ipv4Addr::LOCALHOST))]);
    let port = peer.addr().port();
    let p = host.package(
        "caps",
        &format!("[http]\nallow_private = [\"http://jira.corp.internal:{port}\"]"),
        &[],
    );
    let r = run(
        &p,
        "http",
        json!({ "url": format!("http://jira.corp.internal:{port}/rest/api/2/issue") }),
    )
    .await;
    assert_eq!(output(&r)["status"], 200);
    assert_eq!(
        peer.requests()[0].header("host"),
        Some(format!("jira.corp.internal:{port}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_redirects_are_followed_and_cross_origin_ones_drop_credentials() {
    let b = Peer::start(Router::any(|_| Reply::text(200, "landed"))).await;
    let b_url = b.url("/final");
    let a = Peer::start(
        Router::new()
            .route("GET", "/one", |_| Reply::redirect(302, "/two"))
            .route("GET", "/two", move |_| Reply::redirect(302, &b_url)),
    )
    .await;
    let grant = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\n[secrets.TOKEN]\nhosts = [\"http://127.0.0.1:{}\"]\n",
        a.addr().port(),
        b.addr().port(),
        a.addr().port()
    );
    let host = Host::new();
    let p = host.package("caps", &grant, &[("TOKEN", "tok")]);
    let r = run(
        &p,
        "http",
        json!({ "url": a.url("/one"), "headers": [["authorization", "Bearer {{secret:TOKEN}}"]] }),
    )
    .await;
    let out = output(&r);
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "landed");
    assert_eq!(
        a.requests()[1].header("authorization"),
        Some("Bearer tok"),
        "same origin keeps it"
    );
    assert_eq!(
        b.requests()[0].header("authorization"),
        None,
        "cross origin drops it"
    );
    let ev = r
        .audit
        .iter()
        .map(|a| event_json(&a.event))
        .find(|e| e["event"] == "request")
        .unwrap();
    assert_eq!(ev["redirects"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_holds_back_later_calls_from_every_run() {
    let peer = Peer::start(Router::any(sequence(vec![
        Reply::rate_limited(30),
        Reply::text(200, "ok"),
    ])))
    .await;
    let host = Host::new();
    let p = host.package("caps", &peer_grant(&peer, "rate_limit_wait_ms = 1000"), &[]);
    let first = run(&p, "http", json!({ "url": peer.url("/q") })).await;
    assert_eq!(output(&first)["status"], 429);
    // A second step (another run) fails fast instead of hammering the vendor.
    let second = run(&p, "http", json!({ "url": peer.url("/q") })).await;
    let out = output(&second);
    assert_eq!(out["error"], "rate-limited", "{out}");
    assert!(out["detail"].as_u64().unwrap() > 28_000);
    assert_eq!(peer.request_count(), 1);
    assert!(
        second
            .audit
            .iter()
            .any(|a| event_json(&a.event)["event"] == "rate-limited")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_retry_after_is_waited_out() {
    let peer = Peer::start(Router::any(sequence(vec![
        Reply::rate_limited(1),
        Reply::text(200, "ok"),
    ])))
    .await;
    let host = Host::new();
    let p = host.package("caps", &peer_grant(&peer, "rate_limit_wait_ms = 2000"), &[]);
    assert_eq!(
        output(&run(&p, "http", json!({ "url": peer.url("/q") })).await)["status"],
        429
    );
    let second = run(&p, "http", json!({ "url": peer.url("/q") })).await;
    assert_eq!(output(&second)["status"], 200);
    let waited = second
        .audit
        .iter()
        .map(|a| event_json(&a.event))
        .find(|e| e["event"] == "rate-limited")
        .unwrap();
    assert_eq!(waited["waited"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveal_and_hmac_work_when_granted() {
    let host = Host::new();
    let p = host.package(
        "caps",
        "[secrets.SIGNING]\nhosts = []\nreveal = true\nhmac = true",
        &[("SIGNING", "key")],
    );
    assert_eq!(
        output(&run(&p, "reveal", json!({ "name": "SIGNING" })).await)["ok"],
        "key"
    );
    // RFC 4231-style check against ring computed independently here.
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key"),
        b"payload",
    );
    let r = run(&p, "hmac", json!({ "name": "SIGNING", "data": "payload" })).await;
    assert_eq!(output(&r)["ok"], hex::encode(mac.as_ref()));
    let events: Vec<_> = r
        .audit
        .iter()
        .map(|a| event_json(&a.event)["event"].clone())
        .collect();
    assert_eq!(events, vec![json!("hmac")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_without_the_grant_is_denied() {
    let host = Host::new();
    let p = host.package(
        "caps",
        "[secrets.SIGNING]\nhosts = []",
        &[("SIGNING", "key")],
    );
    assert_eq!(
        output(&run(&p, "hmac", json!({ "name": "SIGNING", "data": "x" })).await)["error"],
        "denied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_round_trip_with_prefixes_and_isolation_between_packages() {
    let host = Host::new();
    let p = host.package("caps", "[kv]", &[]);
    assert_eq!(
        output(&run(&p, "kv-set", json!({"key": "ioc/1.2.3.4", "value": "bad"})).await)["ok"],
        true
    );
    assert_eq!(
        output(&run(&p, "kv-set", json!({"key": "ioc/5.6.7.8", "value": "good"})).await)["ok"],
        true
    );
    assert_eq!(
        output(&run(&p, "kv-set", json!({"key": "other", "value": "x"})).await)["ok"],
        true
    );
    assert_eq!(
        output(&run(&p, "kv-get", json!({"key": "ioc/1.2.3.4"})).await)["ok"],
        "bad"
    );
    assert_eq!(
        output(&run(&p, "kv-list", json!({"prefix": "ioc/"})).await)["ok"],
        json!(["ioc/1.2.3.4", "ioc/5.6.7.8"])
    );
    assert_eq!(
        output(&run(&p, "kv-delete", json!({"key": "ioc/1.2.3.4"})).await)["ok"],
        true
    );
    assert_eq!(
        output(&run(&p, "kv-get", json!({"key": "ioc/1.2.3.4"})).await)["ok"],
        serde_json::Value::Null
    );
    let bad = run(&p, "kv-set", json!({"key": "", "value": "x"})).await;
    assert_eq!(output(&bad)["error"], "invalid-key");
    let long = run(&p, "kv-set", json!({"key": "k".repeat(600), "value": "x"})).await;
    assert_eq!(output(&long)["error"], "invalid-key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_stdout_and_stderr_land_in_the_step_log() {
    let host = Host::new();
    let p = host.package("caps", "", &[]);
    let r = run(&p, "log", json!({ "message": "enriched 1.2.3.4" })).await;
    assert_eq!(r.log.lines.len(), 1);
    assert_eq!(r.log.lines[0].message, "enriched 1.2.3.4");
    assert_eq!(
        r.log.lines[0].fields,
        vec![("step".to_string(), "log".to_string())]
    );
    assert_eq!(r.log.stdout, "stdout: enriched 1.2.3.4\n");
    assert_eq!(r.log.stderr, "stderr: enriched 1.2.3.4\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_above_the_runtime_memory_ceiling_is_refused_at_bind() {
    let host = Host::with_config(allama_runtime::RuntimeConfig {
        max_concurrent_steps: 8,
        max_memory_bytes: 128 << 20,
        ..Default::default()
    });
    let component = host
        .runtime
        .load_file(std::path::Path::new(allama_guests::CAPS))
        .unwrap();
    let err = host
        .runtime
        .bind(
            &component,
            allama_runtime::PackageSpec {
                name: "caps".into(),
                grant: allama_grant::Grant::from_toml_str("[limits]\nmemory_mib = 512", "g.toml")
                    .unwrap(),
                secrets: std::sync::Arc::new(
                    allama_runtime::capability::secrets::MemorySecretStore::new(),
                ),
                kv: std::sync::Arc::new(allama_runtime::capability::kv::MemoryKv::new()),
                kv_namespace: None,
            },
        )
        .err()
        .expect("refused");
    assert!(err.to_string().contains("limits.memory_mib = 512"), "{err}");
}
