//! `allama bench runtime`: what one isolated step costs on this machine.
//!
//! In one run, with the same trivial component (it parses its JSON input):
//! (a) bare wasmtime — `InstancePre` instantiate + call, same pooling config,
//!     WASI only, nothing else;
//! (b) a full Allama step — store, limits, every capability linked, audit
//!     sink, epoch deadline, output parsed;
//! (c) steps per second with 2 workers;
//! (d) cold start: 50 distinct precompiled components loaded from the cache.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allama_grant::Grant;
use allama_runtime::audit::MemoryAuditSink;
use allama_runtime::bindings::ActionPre;
use allama_runtime::bindings::allama::action::types::Context as WitContext;
use allama_runtime::capability::kv::MemoryKv;
use allama_runtime::capability::secrets::MemorySecretStore;
use allama_runtime::{Package, PackageSpec, Runtime, RuntimeConfig, StepContext};
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Arguments of `allama bench runtime`.
#[derive(clap::Args)]
pub struct Args {
    /// Steps measured for each latency figure.
    #[arg(long, default_value_t = 20_000)]
    iterations: usize,
    /// Seconds the throughput run lasts.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Components loaded for the cold-start figure.
    #[arg(long, default_value_t = 50)]
    components: usize,
}

const INPUT: &str =
    r#"{"indicator":"203.0.113.7","kind":"ip","tags":["phishing","c2"],"score":87}"#;

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn wit_ctx() -> WitContext {
    WitContext {
        run_id: "bench".into(),
        step_id: "bench".into(),
        idempotency_key: "bench/bench".into(),
        attempt: 1,
    }
}

/// wasmtime has its own error type; bring it to the binary edge.
trait Wasm<T> {
    fn wasm(self, what: &str) -> anyhow::Result<T>;
}

