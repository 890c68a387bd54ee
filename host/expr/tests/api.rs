//! The API other crates are written against (the playbook format validates with it, the
//! engine renders with it): every public signature is used here, so a breaking change fails
//! to compile or fails these tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use allama_expr::{
    Context, DepsStatus, EVAL_BUDGET, EvalError, Expression, FunctionDoc,
    MAX_COMPREHENSION_NESTING, MAX_EXPRESSION_LEN, MAX_LIST_ITEMS, MAX_NESTING, MAX_REGEX_SIZE,
    MAX_STRING_BYTES, MAX_TEMPLATE_EXPRESSIONS, ParseError, References, StepView, Template,
    ValueTemplate, functions,
};
use serde_json::{Value, json};

fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}

#[test]
fn signatures() {
    // Every method, named by its exact type.
    let _: fn(&str) -> Result<Template, ParseError> = Template::parse;
    let _: fn(&Template) -> bool = Template::is_literal;
    let _: fn(&Template) -> &References = Template::references;
    let _: fn(&Template, &Context) -> Result<Value, EvalError> = Template::render;
    let _: fn(&Template) -> &str = Template::source;
    let _: fn(&str) -> Result<Expression, ParseError> = Expression::parse;
    let _: fn(&Expression) -> &References = Expression::references;
    let _: fn(&Expression, &Context) -> Result<Value, EvalError> = Expression::eval;
    let _: fn(&Expression, &Context) -> Result<bool, EvalError> = Expression::eval_bool;
    let _: fn(&Expression) -> &str = Expression::source;
    let _: fn(&Value) -> Result<ValueTemplate, (String, ParseError)> = ValueTemplate::parse;
    let _: fn(&ValueTemplate) -> References = ValueTemplate::references;
    let _: fn(&ValueTemplate) -> bool = ValueTemplate::is_literal;
    let _: fn(&ValueTemplate, &Context) -> Result<Value, EvalError> = ValueTemplate::render;
    let _: fn(&References, &References) -> bool = <References as PartialEq>::eq;
    assert_send_sync::<Template>();
    assert_send_sync::<Expression>();
    assert_send_sync::<ValueTemplate>();
    assert_send_sync::<Context>();
    assert_send_sync::<References>();
    assert_send_sync::<ParseError>();
    assert_send_sync::<EvalError>();
    let _: &dyn std::error::Error = &ParseError {
        offset: 0,
        message: String::new(),
    };
    let _: &dyn std::error::Error = &EvalError {
        message: String::new(),
    };
    let docs: Vec<&'static FunctionDoc> = functions().collect();
    assert!(docs.len() >= 100);
    let limits = [
        MAX_EXPRESSION_LEN,
        MAX_NESTING,
        MAX_COMPREHENSION_NESTING,
        MAX_STRING_BYTES,
        MAX_LIST_ITEMS,
        MAX_REGEX_SIZE,
        MAX_TEMPLATE_EXPRESSIONS,
    ];
    assert!(limits.iter().all(|&l| l > 0) && EVAL_BUDGET > 0);
}

fn context() -> Context {
    let mut steps = BTreeMap::new();
    steps.insert(
        "vt".to_string(),
        StepView {
            status: "succeeded",
            output: Some(Arc::new(json!({"malicious": 5, "tags": ["trojan"]}))),
            error: None,
        },
    );
    steps.insert(
        "extract".to_string(),
        StepView {
            status: "succeeded",
            output: Some(Arc::new(json!({"ips": ["1.2.3.4", "5.6.7.8"]}))),
            error: None,
        },
    );
    Context {
        trigger: Arc::new(json!({"alert": {"ip": "1.2.3.4", "severity": 7}})),
        inputs: Arc::new(json!({"ip": "9.9.9.9"})),
        steps,
        item: None,
        index: None,
        deps: DepsStatus {
            any_failed: false,
            any_skipped: false,
            cancelled: false,
        },
        now: Some(1_704_067_200_000),
    }
}

#[test]
fn the_examples_of_the_brief() {
    let ctx = context();
    let with = ValueTemplate::parse(&json!({
        "ip": "${{ inputs.ip }}",
        "note": "seen ${{ size(steps.extract.output.ips) }} IPs",
    }))
    .unwrap();
    assert!(!with.is_literal());
    assert_eq!(
        with.render(&ctx).unwrap(),
        json!({"ip": "9.9.9.9", "note": "seen 2 IPs"})
    );
    let refs = with.references();
    assert_eq!(
        refs.contexts,
        BTreeSet::from(["inputs".into(), "steps".into()])
    );
    assert_eq!(refs.steps, BTreeSet::from(["extract".to_string()]));

    let cond = Expression::parse("${{ steps.vt.output.malicious > 3 }}").unwrap();
    assert!(cond.eval_bool(&ctx).unwrap());
    assert_eq!(cond.references().steps, BTreeSet::from(["vt".to_string()]));
    assert!(!cond.references().status_functions);
    let bare = Expression::parse("steps.vt.output.malicious > 3").unwrap();
    assert!(bare.eval_bool(&ctx).unwrap());
}

#[test]
fn references_are_complete() {
    let t = Template::parse(
        "${{ trigger.alert.ip }} ${{ secrets.VT_KEY }} ${{ failure() }} ${{ nope.x }} \
         ${{ item }} ${{ index }}",
    )
    .unwrap();
    let want = References {
        contexts: ["trigger", "secrets", "item", "index"]
            .into_iter()
            .map(String::from)
            .collect(),
        steps: BTreeSet::new(),
        secrets: BTreeSet::from(["VT_KEY".to_string()]),
        status_functions: true,
        unknown: BTreeSet::from(["nope".to_string()]),
    };
    assert_eq!(t.references(), &want);
    assert!(Template::parse("plain").unwrap().references().is_empty());
}

#[test]
fn context_default_works() {
    let ctx = Context::default();
    let t = Template::parse("${{ 1 + 2 }}").unwrap();
    assert_eq!(t.render(&ctx).unwrap(), json!(3));
    assert!(
        Expression::parse("always()")
            .unwrap()
            .eval_bool(&ctx)
            .unwrap()
    );
}

#[test]
fn errors_carry_offsets_and_pointers() {
    let e = Template::parse("ab ${{ 1 + }}").unwrap_err();
    assert_eq!(e.offset, 11);
    assert_eq!(e.message, "unexpected end of expression");
    let (pointer, e) =
        ValueTemplate::parse(&json!({"headers": ["ok", "${{ lowr('A') }}"]})).unwrap_err();
    assert_eq!(pointer, "/headers/1");
    assert_eq!(e.message, "unknown function `lowr` (did you mean `lower`?)");
    let t = ValueTemplate::parse(&json!({"x": ["${{ steps.vt.output.malicous }}"]})).unwrap();
    let e = t.render(&context()).unwrap_err();
    assert_eq!(
        e.message,
        "/x/0: steps.vt.output.malicous: no such key \"malicous\" (keys: \"malicious\", \"tags\")"
    );
}
