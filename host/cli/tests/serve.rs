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
    start_with(data, &[])
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
        move || start(&data)
    })
    .await
    .unwrap();
    let token = token.unwrap_or_else(|| panic!("no token in {banner:?}"));
    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
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
        let edited = String::from_utf8_lossy(&v[32..]).replace("secret.set", "secret.get");
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
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\ndata_dir = \"from-file\"\n").unwrap();
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
