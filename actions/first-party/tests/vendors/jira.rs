use allama_runtime::ActionErrorKind;
use allama_test_peer::vendors::Jira;
use serde_json::json;

use crate::support::{Vendor, action_error, output};

const SITE: &str = "acme.atlassian.net";

async fn vendor(jira: &Jira) -> Vendor {
    Vendor::start(
        "jira",
        SITE,
        jira.router(),
        &[("JIRA_BASIC", "analyst@acme.example:atl-token")],
    )
    .await
}

fn jira() -> Jira {
    Jira::new("analyst@acme.example", "atl-token").with_project("SEC", "Security")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_comment_and_transition_an_issue() {
    let j = jira();
    let v = vendor(&j).await;
    let created = output(
        &v.run(
            "create-issue",
            json!({"site": SITE, "project": "SEC", "summary": "Phishing from 203.0.113.7", "description": "Blocked at the gateway", "labels": ["phishing"]}),
        )
        .await,
    )
    .clone();
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(created["url"], format!("https://{SITE}/browse/{key}"));
    let issue = j.issue(&key).expect("the issue exists at the vendor");
    assert_eq!(
        (issue.project.as_str(), issue.summary.as_str()),
        ("SEC", "Phishing from 203.0.113.7")
    );
    assert_eq!(issue.description, Some(json!("Blocked at the gateway")));

    output(
        &v.run(
            "add-comment",
            json!({"site": SITE, "issue": key, "body": "Host isolated."}),
        )
        .await,
    );
    assert_eq!(
        j.issue(&key).unwrap().comments[0].body,
        json!("Host isolated.")
    );

    let moved = output(
        &v.run(
            "transition",
            json!({"site": SITE, "issue": key, "to": "in progress"}),
        )
        .await,
    )
    .clone();
    assert_eq!(moved["status"], "In Progress");
    assert_eq!(j.issue(&key).unwrap().status, "In Progress");
    // Basic auth from the user:token secret, base64-encoded by the host.
    let auth = v.peer.requests()[0]
        .header("authorization")
        .unwrap()
        .to_string();
    assert_eq!(auth, "Basic YW5hbHlzdEBhY21lLmV4YW1wbGU6YXRsLXRva2Vu");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placeholder_in_alert_text_is_never_substituted() {
    let j = jira();
    let v = vendor(&j).await;
    let text = "attacker wrote {{secret:JIRA_BASIC}} in the alert";
    let created = output(
        &v.run(
            "create-issue",
            json!({"site": SITE, "project": "SEC", "summary": "Odd alert", "description": text}),
        )
        .await,
    )
    .clone();
    let issue = j.issue(created["key"].as_str().unwrap()).unwrap();
    assert_eq!(
        issue.description,
        Some(json!(text)),
        "the ticket holds the text, not the credential"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_errors_are_typed() {
    let j = jira();
    let v = vendor(&j).await;
    let (kind, msg) = action_error(
        &v.run(
            "add-comment",
            json!({"site": SITE, "issue": "SEC-999", "body": "x"}),
        )
        .await,
    );
    assert_eq!(kind, ActionErrorKind::NotFound, "{msg}");
    let (kind, msg) = action_error(
        &v.run(
            "transition",
            json!({"site": SITE, "issue": "SEC-999", "to": "Done"}),
        )
        .await,
    );
    assert_eq!(kind, ActionErrorKind::NotFound, "{msg}");
    let (kind, msg) = action_error(
        &v.run(
            "create-issue",
            json!({"site": SITE, "project": "NOPE", "summary": "x"}),
        )
        .await,
    );
    assert_eq!(kind, ActionErrorKind::InvalidInput, "{msg}");
    j.fail_next(Jira::server_error(502));
    let (kind, _) = action_error(
        &v.run(
            "create-issue",
            json!({"site": SITE, "project": "SEC", "summary": "x"}),
        )
        .await,
    );
    assert_eq!(kind, ActionErrorKind::Upstream { status: Some(502) });
    j.set_credentials("analyst@acme.example", "rotated");
    let (kind, _) = action_error(
        &v.run(
            "create-issue",
            json!({"site": SITE, "project": "SEC", "summary": "x"}),
        )
        .await,
    );
    assert_eq!(kind, ActionErrorKind::Unauthorized);
    j.set_credentials("analyst@acme.example", "atl-token");
    j.fail_next(Jira::rate_limited(7));
    let (kind, _) = action_error(
        &v.run(
            "create-issue",
            json!({"site": SITE, "project": "SEC", "summary": "x"}),
        )
        .await,
    );
    assert_eq!(
        kind,
        ActionErrorKind::RateLimited {
            retry_after_ms: Some(7000)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_atlassian_site_is_not_this_peer_and_other_hosts_are_refused() {
    let j = jira();
    let v = vendor(&j).await;
    // Outside the manifest's *.atlassian.net: refused by the input check or the grant.
    let r = v
        .run(
            "create-issue",
            json!({"site": "evil.example.com", "project": "SEC", "summary": "x"}),
        )
        .await;
    assert!(matches!(
        action_error(&r).0,
        ActionErrorKind::InvalidInput | ActionErrorKind::Denied
    ));
    assert_eq!(v.peer.request_count(), 0);
}