impl<T> Wasm<T> for wasmtime::Result<T> {
    fn wasm(self, what: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{what}: {e:#}"))
    }
}

async fn bare_call(
    pre: &ActionPre<Bare>,
    engine: &wasmtime::Engine,
    ctx: &WitContext,
    action: &str,
    input: &String,
) -> anyhow::Result<()> {
    let mut store = Store::new(
        engine,
        Bare {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = pre
        .instantiate_async(&mut store)
        .await
        .wasm("instantiating (bare)")?;
    let out = instance
        .call_run(&mut store, action, input, ctx)
        .await
        .wasm("calling run (bare)")?;
    out.map_err(|e| anyhow::anyhow!("bench action failed: {}", e.message))?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// A distinct component per index: the bench component with a custom
/// section appended, so each has its own digest and cache entry.
fn variant(wasm: &[u8], i: usize) -> Vec<u8> {
    let mut out = wasm.to_vec();
    out.extend(custom_section("allama-bench-variant", &i.to_le_bytes()));
    out
}

/// A custom section (id 0): ignored by wasmtime, counted by digests.
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = vec![0];
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// p50 of a trivial Python step (the example's `echo`, which parses its JSON
/// input), on a warm runtime. The component (about 20 MB) is read from the
/// build tree rather than embedded; compiled code is cached across runs.
async fn python_p50_us(n: usize) -> anyhow::Result<Option<f64>> {
    let path = std::path::Path::new(allama_guests::PYTHON_EXAMPLE);
    if !path.exists() {
        return Ok(None);
    }
    let cache = std::env::temp_dir().join("allama-bench-cache");
    let config = RuntimeConfig {
        cache_dir: Some(cache),
        max_concurrent_steps: 4,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config, Arc::new(MemoryAuditSink::new()))?;
    let component = runtime.load_file(path)?;
    let package = runtime.bind(
        &component,
        PackageSpec {
            name: "python-bench".into(),
            grant: Grant::from_toml_str("[limits]\nmemory_mib = 64", "bench")?,
            secrets: Arc::new(MemorySecretStore::new()),
            kv: Arc::new(MemoryKv::new()),
            kv_namespace: None,
        },
    )?;
    let ctx = StepContext {
        run_id: "bench".into(),
        step_id: "py".into(),
        idempotency_key: "bench/py".into(),
        attempt: 1,
    };
    for _ in 0..50 {
        package
            .run("echo", INPUT, &ctx)
            .await
            .outcome
            .map_err(|e| anyhow::anyhow!("python bench step failed: {e}"))?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = package.run("echo", INPUT, &ctx).await;
        times.push(t.elapsed());
        r.outcome
            .map_err(|e| anyhow::anyhow!("python bench step failed: {e}"))?;
    }
    times.sort();
    Ok(Some(percentile(&times, 0.5)))
}

/// Median time to open and verify a signed package of about 5 MB: parse,
/// hash, check the signature against a trust policy, parse the manifest.
fn verify_package_ms(wasm: &[u8]) -> anyhow::Result<f64> {
    use allama_package::{Package, PackageFile, SigningKey, TrustPolicy};
    let mut component = variant(wasm, 0);
    let pad = (5usize << 20).saturating_sub(component.len() + 64);
    component.extend(custom_section("allama-bench-padding", &vec![0x5a; pad]));
    let manifest = "[package]\nname = \"bench\"\nversion = \"1.0.0\"\npublisher = \"allama\"\n\n\
                    [[actions]]\nname = \"bench\"\n\n[capabilities.http]\nallow = [\"https://api.example.com\"]\n";
    let mut file = PackageFile {
        manifest: manifest.as_bytes().to_vec(),
        files: Default::default(),
        component,
        signatures: vec![],
    };
    let (key, _) = SigningKey::generate()?;
    allama_package::add_signature(&mut file, &key);
    let bytes = file.to_bytes();
    let mut policy = TrustPolicy {
        require_signatures: true,
        ..Default::default()
    };
    policy
        .publishers
        .insert("allama".into(), vec![key.public_key()]);
    let mut times = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let p = Package::verify(&bytes, "bench.allama", &policy)?;
        times.push(t.elapsed());
        anyhow::ensure!(
            p.signers.iter().any(|s| s.trusted),
            "the bench package did not verify"
        );
    }
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64() * 1e3)
}

fn bind(
    runtime: &Runtime,
    component: &Arc<allama_runtime::LoadedComponent>,
) -> anyhow::Result<Package> {
    Ok(runtime.bind(
        component,
        PackageSpec {
            name: "bench".into(),
            grant: Grant::deny_all(),
            secrets: Arc::new(MemorySecretStore::new()),
            kv: Arc::new(MemoryKv::new()),
            kv_namespace: None,
        },
    )?)
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let wasm = allama_guests::BENCH_WASM;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(MemoryAuditSink::new()))?;
    let engine = runtime.engine().clone();
    let component = runtime.load("bench", wasm)?;
    let package = Arc::new(bind(&runtime, &component)?);

    // (a) the same component, the same engine and pool, a linker with WASI only.
    let raw = Component::new(&engine, wasm).wasm("compiling the bench component")?;
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).wasm("linking WASI")?;
    linker
        .define_unknown_imports_as_traps(&raw)
        .wasm("linking")?;
    let bare_pre = ActionPre::new(linker.instantiate_pre(&raw).wasm("linking")?)
        .wasm("typing the bench export")?;
    let (action, input) = ("bench".to_string(), INPUT.to_string());

    let ctx = wit_ctx();
    let step_ctx = StepContext {
        run_id: "bench".into(),
        step_id: "bench".into(),
        idempotency_key: "bench/bench".into(),
        attempt: 1,
    };
    let n = args.iterations.max(100);
    let (bare, step) = rt.block_on(async {
        // Warm both paths, then interleave rounds so drift hits both alike.
        for _ in 0..1000 {
            bare_call(&bare_pre, &engine, &ctx, &action, &input).await?;
            let r = package.run("bench", INPUT, &step_ctx).await;
            r.outcome
                .map_err(|e| anyhow::anyhow!("bench step failed: {e}"))?;
        }
        let mut bare = Vec::with_capacity(n);
        let mut step = Vec::with_capacity(n);
        let rounds = 10;
        for _ in 0..rounds {
            for _ in 0..n / rounds {
                let t = Instant::now();
                bare_call(&bare_pre, &engine, &ctx, &action, &input).await?;
                bare.push(t.elapsed());
            }
            for _ in 0..n / rounds {
                let t = Instant::now();
                let r = package.run("bench", INPUT, &step_ctx).await;
                step.push(t.elapsed());
                r.outcome
                    .map_err(|e| anyhow::anyhow!("bench step failed: {e}"))?;
            }
        }
        anyhow::Ok((bare, step))
    })?;
    let (mut bare, mut step) = (bare, step);
    bare.sort();
    step.sort();
    let (bare_p50, bare_p99) = (percentile(&bare, 0.5), percentile(&bare, 0.99));
    let (step_p50, step_p99) = (percentile(&step, 0.5), percentile(&step, 0.99));
    let ratio = step_p50 / bare_p50;

