use allama_runtime::ActionErrorKind;
use allama_test_peer::vendors::VirusTotal;
use serde_json::json;

use crate::support::{Vendor, action_error, output};

const KEY: &str = "vt-test-key-0123456789";

async fn vendor(vt: &VirusTotal) -> Vendor {
    Vendor::start(
        "virustotal",
        "www.virustotal.com",
        vt.router(),
        &[("VT_API_KEY", KEY)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_for_ip_domain_url_and_file() {
    let vt = VirusTotal::new(KEY)
        .with_ip("203.0.113.7", 7, 50)
        .with_domain("evil.example", 0, 60)
        .with_url("https://evil.example/login", 3, 40)
        .with_file("44d88612fea8a8f36de82e1278abb02f", 55, 2);
    let v = vendor(&vt).await;
    let ip = output(&v.run("ip-report", json!({"ip": "203.0.113.7"})).await).clone();
    assert_eq!(
        (
            ip["verdict"].as_str(),
            ip["malicious"].as_u64(),
            ip["harmless"].as_u64()
        ),
        (Some("malicious"), Some(7), Some(50))
    );
    let d = output(
        &v.run("domain-report", json!({"domain": "evil.example"}))
            .await,
    )
    .clone();
    assert_eq!(d["verdict"], "clean");
    let u = output(
        &v.run("url-report", json!({"url": "https://evil.example/login"}))
            .await,
    )
    .clone();
    assert_eq!(
        (u["verdict"].as_str(), u["malicious"].as_u64()),
        (Some("malicious"), Some(3))
    );
    let f = output(
        &v.run(
            "file-report",
            json!({"hash": "44D88612FEA8A8F36DE82E1278ABB02F"}),
        )
        .await,
    )
    .clone();
    assert_eq!(f["malicious"], 55);
    // The key went out by handle, over TLS, in the header VirusTotal reads.
    for r in v.peer.requests() {
        assert_eq!(r.header("x-apikey"), Some(KEY));
        assert_eq!(r.header("host"), Some("www.virustotal.com"));
    }
    assert_eq!(v.peer.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_submission_reaches_the_vendor() {
    let vt = VirusTotal::new(KEY);
    let v = vendor(&vt).await;
    let out = output(
        &v.run("url-submit", json!({"url": "https://phish.example/a?b=c"}))
            .await,
    )
    .clone();
    assert!(
        out["analysis_id"].as_str().unwrap().starts_with("u-"),
        "{out}"
    );
    assert_eq!(
        vt.submitted_urls(),
        vec!["https://phish.example/a?b=c".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_errors_are_typed() {
    let vt = VirusTotal::new(KEY);
    let v = vendor(&vt).await;
    let (kind, msg) = action_error(
        &v.run("domain-report", json!({"domain": "unknown.example"}))
            .await,
    );
    assert_eq!(kind, ActionErrorKind::NotFound, "{msg}");
    vt.fail_next(VirusTotal::transient_error());
    let (kind, _) = action_error(&v.run("ip-report", json!({"ip": "198.51.100.1"})).await);
    assert_eq!(kind, ActionErrorKind::Upstream { status: Some(503) });
    vt.fail_next(VirusTotal::forbidden());
    let (kind, _) = action_error(&v.run("ip-report", json!({"ip": "198.51.100.1"})).await);
    assert_eq!(kind, ActionErrorKind::Unauthorized);
    vt.fail_next(VirusTotal::rate_limited(42));
    let (kind, _) = action_error(
        &v.run("domain-report", json!({"domain": "unknown.example"}))
            .await,
    );
    assert_eq!(
        kind,
        ActionErrorKind::RateLimited {
            retry_after_ms: Some(42_000)
        }
    );
    // The host now holds every run's calls to VirusTotal back instead of
    // hammering it: the next step fails fast without reaching the vendor.
    let before = v.peer.request_count();
    let (kind, _) = action_error(&v.run("ip-report", json!({"ip": "198.51.100.2"})).await);
    assert!(
        matches!(kind, ActionErrorKind::RateLimited { retry_after_ms: Some(ms) } if ms > 40_000),
        "{kind:?}"
    );
    assert_eq!(v.peer.request_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_unauthorized_and_never_echoed() {
    let vt = VirusTotal::new("the-real-key");
    let v = vendor(&vt).await;
    let r = v.run("ip-report", json!({"ip": "203.0.113.9"})).await;
    let (kind, msg) = action_error(&r);
    assert_eq!(kind, ActionErrorKind::Unauthorized, "{msg}");
    assert!(msg.contains("WrongCredentialsError"), "{msg}");
    assert!(!serde_json::to_string(&r.audit).unwrap().contains(KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_grants_only_virustotal() {
    let vt = VirusTotal::new(KEY);
    let v = vendor(&vt).await;
    let g = &v.verified.manifest.capabilities;
    assert_eq!(
        g.http
            .allow
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        vec!["https://www.virustotal.com"]
    );
    assert!(g.http.allow_private.is_empty() && g.kv.is_none());
    assert_eq!(g.secrets.keys().collect::<Vec<_>>(), vec!["VT_API_KEY"]);
    assert!(!g.secrets["VT_API_KEY"].reveal);
    // Every declared action is served by the component.
    for a in &v.verified.manifest.actions {
        let r = v.run(&a.name, json!({})).await;
        let (kind, msg) = action_error(&r);
        assert_eq!(kind, ActionErrorKind::InvalidInput, "{}: {msg}", a.name);
        assert!(!msg.contains("unknown action"), "{}: {msg}", a.name);
    }
}
