use allama_package::SigningKey;
use allama_runtime::ActionErrorKind;
use allama_test_peer::{Reply, Router};
use serde_json::json;

use crate::support::{Vendor, action_error, output};

/// The shipped package requests no host: it can reach nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_package_reaches_nothing() {
    let v = Vendor::start(
        "http",
        "api.example.com",
        Router::any(|_| Reply::text(200, "no")),
        &[],
    )
    .await;
    let r = v
        .run(
            "request",
            json!({"method": "GET", "url": "https://api.example.com/v1/thing"}),
        )
        .await;
    assert_eq!(action_error(&r).0, ActionErrorKind::Denied);
    assert_eq!(v.peer.request_count(), 0);
}

/// An operator re-packages it with their hosts and secrets, signed by their own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repackaged_http_action_calls_the_operators_api() {
    let shipped = allama_first_party::get("http");
    let dir = tempfile_dir();
    let manifest = std::fs::read_to_string(format!("{}/allama.toml", shipped.dir))
        .unwrap()
        .replace("publisher = \"allama\"", "publisher = \"acme\"")
        .replace("name = \"http\"", "name = \"http-acme\"")
        .replace("allow = []", "allow = [\"https://api.example.com\"]");
    let manifest = format!(
        "{manifest}\n[capabilities.secrets.ACME_TOKEN]\nhosts = [\"https://api.example.com\"]\n"
    );
    std::fs::write(dir.join("allama.toml"), manifest).unwrap();
    copy_dir(&format!("{}/schemas", shipped.dir), &dir.join("schemas"));
    let key = SigningKey::generate().unwrap().0;
    let (mut file, _) = allama_package::build(&dir, std::fs::read(shipped.wasm).unwrap()).unwrap();
    allama_package::add_signature(&mut file, &key);
    let router = Router::any(Reply::echo);
    let v = Vendor::start_package(
        "http-acme",
        "acme",
        &key,
        file.to_bytes(),
        "api.example.com",
        router,
        &[("ACME_TOKEN", "t0k3n")],
    )
    .await;
    let r = v
        .run(
            "request",
            json!({"method": "POST", "url": "https://api.example.com/v1/block", "query": {"dry": "false"},
                   "json": {"ip": "203.0.113.7"}, "auth": {"bearer": "ACME_TOKEN"}, "expect_json": true}),
        )
        .await;
    let out = output(&r);
    assert_eq!(out["status"], 200);
    let seen = &v.peer.requests()[0];
    assert_eq!(seen.header("authorization"), Some("Bearer t0k3n"));
    assert_eq!(seen.query_param("dry").as_deref(), Some("false"));
    assert_eq!(seen.body_json().unwrap(), json!({"ip": "203.0.113.7"}));
    // The echo carried the token back; the component saw only the mark.
    assert!(
        !out.to_string().contains("t0k3n") && out.to_string().contains("[REDACTED:ACME_TOKEN]"),
        "{out}"
    );
    let denied = v
        .run(
            "request",
            json!({"method": "GET", "url": "https://elsewhere.example.com/"}),
        )
        .await;
    assert_eq!(action_error(&denied).0, ActionErrorKind::Denied);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "allama-http-repack-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_dir(from: &str, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}
