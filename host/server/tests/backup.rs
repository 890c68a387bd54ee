//! `GET /api/v1/backup` while runs go on, restored into a new data
//! directory that a second server opens: playbooks, runs, secrets, tokens
//! and audit chains are all there, and a run that waited for an approval
//! when the backup was taken goes on in the restored server.

mod common;

use common::{Server, server, server_at};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const GATE: &str = "id: gate\ninputs:\n  n: { type: integer, default: 0 }\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [admin] }\n      message: \"go ${{ inputs.n }}?\"\noutputs:\n  n: ${{ inputs.n }}\n";
/// Finishes at once: its one step is skipped.
const QUICK: &str = "id: quick\ninputs:\n  n: { type: integer, default: 0 }\nsteps:\n  - id: never\n    if: ${{ false }}\n    approval:\n      approvers: { roles: [admin] }\n      message: never\noutputs:\n  twice: ${{ inputs.n * 2 }}\n";

async fn backup(s: &Server, token: &str) -> reqwest::Response {
    s.http
        .get(format!("{}/api/v1/backup", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn runs(s: &Server) -> Vec<Value> {
    let (st, body) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/runs?limit=500",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["runs"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_runs_go_on_restores_into_a_working_server() {
    let s = server().await;
    s.playbook("default", &s.admin, GATE).await;
    s.playbook("default", &s.admin, QUICK).await;
    s.secret("default", "VT_KEY", "vt-secret-ünïcode-✓").await;
    let (st, waiting) = s
        .call(
            Method::POST,
            "/api/v1/workspaces/default/runs",
            Some(&s.admin),
            Some(json!({ "playbook": "gate", "inputs": { "n": 5 } })),
        )
        .await;
    assert_eq!(
        (st, waiting["status"].as_str()),
        (StatusCode::CREATED, Some("running")),
        "{waiting}"
    );
    let waiting = waiting["id"].as_str().unwrap().to_string();
    for n in 0..10 {
        let done = s.run("default", &s.admin, "quick", json!({ "n": n })).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    let before: Vec<String> = runs(&s)
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();

    // Runs keep starting while the backup is taken.
    let busy = {
        let (base, admin, http) = (s.base.clone(), s.admin.clone(), s.http.clone());
        tokio::spawn(async move {
            let mut started = 0;
            for n in 0..40 {
                let r = http
                    .post(format!("{base}/api/v1/workspaces/default/runs"))
                    .bearer_auth(&admin)
                    .json(&json!({ "playbook": "quick", "inputs": { "n": n } }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
                started += 1;
            }
            started
        })
    };
    let resp = backup(&s, &s.admin).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"allama-")
    );
    let entries: u64 = resp.headers()["x-allama-backup-entries"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = resp.bytes().await.unwrap();
    assert!(entries > 0);
    assert_eq!(
        busy.await.unwrap(),
        40,
        "no start failed while the backup ran"
    );

    // The backup is audited in the system chain, by whom.
    let q = allama_store::audit::AuditQuery {
        limit: 1000,
        action_prefix: Some("server.".into()),
        ..Default::default()
    };
    let audit = s.state.audit.query("system", &q).unwrap();
    let rec = audit
        .iter()
        .find(|r| r.entry.action == "server.backup")
        .expect("a server.backup record");
    assert_eq!(rec.entry.actor, "user:admin");
    assert_eq!(rec.entry.detail["entries"], entries);
    // The master key is not in the file.
    let key = std::fs::read(s.dir.path().join("data/master.key")).unwrap();
    assert!(
        !bytes
            .windows(key.len().min(32))
            .any(|w| w == &key[..key.len().min(32)]),
        "the master key file's contents are in the backup"
    );
    assert!(
        !String::from_utf8_lossy(&bytes).contains("vt-secret"),
        "a secret in clear in the backup"
    );

    // Restore into a new directory; the server there gets the old key.
    let dir = tempfile::tempdir().unwrap();
    let sum = allama_store::backup::restore(&bytes[..], &dir.path().join("data")).unwrap();
    assert_eq!(sum.entries, entries);
    let key_file = s.dir.path().join("data/master.key");
    let r = server_at(dir, &s.admin, |c| c.master_key = Some(key_file)).await;

    // The old admin token works: tokens came along.
    let after: Vec<String> = runs(&r)
        .await
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for id in &before {
        assert!(
            after.contains(id),
            "run {id} from before the backup is missing"
        );
    }
    // Every restored run is whole: it finishes (one the backup caught
    // midway is resumed by the restored server, as after a crash) with its
    // outputs.
    for id in &after {
        let (st, run) = r
            .call(
                Method::GET,
                &format!(
                    "/api/v1/workspaces/default/runs/{id}?wait_ms={}",
                    if id == &waiting { 0 } else { 10_000 }
                ),
                Some(&r.admin),
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{run}");
        if id != &waiting {
            assert_eq!(run["status"], "succeeded", "{run}");
            assert!(run["output"]["twice"].is_number(), "{run}");
        }
    }
    // The paused run goes on in the restored server.
    let (st, done) = r
        .call(
            Method::POST,
            &format!("/api/v1/workspaces/default/runs/{waiting}/steps/ok/approve"),
            Some(&r.admin),
            Some(json!({ "comment": "after the restore", "wait_ms": 10000 })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{done}");
    assert_eq!(
        (done["status"].as_str(), done["output"]["n"].as_i64()),
        (Some("succeeded"), Some(5)),
        "{done}"
    );
    // Secrets decrypt under the old key; playbooks and audit chains are there.
    assert_eq!(
        r.state
            .vault
            .reveal("default", "VT_KEY")
            .unwrap()
            .as_deref(),
        Some("vt-secret-ünïcode-✓".as_bytes())
    );
    let (_, pbs) = r
        .call(
            Method::GET,
            "/api/v1/workspaces/default/playbooks",
            Some(&r.admin),
            None,
        )
        .await;
    let mut ids: Vec<&str> = pbs
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["gate", "quick"]);
    let (st, v) = r
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit/verify",
            Some(&r.admin),
            None,
        )
        .await;
    assert_eq!((st, v["ok"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    // The system chain is no workspace: no route shows it.
    assert!(r.state.audit.verify("system").unwrap().records > 0);
    // A second backup over the API of the restored server checks.
    let again = backup(&r, &r.admin).await.bytes().await.unwrap();
    assert!(allama_store::backup::check(&again[..]).is_ok());
}

#[tokio::test]
async fn a_backup_without_the_master_key_names_what_is_missing() {
    let s = server().await;
    s.secret("default", "VT_KEY", "value-1234").await;
    let bytes = backup(&s, &s.admin).await.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    allama_store::backup::restore(&bytes[..], &dir.path().join("data")).unwrap();
    let config = allama_server::ServerConfig::new(dir.path().join("data"));
    let err = match allama_server::open(&config).await {
        Ok(_) => panic!("a restored directory without its key opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("master key"), "{err}");
}
