//! HTTPS: TLS 1.3 only, a client that stalls its handshake holds up no one,
//! and bad certificate files are refused with the file named.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

struct Tls {
    base: String,
    ca: reqwest::Certificate,
    addr: std::net::SocketAddr,
    token: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let config = allama_server::tls::server_config(&cert_path, &key_path).expect("a TLS config");
    let opened = allama_server::open(&allama_server::ServerConfig::new(dir.path().join("data")))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(allama_server::serve_tls(
        listener,
        config,
        opened.state.clone(),
        std::future::pending(),
    ));
    Tls {
        base: format!("https://localhost:{}", addr.port()),
        ca: reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap(),
        addr,
        token: opened.first_admin_token.unwrap(),
        _dir: dir,
    }
}

fn client(t: &Tls, max: Option<reqwest::tls::Version>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(t.ca.clone())
        .resolve("localhost", t.addr)
        .timeout(Duration::from_secs(30));
    if let Some(v) = max {
        b = b.max_tls_version(v);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn the_api_is_served_over_tls_1_3_only() {
    let t = start().await;
    let me = client(&t, None)
        .get(format!("{}/api/v1/me", t.base))
        .bearer_auth(&t.token)
        .send()
        .await
        .expect("TLS 1.3 works");
    assert_eq!(me.status(), 200);
    let old = client(&t, Some(reqwest::tls::Version::TLS_1_2))
        .get(format!("{}/healthz", t.base))
        .send()
        .await;
    assert!(old.is_err(), "a TLS 1.2 client must be refused: {old:?}");
    // Plain HTTP to the TLS port gets nowhere, and the server stays up.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", t.addr))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    let again = client(&t, None)
        .get(format!("{}/healthz", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_no_one() {
    let t = start().await;
    // Connections that never send a ClientHello.
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
        s.write_all(b"\x16\x03").await.unwrap(); // half a record header, then nothing
        idle.push(s);
    }
    let r = client(&t, None)
        .get(format!("{}/healthz", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(idle);
}

#[test]
fn bad_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    let key_path = dir.path().join("key.pem");
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&other)
        .unwrap();
    let cert_path = dir.path().join("cert.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    for (c, k, needle) in [
        (&missing, &key_path, "missing.pem"),
        (&junk, &key_path, "holds no certificate"),
        (&cert_path, &junk, "junk.pem: not a PEM private key"),
        (&cert_path, &key_path, "do not make a TLS configuration"),
    ] {
        let e = allama_server::tls::server_config(c, k).expect_err("refused");
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
}
