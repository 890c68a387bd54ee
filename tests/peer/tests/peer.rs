//! End-to-end tests of the peer over real sockets, using a tiny raw HTTP/1.1
//! client (the crate has no HTTP client dependency).

use std::io::Read as _;
use std::time::Duration;

use allama_test_peer::{Peer, Reply, Router, paginated, sequence};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

mod common;
use common::{Client, get, request};

#[tokio::test]
async fn routes_and_404() {
    let peer = Peer::start(
        Router::new()
            .route("GET", "/v1/ok", |_| Reply::json(200, json!({"ok": true})))
            .route("GET", "/v1/unauthorized", |_| Reply::error(401, "bad key"))
            .route("GET", "/v1/forbidden", |_| Reply::error(403, "forbidden"))
            .route("POST", "/v1/broken", |_| Reply::text(502, "bad gateway"))
            .prefix("GET", "/v1/files/", |req| {
                Reply::text(200, req.path.trim_start_matches("/v1/files/"))
            }),
    )
    .await;
    let addr = peer.addr();

    let ok = get(addr, "/v1/ok?x=1").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("application/json"));
    assert_eq!(ok.json(), json!({"ok": true}));

    assert_eq!(get(addr, "/v1/unauthorized").await.status, 401);
    assert_eq!(get(addr, "/v1/forbidden").await.status, 403);
    let broken = request(addr, "POST", "/v1/broken", &[], b"{}").await;
    assert_eq!(
        (broken.status, &broken.body[..]),
        (502, &b"bad gateway"[..])
    );
    assert_eq!(get(addr, "/v1/files/abc").await.body, b"abc");

    for (method, target) in [
        ("GET", "/nowhere"),
        ("GET", "/v1/broken"),
        ("PUT", "/v1/ok"),
    ] {
        let missing = request(addr, method, target, &[], b"").await;
        assert_eq!(missing.status, 404, "{method} {target}");
        assert_eq!(missing.header("content-type"), Some("application/json"));
        assert_eq!(missing.json(), json!({"error": "not found"}));
    }
    assert_eq!(peer.request_count(), 8);
    assert!(peer.url("/v1/ok").starts_with("http://127.0.0.1:"));
    assert_eq!(peer.url("/v1/ok"), format!("{}/v1/ok", peer.base_url()));
}

#[tokio::test]
async fn records_what_was_sent() {
    let peer = Peer::start(Router::any(|_| Reply::status(204))).await;
    assert_eq!(peer.request_count(), 0);
    assert_eq!(peer.last_request(), None);

    let response = request(
        peer.addr(),
        "POST",
        "/api/report?ip=1.2.3.4&verbose",
        &[
            ("X-Api-Key", "the-real-secret"),
            ("Accept", "application/json"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
        ],
        br#"{"comment":"bad actor"}"#,
    )
    .await;
    assert_eq!(response.status, 204);

    let requests = peer.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/api/report");
    assert_eq!(sent.query.as_deref(), Some("ip=1.2.3.4&verbose"));
    assert_eq!(sent.query_param("ip").as_deref(), Some("1.2.3.4"));
    assert_eq!(sent.header("x-api-key"), Some("the-real-secret"));
    assert_eq!(sent.header("X-API-KEY"), Some("the-real-secret"));
    assert_eq!(sent.header_all("x-multi"), ["a", "b"]);
    assert!(
        sent.headers
            .iter()
            .all(|(n, _)| *n == n.to_ascii_lowercase())
    );
    assert_eq!(sent.body_str(), r#"{"comment":"bad actor"}"#);
    assert_eq!(sent.body_json(), Some(json!({"comment": "bad actor"})));
    assert_eq!(peer.last_request().as_ref(), Some(sent));

    peer.clear_requests();
    assert_eq!(peer.request_count(), 0);
}

#[tokio::test]
async fn keeps_connections_alive() {
    let peer = Peer::start(Router::any(|req| Reply::text(200, req.path.clone()))).await;
    let mut client = Client::connect(peer.addr()).await;
    for path in ["/one", "/two", "/three"] {
        let response = client.send("GET", path, &[], b"").await;
        assert_eq!(response.body, path.as_bytes());
    }
    assert_eq!(peer.request_count(), 3);
    assert_eq!(peer.connection_count(), 1);
}

#[tokio::test]
async fn echoes_requests() {
    let peer = Peer::start(Router::any(Reply::echo)).await;
    let response = request(
        peer.addr(),
        "PUT",
        "/anything?a=b",
        &[("Authorization", "Bearer xyz")],
        b"payload",
    )
    .await;
    let echoed = response.json();
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["path"], "/anything");
    assert_eq!(echoed["query"], "a=b");
    assert_eq!(echoed["headers"]["authorization"], "Bearer xyz");
    assert_eq!(echoed["body"], "payload");
}

#[tokio::test]
async fn scripted_sequence() {
    let peer = Peer::start(Router::new().route(
        "GET",
        "/flaky",
        sequence(vec![
            Reply::status(503),
            Reply::rate_limited(2),
            Reply::json(200, json!({"n": 1})),
        ]),
    ))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(peer.addr(), "/flaky").await.status);
    }
    assert_eq!(statuses, [503, 429, 200, 200, 200]);
}

