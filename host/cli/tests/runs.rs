//! The `allama playbook run` / `allama runs …` commands around child runs,
//! cancels after a crash and recordings of attempts their timeout cut off.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use allama_test_peer::{Peer, Recorded, Reply, Router};
use serde_json::Value;

mod common;
use common::{allama, bounded, ok, text};

fn write(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn show(data: &Path, playbooks: &Path, run: &str) -> Value {
    let out = allama()
        .args(["runs", "show", run, "--json", "--data-dir"])
        .arg(data)
        .arg("--playbooks")
        .arg(playbooks)
        .output()
        .unwrap();
    serde_json::from_str(&ok(&out)).unwrap()
}

fn run_ids(data: &Path) -> Vec<String> {
    let out = allama()
        .args(["runs", "list", "--json", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    ok(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

const PARENT: &str = "id: parent\nsteps:\n  - { id: sub, playbook: gated }\noutputs:\n  by: ${{ steps.sub.output.by }}\n";
const GATED: &str = r#"id: gated
steps:
  - id: ok
    approval:
      approvers: { roles: [responder] }
      message: "Go?"
outputs:
  by: ${{ steps.ok.output.by }}
"#;

#[test]
fn a_childs_approval_pauses_the_parent_and_deciding_it_finishes_both() {
    let dir = tempfile::tempdir().unwrap();
    let books = dir.path().join("playbooks");
    std::fs::create_dir_all(&books).unwrap();
    let parent = write(&books, "parent.yaml", PARENT);
    write(&books, "gated.yaml", GATED);
    let data = dir.path().join("data");

    // Paused, not hung: exit 3 and the command that carries on.
    let out = bounded(
        allama()
            .args(["playbook", "run"])
            .arg(&parent)
            .arg("--data-dir")
            .arg(&data),
        120,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let ids = run_ids(&data);
    let root = ids
        .iter()
        .find(|i| !i.contains('~'))
        .expect("the parent run")
        .clone();
    let child = format!("{root}~sub");
    assert!(ids.contains(&child), "{ids:?}");
    let said = text(&out);
    assert!(
        said.contains(&format!("allama runs approve {child} ok")),
        "{said}"
    );

    // Deciding the child's step carries the parent to its end too.
    let out = bounded(
        allama()
            .args([
                "runs",
                "approve",
                &child,
                "ok",
                "--as",
                "dana",
                "--role",
                "responder",
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--playbooks")
            .arg(&books),
        120,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = show(&data, &books, &root);
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["outputs"]["by"], "dana", "{shown}");

    // --decide reaches a step of the child playbook.
    let out = bounded(
        allama()
            .args(["playbook", "run"])
            .arg(&parent)
            .args(["--decide", "ok=approve", "--data-dir"])
            .arg(&data),
        120,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("succeeded"), "{}", text(&out));
}

fn effects_playbook(books: &Path, peer: &Peer, extra: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(books).unwrap();
    write(
        books,
        "effects.yaml",
        &format!(
            "id: effects\nsteps:\n  - id: a\n    uses: effects/request@1\n{extra}    with: {{ method: POST, url: \"{}\", json: {{ n: 1 }}, idempotency_header: Idempotency-Key }}\n",
            peer.url("/effects")
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_crashed_run_does_not_send_its_interrupted_request_again() {
    // The vendor never answers in time: the step is in flight when allama dies.
    let peer = Peer::start(Router::new().route("POST", "/effects", |_: &Recorded| {
        Reply::json(200, serde_json::json!({})).delay(Duration::from_secs(120))
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let packages = common::http_package(dir.path(), peer.addr().port());
    let books = dir.path().join("playbooks");
    let file = effects_playbook(&books, &peer, "");
    let data = dir.path().join("data");
    let mut running = allama()
        .args(["playbook", "run"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--packages")
        .arg(&packages)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(120);
    while peer.request_count() == 0 {
        assert!(Instant::now() < until, "the step never reached the peer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.kill().unwrap(); // SIGKILL
    running.wait().unwrap();
    let id = run_ids(&data).remove(0);
    // The attempt's `task_started` may or may not have been durable yet.
    let task_starts = |shown: &Value| {
        shown["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "task_started")
            .count()
    };
    let before = task_starts(&show(&data, &books, &id));

    let out = tokio::task::spawn_blocking({
        let (data, packages, books, id) =
            (data.clone(), packages.clone(), books.clone(), id.clone());
        move || {
            bounded(
                allama()
                    .args(["runs", "cancel", &id, "--data-dir"])
                    .arg(&data)
                    .arg("--packages")
                    .arg(&packages)
                    .arg("--playbooks")
                    .arg(&books),
                120,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{id}: cancelled")),
        "{}",
        text(&out)
    );
    let shown = show(&data, &books, &id);
    assert_eq!(shown["status"], "cancelled", "{shown}");
    assert_eq!(
        task_starts(&shown),
        before,
        "the interrupted attempt was dispatched again: {shown}"
    );
    let events = shown["events"].as_array().unwrap();
    assert_eq!(
        events.last().unwrap()["event"],
        "cancel_requested",
        "{shown}"
    );
    assert_eq!(peer.request_count(), 1);

    // A finished run has nothing left to cancel.
    let again = allama()
        .args(["runs", "cancel", &id, "--data-dir"])
        .arg(&data)
        .arg("--playbooks")
        .arg(&books)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).contains("has already finished (cancelled)"),
        "{}",
        text(&again)
    );
    let unknown = allama()
        .args(["runs", "cancel", "r-no-such", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        text(&unknown).contains("no run r-no-such"),
        "{}",
        text(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_off_by_its_timeout_is_recorded_and_replays() {
    // The first request hangs past the step's timeout; the retry is answered.
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let peer = Peer::start(
        Router::new().route("POST", "/effects", move |_: &Recorded| {
            let reply = Reply::json(200, serde_json::json!({"verdict": "clean"}));
            if s.fetch_add(1, Ordering::SeqCst) == 0 {
                reply.delay(Duration::from_secs(30))
            } else {
                reply
            }
        }),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let packages = common::http_package(dir.path(), peer.addr().port());
    let books = dir.path().join("playbooks");
    let file = effects_playbook(&books, &peer, "    timeout: 300ms\n");
    let rec = dir.path().join("rec");
    let out = tokio::task::spawn_blocking({
        let (file, packages, rec) = (file.clone(), packages.clone(), rec.clone());
        move || {
            bounded(
                allama()
                    .args(["playbook", "run"])
                    .arg(&file)
                    .arg("--packages")
                    .arg(&packages)
                    .arg("--record")
                    .arg(&rec),
                120,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("expected.json")).unwrap()).unwrap();
    assert_eq!(
        expected["cut_off"],
        serde_json::json!(["a#1"]),
        "{expected}"
    );
    let tapes: Value =
        serde_json::from_str(&std::fs::read_to_string(rec.join("tapes.json")).unwrap()).unwrap();
    assert_eq!(
        tapes["a#1"],
        serde_json::json!([]),
        "cut before any answer: {tapes}"
    );
    assert_eq!(tapes["a#2"].as_array().map(Vec::len), Some(1), "{tapes}");

    let test = |rec: &Path| {
        allama()
            .args(["playbook", "test"])
            .arg(&file)
            .arg("--packages")
            .arg(&packages)
            .arg("--recording")
            .arg(rec)
            .output()
            .unwrap()
    };
    let replayed = test(&rec);
    assert_eq!(replayed.status.code(), Some(0), "{}", text(&replayed));
    assert!(text(&replayed).contains("ok "), "{}", text(&replayed));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "replay never reaches the network"
    );

    // Without the cut-off mark the first attempt no longer fits its recording.
    let mut changed = expected.clone();
    changed.as_object_mut().unwrap().remove("cut_off");
    std::fs::write(rec.join("expected.json"), changed.to_string()).unwrap();
    let failed = test(&rec);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(text(&failed).contains("a#1"), "{}", text(&failed));
}
