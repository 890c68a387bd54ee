//! What expressions mean: contexts, status functions, secrets, time, templates, errors, and
//! that the fast paths (plain paths, pruned bindings) agree with full CEL evaluation.

use std::collections::BTreeMap;
use std::sync::Arc;

use allama_expr::{Context, DepsStatus, Expression, StepView, Template, ValueTemplate};
use proptest::prelude::*;
use serde_json::{Value, json};

fn ctx() -> Context {
    let mut steps = BTreeMap::new();
    steps.insert(
        "vt".to_string(),
        StepView {
            status: "succeeded",
            output: Some(Arc::new(json!({
                "malicious": 5,
                "score": 7.5,
                "tags": ["trojan", "loader"],
                "data": {"attributes": {"last_analysis_stats": {"malicious": 12}}}
            }))),
            error: None,
        },
    );
    steps.insert(
        "enrich".to_string(),
        StepView {
            status: "failed",
            output: None,
            error: Some(Arc::new(
                json!({"kind": "timeout", "message": "took too long"}),
            )),
        },
    );
    steps.insert(
        "later".to_string(),
        StepView {
            status: "pending",
            output: None,
            error: None,
        },
    );
    Context {
        trigger: Arc::new(json!({
            "alert": {"ip": "185.220.101.45", "severity": 7, "host": "dc01", "src-ip": "10.0.0.5"},
            "events": [{"user": "alice"}, {"user": "bob"}],
            "count": 2.0,
            "big": 18446744073709551615u64
        })),
        inputs: Arc::new(json!({"mode": "block", "threshold": 3})),
        steps,
        item: Some(Arc::new(json!({"ip": "1.2.3.4"}))),
        index: Some(2),
        deps: DepsStatus::default(),
        now: Some(1_704_067_200_000),
    }
}

fn eval(src: &str) -> Result<Value, String> {
    eval_in(&ctx(), src)
}

fn eval_in(ctx: &Context, src: &str) -> Result<Value, String> {
    Expression::parse(src)
        .map_err(|e| format!("parse: {e}"))?
        .eval(ctx)
        .map_err(|e| e.message)
}

#[test]
fn contexts_are_readable() {
    assert_eq!(eval("trigger.alert.ip").unwrap(), json!("185.220.101.45"));
    assert_eq!(eval("trigger.alert['src-ip']").unwrap(), json!("10.0.0.5"));
    assert_eq!(eval("trigger.alert.`src-ip`").unwrap(), json!("10.0.0.5"));
    assert_eq!(eval("trigger.events[1].user").unwrap(), json!("bob"));
    assert_eq!(eval("inputs.threshold + 1").unwrap(), json!(4));
    assert_eq!(eval("item.ip").unwrap(), json!("1.2.3.4"));
    assert_eq!(eval("index + 1").unwrap(), json!(3));
    assert_eq!(eval("steps.vt.status").unwrap(), json!("succeeded"));
    assert_eq!(eval("steps.enrich.error.kind").unwrap(), json!("timeout"));
    assert_eq!(eval("steps.enrich.output").unwrap(), Value::Null);
    assert_eq!(eval("steps.enrich.output == null").unwrap(), json!(true));
    assert_eq!(eval("trigger.big").unwrap(), json!(18446744073709551615u64));
    assert_eq!(eval("trigger.count == 2").unwrap(), json!(true));
    assert_eq!(
        eval("steps.vt.output.data.attributes.last_analysis_stats.malicious > inputs.threshold")
            .unwrap(),
        json!(true)
    );
    assert_eq!(
        eval("trigger.events.map(e, e.user).join(',')").unwrap(),
        json!("alice,bob")
    );
}

#[test]
fn missing_things_are_named() {
    assert_eq!(
        eval("steps.vt.output.malicous > 3").unwrap_err(),
        "steps.vt.output.malicous: no such key \"malicous\" (keys: \"data\", \"malicious\", \
         \"score\", \"tags\")"
    );
    assert!(
        eval("steps.later.output.x == 1")
            .unwrap_err()
            .contains("step `later` has no output (its status is pending)")
    );
    assert!(
        eval("size(steps.nope.output) > 0")
            .unwrap_err()
            .starts_with("steps.nope: no step `nope` is visible here")
    );
    assert!(
        eval("trigger.events[5].user == 'x'")
            .unwrap_err()
            .contains("trigger.events[5]: index 5 is out of bounds (the list has 2 elements)")
    );
    assert!(
        eval("trigger.alert.ip.x")
            .unwrap_err()
            .contains("which is a string")
    );
    let e = eval("nope.x == 1").unwrap_err();
    assert!(e.contains("unknown name `nope`"), "{e}");
    let e = eval("1 / (inputs.threshold - 3)").unwrap_err();
    assert_eq!(e, "`1 / (inputs.threshold - 3)`: division by zero");
    let e = eval("lower(inputs.threshold)").unwrap_err();
    assert!(
        e.ends_with("lower(): the first argument must be a string, not int"),
        "{e}"
    );
}

