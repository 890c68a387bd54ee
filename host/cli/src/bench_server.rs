//! `allama bench server`: a whole server on loopback, on a fresh data
//! directory, driven by signed webhooks.
//!
//! The server is the real one (`allama_server::open` + `serve`: HTTP,
//! signature check, delivery dedup, the durable start, the engine, the
//! audit chain), with a 3-step playbook of the trivial bench component
//! (two parallel steps, then one reading both) behind a Standard Webhooks
//! trigger. Connections post deliveries as fast as they are answered; each
//! delivery's latency runs from just before it is sent to its run's
//! `RunFinished` update. The load generator (one bare hyper connection per
//! `--connections`, deliveries signed before the clock starts) shares the
//! machine's cores with the server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;

use allama_engine::driver::Update;

use crate::bench_engine::{cpu_seconds, rss_mb};

/// Arguments of `allama bench server`.
#[derive(clap::Args)]
pub struct Args {
    /// Webhook deliveries to send (each starts one run).
    #[arg(long, default_value_t = 20_000)]
    runs: usize,
    /// Connections posting at once (40: on 2 cores, as much throughput as
    /// 48 or 64 give, with less queueing in the p99; see docs/benchmarks.md).
    #[arg(long, default_value_t = 40)]
    connections: usize,
    /// Where to put the data directory (default: a fresh directory under
    /// the system temp dir, removed afterwards).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

const PLAYBOOK: &str = r#"
id: bench-three
triggers:
  - webhook: { signature: standard }
steps:
  - { id: a, uses: bench/bench@1, with: { ip: "${{ trigger.ip }}" } }
  - { id: b, uses: bench/bench@1, with: { ip: "${{ trigger.ip }}" } }
  - { id: c, needs: [a, b], uses: bench/bench@1, with: { a: "${{ steps.a.output }}" } }
"#;

const MANIFEST: &str = r#"[package]
name = "bench"
version = "1.0.0"
publisher = "allama-bench"
description = "The trivial action the benchmarks measure"

[[actions]]
name = "bench"
description = "Returns a little JSON"
"#;

const KEY: &str = "bench-webhook-signing-key";

fn bench_package() -> anyhow::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("allama.toml"), MANIFEST)?;
    let (file, _) = allama_package::build(dir.path(), allama_guests::BENCH_WASM.to_vec())?;
    Ok(file.to_bytes())
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    if args.runs == 0 || args.connections == 0 {
        bail!("--runs and --connections must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("allama-bench-server")
                .tempdir()?;
            tmp.path().join("data")
        }
    };
    rt.block_on(run(args, dir))
}

