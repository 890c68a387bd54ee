//! Every guest program is used by a host test (wasmtime's test-programs
//! keep the same rule), and the bench guest does what the benchmark expects.

use serde_json::json;

use crate::support::{Host, output, run};

#[test]
fn every_guest_is_used_by_a_host_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all");
    let mut sources = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        sources.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    for (name, _) in allama_guests::ALL {
        if *name == "bench" {
            continue; // used below
        }
        assert!(
            sources.contains(&format!("package(\"{name}\"")),
            "guest `{name}` has no host test"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_guest_parses_its_input() {
    let host = Host::new();
    let p = host.package("bench", "", &[]);
    assert_eq!(
        output(&run(&p, "bench", json!({"a": 1, "b": 2})).await),
        &json!({"ok": true, "fields": 2})
    );
    let r = p
        .run(
            "bench",
            "not json",
            &allama_runtime::StepContext::adhoc("bench"),
        )
        .await;
    assert!(matches!(
        r.outcome,
        Err(allama_runtime::StepError::Action {
            kind: allama_runtime::ActionErrorKind::InvalidInput,
            ..
        })
    ));
}
