//! Runs through the API: packages and their grants, real steps against a
//! local peer, secrets from the vault, capability audit records, approvals,
//! cancellation, listing, workspace isolation and restarts.

mod common;

use allama_test_peer::{Peer, Recorded, Reply, Router};
use common::{Server, effects_package, error_code, server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OCTET: &str = "application/octet-stream";

async fn vendor() -> Peer {
    Peer::start(Router::new().route("POST", "/effects", |r: &Recorded| {
        match r.header("authorization") {
            Some("Bearer s3cret") => Reply::json(200, json!({ "verdict": "clean" })),
            _ => Reply::json(401, json!({ "error": "bad token" })),
        }
    }))
    .await
}

fn effects_playbook(peer: &Peer) -> String {
    format!(
        "id: effects\ninputs:\n  url: {{ type: string, default: \"{}\" }}\nsteps:\n  - id: a\n    uses: effects/request@1\n    with: {{ method: POST, url: \"${{{{ inputs.url }}}}\", json: {{ n: 1 }}, auth: {{ bearer: TOKEN }} }}\noutputs:\n  verdict: ${{{{ steps.a.output.json.verdict }}}}\n",
        peer.url("/effects")
    )
}

async fn audit(s: &Server, ws: &str, query: &str) -> Vec<Value> {
    let (st, body) = s
        .call(
            Method::GET,
            &format!("/api/v1/workspaces/{ws}/audit?{query}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["records"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no records in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_runs_only_once_granted_with_vault_secrets_and_every_use_audited() {
    let peer = vendor().await;
    let s = server().await;
    let ws = "/api/v1/workspaces/default";
    // Installed pending: it says what it asks for, and may do nothing yet.
    let (st, pkg) = s
        .raw(
            Method::POST,
            &format!("{ws}/packages"),
            &s.admin,
            OCTET,
            effects_package(peer.addr().port()),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{pkg}");
    assert_eq!(pkg["granted"], false);
    assert_eq!(pkg["actions"], json!(["request"]));
    let requests = pkg["requests"].to_string();
    assert!(requests.contains("TOKEN"), "{requests}");
    assert_eq!(pkg["may"], json!([]));
    let (st, _) = s
        .call(
            Method::PUT,
            &format!("{ws}/secrets/TOKEN"),
            Some(&s.admin),
            Some(json!({ "value": "s3cret" })),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    s.playbook("default", &s.admin, &effects_playbook(&peer))
        .await;

    let run = s.run("default", &s.admin, "effects", json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("not granted"),
        "{run}"
    );
    assert_eq!(
        peer.request_count(),
        0,
        "an ungranted package reached the vendor"
    );

    // A grant that widens what the package asks for is refused, naming why.
    let (st, body) = s
        .call(
            Method::PUT,
            &format!("{ws}/packages/effects/grant"),
            Some(&s.admin),
            Some(json!({ "grant": "[http]\nallow = [\"https://evil.example\"]\n" })),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "grant");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evil.example"),
        "{body}"
    );
    let (st, body) = s
        .call(
            Method::PUT,
            &format!("{ws}/packages/effects/grant"),
            Some(&s.admin),
            Some(json!({ "grant": "[http\nnot toml" })),
        )
        .await;
    assert_eq!(
        (st, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("grant")),
        "{body}"
    );

    let (st, pkg) = s
        .call(
            Method::PUT,
            &format!("{ws}/packages/effects/grant"),
            Some(&s.admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{pkg}");
    assert_eq!(pkg["granted"], true);
    assert!(pkg["may"].to_string().contains("TOKEN"), "{pkg}");

    let run = s.run("default", &s.admin, "effects", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"]["verdict"], "clean");
    let sent = peer.last_request().unwrap();
    assert_eq!(sent.header("authorization"), Some("Bearer s3cret"));
    let id = run["id"].as_str().unwrap();
    let uses = audit(&s, "default", "action=capability.").await;
    let http: Vec<&Value> = uses
        .iter()
        .filter(|r| r["action"] == "capability.http" && r["actor"] == format!("run:{id}/a"))
        .collect();
    assert_eq!(http.len(), 1, "{uses:?}");
    assert_eq!(http[0]["denied"], false);
    assert_eq!(http[0]["target"], "effects/request");
    assert!(
        !serde_json::to_string(&uses).unwrap().contains("s3cret"),
        "a secret value reached the audit log"
    );

    // Somewhere the grant does not allow: refused, and the refusal audited.
    let run = s
        .run(
            "default",
            &s.admin,
            "effects",
            json!({ "url": "http://127.0.0.1:1/x" }),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    let denials = audit(&s, "default", "denied=true").await;
    assert!(
        denials.iter().any(|r| r["action"] == "capability.http"
            && r["actor"]
                .as_str()
                .unwrap()
                .starts_with(&format!("run:{}", run["id"].as_str().unwrap()))),
        "{denials:?}"
    );
    let (st, metrics) = s.call(Method::GET, "/metrics", Some(&s.admin), None).await;
    assert_eq!(st, StatusCode::OK);
    let metrics = metrics.as_str().unwrap().to_string();
    for needle in [
        "allama_capability_denials_total{capability=\"http\"}",
        "allama_runs_finished_total{status=\"succeeded\"} 1",
        "allama_runs_started_total 3",
        "allama_step_duration_seconds_count",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    let (st, _) = s.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Revoked: installed, but nothing runs.
    let (st, pkg) = s
        .call(
            Method::DELETE,
            &format!("{ws}/packages/effects/grant"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!((st, &pkg["granted"]), (StatusCode::OK, &json!(false)));
    let before = peer.request_count();
    let run = s.run("default", &s.admin, "effects", json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(peer.request_count(), before);
    // Every change to the package is in the chain.
    let changes: Vec<String> = audit(&s, "default", "action=package.")
        .await
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        changes,
        ["package.install", "package.grant", "package.revoke"]
    );
    // Removed: gone from the list.
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("{ws}/packages/effects"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, list) = s
        .call(Method::GET, &format!("{ws}/packages"), Some(&s.admin), None)
        .await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn bad_package_uploads_are_refused_clearly() {
    let s = server().await;
    let path = "/api/v1/workspaces/default/packages";
    let (st, body) = s
        .raw(
            Method::POST,
            path,
            &s.admin,
            OCTET,
            b"not a package".to_vec(),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "package");
    let (st, body) = s
        .raw(
            Method::POST,
            path,
            &s.admin,
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(
        (st, error_code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    // A signed package with one byte of its component changed.
    let (mut file, _) = allama_package::PackageFile::parse(&effects_package(9)).unwrap();
    let (key, _) = allama_package::SigningKey::generate().unwrap();
    allama_package::add_signature(&mut file, &key);
    let mut bytes = file.to_bytes();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    let (st, body) = s.raw(Method::POST, path, &s.admin, OCTET, bytes).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );
    let (st, body) = s
        .raw(
            Method::POST,
            path,
            &s.admin,
            OCTET,
            vec![0u8; (128 << 20) + 1],
        )
        .await;
    assert_eq!(
        (st, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("128 MiB"),
        "{body}"
    );
    // Names from the path are looked up, never used as paths.
    for name in ["..%2F..%2Fetc%2Fpasswd", "%00", "effects%0A"] {
        let (st, body) = s
            .call(Method::GET, &format!("{path}/{name}"), Some(&s.admin), None)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{name}: {body}");
    }
    // Viewers and responders may not install.
    let viewer = s.member("vera", "default", "responder").await;
    let (st, _) = s
        .raw(Method::POST, path, &viewer, OCTET, effects_package(9))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (_, list) = s.call(Method::GET, path, Some(&s.admin), None).await;
    assert_eq!(list, json!([]), "nothing refused was installed");
}

const GATE: &str = "id: gate\ninputs:\n  n: { type: integer, default: 0 }\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [admin], users: [carol] }\n      message: \"Go with ${{ inputs.n }}?\"\noutputs:\n  decided: ${{ steps.ok.output.decision }}\n";

#[tokio::test]
async fn approvals_need_an_approver_and_every_decision_is_audited() {
    let s = server().await;
    s.playbook("default", &s.admin, GATE).await;
    let bob = s.member("bob", "default", "responder").await;
    let carol = s.member("carol", "default", "responder").await;
    let vic = s.member("vic", "default", "viewer").await;
    let (st, run) = s
        .call(
            Method::POST,
            "/api/v1/workspaces/default/runs",
            Some(&bob),
            Some(json!({ "playbook": "gate", "inputs": { "n": 7 } })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{run}");
    assert_eq!(run["status"], "running");
    let id = run["id"].as_str().unwrap().to_string();
    let inbox = |t: String, q: &'static str| {
        let s = &s;
        async move {
            let (st, body) = s
                .call(
                    Method::GET,
                    &format!("/api/v1/workspaces/default/approvals{q}"),
                    Some(&t),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{body}");
            body.as_array().unwrap().clone()
        }
    };
    assert!(
        inbox(bob.clone(), "").await.is_empty(),
        "bob is not an approver"
    );
    assert_eq!(inbox(bob.clone(), "?all=true").await.len(), 1);
    let mine = inbox(carol.clone(), "").await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["message"], "Go with 7?");
    assert_eq!(mine[0]["run"], id.as_str());
    assert_eq!(
        inbox(s.admin.clone(), "").await.len(),
        1,
        "admins hold the admin role"
    );

    let decide = |t: String, verb: &'static str, body: Value| {
        let (s, id) = (&s, id.clone());
        async move {
            s.call(
                Method::POST,
                &format!("/api/v1/workspaces/default/runs/{id}/steps/ok/{verb}"),
                Some(&t),
                Some(body),
            )
            .await
        }
    };
    let (st, body) = decide(bob.clone(), "approve", json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("approvers are"),
        "{body}"
    );
    let (st, _) = decide(vic.clone(), "approve", json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, body) = decide(
        carol.clone(),
        "approve",
        json!({ "comment": "x".repeat(5000) }),
    )
    .await;
    assert_eq!(
        (st, body["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("comment"))
    );
    let (st, body) = decide(carol.clone(), "approve", json!({ "coment": "typo" })).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (st, done) = decide(
        carol.clone(),
        "reject",
        json!({ "comment": "not now ☕", "wait_ms": 10000 }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_ne!(done["status"], "running", "{done}");
    let (st, body) = decide(carol.clone(), "approve", json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");

    // The chain says who decided what, with the comment; refusals too.
    let records = audit(&s, "default", "action=approval.").await;
    let summary: Vec<(String, String, bool)> = records
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["detail"]["decision"].as_str().unwrap().to_string(),
                r["denied"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary[..2],
        [
            ("user:bob".to_string(), "approve".to_string(), true),
            ("user:carol".to_string(), "reject".to_string(), false),
        ]
    );
    assert_eq!(records[1]["detail"]["comment"], "not now ☕");
    assert_eq!(records[1]["target"], format!("{id}/ok"));
    // The run's timeline has the decision with its author.
    let (st, detail) = s
        .call(
            Method::GET,
            &format!("/api/v1/workspaces/default/runs/{id}"),
            Some(&vic),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{detail}");
    let events = detail["events"].to_string();
    assert!(
        events.contains("carol") && events.contains("not now ☕"),
        "{events}"
    );
    assert_eq!(
        detail["steps"]["ok"], "failed",
        "a rejected gate fails: {detail}"
    );

    // An admin approves the next one; the run finishes with the decision.
    let (_, run) = s
        .call(
            Method::POST,
            "/api/v1/workspaces/default/runs",
            Some(&bob),
            Some(json!({ "playbook": "gate" })),
        )
        .await;
    let id2 = run["id"].as_str().unwrap();
    let (st, done) = s
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/default/runs/{id2}/steps/ok/approve"),
            Some(&s.admin),
            Some(json!({ "wait_ms": 10000 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"]["decided"], "approved", "{done}");
}

#[tokio::test]
async fn runs_list_newest_first_with_filters_and_a_cursor_and_stay_in_their_workspace() {
    let s = server().await;
    s.playbook("default", &s.admin, GATE).await;
    s.playbook(
        "default",
        &s.admin,
        "id: parent\nsteps:\n  - id: child\n    playbook: gate\n    with: { n: 3 }\noutputs:\n  child: ${{ steps.child.output.decided }}\n",
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (st, run) = s
            .call(
                Method::POST,
                "/api/v1/workspaces/default/runs",
                Some(&s.admin),
                Some(json!({ "playbook": "gate" })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{run}");
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    let (st, cancelled) = s
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/default/runs/{}/cancel", ids[0]),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let (st, body) = s
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/default/runs/{}/cancel", ids[0]),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");

    let list = |q: &'static str| {
        let s = &s;
        async move {
            let (st, body) = s
                .call(
                    Method::GET,
                    &format!("/api/v1/workspaces/default/runs{q}"),
                    Some(&s.admin),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{q}: {body}");
            let ids: Vec<String> = body["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            (ids, body["next"].as_str().map(str::to_string))
        }
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(list("").await, (newest_first.clone(), None));
    assert_eq!(list("?status=running").await.0, newest_first[..2]);
    assert_eq!(list("?status=cancelled").await.0, [ids[0].clone()]);
    assert!(list("?playbook=parent").await.0.is_empty());
    let (page, next) = list("?limit=2").await;
    assert_eq!(page, newest_first[..2]);
    let next = next.expect("a cursor");
    let (st, body) = s
        .call(
            Method::GET,
            &format!("/api/v1/workspaces/default/runs?limit=2&before={next}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body["runs"][0]["id"], ids[0].as_str());
    assert!(body.get("next").is_none(), "{body}");
    for (q, field) in [
        ("?status=done", "status"),
        ("?limit=0", "limit"),
        ("?limit=9999", "limit"),
        ("?limit=abc", "limit"),
    ] {
        let (st, body) = s
            .call(
                Method::GET,
                &format!("/api/v1/workspaces/default/runs{q}"),
                Some(&s.admin),
                None,
            )
            .await;
        assert_eq!(
            (st, body["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{q}: {body}"
        );
    }
    let (st, _) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/runs?sort=asc",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // A child run: listed with its parent unless top_level, decided by its own id.
    let (_, parent) = s
        .call(
            Method::POST,
            "/api/v1/workspaces/default/runs",
            Some(&s.admin),
            Some(json!({ "playbook": "parent" })),
        )
        .await;
    let pid = parent["id"].as_str().unwrap().to_string();
    let (all, _) = list("").await;
    let (top, _) = list("?top_level=true").await;
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(top.len(), 4, "{top:?}");
    let child = all
        .iter()
        .find(|r| r.starts_with(&format!("{pid}~")))
        .expect("the child run")
        .clone();
    let (_, inbox) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/approvals",
            Some(&s.admin),
            None,
        )
        .await;
    assert!(
        inbox
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["run"] == child.as_str()),
        "{inbox}"
    );
    let (st, body) = s
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/default/runs/{child}/steps/ok/approve"),
            Some(&s.admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, done) = s
        .call(
            Method::POST,
            "/api/v1/workspaces/default/runs",
            Some(&s.admin),
            Some(json!({ "playbook": "gate", "wait_ms": 1 })),
        )
        .await;
    assert_eq!(
        (st, &done["status"]),
        (StatusCode::CREATED, &json!("running"))
    );
    let (st, detail) = s
        .call(
            Method::GET,
            &format!("/api/v1/workspaces/default/runs/{pid}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // The parent resumes once its child finished (the engine, not the client, carries it on).
    let parent_done = wait_for(&s, &pid).await;
    assert_eq!(parent_done["status"], "succeeded", "{parent_done} {detail}");
    assert_eq!(parent_done["output"]["child"], "approved");

    // Another workspace sees none of it.
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/workspaces",
            Some(&s.admin),
            Some(json!({ "name": "ir" })),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let ir = s.member("irene", "ir", "admin").await;
    let (st, body) = s
        .call(Method::GET, "/api/v1/workspaces/ir/runs", Some(&ir), None)
        .await;
    assert_eq!((st, &body["runs"]), (StatusCode::OK, &json!([])));
    for (method, path) in [
        (
            Method::GET,
            format!("/api/v1/workspaces/ir/runs/{}", ids[1]),
        ),
        (
            Method::POST,
            format!("/api/v1/workspaces/ir/runs/{}/cancel", ids[1]),
        ),
        (
            Method::POST,
            format!("/api/v1/workspaces/ir/runs/{}/steps/ok/approve", ids[1]),
        ),
    ] {
        let body = (method == Method::POST && path.ends_with("approve")).then(|| json!({}));
        let (st, resp) = s.call(method, &path, Some(&ir), body).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {resp}");
    }
    let (_, inbox) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/ir/approvals?all=true",
            Some(&ir),
            None,
        )
        .await;
    assert_eq!(inbox, json!([]));
    let (st, body) = s
        .call(
            Method::POST,
            "/api/v1/workspaces/ir/runs",
            Some(&ir),
            Some(json!({ "playbook": "gate" })),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another workspace's playbook: {body}"
    );
    // The other workspace's runs were not touched.
    assert_eq!(list("?status=running").await.0.len(), 3);
}

/// A run's detail once it finished (the server waits up to 20 s for it).
async fn wait_for(s: &Server, run: &str) -> Value {
    let (st, d) = s
        .call(
            Method::GET,
            &format!("/api/v1/workspaces/default/runs/{run}?wait_ms=20000"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    d
}

#[tokio::test]
async fn bad_run_requests_are_clear_errors() {
    let s = server().await;
    s.playbook("default", &s.admin, GATE).await;
    let path = "/api/v1/workspaces/default/runs";
    for (body, status, field) in [
        (
            json!({ "playbook": "nope" }),
            StatusCode::NOT_FOUND,
            Some("playbook"),
        ),
        (
            json!({ "playbook": "gate", "inputs": { "n": "seven" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("inputs.n"),
        ),
        (
            json!({ "playbook": "gate", "inputs": { "m": 1 } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("inputs.m"),
        ),
        (
            json!({ "playbook": "gate", "inputs": [1] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("inputs"),
        ),
        (
            json!({ "playbook": 5 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("playbook"),
        ),
        (
            json!({ "playbook": "gate", "extra": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
        (
            json!({ "playbook": "../../etc/passwd" }),
            StatusCode::NOT_FOUND,
            Some("playbook"),
        ),
        (
            json!({ "playbook": "gate\u{0}x" }),
            StatusCode::NOT_FOUND,
            Some("playbook"),
        ),
    ] {
        let (st, resp) = s
            .call(Method::POST, path, Some(&s.admin), Some(body.clone()))
            .await;
        assert_eq!(st, status, "{body}: {resp}");
        if let Some(f) = field {
            assert_eq!(resp["error"]["field"], f, "{body}: {resp}");
        }
    }
    let (st, resp) = s
        .raw(
            Method::POST,
            path,
            &s.admin,
            "application/json",
            b"{\"playbook\":".to_vec(),
        )
        .await;
    assert_eq!(
        (st, error_code(&resp)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let (st, _) = s
        .raw(
            Method::POST,
            path,
            &s.admin,
            "application/json",
            vec![0xff, 0xfe],
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let viewer = s.member("vic", "default", "viewer").await;
    let (st, _) = s
        .call(
            Method::POST,
            path,
            Some(&viewer),
            Some(json!({ "playbook": "gate" })),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .call(
            Method::GET,
            &format!("{path}/r-no-such-run"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Nothing was started by any of it.
    let (_, list) = s.call(Method::GET, path, Some(&s.admin), None).await;
    assert_eq!(list["runs"], json!([]));
}

#[tokio::test]
async fn a_run_waiting_for_approval_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = allama_server::ServerConfig::new(dir.path());
    let opened = allama_server::open(&config).await.unwrap();
    let admin = opened.first_admin_token.clone().unwrap();
    let plan = {
        let pb = allama_playbook::parse(GATE, "gate.yaml").unwrap();
        opened
            .state
            .library
            .store(opened.store.as_ref(), "default", &pb, GATE, "user:admin")
            .unwrap();
        opened
            .state
            .runner
            .plans
            .current("default", "gate")
            .unwrap()
    };
    let run = opened
        .state
        .runner
        .engine
        .start_run(plan, json!({}), json!({}))
        .await
        .unwrap();
    opened.close().await.unwrap();

    let opened = allama_server::open(&config).await.unwrap();
    assert!(opened.first_admin_token.is_none());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(allama_server::serve(
        listener,
        opened.state.clone(),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let inbox: Value = http
        .get(format!("{base}/api/v1/workspaces/default/approvals"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inbox[0]["run"], run.as_str(), "{inbox}");
    let done: Value = http
        .post(format!(
            "{base}/api/v1/workspaces/default/runs/{run}/steps/ok/approve"
        ))
        .bearer_auth(&admin)
        .json(&json!({ "wait_ms": 10000 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "succeeded", "{done}");
}
