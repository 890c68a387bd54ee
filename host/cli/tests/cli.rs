//! The `allama` binary, end to end: real components, a real vendor-like peer.

use std::io::Write;
use std::process::{Command, Output};

use allama_test_peer::{Peer, Reply, Router};

fn allama(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allama"))
        .args(args)
        .output()
        .expect("allama runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Run `action` of `component` under a grant written as TOML.
fn with_grant(
    component: &str,
    action: &str,
    grant_toml: &str,
) -> (Output, tempfile::NamedTempFile) {
    let grant = file(grant_toml);
    let o = allama(&[
        "action",
        "run",
        component,
        action,
        "--grant",
        grant.path().to_str().unwrap(),
    ]);
    (o, grant)
}

fn file(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

#[test]
fn runs_an_action_and_prints_its_output() {
    let o = allama(&[
        "action",
        "run",
        allama_guests::CAPS,
        "echo",
        "--input",
        r#"{"indicator":"203.0.113.7"}"#,
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains(r#""indicator": "203.0.113.7""#), "{out}");
    assert!(
        out.contains("capability uses and denials (0, 0 denied)"),
        "{out}"
    );
}

#[test]
fn input_from_a_file_and_json_report() {
    let input = file(r#"{"a": [1, 2, 3]}"#);
    let arg = format!("@{}", input.path().display());
    let o = allama(&[
        "action",
        "run",
        allama_guests::CAPS,
        "echo",
        "--input",
        &arg,
        "--json",
    ]);
    assert!(o.status.success());
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    assert_eq!(report["outcome"]["Ok"]["a"], serde_json::json!([1, 2, 3]));
    assert_eq!(report["package"], "caps");
}

#[test]
fn a_contained_attack_shows_as_a_denial() {
    let o = allama(&["action", "run", allama_guests::HOSTILE, "read-file"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains(r#""escaped": false"#), "{out}");
    assert!(
        out.contains("1 denied") && out.contains("DENIED") && out.contains("filesystem"),
        "{out}"
    );
}

#[test]
fn a_failed_step_exits_1_and_names_package_action_and_limit() {
    let (o, _grant) = with_grant(
        allama_guests::HOSTILE,
        "loop",
        "[limits]\ntimeout_ms = 100\n",
    );
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains(
            "error: package `hostile`, action `loop`: the step exceeded its time limit of 100 ms"
        ),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_with_a_secret_is_shown_without_the_value_and_audited_to_a_file() {
    let peer = Peer::start(Router::any(Reply::echo)).await;
    let port = peer.addr().port();
    let grant = file(&format!(
        "[http]\nallow_private = [\"http://127.0.0.1:{port}\"]\n[secrets.API_KEY]\nhosts = [\"http://127.0.0.1:{port}\"]\n"
    ));
    let audit = tempfile::NamedTempFile::new().unwrap();
    let input = format!(
        r#"{{"url":"{}","headers":[["x-api-key","{{{{secret:API_KEY}}}}"]]}}"#,
        peer.url("/v2/check")
    );
    let args: Vec<String> = vec![
        "action".into(),
        "run".into(),
        allama_guests::CAPS.into(),
        "http".into(),
        "--grant".into(),
        grant.path().display().to_string(),
        "--secret".into(),
        "API_KEY=sup3r-s3cret".into(),
        "--audit-log".into(),
        audit.path().display().to_string(),
        "--input".into(),
        input,
    ];
    let o = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_allama"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(peer.requests()[0].header("x-api-key"), Some("sup3r-s3cret"));
    assert!(
        out.contains(&format!("GET {} -> 200", peer.url("/v2/check")))
            && out.contains("with secrets API_KEY"),
        "{out}"
    );
    assert!(!out.contains("sup3r-s3cret") && !err.contains("sup3r-s3cret"));
    let log = std::fs::read_to_string(audit.path()).unwrap();
    assert!(!log.contains("sup3r-s3cret"));
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"]["capability"] == "secrets" && e["event"]["event"] == "sent")
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"]["capability"] == "http" && e["event"]["status"] == 200)
    );
}

#[test]
fn bad_arguments_exit_2_with_the_field_at_fault() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "action",
                "run",
                allama_guests::CAPS,
                "echo",
                "--input",
                "{not json",
            ],
            "--input is not valid JSON",
        ),
        (
            &[
                "action",
                "run",
                allama_guests::CAPS,
                "echo",
                "--secret",
                "NOVALUE",
            ],
            "must be NAME=VALUE",
        ),
        (
            &[
                "action",
                "run",
                allama_guests::CAPS,
                "echo",
                "--secret",
                "1BAD=x",
            ],
            "not a valid secret name",
        ),
        (
            &["action", "run", "/nonexistent/x.wasm", "echo"],
            "/nonexistent/x.wasm",
        ),
        (
            &[
                "action",
                "run",
                allama_guests::CAPS,
                "echo",
                "--input",
                "@/nonexistent/input.json",
            ],
            "/nonexistent/input.json",
        ),
    ];
    for (args, expect) in cases {
        let o = allama(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn a_bad_grant_names_file_line_and_key() {
    let (o, grant) = with_grant(
        allama_guests::CAPS,
        "echo",
        "[limits]\nmemory_mib = 64\n\n[http]\nallow = [\"https://ok.example.com\", \"https://*.\"]\n",
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    let at = format!("{}:5:", grant.path().display());
    assert!(err.contains(&at) && err.contains("http.allow[1]"), "{err}");
    let (o, _unknown) = with_grant(allama_guests::CAPS, "echo", "[http]\nallwo = []\n");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains(":2:") && err.contains("allwo"), "{err}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let junk = file("this is not wasm");
    let o = allama(&["action", "run", junk.path().to_str().unwrap(), "echo"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("is not a valid WebAssembly component"),
        "{err}"
    );
}

#[test]
fn bench_runtime_prints_its_bench_line() {
    let o = allama(&[
        "bench",
        "runtime",
        "--iterations",
        "200",
        "--seconds",
        "0.2",
        "--components",
        "3",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("BENCH runtime bare_p50_us="), "{last}");
    for key in [
        "step_p50_us=",
        "step_p99_us=",
        "ratio=",
        "steps_per_s=",
        "cold_3_ms=",
    ] {
        assert!(last.contains(key), "{last} lacks {key}");
    }
}

/// The server bench end to end, small: every delivery is accepted and its
/// run finishes (the bench fails otherwise), and the last line has every figure.
#[test]
fn bench_server_prints_its_bench_line() {
    let o = allama(&["bench", "server", "--runs", "300", "--connections", "4"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("300 signed deliveries over 4 connections"),
        "{err}"
    );
    assert!(err.contains("(300 runs timed)"), "{err}");
    let last = out.lines().last().unwrap();
    assert!(last.starts_with("BENCH server webhooks_per_s="), "{last}");
    for key in [" runs_per_s=", " p50_ms=", " p99_ms=", " rss_mb="] {
        assert!(last.contains(key), "{last} lacks {key}");
    }
    let o = allama(&["bench", "server", "--runs", "0"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("at least 1"), "{}", text(&o).1);
}

#[test]
fn compiled_components_are_cached_between_runs() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("compiled");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_allama"))
            .args([
                "action",
                "run",
                allama_guests::CAPS,
                "echo",
                "--input",
                "{}",
                "--cache-dir",
            ])
            .arg(&dir)
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let entries = || {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let first = entries();
    assert_eq!(
        first.len(),
        2,
        "one compiled entry and its checksum: {first:?}"
    );
    assert!(first[0].ends_with(".cwasm") && first[1].ends_with(".sha256"));
    let modified = std::fs::metadata(dir.join(&first[0]))
        .unwrap()
        .modified()
        .unwrap();
    assert!(run().status.success());
    assert_eq!(entries(), first);
    assert_eq!(
        std::fs::metadata(dir.join(&first[0]))
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "the second run reused the entry"
    );
    // An unusable cache location is not fatal.
    let file = cache.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_allama"))
        .args([
            "action",
            "run",
            allama_guests::CAPS,
            "echo",
            "--input",
            "{}",
            "--cache-dir",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("compiling without it"));
}