    // (c) two workers, each running steps back to back.
    let window = Duration::from_secs_f64(args.seconds);
    let total: u64 = rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let package = package.clone();
            let step_ctx = step_ctx.clone();
            tasks.push(tokio::spawn(async move {
                let mut count = 0u64;
                while start.elapsed() < window {
                    let r = package.run("bench", INPUT, &step_ctx).await;
                    if r.outcome.is_ok() {
                        count += 1;
                    }
                }
                count
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap_or(0);
        }
        total
    });
    let steps_per_s = total as f64 / window.as_secs_f64();

    // (d) cold start: compile variants into a fresh cache, then a new runtime
    // (new engine, as after a restart) loads them all from it.
    let cache = tempfile::tempdir()?;
    let variants: Vec<Vec<u8>> = (0..args.components).map(|i| variant(wasm, i)).collect();
    {
        let config = RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            max_concurrent_steps: 16,
            ..RuntimeConfig::default()
        };
        let warm = Runtime::new(config, Arc::new(MemoryAuditSink::new()))?;
        for (i, v) in variants.iter().enumerate() {
            warm.load(&format!("variant-{i}"), v)?;
        }
    }
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        max_concurrent_steps: 16,
        ..RuntimeConfig::default()
    };
    let cold = Runtime::new(config, Arc::new(MemoryAuditSink::new()))?;
    let t = Instant::now();
    let mut hits = 0;
    for (i, v) in variants.iter().enumerate() {
        let c = cold.load(&format!("variant-{i}"), v)?;
        hits += usize::from(c.cache == allama_runtime::cache::CacheOutcome::Hit);
    }
    let cold_ms = t.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        hits == variants.len(),
        "only {hits} of {} components came from the cache",
        variants.len()
    );

    let verify_ms = verify_package_ms(wasm)?;
    let python_p50_us = rt.block_on(python_p50_us(n.min(5000)))?;

    println!(
        "Allama runtime benchmark ({} cores, wasmtime 48, {} steps per latency figure)",
        cores(),
        bare.len()
    );
    println!(
        "(a) bare wasmtime instantiate + call      p50 {bare_p50:>8.2} µs   p99 {bare_p99:>8.2} µs"
    );
    println!(
        "(b) full Allama isolated step             p50 {step_p50:>8.2} µs   p99 {step_p99:>8.2} µs   b/a {ratio:.2}"
    );
    println!("(c) steps per second, 2 workers           {steps_per_s:>10.0}");
    println!(
        "(d) cold start, {} components from cache  {cold_ms:>8.1} ms",
        variants.len()
    );
    println!("(e) verify a signed 5 MB package          {verify_ms:>8.2} ms (median of 21)");
    match python_p50_us {
        Some(p) => println!("(f) the same trivial action in Python     p50 {p:>8.2} µs"),
        None => println!(
            "(f) the Python example component was not found: build the workspace (scripts/test) first"
        ),
    }
    println!(
        "BENCH runtime bare_p50_us={bare_p50:.2} step_p50_us={step_p50:.2} step_p99_us={step_p99:.2} ratio={ratio:.2} steps_per_s={steps_per_s:.0} cold_{}_ms={cold_ms:.1} verify_ms={verify_ms:.2}{}",
        variants.len(),
        python_p50_us
            .map(|p| format!(" python_p50_us={p:.0}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