#[test]
fn item_and_index_only_inside_for_each() {
    let outside = Context::default();
    assert!(
        eval_in(&outside, "item")
            .unwrap_err()
            .contains("inside `for_each`")
    );
    assert!(
        eval_in(&outside, "index + 1")
            .unwrap_err()
            .contains("inside `for_each`")
    );
}

#[test]
fn status_functions() {
    let cond = |src: &str, deps: DepsStatus| {
        let ctx = Context {
            deps,
            ..Context::default()
        };
        Expression::parse(src).unwrap().eval_bool(&ctx).unwrap()
    };
    let ok = DepsStatus::default();
    let failed = DepsStatus {
        any_failed: true,
        ..ok
    };
    let skipped = DepsStatus {
        any_skipped: true,
        ..ok
    };
    let cancelled = DepsStatus {
        cancelled: true,
        ..ok
    };
    for (deps, success, failure, is_cancelled) in [
        (ok, true, false, false),
        (failed, false, true, false),
        (skipped, false, false, false),
        (cancelled, false, false, true),
    ] {
        assert_eq!(cond("success()", deps), success);
        assert_eq!(cond("failure()", deps), failure);
        assert_eq!(cond("cancelled()", deps), is_cancelled);
        assert!(cond("always()", deps));
        assert_eq!(
            cond("${{ failure() || success() }}", deps),
            success || failure
        );
    }
    assert!(
        Expression::parse("always()")
            .unwrap()
            .references()
            .status_functions
    );
}

#[test]
fn secrets_are_handles() {
    let t = Template::parse("Bearer ${{ secrets.VT_API_KEY }}").unwrap();
    assert_eq!(
        t.render(&Context::default()).unwrap(),
        json!("Bearer {{secret:VT_API_KEY}}")
    );
    assert!(t.references().secrets.contains("VT_API_KEY"));
    let e = Expression::parse("sha256(secrets.K)").unwrap_err();
    assert!(e.message.contains("cannot work on a secret"));
    assert!(Expression::parse("hmacSha256(secrets.K, 'x')").is_err());
    assert!(Expression::parse("lower('a' + secrets.K)").is_err());
    assert_eq!(
        eval("toJson({'auth': secrets.K})").unwrap(),
        json!("{\"auth\":\"{{secret:K}}\"}")
    );
}

#[test]
fn now_is_pinned() {
    assert_eq!(
        eval("string(now())").unwrap(),
        json!("2024-01-01T00:00:00Z")
    );
    assert_eq!(eval("now()").unwrap(), json!("2024-01-01T00:00:00Z"));
    assert_eq!(
        eval("now() - timestamp('2023-12-31T00:00:00Z') > duration('23h')").unwrap(),
        json!(true)
    );
    // Unpinned, it reads the clock: some time after this code was written.
    let unpinned = Context::default();
    assert_eq!(
        eval_in(&unpinned, "now() > timestamp('2024-01-01T00:00:00Z')").unwrap(),
        json!(true)
    );
}

#[test]
fn template_rendering() {
    let c = ctx();
    let render = |s: &str| Template::parse(s).unwrap().render(&c).unwrap();
    assert_eq!(
        render("${{ trigger.events }}"),
        json!([{"user": "alice"}, {"user": "bob"}])
    );
    assert_eq!(render("${{ trigger.alert.severity }}"), json!(7));
    assert_eq!(render("sev=${{ trigger.alert.severity }}"), json!("sev=7"));
    assert_eq!(
        render("${{ trigger.count }}/${{ steps.vt.output.score }}"),
        json!("2.0/7.5")
    );
    assert_eq!(
        render("tags: ${{ steps.vt.output.tags }} ok=${{ true }} none=${{ null }}"),
        json!("tags: [\"trojan\",\"loader\"] ok=true none=null")
    );
    assert_eq!(
        render("${{ {'a': trigger.alert.host} }}"),
        json!({"a": "dc01"})
    );
    assert_eq!(render("multi\nline ${{ 'x' }}\n"), json!("multi\nline x\n"));
}

#[test]
fn value_templates_keep_structure() {
    let c = ctx();
    let t = ValueTemplate::parse(&json!({
        "url": "https://api/${{ trigger.alert.ip }}",
        "headers": {"x-key": "${{ secrets.KEY }}"},
        "ids": ["${{ index }}", 3, true, null],
        "raw": {"n": 1}
    }))
    .unwrap();
    assert_eq!(
        t.render(&c).unwrap(),
        json!({
            "url": "https://api/185.220.101.45",
            "headers": {"x-key": "{{secret:KEY}}"},
            "ids": [2, 3, true, null],
            "raw": {"n": 1}
        })
    );
    assert!(
        ValueTemplate::parse(&json!({"a": ["b", {"c": 1}]}))
            .unwrap()
            .is_literal()
    );
}

