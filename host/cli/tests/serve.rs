//! `allama serve` as a user starts it: a fresh data directory, the URL and
//! the admin token printed once, a clean stop on Ctrl-C, a restart that
//! keeps everything.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

mod common;
use common::allama;

/// Starts `allama serve` and reads its banner: the base URL and, on a first
/// start, the token.
fn start(data: &std::path::Path) -> (Child, String, Option<String>, Vec<String>) {
    start_with(data, &["--no-demo".as_ref()])
}

fn start_with(
    data: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> (Child, String, Option<String>, Vec<String>) {
    let mut child = allama()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut base = None;
    let mut token = None;
    // The banner ends with the listening line; the token comes before it.
    while let Some(Ok(line)) = lines.next() {
        seen.push(line.clone());
        if line.trim().starts_with("alm_") {
            token = Some(line.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix("Allama is listening on ") {
            base = Some(rest.trim().to_string());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, base.expect("the URL is printed"), token, seen)
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    for _ in 0..600 {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("allama serve did not stop on SIGINT within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_fresh_prints_its_token_once_and_restarts_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, base, token, banner) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || start_with(&data, &[])
    })
    .await
    .unwrap();
    let token = token.unwrap_or_else(|| panic!("no token in {banner:?}"));
    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    // A fresh start shows a working system: the first-party packages,
    // granted, and the example playbooks, all valid against them.
    assert!(
        banner
            .iter()
            .any(|l| l.starts_with("Demo content in workspace `default`")),
        "{banner:?}"
    );
    let get = |path: &'static str| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            let v: serde_json::Value = http
                .get(format!("{base}/api/v1/workspaces/default/{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let packages = get("packages").await;
    let names: Vec<&str> = packages
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["granted"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "abuseipdb",
            "firewall",
            "http",
            "jira",
            "slack",
            "virustotal"
        ],
        "{packages}"
    );
    let playbooks = get("playbooks").await;
    let ids: Vec<&str> = playbooks
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["block-ip", "indicators", "ip-reputation", "triage"]);
    let me: serde_json::Value = http
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["name"], "admin");
    let put = http
        .put(format!(
            "{base}/api/v1/workspaces/default/secrets/VT_API_KEY"
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({"value": "kept-across-restarts"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The master key rotates while the server runs.
    let rotate = tokio::task::spawn_blocking({
        let (base, token) = (base.clone(), token.clone());
        move || {
            allama()
                .args(["secrets", "rotate-key", "--url", &base, "--token", &token])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&rotate.stdout);
    assert!(
        rotate.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    assert!(
        said.contains("now `k2`; 1 secret(s) re-encrypted"),
        "{said}"
    );
    let refused = allama()
        .args([
            "secrets",
            "rotate-key",
            "--url",
            &base,
            "--token",
            "alm_wrong",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let st = tokio::task::spawn_blocking(move || stop(child))
        .await
        .unwrap();
    assert!(st.success(), "{st}");

    // Offline, the chains verify; after an edit on disk, verify names the record.
    let verify = || {
        allama()
            .args(["audit", "verify", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let ok = verify();
    let text = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("default: ok") && text.contains("system: ok"),
        "{text}"
    );

    let (child, base, again, banner) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || start(&data)
    })
    .await
    .unwrap();
    assert!(
        again.is_none(),
        "a token is printed only on the first start: {banner:?}"
    );
    let list: serde_json::Value = http
        .get(format!("{base}/api/v1/workspaces/default/secrets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "VT_API_KEY", "{list}");
    let st = tokio::task::spawn_blocking(move || stop(child))
        .await
        .unwrap();
    assert!(st.success(), "{st}");

    {
        let store = allama_store::SledStore::open(&data).unwrap();
        let tree = store.db().open_tree("audit").unwrap();
        let mut key = b"default".to_vec();
        key.push(0);
        key.extend_from_slice(&1u64.to_be_bytes());
        let v = tree.get(&key).unwrap().expect("record 1 of default");
        // Someone rewrites who did it.
        let edited =
            String::from_utf8_lossy(&v[32..]).replacen("\"actor\":\"", "\"actor\":\"mallory-", 1);
        let mut forged = v[..32].to_vec();
        forged.extend_from_slice(edited.as_bytes());
        tree.insert(&key, forged).unwrap();
        store.sync_now().unwrap();
    }
    let broken = verify();
    let text = String::from_utf8_lossy(&broken.stdout).into_owned();
    assert_eq!(broken.status.code(), Some(1), "{text}");
    assert!(text.contains("default: BROKEN at record 1"), "{text}");
}

#[test]
fn a_bad_listen_address_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = allama()
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("ALLAMA_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ALLAMA_LISTEN `not-an-address`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_tls_when_given_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let (child, base, _, banner) = tokio::task::spawn_blocking({
        let (data, c, k) = (data.clone(), c.clone(), k.clone());
        move || {
            start_with(
                &data,
                &[
                    "--no-demo".as_ref(),
                    "--tls-cert".as_ref(),
                    c.as_os_str(),
                    "--tls-key".as_ref(),
                    k.as_os_str(),
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(base.starts_with("https://"), "{banner:?}");
    let addr: std::net::SocketAddr = base.trim_start_matches("https://").parse().unwrap();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let r = http
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let st = tokio::task::spawn_blocking(move || stop(child))
        .await
        .unwrap();
    assert!(st.success(), "{st}");

    // Half a TLS setting, or a file that is not a certificate: refused at start.
    let half = allama()
        .args(["serve", "--data-dir"])
        .arg(&data)
        .arg("--tls-cert")
        .arg(&c)
        .output()
        .unwrap();
    assert_eq!(half.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-key"));
    let junk = allama()
        .args(["serve", "--data-dir"])
        .arg(&data)
        .arg("--tls-cert")
        .arg(&k)
        .arg("--tls-key")
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(junk.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&junk.stderr).contains("holds no certificate"),
        "{}",
        String::from_utf8_lossy(&junk.stderr)
    );
}

#[test]
fn a_bad_configuration_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("allama.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nbogus = 1\n").unwrap();
    let out = allama()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allama.toml:2:1") && err.contains("bogus"),
        "{err}"
    );
}

#[test]
fn the_configuration_file_sets_the_data_directory_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("allama.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"from-file\"\ndemo = false\n",
    )
    .unwrap();
    let mut child = allama()
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with("Allama is listening on http://127.0.0.1:");
        banner.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(
        dir.path().join("from-file/master.key").is_file(),
        "{banner:?}"
    );
    assert!(banner.iter().any(|l| l.contains("from-file")), "{banner:?}");
    assert!(
        !banner.iter().any(|l| l.starts_with("Demo content")),
        "`demo = false` was ignored: {banner:?}"
    );
    assert!(stop(child).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_server_acknowledged_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, base, token, _) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || start(&data)
    })
    .await
    .unwrap();
    let token = token.unwrap();
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{base}/api/v1/workspaces/default/secrets/SURVIVES"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"value": "v"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let issued: serde_json::Value = http
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"label": "leaked"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let leaked = issued["token"].as_str().unwrap().to_string();
    let revoke = http
        .delete(format!(
            "{base}/api/v1/tokens/{}",
            issued["info"]["id"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    // No goodbye: SIGKILL right after the answers.
    child.kill().unwrap();
    child.wait().unwrap();
    let (child, base, _, _) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || start(&data)
    })
    .await
    .unwrap();
    let list: serde_json::Value = http
        .get(format!("{base}/api/v1/workspaces/default/secrets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "SURVIVES", "{list}");
    let me = http
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&leaked)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        401,
        "a revoked token must stay revoked after a crash"
    );
    let st = tokio::task::spawn_blocking(move || stop(child))
        .await
        .unwrap();
    assert!(st.success());
}

/// The server is killed (-9) while runs are in flight and webhooks are
/// being posted: every delivery that got a 202 has a run, and each of those
/// runs completes after the restart. A delivery sent again is the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_that_got_a_202_completes_after_a_crash() {
    use allama_test_peer::{Peer, Recorded, Reply, Router};
    // The vendor is slow, so runs are in flight when the server dies.
    let peer = Peer::start(Router::new().route("POST", "/effects", |_: &Recorded| {
        Reply::json(200, serde_json::json!({ "ok": true })).delay(Duration::from_millis(200))
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let package = common::http_package(dir.path(), peer.addr().port()).join("effects.allama");
    let data = dir.path().join("data");
    let (mut child, base, token, _) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || start(&data)
    })
    .await
    .unwrap();
    let token = token.unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let api = format!("{base}/api/v1/workspaces/default");
    let r = http
        .post(format!("{api}/packages?grant=true"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(std::fs::read(&package).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    const KEY: &str = "restart-test-webhook-key";
    let r = http
        .put(format!("{api}/secrets/WEBHOOK_HOOKED"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "value": KEY }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let source = format!(
        "id: hooked\ntriggers:\n  - webhook: {{ signature: standard }}\nsteps:\n  - id: tell\n    uses: effects/request@1\n    with: {{ method: POST, url: \"{}\", json: {{ n: \"${{{{ trigger.n }}}}\" }}, idempotency_header: Idempotency-Key }}\n",
        peer.url("/effects")
    );
    let r = http
        .post(format!("{api}/playbooks"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "source": source }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let deliver = |http: reqwest::Client, base: String, n: usize| async move {
        let body = format!("{{\"n\": {n}}}");
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let id = format!("delivery-{n}");
        let sig = allama_server::webhooks::sign_standard(KEY.as_bytes(), &id, ts, body.as_bytes());
        let resp = http
            .post(format!("{base}/hooks/default/hooked"))
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let v: serde_json::Value = resp.json().await.ok()?;
        Some((status, v))
    };
    // Eight senders post deliveries until the server dies under them.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    let mut senders = Vec::new();
    for s in 0..8 {
        let (http, base, tx) = (http.clone(), base.clone(), tx.clone());
        senders.push(tokio::spawn(async move {
            for k in 0..1000 {
                let n = s * 1000 + k;
                match deliver(http.clone(), base.clone(), n).await {
                    Some((202, v)) => {
                        let _ = tx.send((n, v["run"].as_str().unwrap().to_string()));
                    }
                    Some((st, v)) => panic!("delivery {n}: {st} {v}"),
                    None => return, // the server is gone
                }
            }
        }));
    }
    drop(tx);
    let mut accepted = Vec::new();
    while accepted.len() < 40 {
        accepted.push(rx.recv().await.expect("deliveries are accepted"));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    while let Some(a) = rx.recv().await {
        accepted.push(a);
    }
    let (child, base, _, _) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || start(&data)
    })
    .await
    .unwrap();
    for (n, run) in &accepted {
        let d: serde_json::Value = http
            .get(format!(
                "{base}/api/v1/workspaces/default/runs/{run}?wait_ms=30000"
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["status"], "succeeded", "delivery {n}, run {run}: {d}");
    }
    // A sender retrying an accepted delivery gets the same run, not a new one.
    let (n, run) = &accepted[0];
    let (status, again) = deliver(http.clone(), base.clone(), *n).await.unwrap();
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["run"], run.as_str());
    assert_eq!(again["duplicate"], true);
    let st = tokio::task::spawn_blocking(move || stop(child))
        .await
        .unwrap();
    assert!(st.success());
}

/// What `GET /api/v1/workspaces/default/{path}` answers, as JSON.
async fn get_json(base: &str, token: &str, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/workspaces/default/{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_running_server_restores_into_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (child, base, token, _) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || start_with(&data, &[])
    })
    .await
    .unwrap();
    let token = token.unwrap();
    let packages = get_json(&base, &token, "packages").await;
    let playbooks = get_json(&base, &token, "playbooks").await;
    assert_eq!(playbooks.as_array().unwrap().len(), 4, "{playbooks}");

    // The CLI asks the running server; the file is checked, then named.
    let file = dir.path().join("allama.backup");
    let out = allama()
        .args(["backup", "--url", &base, "--token", &token, "--to"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("backup written to"), "{stdout}");
    assert!(stdout.contains("master key is not in it"), "{stdout}");
    assert!(!dir.path().join("allama.backup.partial").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a backup is readable by its owner only");
    }
    // A wrong token is refused with the server's reason, and no file appears.
    let refused = allama()
        .args(["backup", "--url", &base, "--token", "alm_wrong", "--to"])
        .arg(dir.path().join("nope.backup"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the server refused (401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!dir.path().join("nope.backup").exists());
    assert!(!dir.path().join("nope.backup.partial").exists());
    // Offline backups need the directory free: the running server holds it.
    let held = allama()
        .args(["backup", "--data-dir"])
        .arg(&data)
        .arg("--to")
        .arg(dir.path().join("held.backup"))
        .output()
        .unwrap();
    assert!(!held.status.success());
    assert!(
        String::from_utf8_lossy(&held.stderr).contains("is a server running on it"),
        "{}",
        String::from_utf8_lossy(&held.stderr)
    );
    assert!(stop(child).success());

    // Restore beside it, with the key; the audit chains are checked.
    let restored = dir.path().join("restored");
    let out = allama()
        .arg("restore")
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored)
        .arg("--master-key")
        .arg(data.join("master.key"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit chain default: ok"), "{stdout}");
    assert!(stdout.contains("audit chain system: ok"), "{stdout}");
    // Restoring over it again is refused: nothing is overwritten.
    let again = allama()
        .arg("restore")
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The restored directory serves what the old one did, to the old token,
    // with no demo added on top (it is not a fresh directory).
    let (child, base, new_token, banner) = tokio::task::spawn_blocking({
        let restored = restored.clone();
        move || start_with(&restored, &[])
    })
    .await
    .unwrap();
    assert_eq!(new_token, None, "not a fresh start: {banner:?}");
    assert_eq!(get_json(&base, &token, "packages").await, packages);
    assert_eq!(get_json(&base, &token, "playbooks").await, playbooks);
    assert!(stop(child).success());

    // And a stopped server's directory backs up offline, to the same content.
    let offline = dir.path().join("offline.backup");
    let out = allama()
        .args(["backup", "--data-dir"])
        .arg(&restored)
        .arg("--to")
        .arg(&offline)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
