//! Unit tests: the example, defaults, limits, and the schema kept in step with the walker.

use std::time::Duration;

use serde_json::json;

use crate::analyze::{
    APPROVAL_FIELDS, APPROVERS_FIELDS, BACKOFF_FIELDS, INPUT_FIELDS, PLAYBOOK_FIELDS, RETRY_FIELDS,
    SCHEDULE_FIELDS, STEP_FIELDS, TRIGGER_KINDS, WEBHOOK_FIELDS,
};
use crate::*;

const EXAMPLE: &str = include_str!("../tests/fixtures/ip-reputation.yaml");

fn errors(source: &str) -> String {
    match parse(source, "t.yaml") {
        Ok(_) => "ok".to_string(),
        Err(d) => d.to_string(),
    }
}

#[test]
fn the_example_parses_with_every_field() {
    let p = parse(EXAMPLE, "ip-reputation.yaml").unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.id, "ip-reputation");
    assert_eq!(p.name.as_deref(), Some("IP reputation enrichment"));
    assert_eq!(p.concurrency, Some(20));
    assert_eq!(p.inputs.keys().collect::<Vec<_>>(), ["ip", "threshold"]);
    assert!(p.inputs["ip"].required);
    assert_eq!(p.inputs["ip"].kind, InputType::String);
    assert_eq!(p.inputs["threshold"].default, Some(json!(3)));
    assert_eq!(
        p.triggers,
        [
            Trigger::Webhook {
                signature: WebhookSignature::Standard
            },
            Trigger::Schedule {
                cron: "*/15 * * * *".into(),
                timezone: Some("Europe/Paris".into())
            },
            Trigger::Manual,
        ]
    );
    let ids: Vec<_> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["vt", "verdict", "block_each", "child", "notify_failure"]
    );

    let vt = &p.steps[0];
    let StepKind::Action(r) = &vt.kind else {
        panic!("vt is an action")
    };
    assert_eq!(
        (r.package.as_str(), r.action.as_str()),
        ("virustotal", "ip-report")
    );
    assert!(r.version.matches(&semver::Version::new(1, 4, 0)));
    assert!(!r.version.matches(&semver::Version::new(2, 0, 0)));
    assert_eq!(vt.timeout, Some(Duration::from_secs(30)));
    assert_eq!(vt.on_error, OnError::Branch("notify_failure".into()));
    assert_eq!(
        vt.retry.action,
        Backoff {
            max_attempts: 3,
            kind: BackoffKind::Exponential,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            jitter: true
        }
    );
    assert_eq!(vt.retry.infrastructure.delay, Duration::from_millis(200));
    assert_eq!(
        vt.retry.infrastructure.max_delay,
        Duration::from_millis(200)
    );
    assert_eq!(vt.span, Span { line: 13, col: 5 });

    let verdict = &p.steps[1];
    assert_eq!(verdict.needs, ["vt"]);
    assert!(verdict.if_.is_some());
    assert_eq!(verdict.on_error, OnError::Continue);
    assert_eq!(verdict.retry, RetryPolicy::default());

    let block = &p.steps[2];
    assert!(block.for_each.is_some());
    assert_eq!(block.concurrency, Some(4));
    let approval = block.approval.as_ref().expect("approval");
    assert_eq!(approval.approvers.roles, ["responder"]);
    assert_eq!(approval.approvers.users, ["alice@example.com"]);
    assert_eq!(approval.deadline, Some(Duration::from_secs(4 * 3600)));
    let DeadlineAction::Escalate(next) = &approval.on_deadline else {
        panic!("escalates")
    };
    assert_eq!(next.approvers.roles, ["admin"]);
    assert_eq!(next.deadline, Some(Duration::from_secs(3600)));
    assert!(matches!(next.on_deadline, DeadlineAction::Reject));

    assert_eq!(p.steps[3].kind, StepKind::Playbook("enrich-domain".into()));
    assert_eq!(p.outputs.keys().collect::<Vec<_>>(), ["verdict"]);
    assert_eq!(
        p.step("child").map(|s| s.needs.clone()),
        Some(vec!["vt".to_string()])
    );
}

#[test]
fn the_docs_show_the_example_verbatim() {
    let docs = include_str!("../../../docs/playbooks.md");
    assert!(
        docs.contains(EXAMPLE),
        "docs/playbooks.md must contain tests/fixtures/ip-reputation.yaml verbatim"
    );
}

/// The example, as JSON, is a valid `RawPlaybook` and passes the generated JSON Schema.
#[test]
fn the_example_fits_the_serde_types_and_the_schema() {
    let root = yaml::load(EXAMPLE).expect("loads");
    let mut errors = Vec::new();
    let value = yaml::to_json(&root, &mut errors);
    assert!(errors.is_empty());
    let raw: raw::RawPlaybook = serde_json::from_value(value.clone()).expect("fits RawPlaybook");
    assert_eq!(raw.steps.len(), 5);
    // Serializing the raw form gives an equivalent playbook.
    let again = serde_json::to_string(&raw).expect("serializes");
    parse(&again, "again.json").unwrap_or_else(|d| panic!("{d}"));
    let validator = jsonschema::validator_for(&json_schema()).expect("schema compiles");
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let bad = json!({"id": "x", "steps": [{"id": "a", "uses": "p/a@1", "neds": "b"}]});
    assert!(!validator.is_valid(&bad));
}

