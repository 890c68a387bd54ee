//! `allama bench engine`: the durable engine on a real sled store with a real
//! (trivial) Wasm component per step.
//!
//! (a) durable steps/s: many runs of a linear 10-step playbook;
//! (b) runs/s of a 3-step playbook (two parallel steps, then one);
//! (c) p50/p99 latency of one 3-step run at concurrency 1;
//! (d) RSS with 10,000 runs paused on an approval (measured first; they stay
//!     paused while (a)–(c) run).
//!
//! Every step's completion is durable (flush + fdatasync, group-committed)
//! before the next step starts; the figures include that.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use allama_engine::{
    Engine, EngineConfig, Executor, Invocation, Outcome, Plan, Plans, ResumeScope, RunStatus,
};
use allama_grant::Grant;
use allama_runtime::audit::NullAuditSink;
use allama_runtime::capability::kv::MemoryKv;
use allama_runtime::capability::secrets::MemorySecretStore;
use allama_runtime::{Package, PackageSpec, Runtime, RuntimeConfig, StepContext};
use allama_store::SledStore;

/// Arguments of `allama bench engine`.
#[derive(clap::Args)]
pub struct Args {
    /// Runs of the 10-step playbook for (a).
    #[arg(long, default_value_t = 3_000)]
    linear_runs: usize,
    /// Runs of the 3-step playbook for (b).
    #[arg(long, default_value_t = 10_000)]
    runs: usize,
    /// Runs in flight at once for (a) and (b).
    #[arg(long, default_value_t = 1_000)]
    window: usize,
    /// Sequential runs for (c).
    #[arg(long, default_value_t = 1_000)]
    latency_runs: usize,
    /// Runs paused on an approval for (d).
    #[arg(long, default_value_t = 10_000)]
    paused: usize,
    /// Where to put the store (default: a fresh directory under the system
    /// temp dir, removed afterwards).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

const LINEAR: &str = r#"
id: bench-linear
steps:
  - { id: s1, uses: bench/bench@1, with: { n: 1 } }
  - { id: s2, needs: s1, uses: bench/bench@1, with: { n: 2 } }
  - { id: s3, needs: s2, uses: bench/bench@1, with: { n: 3 } }
  - { id: s4, needs: s3, uses: bench/bench@1, with: { n: 4 } }
  - { id: s5, needs: s4, uses: bench/bench@1, with: { n: 5 } }
  - { id: s6, needs: s5, uses: bench/bench@1, with: { n: 6 } }
  - { id: s7, needs: s6, uses: bench/bench@1, with: { n: 7 } }
  - { id: s8, needs: s7, uses: bench/bench@1, with: { n: 8 } }
  - { id: s9, needs: s8, uses: bench/bench@1, with: { n: 9 } }
  - { id: s10, needs: s9, uses: bench/bench@1, with: { n: 10 } }
"#;

const THREE: &str = r#"
id: bench-three
steps:
  - { id: a, uses: bench/bench@1, with: { ip: "${{ trigger.ip }}" } }
  - { id: b, uses: bench/bench@1, with: { ip: "${{ trigger.ip }}" } }
  - { id: c, needs: [a, b], uses: bench/bench@1, with: { a: "${{ steps.a.output }}" } }
"#;

const PAUSED: &str = r#"
id: bench-paused
steps:
  - id: ok
    approval:
      approvers: { roles: [responder] }
      message: "Contain ${{ trigger.host }}?"
  - { id: act, needs: ok, uses: bench/bench@1 }
"#;

struct Bench(Arc<Package>);

impl Executor for Bench {
    fn invoke(&self, inv: Invocation) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let package = self.0.clone();
        Box::pin(async move {
            let ctx = StepContext {
                run_id: inv.run.clone(),
                step_id: inv.step.clone(),
                idempotency_key: inv.idempotency_key.clone(),
                attempt: inv.attempt,
            };
            let input = serde_json::to_string(&*inv.input).unwrap_or_default();
            let report = package.run("bench", &input, &ctx).await;
            Outcome {
                result: report
                    .outcome
                    .map(Arc::new)
                    .map_err(|e| allama_executor::failure_of(&e)),
                duration: report.duration,
            }
        })
    }
}

struct Fixed(Vec<Arc<Plan>>);

impl Plans for Fixed {
    fn plan(&self, id: &str, _digest: Option<&str>) -> Option<Arc<Plan>> {
        self.0.iter().find(|p| p.id() == id).cloned()
    }
}

fn plan(yaml: &str) -> anyhow::Result<Arc<Plan>> {
    let pb = allama_playbook::parse(yaml, "bench").map_err(|d| anyhow::anyhow!("{d}"))?;
    Ok(Plan::new(pb, yaml))
}

