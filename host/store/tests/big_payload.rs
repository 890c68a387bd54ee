//! A 20 MB alert through a 5-step playbook on the real sled store: stored
//! once as a content-addressed blob however many steps take it, and memory
//! that does not grow with the number of steps (no copy per step is kept).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allama_engine::{
    Engine, EngineConfig, Executor, Invocation, Outcome, Plan, Plans, RunStatus, RunStore,
};
use allama_store::SledStore;
use serde_json::{Value, json};

const EVENT_BYTES: usize = 20 * 1024 * 1024;

/// Each step gets the whole alert and answers with a digest of it.
const FIVE: &str = r#"
id: big
steps:
  - { id: s1, uses: t/scan@1, with: { alert: "${{ trigger }}", n: 1 } }
  - { id: s2, needs: s1, uses: t/scan@1, with: { alert: "${{ trigger }}", n: 2 } }
  - { id: s3, needs: s2, uses: t/scan@1, with: { alert: "${{ trigger }}", n: 3 } }
  - { id: s4, needs: s3, uses: t/scan@1, with: { alert: "${{ trigger }}", n: 4 } }
  - { id: s5, needs: s4, uses: t/scan@1, with: { alert: "${{ trigger }}", n: 5 } }
outputs:
  lines: ${{ steps.s5.output.lines }}
"#;

/// The same with one step: the yardstick for memory.
const ONE: &str = r#"
id: one
steps:
  - { id: s1, uses: t/scan@1, with: { alert: "${{ trigger }}", n: 1 } }
outputs:
  lines: ${{ steps.s1.output.lines }}
"#;

struct Two(Arc<Plan>, Arc<Plan>);
impl Plans for Two {
    fn plan(&self, id: &str, _digest: Option<&str>) -> Option<Arc<Plan>> {
        [&self.0, &self.1]
            .into_iter()
            .find(|p| p.id() == id)
            .cloned()
    }
}

/// 20 MB of log lines (a Value barely larger than its JSON), distinct per `fill`.
fn alert(fill: char) -> Value {
    let line: String = std::iter::repeat_n(fill, 20 * 1024 - 1).collect();
    let lines: Vec<Value> = (0..1024).map(|_| Value::String(line.clone())).collect();
    json!({"source": "edr", "lines": lines})
}

/// Runs `plan` on `trigger`; returns how much the peak RSS rose, in MB.
async fn peak_growth_mb(engine: &Engine, plan: &Arc<Plan>, trigger: Value) -> (String, u64) {
    reset_peak();
    let before_kb = status_kb("VmRSS:");
    let id = engine
        .start_run(plan.clone(), trigger, json!({}))
        .await
        .unwrap();
    let done = engine.wait(&id).await.unwrap();
    let peak_kb = status_kb("VmHWM:");
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(
        done.output.map(|o| (*o).clone()),
        Some(json!({"lines": 1024}))
    );
    (id, peak_kb.saturating_sub(before_kb) / 1024)
}

/// Counts the lines of the alert each step was given, and how many bytes of
/// input it was handed.
#[derive(Default)]
struct Scan {
    seen: Mutex<Vec<(String, usize)>>,
}

struct ScanExec(Arc<Scan>);
impl Executor for ScanExec {
    fn invoke(&self, inv: Invocation) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let scan = self.0.clone();
        Box::pin(async move {
            let lines = inv.input["alert"]["lines"].as_array().map_or(0, Vec::len);
            scan.seen.lock().unwrap().push((inv.step.clone(), lines));
            Outcome {
                result: Ok(Arc::new(json!({"lines": lines}))),
                duration: Duration::from_micros(1),
            }
        })
    }
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Resets the peak-RSS mark (VmHWM), so it measures from here.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    total
}

// One thread: with glibc's per-thread arenas, a buffer freed on one worker
// is not reused by the next step on another, which would look like growth.
#[tokio::test(flavor = "current_thread")]
async fn a_20_mb_event_is_stored_once_and_not_copied_per_step() {
    let trigger = alert('x');
    let json_len = serde_json::to_vec(&trigger).unwrap().len();
    assert!(json_len >= EVENT_BYTES, "{json_len}");

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let five = Plan::new(allama_playbook::parse(FIVE, "big.yaml").unwrap(), FIVE);
    let one = Plan::new(allama_playbook::parse(ONE, "one.yaml").unwrap(), ONE);
    let scan = Arc::new(Scan::default());
    let engine = Engine::start(
        store.clone(),
        Arc::new(ScanExec(scan.clone())),
        Arc::new(Two(five.clone(), one.clone())),
        EngineConfig::default(),
    )
    .await
    .unwrap();

    // Warm the allocator and the store, then measure one step and five
    // steps, each on an alert of its own (so no blob is already stored).
    peak_growth_mb(&engine, &one, alert('w')).await;
    let (_, one_step_mb) = peak_growth_mb(&engine, &one, alert('y')).await;
    scan.seen.lock().unwrap().clear();
    let (id, grew_mb) = peak_growth_mb(&engine, &five, trigger).await;
    let seen = scan.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|(_, n)| *n == 1024), "{seen:?}");
    engine.shutdown().await;
    store.sync_now().unwrap();

    // Stored once: one blob holds the alert; the trigger and the five step
    // inputs refer to it.
    let big_blobs: Vec<usize> = std::fs::read_dir(dir.path().join("payloads"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len() as usize)
        .filter(|n| *n >= EVENT_BYTES)
        .collect();
    // (The blob is the alert's biggest subtree, its lines; the rest is inline.)
    assert_eq!(
        big_blobs.len(),
        3,
        "each alert's lines are one blob: {big_blobs:?}"
    );
    assert!(big_blobs[0] <= json_len);
    let history: usize = store.history(&id).unwrap().iter().map(Vec::len).sum();
    assert!(
        history < 64 * 1024,
        "the history refers to the blob: {history} bytes"
    );
    // Three 20 MB alerts went through (two of them in warm-up runs); a copy
    // per step of the five-step run would add 100 MB.
    let on_disk = dir_bytes(dir.path());
    assert!(
        on_disk < 2 * 3 * EVENT_BYTES as u64,
        "{} MB on disk for three 20 MB alerts",
        on_disk / (1 << 20)
    );

    // Memory: each step's rendered input is transient (rendered, written as
    // a blob reference, handed over, dropped), so five steps need about what
    // one needs. Keeping a copy per step would add 4 × 20 MB more; the
    // allowance of half that absorbs the allocator's noise.
    eprintln!(
        "peak RSS grew {grew_mb} MB for five steps, {one_step_mb} MB for one; {} MB on disk",
        on_disk / (1 << 20)
    );
    assert!(
        grew_mb < one_step_mb + 40,
        "five steps raised the peak RSS by {grew_mb} MB, one step by {one_step_mb} MB"
    );
}
