//! Hostile components. Each attempt must end in a typed error (or a typed
//! refusal inside the guest), leave an audit record, and leave the host
//! serving other steps.

use allama_runtime::StepError;
use allama_test_peer::{Peer, Reply, Router};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};

use crate::support::{Host, denials, event_json, output, peer_grant, run};

fn assert_refused_in_guest(report: &allama_runtime::StepReport) {
    let out = output(report);
    assert_eq!(out["escaped"], json!(false), "the guest escaped: {out}");
}

/// Every WASI audit record: denials, and environment reads (audited, but
/// they refuse nothing: the environment is empty).
fn wasi_events(report: &allama_runtime::StepReport) -> Vec<serde_json::Value> {
    report
        .audit
        .iter()
        .map(|r| event_json(&r.event))
        .filter(|e| e["capability"] == "wasi")
        .collect()
}

/// A WASI escape attempt: refused inside the guest, audited as `event`, and
/// the host keeps serving.
async fn wasi_attempt_is_refused(action: &str, event: &str) -> allama_runtime::StepReport {
    let host = Host::new();
    let p = host.package("hostile", "", &[]);
    let r = run(&p, action, json!({})).await;
    assert_refused_in_guest(&r);
    assert!(
        wasi_events(&r).iter().any(|e| e["event"] == event),
        "{action}: {:?}",
        r.audit
    );
    host.assert_still_serving().await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_etc_passwd_is_refused_and_audited() {
    wasi_attempt_is_refused("read-file", "filesystem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_root_is_refused_and_audited() {
    wasi_attempt_is_refused("list-root", "filesystem").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writing_a_file_is_refused_and_audited() {
    wasi_attempt_is_refused("write-file", "filesystem").await;
    assert!(!std::path::Path::new("/tmp/allama-escape").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_empty_and_reading_it_is_audited() {
    // SAFETY: set before any thread reads the environment in this process.
    unsafe { std::env::set_var("ALLAMA_TEST_SECRET_ENV", "must-not-leak") };
    wasi_attempt_is_refused("env", "environment").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_tcp_socket_is_refused_and_audited() {
    let r = wasi_attempt_is_refused("tcp", "socket").await;
    assert!(wasi_events(&r).iter().any(|e| e["protocol"] == "tcp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_socket_to_loopback_is_refused_and_audited() {
    wasi_attempt_is_refused("tcp-loopback", "socket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_a_name_is_refused_and_audited() {
    let r = wasi_attempt_is_refused("dns", "name-lookup").await;
    assert!(wasi_events(&r).iter().any(|e| e["name"] == "example.com"));
}

/// Ask the caps guest to fetch `url`; the result's `error` field.
async fn fetch(
    host: &Host,
    grant: &str,
    url: &str,
) -> (serde_json::Value, allama_runtime::StepReport) {
    let p = host.package("caps", grant, &[]);
    let r = run(&p, "http", json!({ "url": url })).await;
    (output(&r).clone(), r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_not_in_the_grant_is_denied() {
    let host = Host::new();
    let (out, r) = fetch(
        &host,
        "[http]\nallow = [\"https://api.example.com\"]",
        "https://evil.example.net/steal",
    )
    .await;
    assert_eq!(out["error"], "denied", "{out}");
    let msg = out["detail"].as_str().unwrap();
    assert!(
        msg.contains("package `caps`")
            && msg.contains("action `http`")
            && msg.contains("evil.example.net"),
        "{msg}"
    );
    assert_eq!(denials(&r, "http").len(), 1);
    host.assert_still_serving().await;
}

/// Literal private and special addresses, in every spelling: denied, with
/// the peer (when there is one) never reached.
async fn literal_is_denied(url: &str, shows: &str) {
    let host = Host::new();
    let (out, r) = fetch(&host, "[http]\nallow = [\"https://api.example.com\"]", url).await;
    assert_eq!(out["error"], "denied", "{url}: {out}");
    let reason = event_json(&denials(&r, "http")[0].event)["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains(shows),
        "{url}: reason `{reason}` should show {shows}"
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_v4_is_denied() {
    literal_is_denied("http://127.0.0.1/", "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_v6_is_denied() {
    literal_is_denied("http://[::1]/", "::1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_metadata_is_denied() {
    literal_is_denied(
        "http://169.254.169.254/latest/meta-data/",
        "169.254.169.254",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_range_is_denied() {
    literal_is_denied("http://10.0.0.1/", "10.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_mapped_loopback_is_denied() {
    literal_is_denied("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimal_loopback_is_denied() {
    literal_is_denied("http://2130706433/", "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octal_loopback_is_denied() {
    literal_is_denied("http://0177.0.0.1/", "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_loopback_is_denied() {
    literal_is_denied("http://0x7f.0.0.1/", "127.0.0.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_name_that_resolves_to_loopback_is_denied() {
    let peer = Peer::start(Router::any(|_| Reply::text(200, "internal data"))).await;
    let host = Host::with_resolver(&[("vendor.example.com", IpAddr::V4(Ipv4Addr::LOCALHOST))]);
    let port = peer.addr().port();
    let grant = format!("[http]\nallow = [\"http://vendor.example.com:{port}\"]");
    let (out, r) = fetch(&host, &grant, &format!("http://vendor.example.com:{port}/")).await;
    assert_eq!(out["error"], "denied", "{out}");
    let reason = event_json(&denials(&r, "http")[0].event)["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("resolved to a loopback address") && !reason.contains("127.0.0.1"),
        "{reason}"
    );
    assert_eq!(peer.request_count(), 0, "the peer must never be reached");
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_host_redirecting_to_metadata_is_denied() {
    let peer = Peer::start(Router::any(|_| {
        Reply::redirect(302, "http://169.254.169.254/latest/meta-data/iam")
    }))
    .await;
    let host = Host::new();
    let (out, r) = fetch(&host, &peer_grant(&peer, ""), &peer.url("/start")).await;
    assert_eq!(out["error"], "denied", "{out}");
    let reason = event_json(&denials(&r, "http")[0].event)["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("redirect from") && reason.contains("169.254.169.254"),
        "{reason}"
    );
    assert_eq!(peer.request_count(), 1);
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_an_ungranted_peer_never_reaches_it() {
    let other = Peer::start(Router::any(|_| Reply::text(200, "other"))).await;
    let target = other.url("/loot");
    let peer = Peer::start(Router::any(move |_| Reply::redirect(307, &target))).await;
    let host = Host::new();
    let (out, _) = fetch(&host, &peer_grant(&peer, ""), &peer.url("/start")).await;
    assert_eq!(out["error"], "denied", "{out}");
    assert_eq!(other.request_count(), 0);
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_never_sent_to_a_host_it_is_not_granted_toward() {
    let home = Peer::start(Router::any(|_| Reply::text(200, "ok"))).await;
    let elsewhere = Peer::start(Router::any(|_| Reply::text(200, "thanks"))).await;
    let grant = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\n[secrets.API_KEY]\nhosts = [\"http://127.0.0.1:{}\"]\n",
        home.addr().port(),
        elsewhere.addr().port(),
        home.addr().port()
    );
    let host = Host::new();
    let p = host.package("caps", &grant, &[("API_KEY", "s3cr3t-value")]);
    let r = run(
        &p,
        "http",
        json!({ "url": elsewhere.url("/collect"), "headers": [["authorization", "Bearer {{secret:API_KEY}}"]] }),
    )
    .await;
    let out = output(&r);
    assert_eq!(out["error"], "denied", "{out}");
    assert!(out["detail"].as_str().unwrap().contains("API_KEY"));
    assert_eq!(elsewhere.request_count(), 0);
    assert!(denials(&r, "secrets").len() == 1 && denials(&r, "http").len() == 1);
    // The same request to the granted host works.
    let ok = run(&p, "http", json!({ "url": home.url("/x"), "headers": [["authorization", "Bearer {{secret:API_KEY}}"]] })).await;
    assert_eq!(output(&ok)["status"], 200);
    assert_eq!(
        home.requests()[0].header("authorization"),
        Some("Bearer s3cr3t-value")
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_secret_that_is_not_granted_is_denied() {
    let host = Host::new();
    let p = host.package(
        "caps",
        "[secrets.MINE]\nhosts = []\nreveal = true",
        &[("MINE", "a"), ("OTHER", "b")],
    );
    let r = run(&p, "reveal", json!({ "name": "OTHER" })).await;
    assert_eq!(output(&r)["error"], "denied");
    assert_eq!(denials(&r, "secrets").len(), 1);
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revealing_a_granted_secret_without_reveal_is_denied() {
    let host = Host::new();
    let p = host.package(
        "caps",
        "[secrets.MINE]\nhosts = []",
        &[("MINE", "plaintext")],
    );
    let r = run(&p, "reveal", json!({ "name": "MINE" })).await;
    let out = output(&r);
    assert_eq!(out["error"], "denied");
    assert!(!out.to_string().contains("plaintext"));
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_times_out() {
    let host = Host::new();
    let p = host.package("hostile", "[limits]\ntimeout_ms = 200", &[]);
    let r = run(&p, "loop", json!({})).await;
    assert_eq!(r.outcome, Err(StepError::Timeout { limit_ms: 200 }));
    assert!(
        denials(&r, "limit")
            .iter()
            .any(|d| event_json(&d.event)["limit"] == "timeout")
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_inside_a_host_call_is_cut_off_by_the_outer_timeout() {
    let host = Host::new();
    let p = host.package("hostile", "[limits]\ntimeout_ms = 200", &[]);
    let r = run(&p, "sleep", json!({})).await;
    assert_eq!(r.outcome, Err(StepError::Timeout { limit_ms: 200 }));
    assert!(
        denials(&r, "limit")
            .iter()
            .any(|d| event_json(&d.event)["limit"] == "timeout")
    );
    assert_eq!(
        host.runtime.available_slots(),
        64,
        "the cancelled step gave its slot back"
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_hits_the_memory_limit() {
    let host = Host::new();
    let p = host.package("hostile", "[limits]\nmemory_mib = 32", &[]);
    let r = run(&p, "memory-bomb", json!({})).await;
    match r.outcome {
        Err(StepError::MemoryLimit {
            limit_bytes,
            requested_bytes,
        }) => {
            assert_eq!(limit_bytes, 32 << 20);
            assert!(requested_bytes > limit_bytes);
        }
        other => panic!("expected a memory limit, got {other:?}"),
    }
    assert_eq!(denials(&r, "limit").len(), 1);
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_overflows_the_stack_cleanly() {
    let host = Host::new();
    let p = host.package("hostile", "", &[]);
    let r = run(&p, "recursion", json!({})).await;
    assert_eq!(r.outcome, Err(StepError::StackOverflow));
    assert_eq!(denials(&r, "limit").len(), 1);
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_output_is_stopped() {
    let host = Host::new();
    let p = host.package("hostile", "[limits]\nmemory_mib = 64", &[]);
    let r = run(&p, "big-output", json!({ "bytes": 1u64 << 30 })).await;
    assert!(
        matches!(r.outcome, Err(StepError::MemoryLimit { .. })),
        "{:?}",
        r.outcome
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_cap_is_refused() {
    let host = Host::new();
    let p = host.package("hostile", "[limits]\noutput_kib = 1024", &[]);
    let r = run(&p, "big-output", json!({ "bytes": 3u64 << 20 })).await;
    assert!(
        matches!(
            r.outcome,
            Err(StepError::OutputTooLarge {
                limit_bytes: 1_048_576,
                ..
            })
        ),
        "{:?}",
        r.outcome
    );
    assert!(
        denials(&r, "limit")
            .iter()
            .any(|d| event_json(&d.event)["limit"] == "output")
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_capped() {
    let host = Host::new();
    let p = host.package("hostile", "[limits]\nlog_kib = 64", &[]);
    let r = run(&p, "log-flood", json!({ "lines": 200_000 })).await;
    assert_eq!(output(&r)["lines"], 200_000);
    let kept: usize = r
        .log
        .lines
        .iter()
        .map(|l| {
            l.message.len()
                + l.fields
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    assert!(kept <= 64 * 1024, "kept {kept} bytes");
    assert!(r.log.dropped_bytes > 1_000_000);
    assert!(
        r.audit
            .iter()
            .any(|a| event_json(&a.event)["event"] == "truncated")
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_flood_is_capped() {
    let host = Host::new();
    let p = host.package("hostile", "[limits]\nlog_kib = 16", &[]);
    let r = run(&p, "stdout-flood", json!({ "lines": 100_000 })).await;
    assert_eq!(output(&r)["lines"], 100_000);
    assert!(r.log.stdout.len() <= 16 * 1024);
    assert!(r.log.stdout.starts_with("stdout flood line 0\n"));
    assert!(r.log.dropped_bytes > 0);
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_flood_hits_the_quota() {
    let host = Host::new();
    let p = host.package("hostile", "[kv]\nmax_keys = 100", &[]);
    let r = run(&p, "kv-flood", json!({})).await;
    let out = output(&r);
    assert_eq!(out["stored"], 100);
    assert!(
        out["error"].as_str().unwrap().contains("QuotaExceeded"),
        "{out}"
    );
    assert_eq!(denials(&r, "kv").len(), 1);
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_without_a_grant_is_denied() {
    let host = Host::new();
    let p = host.package("hostile", "", &[]);
    let r = run(&p, "kv-flood", json!({})).await;
    let out = output(&r);
    assert_eq!(out["stored"], 0);
    assert!(out["error"].as_str().unwrap().contains("Denied"), "{out}");
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_storm_leaves_the_host_healthy() {
    let host = Host::new();
    let p = host.package("hostile", "", &[]);
    for i in 0..10_000 {
        let r = run(&p, "trap", json!({})).await;
        assert!(
            matches!(r.outcome, Err(StepError::Trap { .. })),
            "step {i}: {:?}",
            r.outcome
        );
    }
    assert_eq!(
        host.runtime.available_slots(),
        64,
        "every pool slot came back"
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_typed_trap_with_its_message() {
    let host = Host::new();
    let p = host.package("hostile", "", &[]);
    let r = run(&p, "panic", json!({})).await;
    match &r.outcome {
        Err(StepError::Trap {
            stderr_tail: Some(tail),
            ..
        }) => assert!(tail.contains("hostile panic with a message"), "{tail}"),
        other => panic!("{other:?}"),
    }
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn division_by_zero_is_a_typed_trap() {
    let host = Host::new();
    let p = host.package("hostile", "", &[]);
    let r = run(&p, "divide", json!({ "d": 0 })).await;
    assert!(
        matches!(r.outcome, Err(StepError::Trap { .. })),
        "{:?}",
        r.outcome
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_that_is_not_json_is_refused() {
    let host = Host::new();
    let p = host.package("hostile", "", &[]);
    let r = run(&p, "bad-json", json!({})).await;
    assert!(
        matches!(r.outcome, Err(StepError::OutputNotJson { .. })),
        "{:?}",
        r.outcome
    );
    host.assert_still_serving().await;
}

async fn invalid_request(headers: serde_json::Value, url_path: &str, what: &str) {
    let peer = Peer::start(Router::any(|_| Reply::text(200, "ok"))).await;
    let host = Host::new();
    let p = host.package("caps", &peer_grant(&peer, ""), &[]);
    let r = run(
        &p,
        "http",
        json!({ "url": peer.url(url_path), "headers": headers }),
    )
    .await;
    let out = output(&r);
    assert_eq!(out["error"], "invalid-request", "{out}");
    assert!(out["detail"].as_str().unwrap().contains(what), "{out}");
    assert_eq!(peer.request_count(), 0);
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_is_refused() {
    invalid_request(
        json!([["x-note", "a\r\nx-injected: yes"]]),
        "/",
        "control character",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overriding_host_headers_is_refused() {
    invalid_request(json!([["Host", "internal.admin"]]), "/", "`host`").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_placeholder_in_the_path_is_refused() {
    invalid_request(json!([]), "/{{secret:API_KEY}}/x", "only in query values").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_urls_are_denied() {
    let host = Host::new();
    let (out, _) = fetch(
        &host,
        "[http]\nallow = [\"https://api.example.com\"]",
        "https://api.example.com@evil.example.net/",
    )
    .await;
    assert_eq!(out["error"], "denied", "{out}");
    let (out, _) = fetch(
        &host,
        "[http]\nallow = [\"https://api.example.com\"]",
        "https://user:pw@api.example.com/",
    )
    .await;
    assert_eq!(out["error"], "denied", "{out}");
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_is_cut_at_the_decompressed_cap() {
    let peer = Peer::start(Router::any(|_| Reply::gzip_bomb(1 << 30))).await;
    let host = Host::new();
    let (out, r) = fetch(
        &host,
        &peer_grant(&peer, "max_response_kib = 1024"),
        &peer.url("/bomb"),
    )
    .await;
    assert_eq!(out["error"], "response-too-large", "{out}");
    assert_eq!(out["detail"], 1 << 20);
    assert!(
        r.audit
            .iter()
            .any(|a| event_json(&a.event)["event"] == "failed")
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_stream_is_cut_at_the_cap() {
    let peer = Peer::start(Router::any(|_| Reply::streamed(200, 200 << 20))).await;
    let host = Host::new();
    let (out, _) = fetch(
        &host,
        &peer_grant(&peer, "max_response_kib = 512"),
        &peer.url("/stream"),
    )
    .await;
    assert_eq!(out["error"], "response-too-large", "{out}");
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_vendor_times_out_within_the_step() {
    let peer = Peer::start(Router::any(|_| {
        Reply::text(200, "late").delay(std::time::Duration::from_secs(30))
    }))
    .await;
    let host = Host::new();
    let (out, _) = fetch(
        &host,
        &peer_grant(&peer, "timeout_ms = 300"),
        &peer.url("/slow"),
    )
    .await;
    assert_eq!(out["error"], "timeout", "{out}");
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_a_component_fail_to_load_with_a_typed_error() {
    let host = Host::new();
    let err = host
        .runtime
        .load("garbage", b"\0asm\x01\0\0\0garbage")
        .err()
        .expect("refused");
    assert!(
        matches!(err, allama_runtime::LoadError::Compile { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("`garbage`"));
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_importing_an_unknown_capability_is_refused_at_load() {
    let host = Host::new();
    let wat = r#"(component
        (import "evil:net/raw@1.0.0" (instance (export "connect" (func (param "host" string)))))
    )"#;
    let err = host
        .runtime
        .load("smuggler", wat.as_bytes())
        .err()
        .expect("refused");
    assert!(
        matches!(err, allama_runtime::LoadError::Link { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("evil:net/raw"), "{err}");
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_without_the_action_export_is_refused_at_load() {
    let host = Host::new();
    let err = host
        .runtime
        .load("empty", b"(component)")
        .err()
        .expect("refused");
    assert!(
        matches!(err, allama_runtime::LoadError::NotAnAction { .. }),
        "{err}"
    );
    host.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_wanting_more_memories_than_a_pool_slot_is_refused_at_load() {
    let host = Host::new();
    let wat = r#"(component
        (core module $m (memory 1) (memory 1) (memory 1))
        (core instance (instantiate $m))
    )"#;
    let err = host
        .runtime
        .load("greedy", wat.as_bytes())
        .err()
        .expect("refused");
    assert!(
        matches!(err, allama_runtime::LoadError::Compile { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("`greedy`") && err.to_string().contains("memor"),
        "{err}"
    );
    host.assert_still_serving().await;
}
