//! Micro benchmark: how many renders per second, for the shapes the engine evaluates per step.
//!
//! `cargo run --release -p allama-expr --example bench [iterations]`
//!
//! The trigger is deliberately large (about 20 MB) to show that plain paths and pruned
//! bindings do not touch what the expression does not read.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use allama_expr::{Context, Expression, StepView, Template, ValueTemplate};
use serde_json::{Value, json};

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);

    let events: Vec<Value> = (0..100_000)
        .map(|i| json!({"id": i, "msg": "x".repeat(180), "host": format!("host-{i}")}))
        .collect();
    let trigger = json!({"alert": {"ip": "185.220.101.45", "severity": 7}, "events": events});
    let mut steps = BTreeMap::new();
    steps.insert(
        "vt".to_string(),
        StepView {
            status: "succeeded",
            output: Some(Arc::new(json!({"malicious": 5, "tags": ["trojan"]}))),
            error: None,
        },
    );
    let ctx = Context {
        trigger: Arc::new(trigger),
        steps,
        now: Some(1_704_067_200_000),
        ..Context::default()
    };
    println!(
        "trigger: {} bytes of JSON",
        serde_json::to_string(&*ctx.trigger).map_or(0, |s| s.len())
    );

    let path = Template::parse("${{ trigger.alert.ip }}").expect("parses");
    let cond = Expression::parse("steps.vt.output.malicious > 3 && trigger.alert.severity >= 5")
        .expect("parses");
    let text =
        Template::parse("ip ${{ trigger.alert.ip }} scored ${{ steps.vt.output.malicious }}")
            .expect("parses");
    let with = ValueTemplate::parse(&json!({
        "ip": "${{ trigger.alert.ip }}",
        "comment": "seen by ${{ size(steps.vt.output.tags) }} engines at ${{ string(now()) }}",
        "headers": {"x-apikey": "${{ secrets.VT_API_KEY }}"},
        "limit": 10
    }))
    .expect("parses");
    let parse = || Template::parse("${{ trigger.alert.ip.matches('^185\\\\.') }}");

    bench("plain path template", iterations, || {
        black_box(path.render(&ctx).is_ok());
    });
    bench("condition (CEL, pruned binding)", iterations, || {
        black_box(cond.eval_bool(&ctx).is_ok());
    });
    bench("interpolated string", iterations, || {
        black_box(text.render(&ctx).is_ok());
    });
    bench("typical `with:`", iterations, || {
        black_box(with.render(&ctx).is_ok());
    });
    bench("parse a template", iterations / 10, || {
        black_box(parse().is_ok());
    });
}

fn bench(name: &str, iterations: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let elapsed = start.elapsed();
    let per = elapsed / iterations.max(1);
    println!(
        "{name:36} {per:>10.2?} each, {:>10.0} per second",
        f64::from(iterations) / elapsed.as_secs_f64()
    );
}
