//! The test server harness shared by the API tests: a server on a fresh
//! data directory over real TCP, and calls with a token.

#![allow(dead_code)] // each test binary uses its own subset

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// A running test server.
pub struct Server {
    /// The server's state, for what the API does not show.
    pub state: allama_server::app::Shared,
    pub base: String,
    pub admin: String,
    pub http: Client,
    /// Its directory (the data directory is `data` inside).
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn server() -> Server {
    server_with(|_| {}).await
}

/// A server on a fresh data directory, with `configure` applied to its settings.
pub async fn server_with(configure: impl FnOnce(&mut allama_server::ServerConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = allama_server::ServerConfig::new(dir.path().join("data"));
    configure(&mut config);
    start(config, dir, None).await
}

/// A server on an existing data directory (`DIR/data`), calling with `admin`.
pub async fn server_at(
    dir: tempfile::TempDir,
    admin: &str,
    configure: impl FnOnce(&mut allama_server::ServerConfig),
) -> Server {
    let mut config = allama_server::ServerConfig::new(dir.path().join("data"));
    configure(&mut config);
    start(config, dir, Some(admin.to_string())).await
}

async fn start(
    config: allama_server::ServerConfig,
    dir: tempfile::TempDir,
    admin: Option<String>,
) -> Server {
    let opened = allama_server::open(&config).await.expect("opens");
    let admin = admin
        .or_else(|| opened.first_admin_token.clone())
        .expect("a fresh server has an admin token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = opened.state.clone();
    tokio::spawn(async move {
        allama_server::serve(listener, state, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        admin,
        http: Client::new(),
        state: opened.state.clone(),
        dir,
        stop: Some(tx),
    }
}

impl Server {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        ct: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A user with `role` in `ws` (created if needed), and a token for them.
    pub async fn member(&self, name: &str, ws: &str, role: &str) -> String {
        let (s, _) = self
            .call(
                Method::POST,
                "/api/v1/workspaces",
                Some(&self.admin),
                Some(json!({"name": ws})),
            )
            .await;
        assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT, "{s}");
        let (s, body) = self
            .call(
                Method::POST,
                "/api/v1/users",
                Some(&self.admin),
                Some(json!({"name": name, "roles": {ws: role}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let (s, body) = self
            .call(
                Method::POST,
                "/api/v1/tokens",
                Some(&self.admin),
                Some(json!({"label": "test", "user": name})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_string()
    }
}

/// The error code of an error body.
pub fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}

/// The generic http action re-packaged as `effects`, as an operator would:
/// it may reach `http://127.0.0.1:PORT` and send secret `TOKEN` there.
pub fn effects_package(port: u16) -> Vec<u8> {
    let http = allama_first_party::get("http");
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("schemas")).unwrap();
    for f in ["request.json", "response.json"] {
        std::fs::copy(
            std::path::Path::new(http.dir).join("schemas").join(f),
            src.path().join("schemas").join(f),
        )
        .unwrap();
    }
    let manifest = format!(
        r#"[package]
name = "effects"
version = "1.0.0"
publisher = "server-tests"
description = "The http action, allowed to reach the local peer"

[[actions]]
name = "request"
description = "One HTTP request"
input = "schemas/request.json"
output = "schemas/response.json"

[capabilities.limits]
memory_mib = 64
timeout_ms = 30000

[capabilities.http]
allow = []
allow_private = ["http://127.0.0.1:{port}"]

[capabilities.secrets.TOKEN]
hosts = ["http://127.0.0.1:{port}"]
"#
    );
    std::fs::write(src.path().join("allama.toml"), manifest).unwrap();
    let wasm = std::fs::read(http.wasm).unwrap();
    let (file, _) = allama_package::build(src.path(), wasm).unwrap();
    file.to_bytes()
}

impl Server {
    /// Stores a playbook in `ws`, checking it was accepted.
    pub async fn playbook(&self, ws: &str, token: &str, source: &str) {
        let (st, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/workspaces/{ws}/playbooks"),
                Some(token),
                Some(json!({ "source": source })),
            )
            .await;
        assert!(st.is_success(), "{st} {body}");
    }

    /// Sets a workspace secret.
    pub async fn secret(&self, ws: &str, name: &str, value: &str) {
        let (st, body) = self
            .call(
                Method::PUT,
                &format!("/api/v1/workspaces/{ws}/secrets/{name}"),
                Some(&self.admin),
                Some(json!({ "value": value })),
            )
            .await;
        assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    }

    /// Installs and grants a package file.
    pub async fn install(&self, ws: &str, bytes: Vec<u8>) {
        let (st, body) = self
            .raw(
                Method::POST,
                &format!("/api/v1/workspaces/{ws}/packages?grant=true"),
                &self.admin,
                "application/octet-stream",
                bytes,
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert_eq!(body["granted"], true, "{body}");
    }

    /// Starts a run and waits up to 20 s for it to finish.
    pub async fn run(&self, ws: &str, token: &str, playbook: &str, inputs: Value) -> Value {
        let (st, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/workspaces/{ws}/runs"),
                Some(token),
                Some(json!({ "playbook": playbook, "inputs": inputs, "wait_ms": 20000 })),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        body
    }
}