async fn run(args: Args, dir: std::path::PathBuf) -> anyhow::Result<ExitCode> {
    let mut config = allama_server::ServerConfig::new(&dir);
    config.run_scheduler = false;
    let opened = allama_server::open(&config)
        .await
        .with_context(|| format!("starting a server on {}", dir.display()))?;
    let state = opened.state.clone();
    let ws = allama_server::FIRST_WORKSPACE;
    let mut demo = allama_server::demo::Demo::default();
    demo.packages.push(bench_package()?);
    demo.playbooks
        .push(("bench-three.yaml".into(), PLAYBOOK.into()));
    allama_server::demo::install(&state, ws, demo)
        .await
        .map_err(|e| anyhow::anyhow!("installing the bench playbook: {e}"))?;
    state
        .vault
        .set(ws, "WEBHOOK_BENCH_THREE", KEY.as_bytes())
        .context("setting the webhook key")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let path = format!("/hooks/{ws}/bench-three");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(allama_server::serve(listener, state.clone(), async move {
        let _ = stop_rx.await;
    }));

    // When each run finished and whether it succeeded, from the engine's
    // updates; `seen` counts finishes so the phase's end needs no polling.
    let finished: Arc<Mutex<HashMap<String, (Instant, bool)>>> = Arc::default();
    let missed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0usize);
    let mut updates = state.runner.engine.subscribe();
    let watcher = tokio::spawn({
        let (finished, missed) = (finished.clone(), missed.clone());
        async move {
            loop {
                match updates.recv().await {
                    Ok(Update::RunFinished { run, status }) => {
                        let ok = status == allama_engine::RunStatus::Succeeded;
                        finished
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(run, (Instant::now(), ok));
                        seen_tx.send_modify(|n| *n += 1);
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        missed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                        // Counted as seen: the end of the phase is then
                        // found by asking the engine about each run.
                        seen_tx.send_modify(|c| *c += n as usize);
                    }
                    Err(_) => break,
                }
            }
        }
    });

    // Warm up: compiled code, pool slots, sled trees.
    let warmup = deliveries("warmup", 500.min(args.runs));
    let expected = warmup.len() + args.runs;
    send_all(addr, &path, warmup, args.connections).await?;

    let batch = deliveries("run", args.runs);
    let rss_before = rss_mb();
    let cpu_before = cpu_seconds();
    let t0 = Instant::now();
    let sent = send_all(addr, &path, batch, args.connections).await?;
    let accepted_in = t0.elapsed();
    // Every run must finish (bounded: a stuck run is a failure). The CPU
    // figure is read as the last one finishes, before the checks below.
    tokio::time::timeout(Duration::from_secs(120), seen.wait_for(|n| *n >= expected))
        .await
        .context("runs did not finish within 120 s")??;
    let cpu_after = cpu_seconds();
    let finished_map = finished.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (run, _) in &sent {
        match finished_map.get(run) {
            Some((_, true)) => {}
            Some((_, false)) => bail!("run {run} did not succeed"),
            // Its update was missed: the engine says how it ended.
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                let done = tokio::time::timeout(left, state.runner.engine.wait(run))
                    .await
                    .context("runs did not finish within 120 s")??;
                if done.status != allama_engine::RunStatus::Succeeded {
                    bail!("run {run} ended {}", done.status.as_str());
                }
            }
        }
    }
    let mut lat: Vec<f64> = Vec::with_capacity(sent.len());
    let mut last = t0;
    for (run, at) in &sent {
        if let Some((done, _)) = finished_map.get(run) {
            lat.push(done.saturating_duration_since(*at).as_secs_f64() * 1e3);
            last = last.max(*done);
        }
    }
    let missed = missed.load(std::sync::atomic::Ordering::Relaxed);
    if lat.is_empty() {
        bail!("no run's finish was seen ({missed} updates missed)");
    }
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    let (p50, p99) = (p(0.50), p(0.99));
    let completed_in = last.saturating_duration_since(t0);
    // Over the phase, server and load generator together.
    let cpu_us_per_run = (cpu_after - cpu_before) * 1e6 / args.runs as f64;
    let webhooks_per_s = args.runs as f64 / accepted_in.as_secs_f64();
    let runs_per_s = args.runs as f64 / completed_in.as_secs_f64();
    let rss = rss_mb();
    eprintln!(
        "{} signed deliveries over {} connections: all accepted in {:.2} s, all runs finished in {:.2} s",
        args.runs,
        args.connections,
        accepted_in.as_secs_f64(),
        completed_in.as_secs_f64()
    );
    eprintln!(
        "webhook sent → run finished: p50 {p50:.3} ms, p99 {p99:.3} ms ({} runs timed{}); RSS {rss:.0} MB ({:+.0} MB over the phase); {} group commits; {cpu_us_per_run:.0} µs of CPU a run (server and generator)",
        lat.len(),
        if missed > 0 {
            format!(", {missed} updates missed")
        } else {
            String::new()
        },
        rss - rss_before,
        opened.store.commits()
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    watcher.abort();
    opened.close().await?;
    println!(
        "BENCH server webhooks_per_s={webhooks_per_s:.0} runs_per_s={runs_per_s:.0} p50_ms={p50:.3} p99_ms={p99:.3} rss_mb={rss:.0}"
    );
    Ok(ExitCode::SUCCESS)
}

/// One webhook delivery, signed before the clock starts: the generator's
/// own work per request is then little more than writing it.
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Bytes,
}

/// `n` deliveries with ids `{prefix}-{i}`, each signed with the trigger's key.
fn deliveries(prefix: &str, n: usize) -> Vec<Delivery> {
    let ts = allama_engine::driver::now_ms() / 1000;
    (0..n)
        .map(|i| {
            let body = json!({ "ip": format!("192.0.2.{}", i % 250) }).to_string();
            let id = format!("{prefix}-{i}");
            let signature =
                allama_server::webhooks::sign_standard(KEY.as_bytes(), &id, ts, body.as_bytes());
            Delivery {
                id,
                timestamp: ts.to_string(),
                signature,
                body: Bytes::from(body),
            }
        })
        .collect()
}

/// Posts the deliveries over `connections` HTTP/1.1 connections (hyper's
/// client connection, no pool), each as soon as the previous one on its
/// connection was answered; returns each run id with the instant its
/// delivery was sent.
async fn send_all(
    addr: SocketAddr,
    path: &str,
    deliveries: Vec<Delivery>,
    connections: usize,
) -> anyhow::Result<Vec<(String, Instant)>> {
    let deliveries = Arc::new(deliveries);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (deliveries, next, path) = (deliveries.clone(), next.clone(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            let conn = tokio::spawn(conn);
            let host = addr.to_string();
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(d) = deliveries.get(i) else { break };
                let req = hyper::Request::post(path.as_str())
                    .header(hyper::header::HOST, host.as_str())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .header("webhook-id", d.id.as_str())
                    .header("webhook-timestamp", d.timestamp.as_str())
                    .header("webhook-signature", d.signature.as_str())
                    .body(Full::new(d.body.clone()))?;
                sender.ready().await?;
                let at = Instant::now();
                // A server that stops answering fails the bench, not hangs it.
                let resp = tokio::time::timeout(Duration::from_secs(60), sender.send_request(req))
                    .await
                    .with_context(|| format!("delivery {} unanswered after 60 s", d.id))??;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                if status != hyper::StatusCode::ACCEPTED {
                    bail!(
                        "delivery {}: {status} {}",
                        d.id,
                        String::from_utf8_lossy(&body)
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                let run = v["run"]
                    .as_str()
                    .context("an accepted delivery without a run id")?
                    .to_string();
                out.push((run, at));
            }
            drop(sender);
            let _ = conn.await;
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all = Vec::with_capacity(deliveries.len());
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}
