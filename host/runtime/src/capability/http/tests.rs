//! The request path, driven directly (no Wasm) against local peers.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use allama_test_peer::{Peer, Reply, Router};

use super::*;
use crate::bindings::allama::action::http::{HttpError, Method, Request};
use crate::capability::secrets::MemorySecretStore;
use crate::capability::testing::{env, events, grant};

fn step(
    toml: &str,
    secrets: &[(&str, &str)],
    resolver: Arc<dyn NameResolver>,
) -> (HttpStep, Arc<crate::audit::MemoryAuditSink>) {
    let g = grant(toml);
    let mut store = MemorySecretStore::new();
    for (k, v) in secrets {
        store.insert(*k, *v);
    }
    let secrets = Arc::new(Secrets::configure(&g.secrets, Arc::new(store)));
    let network = Arc::new(Network::new(resolver, &Default::default(), &[]).unwrap());
    let http = Arc::new(
        Http::configure(
            "pkg",
            &g.http,
            secrets,
            network,
            Arc::new(RateGovernor::new()),
        )
        .unwrap(),
    );
    let (env, sink) = env("pkg", "act");
    (http.prepare(&env), sink)
}

fn get(url: &str) -> Request {
    Request {
        method: Method::Get,
        url: url.into(),
        headers: vec![],
        body: None,
        timeout_ms: None,
    }
}

#[tokio::test]
async fn an_empty_grant_denies_everything_before_any_connection() {
    let peer = Peer::start(Router::any(|_| Reply::text(200, "no"))).await;
    let (mut s, sink) = step("", &[], Arc::new(SystemResolver));
    let e = s.send_request(get(&peer.url("/"))).await.unwrap_err();
    assert!(
        matches!(&e, HttpError::Denied(m) if m.contains("package `pkg`, action `act`, http:")),
        "{e:?}"
    );
    assert_eq!(peer.request_count(), 0);
    assert_eq!(events(&sink.records())[0]["event"], "denied");
}

#[tokio::test]
async fn the_resolver_refuses_private_answers_for_public_grants() {
    let resolver = Arc::new(
        StaticResolver::new().with("api.vendor.test", &[IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))]),
    );
    let (mut s, sink) = step(
        "[http]\nallow = [\"https://api.vendor.test\"]",
        &[],
        resolver,
    );
    let e = s
        .send_request(get("https://api.vendor.test/v1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HttpError::Denied(m) if m.contains("resolved to a private") && !m.contains("10.1.2.3")),
        "{e:?}"
    );
    assert_eq!(events(&sink.records())[0]["event"], "denied");
}

#[tokio::test]
async fn a_mixed_public_and_private_answer_is_refused() {
    let resolver = Arc::new(StaticResolver::new().with(
        "rebind.test",
        &[
            IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        ],
    ));
    let (mut s, _) = step("[http]\nallow = [\"http://rebind.test\"]", &[], resolver);
    assert!(matches!(
        s.send_request(get("http://rebind.test/")).await,
        Err(HttpError::Denied(_))
    ));
}

#[tokio::test]
async fn unknown_secret_and_malformed_placeholders_never_leave_the_host() {
    let peer = Peer::start(Router::any(|_| Reply::text(200, "ok"))).await;
    let g = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{}\"]",
        peer.addr().port()
    );
    let (mut s, _) = step(&g, &[], Arc::new(SystemResolver));
    let mut r = get(&peer.url("/"));
    r.headers = vec![("authorization".into(), "Bearer {{secret:NOPE}}".into())];
    assert!(
        matches!(s.send_request(r).await, Err(HttpError::Denied(m)) if m.contains("`NOPE` is not granted"))
    );
    let mut r = get(&peer.url("/"));
    r.headers = vec![("authorization".into(), "Bearer {{secret:UNCLOSED".into())];
    assert!(matches!(
        s.send_request(r).await,
        Err(HttpError::InvalidRequest(_))
    ));
    let mut r = get(&peer.url("/"));
    r.body = Some(b"{{secret:bad name}}".to_vec());
    assert!(matches!(
        s.send_request(r).await,
        Err(HttpError::InvalidRequest(_))
    ));
    assert_eq!(peer.request_count(), 0);
}