/// This process's resident memory, in MB (0 where /proc is missing).
pub(crate) fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time this process has used (user and system), in seconds (0 where
/// /proc is missing). `/proc` counts in USER_HZ ticks, 100 a second on Linux.
pub(crate) fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line; 12 and 13 after `)`.
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// Starts `n` runs with at most `window` in flight; returns the elapsed time.
async fn throughput(
    engine: &Engine,
    plan: &Arc<Plan>,
    n: usize,
    window: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    for i in 0..n {
        while in_flight.len() >= window {
            if let Some(r) = in_flight.join_next().await {
                r??;
            }
        }
        let engine = engine.clone();
        let plan = plan.clone();
        in_flight.spawn(async move {
            let id = engine
                .start_run(
                    plan,
                    json!({ "ip": format!("198.51.100.{}", i % 250) }),
                    Value::Null,
                )
                .await?;
            let done = engine.wait(&id).await?;
            anyhow::ensure!(
                done.status == RunStatus::Succeeded,
                "run {id}: {:?}",
                done.status
            );
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = in_flight.join_next().await {
        r??;
    }
    Ok(started.elapsed())
}

/// Entry point.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let tmp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("allama-bench-engine")
                .tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let store = Arc::new(SledStore::open(&dir)?);
    let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(NullAuditSink))?;
    let component = runtime.load("bench", allama_guests::BENCH_WASM)?;
    let package = Arc::new(runtime.bind(
        &component,
        PackageSpec {
            name: "bench".into(),
            grant: Grant::deny_all(),
            secrets: Arc::new(MemorySecretStore::new()),
            kv: Arc::new(MemoryKv::new()),
            kv_namespace: None,
        },
    )?);
    let (linear, three, paused) = (plan(LINEAR)?, plan(THREE)?, plan(PAUSED)?);
    let plans = Arc::new(Fixed(vec![linear.clone(), three.clone(), paused.clone()]));
    let report = rt.block_on(async {
        let engine = Engine::start(
            store.clone(),
            Arc::new(Bench(package)),
            plans,
            EngineConfig {
                resume: ResumeScope::None,
                ..EngineConfig::default()
            },
        )
        .await?;
        // Warm up: compile caches, pool slots, sled trees.
        throughput(&engine, &three, 200, 100).await?;

        // (d) first, so the figure is the process with its paused runs, not
        // the allocator's leftovers from the throughput phases; the paused
        // runs then stay parked while (a)–(c) run, as on a busy server.
        let before = rss_mb();
        for i in 0..args.paused {
            engine
                .start_run(paused.clone(), json!({ "host": format!("ws-{i}") }), Value::Null)
                .await?;
        }
        // Every run has reached its approval once the inbox holds them all.
        loop {
            let n = engine.pending_approvals().await?.len();
            if n >= args.paused {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rss = rss_mb();
        eprintln!(
            "(d) {} runs paused on an approval: RSS {rss:.0} MB ({:+.0} MB for the paused runs)",
            args.paused,
            rss - before
        );

        let commits0 = store.commits();
        let t = throughput(&engine, &linear, args.linear_runs, args.window).await?;
        let steps_per_s = (args.linear_runs * 10) as f64 / t.as_secs_f64();
        let commits = store.commits() - commits0;
        eprintln!(
            "(a) {} runs × 10 steps in {:.2} s: {steps_per_s:.0} durable steps/s, {commits} commits ({:.0} steps per commit)",
            args.linear_runs,
            t.as_secs_f64(),
            (args.linear_runs * 10) as f64 / commits.max(1) as f64
        );

        let t = throughput(&engine, &three, args.runs, args.window).await?;
        let runs_per_s = args.runs as f64 / t.as_secs_f64();
        eprintln!("(b) {} 3-step runs in {:.2} s: {runs_per_s:.0} runs/s", args.runs, t.as_secs_f64());

        let commits0 = store.commits();
        let mut lat = Vec::with_capacity(args.latency_runs);
        for i in 0..args.latency_runs {
            let t0 = Instant::now();
            let id = engine
                .start_run(three.clone(), json!({ "ip": format!("192.0.2.{}", i % 250) }), Value::Null)
                .await?;
            let done = engine.wait(&id).await?;
            anyhow::ensure!(done.status == RunStatus::Succeeded, "latency run failed");
            lat.push(t0.elapsed());
        }
        lat.sort();
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
        let (p50, p99) = (p(0.50), p(0.99));
        let per_run = (store.commits() - commits0) as f64 / args.latency_runs.max(1) as f64;
        eprintln!(
            "(c) one 3-step run at concurrency 1: p50 {p50:.3} ms, p99 {p99:.3} ms ({per_run:.1} commits a run)"
        );

        engine.shutdown().await;
        Ok::<_, anyhow::Error>((steps_per_s, runs_per_s, p50, p99, rss))
    })?;
    let (steps_per_s, runs_per_s, p50, p99, rss) = report;
    println!(
        "BENCH engine steps_per_s={steps_per_s:.0} runs_per_s={runs_per_s:.0} p50_ms={p50:.3} p99_ms={p99:.3} paused_10k_rss_mb={rss:.0}"
    );
    Ok(ExitCode::SUCCESS)
}
