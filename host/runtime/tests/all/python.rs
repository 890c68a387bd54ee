//! A Python component (componentize-py, CPython in Wasm) with the Python SDK:
//! `sdk/python/examples/ip_reputation` run in the real host against a local
//! vendor-like peer.

use std::sync::Arc;
use std::time::Duration;

use allama_runtime::{ActionErrorKind, RuntimeConfig, StepContext, StepError, StepReport};
use allama_test_peer::{Peer, Recorded, Reply, Router};
use serde_json::{Value, json};

use crate::support::{Host, denials, event_json, output, run};

const KEY: &str = "ipintel-k3y&v@lue";

/// A host whose compiled-code cache is shared by these tests: compiling the
/// 19 MB component takes seconds, loading it from the cache milliseconds.
fn host_with(max_concurrent_steps: u32) -> Host {
    Host::with_config(RuntimeConfig {
        max_concurrent_steps,
        cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-cache")),
        ..RuntimeConfig::default()
    })
}

fn host() -> Host {
    host_with(64)
}

/// The IPIntel-like vendor: `GET /v1/ip/<ip>` with `x-api-key`. A few
/// documentation addresses answer a failure instead.
fn vendor(req: &Recorded) -> Reply {
    let ip = req.path.trim_start_matches("/v1/ip/");
    match (ip, req.header("x-api-key")) {
        (_, Some(key)) if key != KEY => Reply::error(401, &format!("invalid API key {key:?}")),
        (_, None) => Reply::error(401, "missing API key"),
        ("192.0.2.44", _) => Reply::error(404, "no such address"),
        ("192.0.2.53", _) => Reply::error(503, "maintenance"),
        ("192.0.2.29", _) => Reply::rate_limited(30),
        ("192.0.2.99", _) => Reply::json(200, json!({"ip": ip, "abuse_score": "high"})),
        _ => Reply::json(
            200,
            json!({
                "ip": ip,
                "abuse_score": 87,
                "country": "NL",
                "total_reports": 12,
                // Vendors echo credentials more often than one would like.
                "key_seen": req.header("x-api-key"),
            }),
        ),
    }
}

async fn start_vendor(delay: Option<Duration>) -> Peer {
    Peer::start(Router::new().prefix("GET", "/v1/ip/", move |req| {
        let reply = vendor(req);
        match delay {
            Some(d) => reply.delay(d),
            None => reply,
        }
    }))
    .await
}

/// The example's grant, pointed at the peer.
fn grant(peer: &Peer) -> String {
    let origin = format!("http://127.0.0.1:{}", peer.addr().port());
    format!(
        "[http]\nallow_private = [\"{origin}\"]\n\
         [secrets.IPINTEL_API_KEY]\nhosts = [\"{origin}\"]\n\
         [kv]\n"
    )
}

fn check_input(peer: &Peer, ip: &str) -> Value {
    json!({ "ip": ip, "base_url": peer.base_url() })
}

fn action_error(r: &StepReport) -> (&ActionErrorKind, &str, bool) {
    match &r.outcome {
        Err(StepError::Action {
            kind,
            message,
            retryable,
        }) => (kind, message.as_str(), *retryable),
        other => panic!(
            "expected a typed action error, got {other:?}\nstderr: {}",
            r.log.stderr
        ),
    }
}

/// Every denial in a step. componentize-py's runtime reads the (empty)
/// environment on every call: that is audited, but it is not a denial.
fn denials_besides_environment(r: &StepReport) -> Vec<Value> {
    r.audit
        .iter()
        .filter(|a| a.event.is_denial())
        .map(|a| event_json(&a.event))
        .collect()
}