#[tokio::test]
async fn a_secret_with_a_line_break_cannot_be_smuggled_into_a_header() {
    let peer = Peer::start(Router::any(|_| Reply::text(200, "ok"))).await;
    let port = peer.addr().port();
    let g = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{port}\"]\n[secrets.K]\nhosts = [\"http://127.0.0.1:{port}\"]"
    );
    let (mut s, _) = step(&g, &[("K", "v\r\nx-evil: 1")], Arc::new(SystemResolver));
    let mut r = get(&peer.url("/"));
    r.headers = vec![("x-key".into(), "{{secret:K}}".into())];
    assert!(
        matches!(s.send_request(r).await, Err(HttpError::InvalidRequest(m)) if m.contains("substituted secret"))
    );
    assert_eq!(peer.request_count(), 0);
}

#[tokio::test]
async fn oversized_and_malformed_requests_are_invalid() {
    let (mut s, _) = step(
        "[http]\nallow = [\"https://api.example.com\"]",
        &[],
        Arc::new(SystemResolver),
    );
    let cases = [
        get(&format!("https://api.example.com/{}", "a".repeat(20_000))),
        get("not a url"),
        get("https://api.example.com:99999/"),
        Request {
            headers: vec![("bad name".into(), "v".into())],
            ..get("https://api.example.com/")
        },
        Request {
            headers: vec![("x".into(), "a".repeat(20_000))],
            ..get("https://api.example.com/")
        },
        Request {
            headers: (0..101)
                .map(|i| (format!("x-{i}"), "v".to_string()))
                .collect(),
            ..get("https://api.example.com/")
        },
        Request {
            headers: vec![("transfer-encoding".into(), "chunked".into())],
            ..get("https://api.example.com/")
        },
    ];
    for (i, r) in cases.into_iter().enumerate() {
        assert!(
            matches!(s.send_request(r).await, Err(HttpError::InvalidRequest(_))),
            "case {i}"
        );
    }
    for scheme in [
        "ftp://api.example.com/",
        "file:///etc/passwd",
        "data:text/plain,hi",
        "gopher://api.example.com/",
    ] {
        assert!(
            matches!(s.send_request(get(scheme)).await, Err(HttpError::Denied(_))),
            "{scheme}"
        );
    }
}

#[tokio::test]
async fn a_connection_refused_is_a_connection_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let g = format!("[http]\nallow_private = [\"http://127.0.0.1:{port}\"]");
    let (mut s, sink) = step(&g, &[], Arc::new(SystemResolver));
    let e = s
        .send_request(get(&format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::Connection(_)), "{e:?}");
    assert_eq!(events(&sink.records())[0]["event"], "failed");
}

#[tokio::test]
async fn redirect_loops_stop_at_max_redirects() {
    let peer = Peer::start(Router::any(|_| Reply::redirect(302, "/again"))).await;
    let g = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{}\"]\nmax_redirects = 3",
        peer.addr().port()
    );
    let (mut s, _) = step(&g, &[], Arc::new(SystemResolver));
    let resp = s.send_request(get(&peer.url("/"))).await.unwrap();
    assert_eq!(resp.status, 302);
    assert_eq!(peer.request_count(), 4);
}

#[tokio::test]
async fn a_vendor_echoing_a_secret_in_a_redirect_cannot_carry_it_elsewhere() {
    let other = Peer::start(Router::any(|_| Reply::text(200, "stolen"))).await;
    let other_base = other.url("/collect");
    let peer = Peer::start(Router::any(move |req| {
        let key = req.query_param("key").unwrap_or_default();
        Reply::redirect(302, &format!("{other_base}?leak={key}"))
    }))
    .await;
    let g = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]\n[secrets.K]\nhosts = [\"http://127.0.0.1:{}\"]",
        peer.addr().port(),
        other.addr().port(),
        peer.addr().port()
    );
    let (mut s, _) = step(&g, &[("K", "topsecret")], Arc::new(SystemResolver));
    let e = s
        .send_request(get(&peer.url("/start?key={{secret:K}}")))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, HttpError::Denied(m) if m.contains("carries secret `K`")),
        "{e:?}"
    );
    assert_eq!(other.request_count(), 0);
}

