use allama_runtime::ActionErrorKind;
use allama_test_peer::vendors::Slack;
use serde_json::json;

use crate::support::{Vendor, action_error, output};

const TOKEN: &str = "xoxb-test-token";

async fn vendor(s: &Slack) -> Vendor {
    Vendor::start(
        "slack",
        "slack.com",
        s.router(),
        &[("SLACK_BOT_TOKEN", TOKEN)],
    )
    .await
}

fn slack() -> Slack {
    Slack::new(TOKEN)
        .with_channel("C0SOC", "soc-alerts")
        .with_user("U0ADA", "ada", "Ada Lovelace", "ada@acme.example")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_a_message_and_look_up_a_user() {
    let s = slack();
    let v = vendor(&s).await;
    let posted = output(
        &v.run(
            "post-message",
            json!({"channel": "C0SOC", "text": "Host isolated: ws-042"}),
        )
        .await,
    )
    .clone();
    assert_eq!(posted["channel"], "C0SOC");
    let msgs = s.messages();
    assert_eq!(
        (msgs[0].channel.as_str(), msgs[0].text.as_deref()),
        ("C0SOC", Some("Host isolated: ws-042"))
    );
    assert_eq!(posted["ts"], msgs[0].ts.as_str());
    let user = output(
        &v.run("lookup-user-by-email", json!({"email": "ada@acme.example"}))
            .await,
    )
    .clone();
    assert_eq!(
        (user["id"].as_str(), user["real_name"].as_str()),
        (Some("U0ADA"), Some("Ada Lovelace"))
    );
    assert!(
        v.peer
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer xoxb-test-token"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_errors_are_typed() {
    let s = slack();
    let v = vendor(&s).await;
    assert_eq!(
        action_error(
            &v.run("post-message", json!({"channel": "C0NOPE", "text": "x"}))
                .await
        )
        .0,
        ActionErrorKind::NotFound
    );
    assert_eq!(
        action_error(
            &v.run(
                "lookup-user-by-email",
                json!({"email": "nobody@acme.example"})
            )
            .await
        )
        .0,
        ActionErrorKind::NotFound
    );
    s.fail_next(Slack::rate_limited(30));
    let (kind, _) = action_error(
        &v.run("post-message", json!({"channel": "C0SOC", "text": "x"}))
            .await,
    );
    assert_eq!(
        kind,
        ActionErrorKind::RateLimited {
            retry_after_ms: Some(30_000)
        }
    );
    // (The host now holds Slack calls for 30 s; a fresh runtime checks revocation.)
    let s2 = slack();
    let v2 = vendor(&s2).await;
    s2.revoke_token();
    assert_eq!(
        action_error(
            &v2.run("post-message", json!({"channel": "C0SOC", "text": "x"}))
                .await
        )
        .0,
        ActionErrorKind::Unauthorized
    );
    assert!(s2.messages().is_empty());
}