#[test]
fn the_example_grant_parses() {
    let toml = include_str!("../../../../sdk/python/examples/ip_reputation/grant.toml");
    let grant = allama_grant::Grant::from_toml_str(toml, "grant.toml").expect("grant parses");
    assert_eq!(grant.limits.memory_bytes, 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_echo_returns_its_input() {
    let host = host();
    let p = host.package("python_example", "", &[]);
    let input =
        json!({"ip": "203.0.113.7", "nested": {"list": [1, 2.5, null, true]}, "text": "é ✓"});
    let r = run(&p, "echo", input.clone()).await;
    assert_eq!(output(&r), &input);
    assert_eq!(denials_besides_environment(&r), Vec::<Value>::new());

    // What a step costs once compiled: printed, not asserted.
    let mut times = Vec::new();
    for _ in 0..20 {
        let r = run(&p, "echo", json!({"a": 1})).await;
        output(&r);
        times.push(r.duration);
    }
    times.sort();
    eprintln!(
        "python echo step: median {:?}, min {:?}, max {:?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_check_sends_the_secret_and_never_sees_it() {
    let peer = start_vendor(None).await;
    let host = host();
    let p = host.package("python_example", &grant(&peer), &[("IPINTEL_API_KEY", KEY)]);

    let r = run(&p, "check", check_input(&peer, "203.0.113.7")).await;
    let out = output(&r);
    assert_eq!(out["ip"], "203.0.113.7");
    assert_eq!(out["verdict"], "malicious");
    assert_eq!(out["score"], 87);
    assert_eq!(out["country"], "NL");
    assert_eq!(out["reports"], 12);
    assert_eq!(out["cached"], false);

    // The vendor got the real key, in the header the SDK wrote.
    let seen = &peer.requests()[0];
    assert_eq!(seen.path, "/v1/ip/203.0.113.7");
    assert_eq!(seen.header("x-api-key"), Some(KEY));
    assert_eq!(seen.query_param("max_age_days").as_deref(), Some("90"));
    // The vendor echoed it; the component saw only the mark.
    assert_eq!(out["raw"]["key_seen"], "[REDACTED:IPINTEL_API_KEY]");
    let everything = format!(
        "{out} {} {:?}",
        serde_json::to_string(&r.audit).unwrap(),
        r.log
    );
    assert!(!everything.contains("k3y"), "{everything}");

    let line = r.log.lines.iter().find(|l| l.message == "ip checked");
    let fields = &line.expect("the action logged").fields;
    assert!(fields.contains(&("verdict".into(), "malicious".into())));
    assert!(fields.contains(&("score".into(), "87".into())));
    assert_eq!(denials_besides_environment(&r), Vec::<Value>::new());
    let capabilities: Vec<Value> = r
        .audit
        .iter()
        .map(|a| event_json(&a.event)["capability"].clone())
        .collect();
    assert!(capabilities.contains(&json!("http")) && capabilities.contains(&json!("kv")));

    // The verdict was cached in kv: a second check does not call the vendor.
    let r = run(&p, "check", check_input(&peer, "203.0.113.7")).await;
    assert_eq!(output(&r)["cached"], true);
    assert_eq!(output(&r)["verdict"], "malicious");
    assert_eq!(peer.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_bad_input_is_a_typed_error() {
    let peer = start_vendor(None).await;
    let host = host();
    let p = host.package("python_example", &grant(&peer), &[("IPINTEL_API_KEY", KEY)]);

    for (input, expected) in [
        (json!({}), "input.ip is required"),
        (json!({"ip": 7}), "input.ip: expected a string"),
        (json!({"ip": "999.1.1.1"}), "is not an IPv4 or IPv6 address"),
        (
            json!({"ip": "1.2.3.4/../x"}),
            "is not an IPv4 or IPv6 address",
        ),
        (json!(["203.0.113.7"]), "the input must be a JSON object"),
    ] {
        let r = run(&p, "check", input.clone()).await;
        let (kind, message, retryable) = action_error(&r);
        assert_eq!(kind, &ActionErrorKind::InvalidInput, "{input}");
        assert!(message.contains(expected), "{input}: {message}");
        assert!(!retryable);
    }
    let r = p
        .run("check", "not json", &StepContext::adhoc("check"))
        .await;
    let (kind, message, _) = action_error(&r);
    assert_eq!(kind, &ActionErrorKind::InvalidInput);
    assert!(message.starts_with("the input is not JSON"), "{message}");

    let r = run(&p, "no-such-action", json!({})).await;
    let (kind, message, _) = action_error(&r);
    assert_eq!(kind, &ActionErrorKind::InvalidInput);
    assert!(
        message.contains("unknown action `no-such-action`; this component provides: check, echo"),
        "{message}"
    );
    assert_eq!(peer.request_count(), 0);

    // A URL the host refuses as malformed is the component's bug: internal.
    let r = run(
        &p,
        "check",
        json!({"ip": "203.0.113.7", "base_url": "no scheme"}),
    )
    .await;
    let (kind, message, retryable) = action_error(&r);
    assert_eq!(kind, &ActionErrorKind::Internal, "{message}");
    assert!(!retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_vendor_failures_are_typed_errors() {
    let peer = start_vendor(None).await;
    let host = host();

    // The configured key is wrong: 401, and the vendor's message quoting it
    // reaches the component scrubbed.
    let wrong = host.package(
        "python_example",
        &grant(&peer),
        &[("IPINTEL_API_KEY", "wrong-s3cret")],
    );
    let r = run(&wrong, "check", check_input(&peer, "203.0.113.7")).await;
    let (kind, message, retryable) = action_error(&r);
    assert_eq!(kind, &ActionErrorKind::Unauthorized);
    assert!(!retryable);
    assert!(
        message.contains("HTTP 401") && message.contains("[REDACTED:IPINTEL_API_KEY]"),
        "{message}"
    );
    assert!(!message.contains("wrong-s3cret"), "{message}");
    assert_eq!(peer.requests()[0].header("x-api-key"), Some("wrong-s3cret"));

    let p = host.package("python_example", &grant(&peer), &[("IPINTEL_API_KEY", KEY)]);
    let r = run(&p, "check", check_input(&peer, "192.0.2.44")).await;
    assert_eq!(action_error(&r).0, &ActionErrorKind::NotFound);

    let r = run(&p, "check", check_input(&peer, "192.0.2.53")).await;
    let (kind, message, retryable) = action_error(&r);
    assert_eq!(kind, &ActionErrorKind::Upstream { status: Some(503) });
    assert!(retryable);
    assert!(message.ends_with("HTTP 503: maintenance"), "{message}");

    let r = run(&p, "check", check_input(&peer, "192.0.2.99")).await;
    let (kind, message, retryable) = action_error(&r);
    assert_eq!(kind, &ActionErrorKind::Upstream { status: Some(200) });
    assert!(!retryable);
    assert!(message.contains("abuse_score"), "{message}");

    // 429 with Retry-After: 30 s, well past the grant's default wait.
    let r = run(&p, "check", check_input(&peer, "192.0.2.29")).await;
    let (kind, _, retryable) = action_error(&r);
    assert_eq!(
        kind,
        &ActionErrorKind::RateLimited {
            retry_after_ms: Some(30_000)
        }
    );
    assert!(retryable);
    // The host now holds this origin back: the next call fails fast, typed,
    // without reaching the vendor.
    let before = peer.request_count();
    let r = run(&p, "check", check_input(&peer, "198.51.100.23")).await;
    match action_error(&r).0 {
        ActionErrorKind::RateLimited {
            retry_after_ms: Some(ms),
        } => assert!((25_000..=30_000).contains(ms), "{ms}"),
        other => panic!("expected rate-limited, got {other:?}"),
    }
    assert_eq!(peer.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_denied_capabilities_are_typed_errors() {
    let peer = start_vendor(None).await;
    let origin = format!("http://127.0.0.1:{}", peer.addr().port());
    let host = host();

    // The vendor's host is not granted.
    let p = host.package(
        "python_example",
        "[secrets.IPINTEL_API_KEY]\nhosts = []\n[kv]\n",
        &[("IPINTEL_API_KEY", KEY)],
    );
    let r = run(&p, "check", check_input(&peer, "203.0.113.7")).await;
    let (kind, message, retryable) = action_error(&r);
    assert_eq!(kind, &ActionErrorKind::Denied, "{message}");
    assert!(!retryable);
    assert!(message.contains("refused by the grant"), "{message}");
    assert_eq!(denials(&r, "http").len(), 1);

    // The host is granted, the secret is not granted toward it.
    let p = host.package(
        "python_example",
        &format!(
            "[http]\nallow_private = [\"{origin}\"]\n\
             [secrets.IPINTEL_API_KEY]\nhosts = [\"https://api.ipintel.example\"]\n[kv]\n"
        ),
        &[("IPINTEL_API_KEY", KEY)],
    );
    let r = run(&p, "check", check_input(&peer, "203.0.113.7")).await;
    assert_eq!(action_error(&r).0, &ActionErrorKind::Denied);
    assert!(!denials_besides_environment(&r).is_empty());

    // kv is not granted.
    let p = host.package("python_example", &grant(&peer).replace("[kv]\n", ""), &[]);
    let r = run(&p, "check", check_input(&peer, "203.0.113.7")).await;
    let (kind, message, _) = action_error(&r);
    assert_eq!(kind, &ActionErrorKind::Denied);
    assert!(message.starts_with("kv: "), "{message}");

    assert_eq!(peer.request_count(), 0);
}

/// A Python component is 14 core instances (CPython, libc, the WASI adapter,
/// shims); every step the runtime admits must be able to instantiate one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_steps_can_fill_every_slot_of_the_pool() {
    const SLOTS: u32 = 8;
    let peer = start_vendor(Some(Duration::from_millis(400))).await;
    let host = host_with(SLOTS);
    let p = Arc::new(host.package("python_example", &grant(&peer), &[("IPINTEL_API_KEY", KEY)]));
    let mut tasks = Vec::new();
    for i in 0..SLOTS {
        let p = p.clone();
        let input = check_input(&peer, &format!("198.51.100.{i}"));
        tasks.push(tokio::spawn(async move { run(&p, "check", input).await }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(output(&r)["verdict"], "malicious");
    }
    assert_eq!(peer.request_count(), SLOTS as usize);
    assert!(
        peer.max_in_flight() > 4,
        "only {} Python steps ran at once",
        peer.max_in_flight()
    );
}