#[tokio::test]
async fn basic_auth_from_a_secret_and_base64_scrubbing() {
    let peer = Peer::start(Router::any(Reply::echo)).await;
    let port = peer.addr().port();
    let g = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{port}\"]\n[secrets.CREDS]\nhosts = [\"http://127.0.0.1:{port}\"]"
    );
    let (mut s, _) = step(
        &g,
        &[("CREDS", "me@corp.com:t0ken")],
        Arc::new(SystemResolver),
    );
    let mut r = get(&peer.url("/rest/api/2/myself?sig={{secret:CREDS|base64}}"));
    r.headers = vec![(
        "authorization".into(),
        "Basic {{secret:CREDS|base64}}".into(),
    )];
    let resp = s.send_request(r).await.unwrap();
    let seen = &peer.requests()[0];
    assert_eq!(
        seen.header("authorization"),
        Some("Basic bWVAY29ycC5jb206dDBrZW4=")
    );
    assert_eq!(
        seen.query_param("sig").as_deref(),
        Some("bWVAY29ycC5jb206dDBrZW4=")
    );
    let body = String::from_utf8(resp.body).unwrap();
    assert!(!body.contains("bWVAY29ycC5jb206dDBrZW4"), "{body}");
    assert!(body.contains("[REDACTED:CREDS]"));
}

#[test]
fn bad_extra_roots_are_refused_at_start() {
    let r: Arc<dyn NameResolver> = Arc::new(SystemResolver);
    let err = Network::new(
        r.clone(),
        &Default::default(),
        &["not a certificate".into()],
    )
    .err()
    .expect("refused");
    assert!(err.contains("certificate #1"), "{err}");
    assert!(Network::new(r, &Default::default(), &["".into()]).is_err());
}

/// A peer and a step whose grant allows it and grants secrets toward it.
async fn granted(
    secrets: &[(&str, &str)],
    router: Router,
    extra: &str,
) -> (Peer, HttpStep, Arc<crate::audit::MemoryAuditSink>) {
    let peer = Peer::start(router).await;
    let port = peer.addr().port();
    let mut g = format!("[http]\nallow_private = [\"http://127.0.0.1:{port}\"]\n{extra}\n");
    for (name, _) in secrets {
        g.push_str(&format!(
            "[secrets.{name}]\nhosts = [\"http://127.0.0.1:{port}\"]\n"
        ));
    }
    let (s, sink) = step(&g, secrets, Arc::new(SystemResolver));
    (peer, s, sink)
}

#[tokio::test]
async fn connection_errors_never_quote_a_substituted_secret() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let g = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{port}\"]\n[secrets.K]\nhosts = [\"http://127.0.0.1:{port}\"]"
    );
    let (mut s, sink) = step(&g, &[("K", "sup3rs3cret")], Arc::new(SystemResolver));
    let e = s
        .send_request(get(&format!(
            "http://127.0.0.1:{port}/x?k={{{{secret:K}}}}"
        )))
        .await
        .unwrap_err();
    let text = format!("{e:?} {}", serde_json::to_string(&sink.records()).unwrap());
    assert!(!text.contains("sup3rs3cret"), "{text}");
}

#[tokio::test]
async fn a_302_never_carries_a_secret_body_to_another_origin() {
    let collector = Peer::start(Router::any(|_| Reply::text(200, "got it"))).await;
    let target = collector.url("/collect");
    let vendor = Peer::start(Router::any(move |_| Reply::redirect(302, &target))).await;
    let (vp, cp) = (vendor.addr().port(), collector.addr().port());
    let g = format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{vp}\", \"http://127.0.0.1:{cp}\"]\n[secrets.K]\nhosts = [\"http://127.0.0.1:{vp}\"]"
    );
    let (mut s, _) = step(&g, &[("K", "v")], Arc::new(SystemResolver));
    for method in [Method::Put, Method::Patch, Method::Delete] {
        let r = Request {
            method,
            body: Some(b"{\"x\":\"{{secret:K}}\"}".to_vec()),
            ..get(&vendor.url("/r"))
        };
        let e = s.send_request(r).await.unwrap_err();
        assert!(
            matches!(&e, HttpError::Denied(m) if m.contains("body carrying secrets")),
            "{method:?}: {e:?}"
        );
    }
    assert_eq!(collector.request_count(), 0);
}