#[test]
fn for_each_lists() {
    let e = Expression::parse("${{ trigger.events.filter(e, e.user != 'bob') }}").unwrap();
    assert_eq!(e.eval(&ctx()).unwrap(), json!([{"user": "alice"}]));
}

#[test]
fn eval_bool_requires_a_bool() {
    let e = Expression::parse("trigger.alert.severity").unwrap();
    let err = e.eval_bool(&ctx()).unwrap_err();
    assert_eq!(
        err.message,
        "`trigger.alert.severity` must evaluate to a bool, not an int (7)"
    );
}

#[test]
fn numbers_compare_across_types() {
    assert_eq!(eval("1 == 1.0 && 1u == 1 && 2 > 1.5").unwrap(), json!(true));
    assert_eq!(
        eval("steps.vt.output.score > steps.vt.output.malicious").unwrap(),
        json!(true)
    );
}

/// Standard CEL behaviour of the `cel` crate that docs/expressions.md documents.
#[test]
fn documented_cel_behaviour() {
    // Mixed int/uint arithmetic is an error, as in the spec.
    assert!(
        eval("1 + 1u")
            .unwrap_err()
            .contains("cannot be applied to (int, uint)")
    );
    // Integer overflow is an error.
    assert!(
        eval("9223372036854775807 + 1")
            .unwrap_err()
            .contains("overflow")
    );
    // Doubles print without an exponent (cel-go writes 1e+20).
    assert_eq!(
        eval("string(1e20)").unwrap(),
        json!("100000000000000000000")
    );
    // Non-finite doubles have no JSON.
    assert!(
        eval("1.0 / 0.0")
            .unwrap_err()
            .contains("no JSON representation")
    );
    // Strings are not indexable.
    assert!(eval("'abc'[0]").is_err());
    // Error absorption in && and ||.
    assert_eq!(eval("1/0 == 1 || true").unwrap(), json!(true));
    assert_eq!(eval("false && 1/0 == 1").unwrap(), json!(false));
    // Durations and timestamps.
    assert_eq!(eval("duration('1h30m')").unwrap(), json!("5400s"));
    assert_eq!(
        eval("timestamp('2024-01-01T10:00:00Z').getHours('America/New_York')").unwrap(),
        json!(5)
    );
    // Optional syntax.
    assert_eq!(
        eval("trigger.?nothing.orValue('none')").unwrap(),
        json!("none")
    );
    assert_eq!(eval("trigger.alert[?'nope'].orValue(1)").unwrap(), json!(1));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-c]{0,3}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// A plain path (walked on the JSON) and the same path through CEL (bound, pruned,
    /// converted back) agree on every value, and fail together.
    #[test]
    fn fast_path_matches_cel(trigger in arb_json(), path in prop::collection::vec(
        prop_oneof![
            "[a-c]{1,2}".prop_map(|k| format!(".{k}")),
            (0usize..3).prop_map(|i| format!("[{i}]")),
            "[a-c]{1,2}".prop_map(|k| format!("['{k}']")),
        ], 0..4)) {
        let ctx = Context { trigger: Arc::new(trigger), ..Context::default() };
        let p = format!("trigger{}", path.concat());
        let fast = Expression::parse(&p).unwrap().eval(&ctx);
        let slow = Expression::parse(&format!("dyn({p})")).unwrap().eval(&ctx);
        match (&fast, &slow) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{p}: fast {fast:?} vs cel {slow:?}"),
        }
    }

    /// Pruning never changes a result: an expression reading several fixed paths gives the
    /// same answer as one that reads the whole trigger.
    #[test]
    fn pruning_is_invisible(trigger in arb_json()) {
        let ctx = Context { trigger: Arc::new(trigger), ..Context::default() };
        for (pruned, whole) in [
            ("[trigger.a, trigger.b[0], has(trigger.c)]", "[dyn(trigger).a, dyn(trigger).b[0], has(dyn(trigger).c)]"),
            ("trigger.a.b == trigger['b']", "dyn(trigger).a.b == dyn(trigger)['b']"),
            ("size(trigger.a) + size(trigger.b)", "size(dyn(trigger).a) + size(dyn(trigger).b)"),
        ] {
            let a = Expression::parse(pruned).unwrap().eval(&ctx).map_err(|_| ());
            let b = Expression::parse(whole).unwrap().eval(&ctx).map_err(|_| ());
            prop_assert_eq!(a, b, "{}", pruned);
        }
    }
}
