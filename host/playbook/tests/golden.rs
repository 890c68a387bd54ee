//! Golden files: each `golden/<case>.yaml` (or `.json`) is parsed, and the diagnostics (or
//! `ok`) must equal `golden/<case>.expected`. Cases named `catalog_*` are validated against
//! the test catalog. `ALLAMA_BLESS=1` rewrites the expected files.

mod common;

use std::path::Path;

#[test]
fn golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("ALLAMA_BLESS").is_some();
    let catalog = common::catalog();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "json")
            )
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "only {} golden cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let source = std::fs::read_to_string(case).expect("readable case");
        let result = if name.starts_with("catalog_") {
            allama_playbook::validate(&source, &name, &catalog)
        } else {
            allama_playbook::parse(&source, &name)
        };
        let actual = match result {
            Ok(_) => "ok\n".to_string(),
            Err(d) => format!("{d}\n"),
        };
        let expected_path = case.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).expect("writable expected file");
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {name}: expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (rerun with ALLAMA_BLESS=1 to accept):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