#[test]
fn walker_fields_match_the_schema() {
    let schema = json_schema();
    let sorted = |fields: &[&str]| {
        let mut v: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    for (definition, fields) in [
        (None, PLAYBOOK_FIELDS),
        (Some("RawStep"), STEP_FIELDS),
        (Some("RawInput"), INPUT_FIELDS),
        (Some("RawRetry"), RETRY_FIELDS),
        (Some("RawBackoff"), BACKOFF_FIELDS),
        (Some("RawApproval"), APPROVAL_FIELDS),
        (Some("RawApprovers"), APPROVERS_FIELDS),
        (Some("RawWebhook"), WEBHOOK_FIELDS),
        (Some("RawSchedule"), SCHEDULE_FIELDS),
    ] {
        assert_eq!(
            raw::properties(&schema, definition),
            sorted(fields),
            "{definition:?}"
        );
    }
    let variants: Vec<String> = schema["$defs"]["RawTrigger"]["oneOf"]
        .as_array()
        .expect("trigger variants")
        .iter()
        .flat_map(|v| v["required"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(variants, TRIGGER_KINDS);
}

/// The committed JSON Schema matches the code (regenerate with ALLAMA_BLESS=1).
#[test]
fn committed_json_schema_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schemas/playbook.schema.json");
    let text = serde_json::to_string_pretty(&json_schema()).expect("serializes") + "\n";
    if std::env::var_os("ALLAMA_BLESS").is_some() {
        std::fs::write(&path, &text).expect("writable schema file");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is stale: run `ALLAMA_BLESS=1 cargo test -p allama-playbook committed_json_schema` and commit it",
        path.display()
    );
}

#[test]
fn defaults() {
    let p = parse(
        "id: d\nsteps:\n  - id: a\n    uses: p/a@1\n    retry:\n      action: { backoff: fixed }\n      infrastructure: { max_attempts: 5 }\n  - id: b\n    uses: p/a@1\n    retry: { action: { delay: 2m } }\n",
        "d.yaml",
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let a = &p.steps[0].retry;
    assert_eq!(a.action.max_attempts, 3);
    assert_eq!(a.action.kind, BackoffKind::Fixed);
    assert_eq!(a.action.max_delay, Duration::from_secs(1));
    assert_eq!(a.infrastructure.max_attempts, 5);
    assert_eq!(a.infrastructure.delay, Duration::from_millis(100));
    // An exponential delay longer than the default cap raises the cap to it.
    assert_eq!(p.steps[1].retry.action.max_delay, Duration::from_secs(120));
    let none = RetryPolicy::default();
    assert_eq!(none.action.max_attempts, 1);
    assert_eq!(none.infrastructure, Backoff::infrastructure_default());
    assert!(p.steps[0].with.is_literal());
    assert_eq!(p.steps[0].on_error, OnError::Fail);
    assert_eq!(p.triggers, []);
}

/// A key with nothing after it counts as absent, as for serde and the JSON Schema.
#[test]
fn null_values_are_absent() {
    let p = parse(
        "id: n\nname:\ntriggers:\n  - manual:\n  - webhook:\nsteps:\n  - id: a\n    uses: p/a@1\n    with:\n    timeout:\n    needs:\n",
        "n.yaml",
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(p.name, None);
    assert_eq!(p.steps[0].timeout, None);
    assert!(p.steps[0].needs.is_empty());
    assert_eq!(p.triggers.len(), 2);
    assert_eq!(
        errors("id:\nsteps:\n  - id: a\n    uses: p/a@1\n"),
        "t.yaml:1:1: missing `id`"
    );
}

#[test]
fn backoff_grows_and_caps() {
    let b = Backoff {
        max_attempts: 10,
        kind: BackoffKind::Exponential,
        delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(5),
        jitter: false,
    };
    let waits: Vec<u64> = (2..7).map(|n| b.delay_before(n).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 5, 5]);
    assert_eq!(b.delay_before(u32::MAX), Duration::from_secs(5));
}

#[test]
fn action_refs() {
    let r = parse_action_ref("virustotal/ip-report@=1.2.3").expect("valid");
    assert!(r.version.matches(&semver::Version::new(1, 2, 3)));
    assert!(!r.version.matches(&semver::Version::new(1, 2, 4)));
    assert_eq!(r.to_string(), "virustotal/ip-report@=1.2.3");
    for bad in [
        "", "@", "/@1", "a/@1", "a/b@", "a/b/c@1", "a/b@1@2", "Ä/b@1", "a/b@\n1",
    ] {
        assert!(parse_action_ref(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn json_files_get_json_errors_and_positions() {
    let out = errors_of(
        r#"{"id": "j", "steps": [{"id": "a", "uses": "p/a@1", "neds": []}]}"#,
        "j.json",
    );
    assert_eq!(
        out,
        "j.json:1:52: steps[0].neds: unknown field `neds` (did you mean `needs`?)"
    );
    let out = errors_of("{\"id\": \"j\",\n \"steps\": [}", "j.json");
    assert!(out.starts_with("j.json:2:12: invalid JSON:"), "{out}");
    let deep = format!("{{\"id\": {}1{}}}", "[".repeat(200), "]".repeat(200));
    assert!(errors_of(&deep, "d.json").contains("nesting is deeper than 64"));
}

fn errors_of(source: &str, file: &str) -> String {
    match parse(source, file) {
        Ok(_) => "ok".to_string(),
        Err(d) => d.to_string(),
    }
}

#[test]
fn limits_are_enforced() {
    // Steps.
    let mut many = String::from("id: many\nsteps:\n");
    for i in 0..=limits::MAX_STEPS {
        many.push_str(&format!("  - {{ id: s{i}, uses: p/a@1 }}\n"));
    }
    assert!(
        errors(&many).contains("at most 500 are allowed"),
        "{}",
        errors(&many)
    );
    // Size.
    let big = format!(
        "id: big\nsteps: []\nname: {}\n",
        "x".repeat(limits::MAX_SOURCE_BYTES)
    );
    assert!(errors(&big).contains("a playbook is at most"));
    // Values.
    let wide = format!(
        "id: wide\nsteps:\n  - id: a\n    uses: p/a@1\n    with: {{ x: [{}] }}\n",
        "1,".repeat(limits::MAX_NODES)
    );
    assert!(
        errors(&wide).contains("more than 100000 values"),
        "{}",
        errors(&wide)
    );
    // Diagnostics are capped, the rest counted.
    let mut noisy = String::from("id: noisy\nsteps:\n  - id: a\n    uses: p/a@1\n");
    for i in 0..300 {
        noisy.push_str(&format!("bad{i}: 1\n"));
    }
    let d = parse(&noisy, "n.yaml").expect_err("errors");
    assert_eq!(d.0.len(), limits::MAX_DIAGNOSTICS + 1);
    assert!(
        d.0.last()
            .is_some_and(|l| l.message.starts_with("100 more problems"))
    );
    // Escalation chains.
    let mut chain = String::from("{ approvers: { roles: [admin] } }");
    for _ in 0..8 {
        chain = format!(
            "{{ approvers: {{ roles: [admin] }}, deadline: 1h, on_deadline: escalate, escalate_to: {chain} }}"
        );
    }
    let src = format!(
        "id: chain\nsteps:\n  - id: a\n    approval: {{ approvers: {{ roles: [admin] }}, message: m, deadline: 1h, on_deadline: escalate, escalate_to: {chain} }}\n"
    );
    assert!(
        errors(&src).contains("at most 5 escalations"),
        "{}",
        errors(&src)
    );
}

#[test]
fn hostile_yaml_is_refused_not_crashed() {
    // Billion laughs: refused at the first anchor, nothing is expanded.
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    assert!(errors(&bomb).contains("anchors"));
    // Deep nesting of every kind, far past the limit: refused without recursion.
    for deep in [
        "[".repeat(500_000),
        "{a: ".repeat(200_000),
        "- ".repeat(200_000),
        (0..1000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect::<String>(),
    ] {
        assert!(
            errors(&deep).contains("invalid YAML"),
            "{}",
            &errors(&deep)[..80.min(errors(&deep).len())]
        );
    }
    // Odd but harmless input gives typed errors.
    for odd in [
        "\u{0}",
        "\u{feff}id: x",
        "id: x\nsteps: !!binary aGk=",
        "? a\n",
        "%YAML 1.2\n---\nid: x\n",
        "id: \"\\ud800\"",
        "'",
        "id: x\nsteps:\n\t- a",
    ] {
        let _ = errors(odd);
    }
}

#[test]
fn status_functions_and_branches_count_as_dependencies() {
    let src = "id: s\nsteps:\n  - id: a\n    uses: p/a@1\n    on_error: handle\n  - id: handle\n    uses: p/a@1\n    with: { text: \"${{ steps.a.error.message }}\" }\n  - id: after\n    needs: a\n    if: ${{ always() }}\n    uses: p/a@1\n    with: { x: \"${{ steps.a.output }}\" }\n";
    assert_eq!(errors(src), "ok");
}

#[test]
fn diagnostics_display_one_per_line() {
    let d = parse("id: x\nsteps: 3\nfoo: 1\n", "f.yaml").expect_err("errors");
    assert_eq!(
        d.to_string(),
        "f.yaml:2:8: steps: expected a list of steps, found a number\nf.yaml:3:1: foo: unknown field `foo`; expected one of: id, name, description, inputs, triggers, concurrency, steps, outputs"
    );
    assert_eq!(d.0[0].path, "steps");
    assert_eq!((d.0[0].line, d.0[0].col), (2, 8));
}
