//! Triggers through the API: signed webhooks (Standard Webhooks, GitHub,
//! Slack), replays and duplicates, refusals, the synchronous mode, and
//! cron schedules in their time zones.

mod common;

use allama_server::webhooks::{sign_github, sign_slack, sign_standard};
use allama_test_peer::{Peer, Recorded, Reply, Router};
use base64::Engine as _;
use common::{Server, effects_package, error_code, server, server_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn whsec(key: &[u8]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hook_playbook(id: &str, signature: &str, peer: &Peer) -> String {
    format!(
        "id: {id}\ntriggers:\n  - webhook: {{ signature: {signature} }}\nsteps:\n  - id: tell\n    uses: effects/request@1\n    with: {{ method: POST, url: \"{}\", json: {{ ip: \"${{{{ trigger.alert.ip }}}}\" }} }}\noutputs:\n  ip: ${{{{ trigger.alert.ip }}}}\n",
        peer.url("/effects")
    )
}

async fn post(
    s: &Server,
    path: &str,
    headers: &[(&str, String)],
    ct: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut r = s
        .http
        .post(format!("{}{path}", s.base))
        .header("content-type", ct)
        .body(body.to_vec());
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    let resp = r.send().await.unwrap();
    let st = resp.status();
    let text = resp.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn standard(id: &str, ts: u64, body: &[u8], key: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", sign_standard(key, id, ts, body)),
    ]
}

async fn setup() -> (Server, Peer) {
    let peer = Peer::start(Router::new().route("POST", "/effects", |_: &Recorded| {
        Reply::json(200, json!({}))
    }))
    .await;
    let s = server().await;
    s.install("default", effects_package(peer.addr().port()))
        .await;
    (s, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_delivery_starts_one_run_and_every_bad_one_is_refused_and_audited() {
    let (s, peer) = setup().await;
    s.playbook(
        "default",
        &s.admin,
        &hook_playbook("alerts", "standard", &peer),
    )
    .await;
    let path = "/hooks/default/alerts";
    let body = br#"{"alert": {"ip": "203.0.113.9"}}"#;
    // No key set yet: refused, and the refusal names the secret to set.
    let (st, resp) = post(
        &s,
        path,
        &standard("msg_1", now(), body, KEY),
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{resp}");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WEBHOOK_ALERTS"),
        "{resp}"
    );
    s.secret("default", "WEBHOOK_ALERTS", &whsec(KEY)).await;

    // Sync mode: the answer waits for the run and carries its outputs.
    let (st, first) = post(
        &s,
        &format!("{path}?wait_ms=20000"),
        &standard("msg_1", now(), body, KEY),
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["output"]["ip"], "203.0.113.9");
    assert_eq!(first["duplicate"], false);
    assert_eq!(peer.requests().len(), 1);
    assert!(String::from_utf8_lossy(&peer.requests()[0].body).contains("203.0.113.9"));

    // The same delivery again (a sender's retry): the same run, nothing new.
    let (st, again) = post(
        &s,
        path,
        &standard("msg_1", now(), body, KEY),
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_eq!(
        (&again["run"], &again["duplicate"]),
        (&first["run"], &json!(true))
    );
    assert_eq!(peer.requests().len(), 1, "a duplicate delivery ran again");

    // Another delivery: 202 at once, with its run.
    let (st, other) = post(
        &s,
        path,
        &standard("msg_2", now(), body, KEY),
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{other}");
    assert_ne!(other["run"], first["run"]);

    // Refusals: each a 401 with the reason, none starts a run.
    let ts = now();
    let mut bad_sig = standard("msg_3", ts, body, b"another key entirely, 32 bytes!!");
    let stale = standard("msg_4", ts - 3600, body, KEY);
    let future = standard("msg_5", ts + 3600, body, KEY);
    let mut tampered = standard("msg_6", ts, body, KEY);
    tampered[0].1 = "msg_7".into();
    for (headers, needle) in [
        (std::mem::take(&mut bad_sig), "matches"),
        (stale, "old"),
        (future, "future"),
        (tampered, "matches"),
        (vec![], "missing"),
        (
            vec![
                ("webhook-id", "x".into()),
                ("webhook-timestamp", "soon".into()),
                ("webhook-signature", "v1,AAAA".into()),
            ],
            "malformed",
        ),
    ] {
        let (st, resp) = post(&s, path, &headers, "application/json", body).await;
        assert_eq!(
            (st, error_code(&resp)),
            (StatusCode::UNAUTHORIZED, "bad_signature"),
            "{headers:?}: {resp}"
        );
        assert!(
            resp["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {resp}"
        );
    }
    let (st, runs) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/runs",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");
    let (_, audit) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit?action=webhook.",
            Some(&s.admin),
            None,
        )
        .await;
    let actions: Vec<(&str, bool)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["denied"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|(a, d)| *a == "webhook.refused" && *d)
            .count(),
        7,
        "{actions:?}"
    );
    assert_eq!(
        actions
            .iter()
            .filter(|(a, _)| *a == "webhook.accepted")
            .count(),
        2,
        "{actions:?}"
    );

    // The refusals count against the address: past the limit, 429 before any check.
    for _ in 0..3 {
        let (st, resp) = post(&s, path, &[], "application/json", body).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{resp}");
    }
    let (st, resp) = post(
        &s,
        path,
        &standard("msg_9", now(), body, KEY),
        "application/json",
        body,
    )
    .await;
    assert_eq!(
        (st, error_code(&resp)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{resp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_that_are_not_there_look_alike_and_bad_bodies_are_refused() {
    let (s, peer) = setup().await;
    s.playbook(
        "default",
        &s.admin,
        &hook_playbook("alerts", "standard", &peer),
    )
    .await;
    s.secret("default", "WEBHOOK_ALERTS", &whsec(KEY)).await;
    s.playbook(
        "default",
        &s.admin,
        "id: manual-only\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [admin] }\n      message: go\n",
    )
    .await;
    let body = b"{}";
    let ok = |id: &str| standard(id, now(), body, KEY);
    for path in [
        "/hooks/default/manual-only",
        "/hooks/default/nope",
        "/hooks/nowhere/alerts",
        "/hooks/Bad%20WS/alerts",
        "/hooks/default/..%2F..%2Fetc",
    ] {
        let (st, resp) = post(&s, path, &ok("a"), "application/json", body).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {resp}");
        assert_eq!(
            resp["error"]["message"], "no webhook trigger at this address",
            "{path}"
        );
    }
    // Disabled: not there either, until enabled again.
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/playbooks/alerts/enabled",
            Some(&s.admin),
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = post(
        &s,
        "/hooks/default/alerts",
        &ok("b"),
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/playbooks/alerts/enabled",
            Some(&s.admin),
            Some(json!({ "enabled": true })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // A signed body that is not JSON.
    let bad = b"{\"alert\": ";
    let (st, resp) = post(
        &s,
        "/hooks/default/alerts",
        &standard("c", now(), bad, KEY),
        "application/json",
        bad,
    )
    .await;
    assert_eq!(
        (st, error_code(&resp)),
        (StatusCode::BAD_REQUEST, "invalid_json"),
        "{resp}"
    );
    // Too large, whatever its signature.
    let huge = vec![b' '; (25 << 20) + 1];
    let (st, resp) = post(
        &s,
        "/hooks/default/alerts",
        &ok("d"),
        "application/json",
        &huge,
    )
    .await;
    assert_eq!(
        (st, error_code(&resp)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        "{resp}"
    );
    // A bad query.
    let (st, _) = post(
        &s,
        "/hooks/default/alerts?wait_ms=soon",
        &ok("e"),
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    // A failed delivery's id can be sent again once it is fixed.
    let (st, resp) = post(
        &s,
        "/hooks/default/alerts",
        &standard("c", now(), body, KEY),
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_and_slack_post_directly_and_keys_rotate() {
    let (s, peer) = setup().await;
    s.playbook("default", &s.admin, &hook_playbook("gh", "github", &peer))
        .await;
    s.playbook(
        "default",
        &s.admin,
        "id: slack\ntriggers:\n  - webhook: { signature: slack }\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [admin] }\n      message: \"${{ trigger.user_name }} asks to block ${{ trigger.text }}\"\noutputs:\n  text: ${{ trigger.text }}\n",
    )
    .await;
    let (old, new) = ("old-github-secret-123", "new-github-secret-456");
    // Rotation: both keys are accepted while senders move over.
    s.secret("default", "WEBHOOK_GH", &format!("{new} {old}"))
        .await;
    s.secret("default", "WEBHOOK_SLACK", "slack-signing-secret-789")
        .await;
    let body = br#"{"alert": {"ip": "198.51.100.7"}, "action": "opened"}"#;
    for (key, delivery) in [(old, "d-1"), (new, "d-2")] {
        let (st, resp) = post(
            &s,
            "/hooks/default/gh?wait_ms=20000",
            &[
                ("x-hub-signature-256", sign_github(key.as_bytes(), body)),
                ("x-github-delivery", delivery.into()),
                ("x-github-event", "issues".into()),
            ],
            "application/json",
            body,
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{resp}");
        assert_eq!(resp["output"]["ip"], "198.51.100.7");
    }
    // GitHub's redelivery carries the same delivery id: one run.
    let (st, resp) = post(
        &s,
        "/hooks/default/gh",
        &[
            ("x-hub-signature-256", sign_github(new.as_bytes(), body)),
            ("x-github-delivery", "d-2".into()),
        ],
        "application/json",
        body,
    )
    .await;
    assert_eq!(
        (st, &resp["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "{resp}"
    );
    let (st, _) = post(
        &s,
        "/hooks/default/gh",
        &[(
            "x-hub-signature-256",
            sign_github(b"not-the-secret-at-all", body),
        )],
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Slack posts a slash command as a form; its fields are the trigger.
    let form = b"command=%2Fblock&text=203.0.113.9&user_name=ana";
    let ts = now();
    let (st, resp) = post(
        &s,
        "/hooks/default/slack",
        &[
            ("x-slack-request-timestamp", ts.to_string()),
            (
                "x-slack-signature",
                sign_slack(b"slack-signing-secret-789", ts, form),
            ),
        ],
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{resp}");
    let (_, inbox) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/approvals",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(
        inbox[0]["message"], "ana asks to block 203.0.113.9",
        "{inbox}"
    );
    let (st, _) = post(
        &s,
        "/hooks/default/slack",
        &[
            ("x-slack-request-timestamp", (ts - 900).to_string()),
            (
                "x-slack-signature",
                sign_slack(b"slack-signing-secret-789", ts - 900, form),
            ),
        ],
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "a replayed Slack request");
}

#[tokio::test]
async fn an_unsigned_trigger_is_open_to_anyone_who_knows_the_url() {
    let (s, peer) = setup().await;
    s.playbook("default", &s.admin, &hook_playbook("open", "none", &peer))
        .await;
    let body = br#"{"alert": {"ip": "192.0.2.1"}}"#;
    let (st, resp) = post(
        &s,
        "/hooks/default/open?wait_ms=20000",
        &[],
        "application/json",
        body,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{resp}");
    assert_eq!(resp["output"]["ip"], "192.0.2.1");
}

const EVERY_SECOND: &str = "id: tick\ntriggers:\n  - schedule: { cron: \"* * * * * *\", timezone: Europe/Paris }\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [admin] }\n      message: \"fired at ${{ trigger.scheduled_at }}\"\n";

#[tokio::test]
async fn schedules_fire_each_occurrence_once_and_coalesce_what_was_missed() {
    let s = server_with(|c| c.run_scheduler = false).await;
    s.playbook("default", &s.admin, EVERY_SECOND).await;
    let (st, list) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/schedules",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list[0]["playbook"], "tick");
    assert_eq!(list[0]["timezone"], "Europe/Paris");
    assert!(list[0]["next_at"].as_u64().is_some(), "{list}");
    let state = &s.state;
    let t0 = 1_900_000_000_000u64; // a fixed instant, whole second
    // First sight: from now on, nothing back-filled.
    assert!(state.scheduler.tick(state, t0).await.is_empty());
    assert!(state.scheduler.tick(state, t0 + 500).await.is_empty());
    // The next second: one run.
    let first = state.scheduler.tick(state, t0 + 1000).await;
    assert_eq!(first.len(), 1);
    // The same instant again starts nothing more.
    assert!(state.scheduler.tick(state, t0 + 1000).await.is_empty());
    // Ten seconds missed (a stop): one run for the latest occurrence, not ten.
    let late = state.scheduler.tick(state, t0 + 11_000).await;
    assert_eq!(late.len(), 1);
    let (_, detail) = s
        .call(
            Method::GET,
            &format!("/api/v1/workspaces/default/runs/{}", late[0]),
            Some(&s.admin),
            None,
        )
        .await;
    let started = &detail["events"][0];
    assert_eq!(started["trigger"]["kind"], "schedule", "{started}");
    assert_eq!(
        started["trigger"]["scheduled_at"],
        "2030-03-17T17:46:51+00:00"
    );
    assert_eq!(started["trigger"]["late"], false);
    let (_, list) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/schedules",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(list[0]["last_fired_at"], t0 + 11_000);
    // Disabled: nothing fires.
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/playbooks/tick/enabled",
            Some(&s.admin),
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(state.scheduler.tick(state, t0 + 20_000).await.is_empty());
    let (_, audit) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit?action=schedule.",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(audit["records"].as_array().unwrap().len(), 2, "{audit}");
}

#[tokio::test]
async fn bad_schedules_are_refused_when_the_playbook_is_stored() {
    let s = server_with(|c| c.run_scheduler = false).await;
    for (source, needle) in [
        (
            EVERY_SECOND.replace("Europe/Paris", "Mars/Olympus"),
            "Mars/Olympus",
        ),
        (EVERY_SECOND.replace("* * * * * *", "61 * * * *"), "cron"),
        (EVERY_SECOND.replace("* * * * * *", "every day"), "cron"),
    ] {
        let (st, body) = s
            .call(
                Method::POST,
                "/api/v1/workspaces/default/playbooks",
                Some(&s.admin),
                Some(json!({ "source": source })),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle}: {body}");
        assert!(
            body["error"]["field"]
                .as_str()
                .unwrap()
                .contains("triggers"),
            "{body}"
        );
    }
    let (_, list) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/playbooks",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(list, json!([]));
}
