//! Role × route × workspace for the routes that run things: packages,
//! playbooks, runs, approvals, schedules, metrics, webhooks, backups. Each
//! route is tried by every role of the workspace (the least role allowed
//! succeeds, every lower one gets 403), by an admin of another workspace
//! (404, and nothing of the workspace in the answer), and without a token
//! (401). State a route consumes (a run to cancel, an approval to decide, a
//! package to remove) is made fresh for every try.

mod common;

use common::{Server, effects_package, error_code, server_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ROLES: [&str; 4] = ["viewer", "responder", "editor", "admin"];

/// An approval any role may be named for: the role check must come first.
const GATE: &str = "id: gate\ntriggers:\n  - schedule: { cron: \"0 3 * * *\", timezone: Europe/Paris }\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [viewer, responder, editor, admin] }\n      message: \"canary-soc-approval\"\n";

/// What one try needs made first, by the workspace's admin.
#[derive(Clone, Copy)]
enum Needs {
    Nothing,
    /// A run of `gate`, waiting for its approval: `{run}` in the path.
    WaitingRun,
    /// Package `slack` installed: it is removed by the try.
    Slack,
}

struct Case {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    /// The body is the effects package file.
    package: bool,
    needs: Needs,
    least: &'static str,
}

fn case(method: Method, path: &'static str, least: &'static str) -> Case {
    Case {
        method,
        path,
        body: None,
        package: false,
        needs: Needs::Nothing,
        least,
    }
}

impl Case {
    fn body(mut self, b: Value) -> Self {
        self.body = Some(b);
        self
    }
    fn needs(mut self, n: Needs) -> Self {
        self.needs = n;
        self
    }
    fn package(mut self) -> Self {
        self.package = true;
        self
    }
}

fn cases() -> Vec<Case> {
    use Method as M;
    vec![
        case(M::GET, "/api/v1/workspaces/WS/packages", "viewer"),
        case(M::GET, "/api/v1/workspaces/WS/packages/effects", "viewer"),
        case(M::POST, "/api/v1/workspaces/WS/packages", "editor").package(),
        // Granting decides which hosts get which secrets: admins only.
        case(
            M::POST,
            "/api/v1/workspaces/WS/packages?grant=true",
            "admin",
        )
        .package(),
        case(
            M::PUT,
            "/api/v1/workspaces/WS/packages/effects/grant",
            "admin",
        )
        .body(json!({})),
        case(
            M::DELETE,
            "/api/v1/workspaces/WS/packages/effects/grant",
            "editor",
        ),
        case(M::DELETE, "/api/v1/workspaces/WS/packages/slack", "editor").needs(Needs::Slack),
        case(M::GET, "/api/v1/workspaces/WS/playbooks", "viewer"),
        case(M::GET, "/api/v1/workspaces/WS/playbooks/gate", "viewer"),
        case(
            M::GET,
            "/api/v1/workspaces/WS/playbooks/gate/versions/1",
            "viewer",
        ),
        case(
            M::GET,
            "/api/v1/workspaces/WS/playbooks/gate/diff?from=1&to=1",
            "viewer",
        ),
        case(
            M::POST,
            "/api/v1/workspaces/WS/playbooks/validate",
            "viewer",
        )
        .body(json!({ "source": GATE })),
        case(M::POST, "/api/v1/workspaces/WS/playbooks", "editor").body(json!({ "source": GATE })),
        case(
            M::PUT,
            "/api/v1/workspaces/WS/playbooks/gate/enabled",
            "editor",
        )
        .body(json!({ "enabled": true })),
        case(M::POST, "/api/v1/workspaces/WS/runs", "responder")
            .body(json!({ "playbook": "gate" })),
        case(M::GET, "/api/v1/workspaces/WS/runs", "viewer"),
        case(M::GET, "/api/v1/workspaces/WS/runs/{run}", "viewer").needs(Needs::WaitingRun),
        case(
            M::POST,
            "/api/v1/workspaces/WS/runs/{run}/cancel",
            "responder",
        )
        .body(json!({}))
        .needs(Needs::WaitingRun),
        case(
            M::POST,
            "/api/v1/workspaces/WS/runs/{run}/steps/ok/approve",
            "responder",
        )
        .body(json!({}))
        .needs(Needs::WaitingRun),
        case(
            M::POST,
            "/api/v1/workspaces/WS/runs/{run}/steps/ok/reject",
            "responder",
        )
        .body(json!({}))
        .needs(Needs::WaitingRun),
        case(M::GET, "/api/v1/workspaces/WS/approvals?all=true", "viewer"),
        case(M::GET, "/api/v1/workspaces/WS/schedules", "viewer"),
    ]
}

struct Fixture {
    s: Server,
    tokens: Vec<(&'static str, String)>,
    soc_admin: String,
    outsider: String,
}

async fn fixture() -> Fixture {
    // The no-token tries are failed authentications: more than the default
    // limit allows from one address.
    let s = server_with(|c| c.auth_failures_per_minute = 10_000).await;
    let mut tokens = Vec::new();
    for role in ROLES {
        tokens.push((role, s.member(&format!("u-{role}"), "soc", role).await));
    }
    let soc_admin = tokens[3].1.clone();
    let outsider = s.member("outsider", "red", "admin").await;
    s.install("soc", effects_package(9)).await;
    s.playbook("soc", &soc_admin, GATE).await;
    Fixture {
        s,
        tokens,
        soc_admin,
        outsider,
    }
}

impl Fixture {
    /// Makes what `c` needs; the path to call.
    async fn prepare(&self, c: &Case, ws: &str) -> String {
        let path = c.path.replace("/WS/", &format!("/{ws}/"));
        match c.needs {
            Needs::Nothing => path,
            Needs::WaitingRun => {
                let (st, run) = self
                    .s
                    .call(
                        Method::POST,
                        "/api/v1/workspaces/soc/runs",
                        Some(&self.soc_admin),
                        Some(json!({ "playbook": "gate" })),
                    )
                    .await;
                assert_eq!(st, StatusCode::CREATED, "{run}");
                path.replace("{run}", run["id"].as_str().unwrap())
            }
            Needs::Slack => {
                let file =
                    allama_first_party::unsigned(allama_first_party::get("slack"), None).unwrap();
                let (st, body) = self
                    .s
                    .raw(
                        Method::POST,
                        "/api/v1/workspaces/soc/packages",
                        &self.soc_admin,
                        "application/octet-stream",
                        file,
                    )
                    .await;
                assert_eq!(st, StatusCode::CREATED, "{body}");
                path
            }
        }
    }

    async fn attempt(&self, c: &Case, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        if c.package {
            let mut r = self
                .s
                .http
                .request(c.method.clone(), format!("{}{path}", self.s.base))
                .header("content-type", "application/octet-stream")
                .body(effects_package(9));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let resp = r.send().await.unwrap();
            let st = resp.status();
            let text = resp.text().await.unwrap();
            (
                st,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        } else {
            self.s
                .call(c.method.clone(), path, token, c.body.clone())
                .await
        }
    }

    /// Puts back what a successful try changed that later tries rely on.
    async fn restore(&self) {
        let (st, body) = self
            .s
            .call(
                Method::PUT,
                "/api/v1/workspaces/soc/packages/effects/grant",
                Some(&self.soc_admin),
                Some(json!({})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
}

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_that_runs_things_checks_the_role_in_its_workspace() {
    let f = fixture().await;
    for c in cases() {
        for (role, token) in &f.tokens {
            let path = f.prepare(&c, "soc").await;
            let (st, body) = f.attempt(&c, &path, Some(token)).await;
            if rank(role) >= rank(c.least) {
                assert!(st.is_success(), "{role} {} {path}: {st} {body}", c.method);
            } else {
                assert_eq!(
                    st,
                    StatusCode::FORBIDDEN,
                    "{role} {} {path}: {body}",
                    c.method
                );
                assert_eq!(error_code(&body), "forbidden");
                assert!(
                    body["error"]["message"].as_str().unwrap().contains(role),
                    "the refusal names the role: {body}"
                );
            }
            f.restore().await;
        }
        // No token: 401, whatever the route.
        let path = f.prepare(&c, "soc").await;
        let (st, body) = f.attempt(&c, &path, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{} {path}: {body}", c.method);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_that_runs_things_leaks_another_workspace() {
    let f = fixture().await;
    let leaks = ["canary-soc-approval", "effects", "slack", "gate", "u-admin"];
    for c in cases() {
        // The path names soc, the token is red's admin: soc does not exist
        // for it, and nothing of soc comes back.
        let path = f.prepare(&c, "soc").await;
        let (st, body) = f.attempt(&c, &path, Some(&f.outsider)).await;
        assert_eq!(
            st,
            StatusCode::NOT_FOUND,
            "outsider {} {path}: {body}",
            c.method
        );
        let text = body.to_string();
        for word in leaks {
            // The path itself may be echoed; soc's contents may not.
            let in_path = path.contains(word);
            assert!(
                in_path || !text.contains(word),
                "outsider {} {path} learned `{word}`: {body}",
                c.method
            );
        }
    }
    // In its own workspace the outsider sees none of soc's things.
    for path in [
        "/api/v1/workspaces/red/packages",
        "/api/v1/workspaces/red/playbooks",
        "/api/v1/workspaces/red/runs",
        "/api/v1/workspaces/red/approvals?all=true",
        "/api/v1/workspaces/red/schedules",
    ] {
        let (st, body) = f.s.call(Method::GET, path, Some(&f.outsider), None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {body}");
        let list = if path.ends_with("/runs") {
            &body["runs"]
        } else {
            &body
        };
        assert_eq!(list, &json!([]), "{path}: {body}");
    }
    // A run id of soc under red's path is not found, not shown.
    let path = f
        .prepare(
            &case(Method::GET, "/api/v1/workspaces/WS/runs/{run}", "viewer")
                .needs(Needs::WaitingRun),
            "red",
        )
        .await;
    let (st, body) = f.s.call(Method::GET, &path, Some(&f.outsider), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    let approve = path.clone() + "/steps/ok/approve";
    let (st, body) =
        f.s.call(Method::POST, &approve, Some(&f.outsider), Some(json!({})))
            .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{body}");
    // ... and the run still waits: nothing red did reached it.
    let run = path.rsplit('/').next().unwrap();
    let (st, body) =
        f.s.call(
            Method::GET,
            &format!("/api/v1/workspaces/soc/runs/{run}"),
            Some(&f.soc_admin),
            None,
        )
        .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (StatusCode::OK, Some("running")),
        "{body}"
    );
}

#[tokio::test]
async fn a_webhook_takes_no_token_and_only_its_own_workspace_key() {
    let f = fixture().await;
    let hooked = "id: hooked\ntriggers:\n  - webhook: { signature: standard }\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [admin] }\n      message: hi\n";
    f.s.playbook("soc", &f.soc_admin, hooked).await;
    f.s.playbook("red", &f.outsider, hooked).await;
    f.s.secret("soc", "WEBHOOK_HOOKED", "soc-webhook-key-0123")
        .await;
    f.s.secret("red", "WEBHOOK_HOOKED", "red-webhook-key-0123")
        .await;
    let post = |ws: &'static str, key: &'static str, token: Option<String>| {
        let s = &f.s;
        async move {
            let body = br#"{"alert":1}"#;
            let ts = allama_engine::driver::now_ms() / 1000;
            let id = format!("msg-{ws}-{key}-{}", token.is_some());
            let mut r = s
                .http
                .post(format!("{}/hooks/{ws}/hooked", s.base))
                .header("content-type", "application/json")
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header(
                    "webhook-signature",
                    allama_server::webhooks::sign_standard(key.as_bytes(), &id, ts, body),
                )
                .body(body.to_vec());
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let resp = r.send().await.unwrap();
            resp.status()
        }
    };
    // red's key, even with red's admin token, opens nothing of soc's.
    assert_eq!(
        post("soc", "red-webhook-key-0123", Some(f.outsider.clone())).await,
        StatusCode::UNAUTHORIZED
    );
    // A token does not stand in for the signature either.
    assert_eq!(
        post("soc", "wrong", Some(f.soc_admin.clone())).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post("soc", "soc-webhook-key-0123", None).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        post("red", "red-webhook-key-0123", None).await,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn metrics_and_backups_are_for_system_administrators() {
    let f = fixture().await;
    for path in ["/metrics", "/api/v1/backup"] {
        for (role, token) in f.tokens.iter().chain([&("red-admin", f.outsider.clone())]) {
            let (st, body) = f.s.call(Method::GET, path, Some(token), None).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{role} {path}: {body}");
        }
        let (st, _) = f.s.call(Method::GET, path, None, None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}");
        let resp =
            f.s.http
                .get(format!("{}{path}", f.s.base))
                .bearer_auth(&f.s.admin)
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
}