#[tokio::test]
async fn too_many_placeholders_are_refused_before_substitution() {
    let (peer, mut s, _) =
        granted(&[("K", "v")], Router::any(|_| Reply::text(200, "ok")), "").await;
    let mut r = get(&peer.url("/"));
    r.body = Some("{{secret:K}}".repeat(33).into_bytes());
    assert!(
        matches!(s.send_request(r).await, Err(HttpError::InvalidRequest(m)) if m.contains("33 secret placeholders"))
    );
    assert_eq!(peer.request_count(), 0);
}

#[tokio::test]
async fn every_granted_secret_is_scrubbed_longest_first() {
    // The vendor's answer holds secrets this request never sent (stored by an
    // earlier one), one of them containing the other.
    let (peer, mut s, _) = granted(
        &[("TOKEN", "tok-123"), ("BASIC", "user:tok-123")],
        Router::any(|_| Reply::text(200, "stored: user:tok-123 and tok-123")),
        "",
    )
    .await;
    let resp = s.send_request(get(&peer.url("/read-back"))).await.unwrap();
    assert_eq!(
        String::from_utf8(resp.body).unwrap(),
        "stored: [REDACTED:BASIC] and [REDACTED:TOKEN]"
    );
}

#[tokio::test]
async fn only_defined_redirects_are_followed() {
    let (peer, mut s, _) =
        granted(&[], Router::any(|_| Reply::redirect(300, "/elsewhere")), "").await;
    let resp = s.send_request(get(&peer.url("/"))).await.unwrap();
    assert_eq!(resp.status, 300);
    assert_eq!(peer.request_count(), 1);
}

/// A step on `tape` whose grant allows the peer at `port` and grants secret
/// `K` (value `values`) toward it, with reveal.
fn taped_step(port: u16, values: &[(&str, &str)], tape: &crate::tape::Tape) -> HttpStep {
    let g = grant(&format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{port}\"]\n\
         [secrets.K]\nhosts = [\"http://127.0.0.1:{port}\"]\nreveal = true\n"
    ));
    let mut store = MemorySecretStore::new();
    for (k, v) in values {
        store.insert(*k, *v);
    }
    let secrets = Arc::new(Secrets::configure(&g.secrets, Arc::new(store)));
    let network =
        Arc::new(Network::new(Arc::new(SystemResolver), &Default::default(), &[]).unwrap());
    let http = Arc::new(
        Http::configure(
            "pkg",
            &g.http,
            secrets.clone(),
            network,
            Arc::new(RateGovernor::new()),
        )
        .unwrap(),
    );
    let (mut env, _sink) = env("pkg", "act");
    env.tape = crate::tape::StepTape::new(tape, "step-1", &secrets);
    http.prepare(&env)
}

#[tokio::test]
async fn a_revealed_value_sent_literally_is_recorded_as_its_mark_and_replays_from_the_stand_in() {
    use crate::tape::{Cassette, Recorder, Tape, stand_in};
    let peer = Peer::start(Router::any(Reply::echo)).await;
    let port = peer.addr().port();
    let post = |body: &str| Request {
        method: Method::Post,
        url: peer.url("/t"),
        headers: vec![("x-token".into(), body.into())],
        body: Some(body.as_bytes().to_vec()),
        timeout_ms: None,
    };
    let recorder = Recorder::new();
    let mut s = taped_step(
        port,
        &[("K", "plain-value")],
        &Tape::Record(recorder.clone()),
    );
    let live = s.send_request(post("token=plain-value")).await.unwrap();
    assert_eq!(peer.request_count(), 1);
    let exchanges = recorder.take();
    let json = crate::tape::to_json(&exchanges);
    assert!(!json.contains("plain-value"), "{json}");
    assert!(json.contains("token=[REDACTED:K]"), "{json}");

    // In replay the component holds the stand-in; it matches the same mark.
    let cassette = Cassette::new(exchanges);
    let mut s = taped_step(port, &[], &Tape::Replay(cassette.clone()));
    let body = format!("token={}", stand_in("K"));
    let replayed = s.send_request(post(&body)).await.unwrap();
    assert_eq!(replayed.body, live.body);
    assert_eq!(peer.request_count(), 1);
    assert!(cassette.unused().is_empty());
}