#[tokio::test]
async fn redirects_carry_location() {
    let peer = Peer::start(
        Router::new()
            .route("GET", "/old", |_| Reply::redirect(301, "/new"))
            .route("POST", "/submit", |_| {
                Reply::redirect(307, "http://127.0.0.1:1/elsewhere")
            }),
    )
    .await;
    let moved = get(peer.addr(), "/old").await;
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/new"));
    let temporary = request(peer.addr(), "POST", "/submit", &[], b"x").await;
    assert_eq!(temporary.status, 307);
    assert_eq!(
        temporary.header("location"),
        Some("http://127.0.0.1:1/elsewhere")
    );
}

#[tokio::test]
async fn rate_limit_has_retry_after() {
    let peer = Peer::start(Router::any(|_| Reply::rate_limited(30))).await;
    let response = get(peer.addr(), "/").await;
    assert_eq!(response.status, 429);
    assert_eq!(response.header("retry-after"), Some("30"));
    assert_eq!(
        response.json(),
        json!({"error": "rate limited", "retry_after": 30})
    );
}

#[tokio::test]
async fn paginates_with_cursors() {
    let items: Vec<Value> = (0..25).map(|i| json!({"id": i})).collect();
    let peer =
        Peer::start(Router::new().route("GET", "/items", paginated(items.clone(), 10))).await;
    let mut seen = Vec::new();
    let mut target = "/items".to_owned();
    loop {
        let page = get(peer.addr(), &target).await.json();
        seen.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["meta"]["next_cursor"].as_str() {
            Some(next) => target = format!("/items?cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, items);
    assert_eq!(peer.request_count(), 3);
}

#[tokio::test]
async fn gzip_bomb_is_small_and_exact() {
    const GIB: u64 = 1 << 30;
    let peer = Peer::start(Router::any(|_| Reply::gzip_bomb(GIB + 12_345))).await;
    let response = get(peer.addr(), "/bomb").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    let compressed = response.body.len();
    assert_eq!(
        response.header("content-length"),
        Some(compressed.to_string().as_str())
    );
    assert!(compressed < 2 << 20, "compressed size {compressed}");

    // GzDecoder also checks the trailer's CRC-32 and length.
    let mut decoder = flate2::read::GzDecoder::new(&response.body[..]);
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = decoder.read(&mut buf).expect("a valid gzip stream");
        if n == 0 {
            break;
        }
        assert!(buf[..n] == zeros[..n], "non-zero byte");
        total += n as u64;
    }
    assert_eq!(total, GIB + 12_345);
}

#[tokio::test]
async fn streamed_body_has_no_content_length() {
    const LEN: u64 = 3 * 1024 * 1024 + 7;
    let peer = Peer::start(
        Router::new()
            .route("GET", "/big", |_| Reply::streamed(200, LEN))
            .route("GET", "/empty", |_| Reply::streamed(200, 0)),
    )
    .await;
    let response = get(peer.addr(), "/big").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), None);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.body.len() as u64, LEN);
    assert!(response.body.iter().all(|&b| b == b'x'));

    let empty = get(peer.addr(), "/empty").await;
    assert_eq!(empty.header("content-length"), None);
    assert!(empty.body.is_empty());
}

async fn many_delayed_requests() {
    const N: usize = 200;
    let peer = Peer::start(Router::new().route("GET", "/slow", |_| {
        Reply::json(200, json!({"slow": true})).delay(Duration::from_millis(500))
    }))
    .await;
    let addr = peer.addr();
    let clients: Vec<_> = (0..N)
        .map(|_| tokio::spawn(async move { get(addr, "/slow").await.status }))
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap(), 200);
    }
    assert_eq!(peer.request_count(), N);
    assert_eq!(peer.in_flight(), 0);
    assert!(
        peer.max_in_flight() >= N / 2,
        "delayed requests did not overlap: max in flight {}",
        peer.max_in_flight()
    );
}

#[tokio::test]
async fn delays_overlap_on_current_thread() {
    many_delayed_requests().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_overlap_on_multi_thread() {
    many_delayed_requests().await;
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let peer = Peer::start(Router::any(|_| Reply::status(200)).body_limit(1024)).await;
    let response = request(peer.addr(), "POST", "/upload", &[], &[b'a'; 4096]).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json(), json!({"error": "payload too large"}));
    let recorded = peer.last_request().unwrap();
    assert_eq!(recorded.body.len(), 1024);

    let fits = request(peer.addr(), "POST", "/upload", &[], &[b'a'; 1024]).await;
    assert_eq!(fits.status, 200);
}

#[tokio::test]
async fn drop_stops_the_peer() {
    let peer = Peer::start(Router::any(|_| Reply::status(200))).await;
    let addr = peer.addr();
    let mut open = Client::connect(addr).await;
    assert_eq!(open.send("GET", "/", &[], b"").await.status, 200);

    drop(peer);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener still accepts after drop"
    );
    // The kept-alive connection is closed too.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), open.conn.read_to_end(&mut rest))
        .await
        .expect("the open connection is closed");
    assert!(read.is_err() || rest.is_empty());
}

#[tokio::test]
#[should_panic(expected = "peer handler(s) panicked; first: GET /check?x=1: missing api key")]
async fn handler_panics_fail_the_test() {
    let peer = Peer::start(Router::any(|req| {
        assert!(req.header("x-api-key").is_some(), "missing api key");
        Reply::status(200)
    }))
    .await;
    let response = get(peer.addr(), "/check?x=1").await;
    assert_eq!(response.status, 500);
    assert_eq!(response.json(), json!({"error": "peer handler panicked"}));
}
