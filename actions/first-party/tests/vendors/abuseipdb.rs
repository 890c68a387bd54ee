use allama_runtime::ActionErrorKind;
use allama_test_peer::vendors::AbuseIpDb;
use serde_json::json;

use crate::support::{Vendor, action_error, output};

const KEY: &str = "abuseipdb-test-key";

async fn vendor(a: &AbuseIpDb) -> Vendor {
    Vendor::start(
        "abuseipdb",
        "api.abuseipdb.com",
        a.router(),
        &[("ABUSEIPDB_API_KEY", KEY)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_report_and_blacklist() {
    let a = AbuseIpDb::new(KEY)
        .with_ip("203.0.113.7", 92, 41)
        .with_ip("198.51.100.4", 10, 1);
    let v = vendor(&a).await;
    let bad = output(&v.run("check", json!({"ip": "203.0.113.7"})).await).clone();
    assert_eq!(
        (
            bad["score"].as_u64(),
            bad["verdict"].as_str(),
            bad["total_reports"].as_u64()
        ),
        (Some(92), Some("malicious"), Some(41))
    );
    let ok = output(
        &v.run("check", json!({"ip": "198.51.100.4", "max_age_days": 30}))
            .await,
    )
    .clone();
    assert_eq!(ok["verdict"], "clean");
    let rep = output(
        &v.run(
            "report",
            json!({"ip": "203.0.113.7", "categories": [18, 22], "comment": "SSH brute force"}),
        )
        .await,
    )
    .clone();
    assert_eq!(rep["ip"], "203.0.113.7");
    let filed = a.reports();
    assert_eq!(
        (filed[0].categories.clone(), filed[0].comment.as_str()),
        (vec![18, 22], "SSH brute force")
    );
    let list = output(
        &v.run("blacklist", json!({"confidence_minimum": 90, "limit": 10}))
            .await,
    )
    .clone();
    assert!(
        list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["ip"] == "203.0.113.7"),
        "{list}"
    );
    for r in v.peer.requests() {
        assert_eq!(r.header("key"), Some(KEY));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_errors_are_typed() {
    let a = AbuseIpDb::new(KEY);
    let v = vendor(&a).await;
    a.fail_next(AbuseIpDb::server_error(503));
    assert_eq!(
        action_error(&v.run("check", json!({"ip": "192.0.2.1"})).await).0,
        ActionErrorKind::Upstream { status: Some(503) }
    );
    a.set_api_key("rotated");
    assert_eq!(
        action_error(&v.run("check", json!({"ip": "192.0.2.1"})).await).0,
        ActionErrorKind::Unauthorized
    );
    a.set_api_key(KEY);
    a.fail_next(AbuseIpDb::rate_limited(120));
    let (kind, _) = action_error(&v.run("check", json!({"ip": "192.0.2.1"})).await);
    assert_eq!(
        kind,
        ActionErrorKind::RateLimited {
            retry_after_ms: Some(120_000)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_reaches_the_vendor() {
    let a = AbuseIpDb::new(KEY);
    let v = vendor(&a).await;
    for (action, input) in [
        ("check", json!({"ip": "not-an-ip"})),
        ("check", json!({"ip": "1.2.3.4&maxAgeInDays=365"})),
        ("report", json!({"ip": "192.0.2.1", "categories": [99]})),
        ("report", json!({"ip": "192.0.2.1", "categories": []})),
        ("blacklist", json!({"limit": 0})),
    ] {
        assert_eq!(
            action_error(&v.run(action, input.clone()).await).0,
            ActionErrorKind::InvalidInput,
            "{action} {input}"
        );
    }
    assert_eq!(v.peer.request_count(), 0);
}
