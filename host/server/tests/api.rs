//! The API over real TCP: authentication, roles, workspace isolation,
//! secrets, the audit chain, and hostile input on every route.

use std::collections::BTreeMap;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

mod common;
use common::{error_code, server};

const PLAYBOOK_V1: &str = "id: enrich\nname: Enrich\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [responder] }\n      message: Go?\n";
const PLAYBOOK_V2: &str = "id: enrich\nname: Enrich an alert\nsteps:\n  - id: ok\n    approval:\n      approvers: { roles: [responder] }\n      message: Really go?\n";

#[tokio::test]
async fn a_fresh_server_has_an_admin_and_answers_health_without_a_token() {
    let s = server().await;
    let (st, body) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((st, body), (StatusCode::OK, json!("ok")));
    let (st, me) = s
        .call(Method::GET, "/api/v1/me", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["user"]["name"], "admin");
    assert_eq!(me["user"]["roles"]["default"], "admin");
    assert_eq!(me["user"]["system_admin"], true);
    let (st, body) = s.call(Method::GET, "/api/v1/me", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");
    let (st, body) = s
        .call(Method::GET, "/api/v1/nowhere", Some(&s.admin), None)
        .await;
    assert_eq!(
        (st, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (st, body) = s
        .call(Method::PATCH, "/api/v1/me", Some(&s.admin), None)
        .await;
    assert_eq!(
        (st, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn failed_authentications_are_audited_and_rate_limited() {
    let s = server().await;
    for bad in ["alm_wrong", "", "Basic abc", &"x".repeat(10_000)] {
        let r = s
            .http
            .get(format!("{}/api/v1/me", s.base))
            .header("authorization", format!("Bearer {bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let mut limited = false;
    for _ in 0..20 {
        let (st, body) = s
            .call(Method::GET, "/api/v1/me", Some("alm_nope"), None)
            .await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(error_code(&body), "rate_limited");
            limited = true;
            break;
        }
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    assert!(limited, "failures were never rate-limited");
    // A good token from the same address still works (users behind one
    // proxy share it); only guesses are refused.
    let (st, _) = s
        .call(Method::GET, "/api/v1/me", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(Method::GET, "/api/v1/me", Some("alm_again"), None)
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn failed_authentications_land_in_the_system_chain() {
    let dir = tempfile::tempdir().unwrap();
    let opened = allama_server::open(&allama_server::ServerConfig::new(dir.path()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = opened.state.clone();
    tokio::spawn(allama_server::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let r = Client::new()
        .get(format!("{base}/api/v1/me"))
        .bearer_auth("alm_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let failures = opened
        .state
        .audit
        .query(
            "system",
            &allama_store::audit::AuditQuery {
                limit: 100,
                action_prefix: Some("auth.failed".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(failures.len(), 1);
    assert!(failures[0].entry.denied);
    assert_eq!(failures[0].entry.detail["reason"], "unknown token");
    assert!(opened.state.audit.verify("system").is_ok());
}

#[tokio::test]
async fn each_role_can_do_exactly_what_it_should() {
    let s = server().await;
    let mut tokens = BTreeMap::new();
    for role in ["viewer", "responder", "editor", "admin"] {
        tokens.insert(role, s.member(&format!("u-{role}"), "soc", role).await);
    }
    let outsider = s.member("outsider", "red", "admin").await;
    // (method, path, body, the least role allowed)
    let routes: Vec<(Method, &str, Option<Value>, &str)> = vec![
        (
            Method::GET,
            "/api/v1/workspaces/soc/secrets",
            None,
            "editor",
        ),
        (
            Method::PUT,
            "/api/v1/workspaces/soc/secrets/VT_KEY",
            Some(json!({"value": "v"})),
            "admin",
        ),
        (
            Method::DELETE,
            "/api/v1/workspaces/soc/secrets/VT_KEY",
            None,
            "admin",
        ),
        (Method::GET, "/api/v1/workspaces/soc/audit", None, "admin"),
        (
            Method::GET,
            "/api/v1/workspaces/soc/audit/verify",
            None,
            "admin",
        ),
        (
            Method::GET,
            "/api/v1/workspaces/soc/audit/export",
            None,
            "admin",
        ),
        (
            Method::PUT,
            "/api/v1/workspaces/soc/members/u-viewer",
            Some(json!({"role": "viewer"})),
            "admin",
        ),
    ];
    let rank = |r: &str| {
        ["viewer", "responder", "editor", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    for (method, path, body, least) in &routes {
        for (role, token) in &tokens {
            // Deleting needs something to delete.
            if *method == Method::DELETE {
                let (st, _) = s
                    .call(
                        Method::PUT,
                        "/api/v1/workspaces/soc/secrets/VT_KEY",
                        Some(&tokens["admin"]),
                        Some(json!({"value": "v"})),
                    )
                    .await;
                assert_eq!(st, StatusCode::NO_CONTENT);
            }
            let (st, resp) = s
                .call(method.clone(), path, Some(token), body.clone())
                .await;
            if rank(role) >= rank(least) {
                assert!(st.is_success(), "{role} {method} {path}: {st} {resp}");
            } else {
                assert_eq!(st, StatusCode::FORBIDDEN, "{role} {method} {path}: {resp}");
                assert_eq!(error_code(&resp), "forbidden");
            }
        }
        // Another workspace's admin does not even learn the workspace exists.
        let (st, resp) = s
            .call(method.clone(), path, Some(&outsider), body.clone())
            .await;
        assert_eq!(
            st,
            StatusCode::NOT_FOUND,
            "outsider {method} {path}: {resp}"
        );
        // Nor does a system admin without a role in it... who here has one (admin
        // created soc); a fresh system admin would not.
    }
    // Only system administrators create workspaces and users.
    for token in tokens.values() {
        let (st, _) = s
            .call(
                Method::POST,
                "/api/v1/workspaces",
                Some(token),
                Some(json!({"name": "new"})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        let (st, _) = s
            .call(
                Method::POST,
                "/api/v1/users",
                Some(token),
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn no_route_shows_one_workspace_to_another() {
    let s = server().await;
    let soc = s.member("sam", "soc", "admin").await;
    let red = s.member("rita", "red", "admin").await;
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/soc/secrets/SOC_ONLY",
            Some(&soc),
            Some(json!({"value": "soc-secret-canary"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, ws) = s
        .call(Method::GET, "/api/v1/workspaces", Some(&red), None)
        .await;
    assert_eq!(ws, json!([{"name": "red", "role": "admin"}]));
    for path in [
        "/api/v1/workspaces/soc/secrets",
        "/api/v1/workspaces/soc/audit",
        "/api/v1/workspaces/soc/audit/export",
        "/api/v1/workspaces/soc/audit/verify",
    ] {
        let (st, body) = s.call(Method::GET, path, Some(&red), None).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(!body.to_string().contains("SOC_ONLY"), "{path}: {body}");
    }
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/workspaces/soc/secrets/SOC_ONLY",
            Some(&red),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/soc/members/rita",
            Some(&red),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Red's own listing is empty; soc's secret is intact.
    let (_, list) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/red/secrets",
            Some(&red),
            None,
        )
        .await;
    assert_eq!(list, json!([]));
    let (_, list) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/soc/secrets",
            Some(&soc),
            None,
        )
        .await;
    assert_eq!(list[0]["name"], "SOC_ONLY");
    // Tokens: one user cannot see or revoke another's.
    let (_, mine) = s
        .call(Method::GET, "/api/v1/tokens", Some(&red), None)
        .await;
    assert!(
        mine.as_array().unwrap().iter().all(|t| t["user"] == "rita"),
        "{mine}"
    );
    let (_, sams) = s
        .call(Method::GET, "/api/v1/tokens", Some(&soc), None)
        .await;
    let sam_token = sams[0]["id"].as_str().unwrap();
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{sam_token}"),
            Some(&red),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.call(Method::GET, "/api/v1/me", Some(&soc), None).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn secret_values_never_come_back_and_every_change_is_audited() {
    let s = server().await;
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/secrets/VT_API_KEY",
            Some(&s.admin),
            Some(json!({"value": "value-canary-77"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, list) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/secrets",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list[0]["name"], "VT_API_KEY");
    assert!(!list.to_string().contains("value-canary-77"));
    let (st, _) = s
        .call(
            Method::DELETE,
            "/api/v1/workspaces/default/secrets/VT_API_KEY",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, body) = s
        .call(
            Method::DELETE,
            "/api/v1/workspaces/default/secrets/VT_API_KEY",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(
        (st, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (_, page) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit?action=secret.",
            Some(&s.admin),
            None,
        )
        .await;
    let actions: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["secret.set", "secret.delete"]);
    assert!(!page.to_string().contains("value-canary-77"));
    let (_, verdict) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit/verify",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    let export = s
        .http
        .get(format!("{}/api/v1/workspaces/default/audit/export", s.base))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = export
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, verdict["records"].as_u64().unwrap());
    assert!(
        lines
            .iter()
            .all(|l| l["hash"].as_str().is_some_and(|h| h.len() == 64))
    );
    // Paging: the cursor moves on.
    let (_, p1) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit?limit=1",
            Some(&s.admin),
            None,
        )
        .await;
    let next = p1["next"].as_u64().expect("a next cursor");
    let (_, p2) = s
        .call(
            Method::GET,
            &format!("/api/v1/workspaces/default/audit?limit=1&after={next}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert!(p2["records"][0]["seq"].as_u64().unwrap() > next);
}

#[tokio::test]
async fn hostile_input_gets_a_clear_4xx_and_the_server_stays_up() {
    let s = server().await;
    let put = "/api/v1/workspaces/default/secrets/K";
    // (content type, body, what, status, code, field)
    type Case<'a> = (
        &'a str,
        Vec<u8>,
        &'a str,
        StatusCode,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "application/json",
            b"{not json".to_vec(),
            "malformed",
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            "application/json",
            br#"{"value": 7}"#.to_vec(),
            "wrong type",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            Some("value"),
        ),
        (
            "application/json",
            br#"{"value": "v", "extra": 1}"#.to_vec(),
            "unknown field",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            None,
        ),
        (
            "application/json",
            b"{\"value\": \"\xff\xfe\"}".to_vec(),
            "bad utf-8",
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            "application/json",
            vec![b' '; 2 << 20],
            "oversized",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            None,
        ),
        (
            "text/plain",
            br#"{"value": "v"}"#.to_vec(),
            "not json",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            "application/json",
            Vec::new(),
            "empty",
            StatusCode::BAD_REQUEST,
            "invalid_json",
            None,
        ),
        (
            "application/json",
            format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            "deep nesting",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            None,
        ),
    ];
    for (ct, body, what, status, code, field) in cases {
        let (st, resp) = s.raw(Method::PUT, put, &s.admin, ct, body).await;
        assert_eq!(st, status, "{what}: {resp}");
        assert_eq!(error_code(&resp), code, "{what}: {resp}");
        if let Some(f) = field {
            assert_eq!(resp["error"]["field"], f, "{what}: {resp}");
        }
    }
    // Names that could escape their place.
    for (path, what) in [
        (
            "/api/v1/workspaces/default/secrets/..%2F..%2Fetc",
            "traversal in a secret name",
        ),
        (
            "/api/v1/workspaces/default/secrets/K%00B",
            "NUL in a secret name",
        ),
        (
            "/api/v1/workspaces/default/secrets/%C3%BCn%C3%AF",
            "unicode secret name",
        ),
        ("/api/v1/workspaces/default/secrets/9LIVES", "leading digit"),
    ] {
        let (st, resp) = s
            .call(
                Method::PUT,
                path,
                Some(&s.admin),
                Some(json!({"value": "v"})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {resp}");
        assert!(
            resp["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not a valid secret name"),
            "{what}: {resp}"
        );
    }
    let (st, resp) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/secrets/%FF%FE",
            Some(&s.admin),
            Some(json!({"value": "v"})),
        )
        .await;
    assert_eq!(
        (st, error_code(&resp)),
        (StatusCode::BAD_REQUEST, "bad_path"),
        "{resp}"
    );
    for (name, what) in [
        ("../x", "traversal"),
        ("Soc", "upper case"),
        ("system", "reserved"),
        ("", "empty"),
        ("a\u{0}b", "NUL"),
    ] {
        let (st, resp) = s
            .call(
                Method::POST,
                "/api/v1/workspaces",
                Some(&s.admin),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {resp}");
        assert_eq!(resp["error"]["field"], "name", "{what}: {resp}");
    }
    let (st, resp) = s
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&s.admin),
            Some(json!({"name": "eve", "roles": {"default": "god"}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{resp}");
    assert_eq!(resp["error"]["field"], "roles.default", "{resp}");
    let (st, resp) = s
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&s.admin),
            Some(json!({"name": "eve", "roles": {"nowhere": "viewer"}})),
        )
        .await;
    assert_eq!(
        (st, resp["error"]["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("roles.nowhere")),
        "{resp}"
    );
    let (st, resp) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&s.admin),
            Some(json!({"label": "x", "expires_in_days": 0})),
        )
        .await;
    assert_eq!(
        (st, resp["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("expires_in_days")),
        "{resp}"
    );
    let (st, resp) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit?limit=0",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(
        (st, resp["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("limit")),
        "{resp}"
    );
    for (q, field) in [
        ("after=-1", "after"),
        ("denied=yes", "denied"),
        ("limit=ten", "limit"),
    ] {
        let (st, resp) = s
            .call(
                Method::GET,
                &format!("/api/v1/workspaces/default/audit?{q}"),
                Some(&s.admin),
                None,
            )
            .await;
        assert_eq!(
            (st, resp["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{q}: {resp}"
        );
    }
    let (st, resp) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit?bogus=1",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(
        (st, error_code(&resp)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        "{resp}"
    );
    // Still up, and nothing accepted was lost.
    let (st, _) = s
        .call(
            Method::PUT,
            put,
            Some(&s.admin),
            Some(json!({"value": "kept"})),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, list) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/secrets",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(list[0]["name"], "K");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let s = server().await;
    let (st, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/healthz",
        "/api/v1/me",
        "/api/v1/workspaces",
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/workspaces/{workspace}/secrets",
        "/api/v1/workspaces/{workspace}/secrets/{name}",
        "/api/v1/workspaces/{workspace}/members/{user}",
        "/api/v1/workspaces/{workspace}/audit",
        "/api/v1/workspaces/{workspace}/audit/verify",
        "/api/v1/workspaces/{workspace}/audit/export",
        "/api/v1/admin/rotate-key",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
}

#[tokio::test]
async fn revoked_and_expired_tokens_stop_working() {
    let s = server().await;
    let (_, issued) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&s.admin),
            Some(json!({"label": "ci", "expires_in_days": 30})),
        )
        .await;
    let token = issued["token"].as_str().unwrap().to_string();
    assert!(issued["info"]["expires_at"].as_u64().is_some());
    let (st, _) = s.call(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(st, StatusCode::OK);
    let id = issued["info"]["id"].as_str().unwrap();
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.call(Method::GET, "/api/v1/me", Some(&token), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, list) = s
        .call(Method::GET, "/api/v1/tokens", Some(&s.admin), None)
        .await;
    assert!(
        !list.to_string().contains(&token[4..]),
        "listings never hold a token"
    );
}

#[tokio::test]
async fn the_master_key_rotates_while_the_server_runs() {
    let s = server().await;
    for i in 0..20 {
        let (st, _) = s
            .call(
                Method::PUT,
                &format!("/api/v1/workspaces/default/secrets/S{i}"),
                Some(&s.admin),
                Some(json!({"value": format!("v{i}")})),
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT);
    }
    let viewer = s.member("vic", "default", "admin").await;
    let (st, body) = s
        .call(
            Method::POST,
            "/api/v1/admin/rotate-key",
            Some(&viewer),
            None,
        )
        .await;
    assert_eq!(
        (st, error_code(&body)),
        (StatusCode::FORBIDDEN, "forbidden"),
        "not a system admin"
    );
    let (st, r) = s
        .call(
            Method::POST,
            "/api/v1/admin/rotate-key",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["kid"], "k2");
    assert_eq!(r["reencrypted"], 20);
    assert_eq!(r["retired"], json!(["k1"]));
    let key_file: Value = serde_json::from_str(
        &std::fs::read_to_string(s.dir.path().join("data/master.key")).unwrap(),
    )
    .unwrap();
    assert_eq!(key_file["current"], "k2");
    assert!(key_file["keys"].get("k1").is_none());
    let (_, page) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/secrets",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn playbooks_are_versioned_validated_and_diffed() {
    let s = server().await;
    let base = "/api/v1/workspaces/default/playbooks";
    let (st, r) = s
        .call(
            Method::POST,
            base,
            Some(&s.admin),
            Some(json!({"source": PLAYBOOK_V1})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(
        (
            r["id"].as_str(),
            r["versions"].as_array().unwrap().len(),
            r["enabled"].as_bool()
        ),
        (Some("enrich"), 1, Some(true))
    );
    // The same source again changes nothing.
    let (st, r) = s
        .call(
            Method::POST,
            base,
            Some(&s.admin),
            Some(json!({"source": PLAYBOOK_V1})),
        )
        .await;
    assert_eq!(
        (st, r["versions"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (st, r) = s
        .call(
            Method::POST,
            base,
            Some(&s.admin),
            Some(json!({"source": PLAYBOOK_V2})),
        )
        .await;
    assert_eq!(
        (st, r["versions"].as_array().unwrap().len()),
        (StatusCode::CREATED, 2),
        "{r}"
    );
    assert_eq!(r["name"], "Enrich an alert");
    let (_, shown) = s
        .call(Method::GET, &format!("{base}/enrich"), Some(&s.admin), None)
        .await;
    assert_eq!(shown["source"], PLAYBOOK_V2);
    let (_, v1) = s
        .call(
            Method::GET,
            &format!("{base}/enrich/versions/1"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(v1, json!(PLAYBOOK_V1));
    let (st, r) = s
        .call(
            Method::GET,
            &format!("{base}/enrich/versions/3"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("versions 1 to 2"),
        "{r}"
    );
    let (st, d) = s
        .call(
            Method::GET,
            &format!("{base}/enrich/diff"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let d = d.as_str().unwrap();
    assert!(
        d.contains("-      message: Go?")
            && d.contains("+      message: Really go?")
            && d.contains("enrich v1"),
        "{d}"
    );
    let (st, _) = s
        .call(
            Method::GET,
            &format!("{base}/enrich/diff?from=1&to=9"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // JSON sources too.
    let json_src = serde_json::to_string(&json!({"id": "from-json", "steps": [{"id": "gate", "approval": {"approvers": {"roles": ["admin"]}, "message": "ok?"}}]})).unwrap();
    let (st, r) = s
        .call(
            Method::POST,
            base,
            Some(&s.admin),
            Some(json!({"source": json_src, "format": "json"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let (_, all) = s.call(Method::GET, base, Some(&s.admin), None).await;
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["enrich", "from-json"]);
    let (_, r) = s
        .call(
            Method::PUT,
            &format!("{base}/enrich/enabled"),
            Some(&s.admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r["enabled"], false);
    let (_, page) = s
        .call(
            Method::GET,
            "/api/v1/workspaces/default/audit?action=playbook.",
            Some(&s.admin),
            None,
        )
        .await;
    let actions: Vec<&str> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "playbook.create",
            "playbook.version",
            "playbook.create",
            "playbook.disable"
        ]
    );
}

#[tokio::test]
async fn invalid_playbooks_are_refused_with_line_and_column() {
    let s = server().await;
    let base = "/api/v1/workspaces/default/playbooks";
    let bad = "id: broken\nsteps:\n  - id: a\n    needs: ghost\n    approval:\n      approvers: { roles: [admin] }\n      message: x\n  - id: a\n    approval:\n      approvers: { roles: [admin] }\n      message: y\n";
    let (st, v) = s
        .call(
            Method::POST,
            &format!("{base}/validate"),
            Some(&s.admin),
            Some(json!({"source": bad})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().unwrap();
    assert!(problems.len() >= 2, "{v}");
    assert!(
        problems
            .iter()
            .all(|p| p["line"].as_u64().unwrap() >= 1 && p["column"].as_u64().unwrap() >= 1),
        "{v}"
    );
    assert!(v.to_string().contains("ghost"), "{v}");
    let (st, r) = s
        .call(
            Method::POST,
            base,
            Some(&s.admin),
            Some(json!({"source": bad})),
        )
        .await;
    assert_eq!(
        (st, error_code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        "{r}"
    );
    assert!(
        r["error"]["field"].as_str().unwrap().starts_with("source"),
        "{r}"
    );
    for (src, what) in [
        ("{{{{", "not YAML"),
        ("id: x\nsteps: []\n&a [*a]", "anchors"),
        ("id: \"../../etc\"\nsteps: []\n", "traversal in the id"),
        ("\u{0}", "NUL"),
        ("- just\n- a list\n", "wrong shape"),
    ] {
        let (st, r) = s
            .call(
                Method::POST,
                base,
                Some(&s.admin),
                Some(json!({"source": src})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {r}");
    }
    let (st, r) = s
        .call(
            Method::POST,
            base,
            Some(&s.admin),
            Some(json!({"source": "id: x", "format": "toml"})),
        )
        .await;
    assert_eq!(
        (st, r["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("format")),
        "{r}"
    );
    let (_, all) = s.call(Method::GET, base, Some(&s.admin), None).await;
    assert_eq!(all, json!([]), "nothing invalid was stored");
    let (st, _) = s
        .call(Method::GET, &format!("{base}/nope"), Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, r) = s
        .call(
            Method::GET,
            &format!("{base}/x/versions/abc"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(
        (st, error_code(&r)),
        (StatusCode::BAD_REQUEST, "bad_path"),
        "{r}"
    );
}

#[tokio::test]
async fn the_last_admin_stays_and_member_changes_show_only_this_workspace() {
    let s = server().await;
    let (st, r) = s
        .call(
            Method::DELETE,
            "/api/v1/workspaces/default/members/admin",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(
        (st, error_code(&r)),
        (StatusCode::CONFLICT, "conflict"),
        "{r}"
    );
    let (st, r) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/members/admin",
            Some(&s.admin),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last admin"),
        "{r}"
    );
    // Someone in two workspaces: an admin of one learns nothing of the other.
    let _ = s.member("pat", "secret-ops", "viewer").await;
    let (st, r) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/members/pat",
            Some(&s.admin),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        r,
        json!({"user": "pat", "workspace": "default", "role": "admin"})
    );
    assert!(!r.to_string().contains("secret-ops"));
    // With a second admin, the first may step down.
    let (st, _) = s
        .call(
            Method::PUT,
            "/api/v1/workspaces/default/members/admin",
            Some(&s.admin),
            Some(json!({"role": "editor"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn a_missing_key_file_for_a_data_directory_with_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = allama_server::ServerConfig::new(dir.path());
    {
        let opened = allama_server::open(&config).await.unwrap();
        opened.state.vault.set("default", "K", b"v").unwrap();
        opened.close().await.unwrap();
    }
    std::fs::remove_file(dir.path().join("master.key")).unwrap();
    let e = allama_server::open(&config).await.err().expect("refused");
    assert!(
        e.to_string().contains("master key file") && e.to_string().contains("missing"),
        "{e}"
    );
    assert!(
        !dir.path().join("master.key").exists(),
        "no new key was made"
    );
}

#[tokio::test]
async fn a_token_cannot_outlive_the_token_that_issued_it() {
    let s = server().await;
    let (_, short) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&s.admin),
            Some(json!({"label": "one day", "expires_in_days": 1})),
        )
        .await;
    let short_token = short["token"].as_str().unwrap().to_string();
    let cap = short["info"]["expires_at"].as_u64().unwrap();
    for body in [
        json!({"label": "forever"}),
        json!({"label": "a year", "expires_in_days": 365}),
    ] {
        let (st, child) = s
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(&short_token),
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{child}");
        assert_eq!(child["info"]["expires_at"].as_u64(), Some(cap), "{child}");
    }
    // Shorter than the cap is kept as asked.
    let (_, shorter) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&s.admin),
            Some(json!({"label": "2d", "expires_in_days": 2})),
        )
        .await;
    let (_, child) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(shorter["token"].as_str().unwrap()),
            Some(json!({"label": "1d", "expires_in_days": 1})),
        )
        .await;
    assert!(
        child["info"]["expires_at"].as_u64().unwrap()
            < shorter["info"]["expires_at"].as_u64().unwrap()
    );
    // The admin's own first token never expires, so its children may not either.
    let (_, free) = s
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&s.admin),
            Some(json!({"label": "free"})),
        )
        .await;
    assert!(free["info"]["expires_at"].is_null(), "{free}");
}
