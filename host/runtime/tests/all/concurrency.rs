//! A step waiting on HTTP holds no thread: many steps wait at once.

use allama_runtime::RuntimeConfig;
use allama_test_peer::{Peer, Reply, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{Host, output, peer_grant, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_steps_wait_on_a_slow_vendor_at_once() {
    let peer = Peer::start(Router::any(|_| {
        Reply::json(200, json!({"verdict": "clean"})).delay(Duration::from_millis(200))
    }))
    .await;
    let host = Host::with_config(RuntimeConfig {
        max_concurrent_steps: 1000,
        ..RuntimeConfig::default()
    });
    let p = Arc::new(host.package("caps", &peer_grant(&peer, ""), &[]));
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let p = p.clone();
        let url = peer.url(&format!("/ip/{i}"));
        tasks.push(tokio::spawn(async move {
            run(&p, "http", json!({ "url": url })).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(output(&r)["status"], 200);
    }
    let elapsed = started.elapsed();
    assert_eq!(peer.request_count(), 1000);
    // The proof of "no thread held": the vendor saw hundreds of requests in
    // flight together, where two executor threads could hold at most two.
    // (About 450 here; wall time is printed, not asserted: see docs/benchmarks.md.)
    assert!(
        peer.max_in_flight() >= 100,
        "only {} in flight at once",
        peer.max_in_flight()
    );
    eprintln!(
        "1000 steps against a 200 ms vendor took {elapsed:?}, max in flight {}",
        peer.max_in_flight()
    );
}
