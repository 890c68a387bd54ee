//! Durability under `kill -9`: a real `allama` process runs playbooks whose
//! steps POST to a local vendor peer; the process is killed at pseudo-random
//! points at least 20 times and restarted with `allama runs resume`. In the
//! end every run has finished, and the peer's log proves that every completed
//! step acted exactly once: the peer deduplicates by idempotency key (as
//! Stripe-style APIs do), each key's effect was applied once, and no request
//! for a step arrived after the one whose answer the run accepted (a
//! completed step never ran again).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allama_test_peer::{Peer, Recorded, Reply, Router};

mod common;
use common::{allama, ok};
use serde_json::{Value, json};

/// What the peer saw: every request's serial number by idempotency key.
#[derive(Default)]
struct Ledger {
    next: u64,
    by_key: BTreeMap<String, Vec<u64>>,
    /// Requests that came without a key (must be none).
    unkeyed: u64,
}

/// A small deterministic generator, so a failure can be reproduced.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn playbook(dir: &Path, peer: &Peer) -> PathBuf {
    let with = |step: &str| {
        format!(
            "{{ method: POST, url: \"{}\", json: {{ step: {step} }}, idempotency_header: Idempotency-Key }}",
            peer.url("/effects")
        )
    };
    let yaml = format!(
        r#"id: effects
steps:
  - id: a
    uses: effects/request@1
    with: {a}
  - id: b
    needs: a
    uses: effects/request@1
    with: {b}
  - id: c
    needs: a
    uses: effects/request@1
    with: {c}
  - id: fan
    needs: [b, c]
    for_each: ${{{{ [1, 2, 3] }}}}
    concurrency: 1
    uses: effects/request@1
    with: {fan}
  - id: d
    needs: fan
    uses: effects/request@1
    with: {d}
"#,
        a = with("a"),
        b = with("b"),
        c = with("c"),
        fan = with("fan"),
        d = with("d"),
    );
    let path = dir.join("playbooks").join("effects.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Kills `child` after `delay`, unless it ends first. Returns whether it was
/// still working when killed. A process that ends by itself must end well,
/// or with 1: some run failed (a step quarantined after three crashes).
fn kill_after(mut child: Child, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            assert!(
                matches!(status.code(), Some(0 | 1)),
                "allama ended with {status}: {err}"
            );
            return false;
        }
        if Instant::now() >= until {
            // SIGKILL: no destructors, no flush, no goodbye.
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_nothing_and_repeats_nothing() {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let l = ledger.clone();
    let peer = Peer::start(
        Router::new().route("POST", "/effects", move |r: &Recorded| {
            let mut l = l.lock().unwrap();
            l.next += 1;
            let serial = l.next;
            let Some(key) = r.header("idempotency-key").map(str::to_string) else {
                l.unkeyed += 1;
                return Reply::error(400, "Idempotency-Key is required");
            };
            let seen = l.by_key.entry(key).or_default();
            seen.push(serial);
            // A deduplicating vendor: the effect is the first request's.
            let effect = seen[0];
            Reply::json(200, json!({"serial": serial, "effect": effect}))
                .delay(Duration::from_millis(20 + serial * 7919 % 60))
        }),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let packages = common::http_package(dir.path(), peer.addr().port());
    let file = playbook(dir.path(), &peer);
    let data = dir.path().join("data");
    let env = |c: &mut Command| {
        c.arg("--data-dir")
            .arg(&data)
            .arg("--packages")
            .arg(&packages)
            .arg("--playbooks")
            .arg(file.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    };

    let mut rng = Lcg(0x005e_ed0f_a11a);
    let mut kills = 0;
    let mut kills_mid_step = 0;
    let runs_per_batch = 30;
    for round in 0..80 {
        if kills >= 24 && kills_mid_step >= 20 {
            break;
        }
        // Every other round starts new runs; the others carry on the unfinished ones.
        let mut c = allama();
        if round % 2 == 0 {
            c.args(["playbook", "run"]).arg(&file).args([
                "--quiet",
                "--count",
                &runs_per_batch.to_string(),
            ]);
        } else {
            c.args(["runs", "resume", "--quiet"]);
        }
        env(&mut c);
        let child = tokio::task::spawn_blocking({
            let delay = Duration::from_millis(30 + rng.next(300));
            let child = c.spawn().unwrap();
            move || kill_after(child, delay)
        });
        let before = ledger.lock().unwrap().next;
        let killed = child.await.unwrap();
        let after = ledger.lock().unwrap().next;
        if killed {
            kills += 1;
            // Steps were being executed while it died.
            if after > before {
                kills_mid_step += 1;
            }
        }
    }
    assert!(
        kills >= 20 && kills_mid_step >= 20,
        "only {kills} kills landed while allama was working ({kills_mid_step} while steps ran); the test proves nothing"
    );

    // Restart once more and let everything finish (a hang is a failure, not a wait).
    let mut c = allama();
    c.args(["runs", "resume", "--quiet"]);
    env(&mut c);
    let child = c.spawn().unwrap();
    let hung = tokio::task::spawn_blocking(move || kill_after(child, Duration::from_secs(120)))
        .await
        .unwrap();
    if hung {
        let kept = dir.keep();
        panic!(
            "the final resume did not finish within 2 minutes; the data is kept in {}",
            kept.display()
        );
    }

    let list = {
        let mut c = allama();
        c.args(["runs", "list", "--json", "--limit", "100000"])
            .arg("--data-dir")
            .arg(&data);
        ok(&c.output().unwrap())
    };
    let runs: Vec<Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        runs.len() >= runs_per_batch,
        "only {} runs were ever started",
        runs.len()
    );
    let mut accepted: BTreeMap<String, u64> = BTreeMap::new();
    // Runs a step of which was cut short by three crashes: the engine
    // quarantines such a step (it may be what kills the process) and fails
    // the run. Random kills can hit one task three times; that is a finished
    // run too, and its completed steps must still have acted once.
    let mut quarantined = BTreeSet::new();
    let mut tasks_expected = 0;
    for r in &runs {
        let id = r["id"].as_str().unwrap();
        match r["status"].as_str() {
            Some("succeeded") => tasks_expected += 7,
            Some("failed")
                if r["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("quarantined")) =>
            {
                quarantined.insert(id.to_string());
            }
            // Killed between its index entry and its first event: its start
            // was never acknowledged and nothing of it ran.
            Some("failed")
                if r["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("never started")) =>
            {
                // No history to show: nothing of it ran.
                continue;
            }
            _ => panic!("run {id} did not finish well: {r}"),
        }
        let mut c = allama();
        c.args(["runs", "show", id, "--json"])
            .arg("--data-dir")
            .arg(&data)
            .arg("--playbooks")
            .arg(file.parent().unwrap());
        let shown: Value = serde_json::from_str(&ok(&c.output().unwrap())).unwrap();
        for e in shown["events"].as_array().unwrap() {
            if e["event"] != "task_succeeded" {
                continue;
            }
            let key = match e["item"].as_u64() {
                Some(i) => format!("{id}/{}/{i}", e["step"].as_str().unwrap()),
                None => format!("{id}/{}", e["step"].as_str().unwrap()),
            };
            let serial = e["output"]["json"]["serial"].as_u64().unwrap();
            assert!(
                accepted.insert(key.clone(), serial).is_none(),
                "{key} completed twice"
            );
            if quarantined.contains(id) {
                tasks_expected += 1;
            }
        }
    }
    // 5 steps, one of them over 3 items: 7 tasks a succeeded run.
    assert_eq!(accepted.len(), tasks_expected);
    assert!(
        quarantined.len() < runs.len(),
        "every run was quarantined: nothing was carried to its end"
    );

    let l = ledger.lock().unwrap();
    assert_eq!(l.unkeyed, 0, "every request carries its idempotency key");
    for key in l.by_key.keys() {
        let run = key.split('/').next().unwrap();
        assert!(
            accepted.contains_key(key) || quarantined.contains(run),
            "{key} reached the peer but never completed, in a run that succeeded"
        );
    }
    let mut repeated = 0;
    for (key, serial) in &accepted {
        let seen = &l.by_key[key];
        assert_eq!(
            seen.last(),
            Some(serial),
            "{key}: a request arrived after the one whose answer the run accepted: {seen:?}"
        );
        repeated += seen.len() - 1;
    }
    // A repeat carried the same key as the first request (no key outside the
    // completed set), so a deduplicating vendor acted once per task.
    eprintln!(
        "{kills} kills ({kills_mid_step} while steps ran); {} runs ({} quarantined), {} tasks, {} requests ({repeated} repeated after a crash)",
        runs.len(),
        quarantined.len(),
        accepted.len(),
        l.next
    );
}
