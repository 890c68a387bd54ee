//! Hostile input: nothing panics, overflows the stack, or runs without bound. Each case ends
//! in a typed error (or a value); tests assert that it returns, never how fast.

use std::sync::Arc;

use allama_expr::{Context, Expression, MAX_LIST_ITEMS, MAX_STRING_BYTES, Template, ValueTemplate};
use proptest::prelude::*;
use serde_json::{Value, json};

fn big_context() -> Context {
    let items: Vec<Value> = (0..50_000)
        .map(|i| json!({"i": i, "s": "x".repeat(8)}))
        .collect();
    Context {
        trigger: Arc::new(json!({
            "items": items,
            "text": "a".repeat(200_000),
            "ws": " ".repeat(150_000),
        })),
        ..Context::default()
    }
}

/// The start of an outcome, for assertion messages (results can be megabytes).
fn short(r: &Result<Value, String>) -> String {
    format!("{r:?}").chars().take(300).collect()
}

/// Parses and evaluates; the outcome does not matter, only that it is one.
fn run(ctx: &Context, src: &str) -> Result<Value, String> {
    match Template::parse(src) {
        Ok(t) => t.render(ctx).map_err(|e| e.message),
        Err(e) => Err(e.message),
    }
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    for open in [
        "(", "[", "{", "-", "!", "a.", "f(", "[0]", "1 + ", "x ? y : ",
    ] {
        let src = format!("${{{{ {} }}}}", open.repeat(1500));
        let e = Template::parse(&src).unwrap_err();
        assert!(
            e.message.contains("too deeply")
                || e.message.contains("too long")
                || e.message.contains("not closed"),
            "{open}: {e}"
        );
        let src = open.repeat(1000);
        assert!(Expression::parse(&src).is_err(), "{open}");
    }
}

/// The deepest expressions the limits admit still parse and evaluate on a small stack.
#[test]
fn admitted_depth_fits_a_small_stack() {
    let cases = [
        format!("{}1{}", "(".repeat(20), ")".repeat(20)),
        format!("{}1{}", "[".repeat(20), "]".repeat(20)),
        vec!["1"; 60].join(" + "),
        format!("trigger{}", ".a".repeat(60)),
        format!("{}1{}", "(1 + ".repeat(12), ")".repeat(12)),
        format!("{}1", "true ? 1 : ".repeat(50)),
        vec!["true"; 1000].join(" && "),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(move || {
            for src in &cases {
                if let Ok(e) = Expression::parse(src) {
                    let _ = e.eval(&Context::default());
                }
            }
        })
        .unwrap();
    assert!(handle.join().is_ok());
}

#[test]
fn oversized_sources_are_refused() {
    let long = format!("'{}'", "a".repeat(10_000));
    assert!(
        Expression::parse(&long)
            .unwrap_err()
            .message
            .contains("too long")
    );
    let many = "${{ 1 }}".repeat(1000);
    assert!(
        Template::parse(&many)
            .unwrap_err()
            .message
            .contains("more than")
    );
    // Long literal text around expressions is fine.
    let t = Template::parse(&format!("{}${{{{ 1 }}}}", "x".repeat(100_000))).unwrap();
    assert!(t.render(&Context::default()).is_ok());
}

#[test]
fn produced_values_are_capped() {
    let ctx = big_context();
    let cases = [
        "trigger.text.repeat(100)",
        "'ab'.repeat(600000)",
        "trigger.text + trigger.text + trigger.text + trigger.text + trigger.text + trigger.text",
        "trigger.text.replace('a', 'bbbbbbbbbb')",
        "trigger.text.padStart(2000000)",
        "range(1000000)",
        "trigger.items + trigger.items + trigger.items",
        "trigger.ws.split('')",
        "[trigger.text, trigger.text, trigger.text, trigger.text, trigger.text, trigger.text].join()",
        "'%s%s%s%s%s%s'.format([trigger.text, trigger.text, trigger.text, trigger.text, trigger.text, trigger.text])",
        "trigger.text.regexReplace('', 'xxxxxxxxxx')",
        "toJson(trigger.items)",
    ];
    for src in cases {
        let r = run(&ctx, &format!("${{{{ {src} }}}}"));
        assert!(
            r.as_ref()
                .is_err_and(|e| e.contains("at most") || e.contains("budget")),
            "{src}: {}",
            short(&r)
        );
    }
    // Interpolation is capped too.
    let e = run(
        &ctx,
        "${{ trigger.text }}${{ trigger.text }}${{ trigger.text }}${{ trigger.text }}${{ trigger.text }}${{ trigger.text }}",
    )
    .unwrap_err();
    assert!(e.contains(&MAX_STRING_BYTES.to_string()), "{e}");
    let _ = MAX_LIST_ITEMS;
}

#[test]
fn comprehensions_are_metered() {
    let ctx = big_context();
    for src in [
        "trigger.items.map(x, trigger.items.map(y, y.i)).size()",
        "trigger.items.all(x, !trigger.items.exists(y, y.i == -1))",
        "trigger.items.filter(x, trigger.items.exists(y, y.i == x.i)).size()",
        "trigger.items.exists(x, x.i in trigger.items.map(y, y.i) && x.i < 0)",
        "range(100000).map(a, range(100000).map(b, a + b)).size()",
        "trigger.items.map(x, trigger.text.lower()).size()",
    ] {
        let r = run(&ctx, &format!("${{{{ {src} }}}}"));
        assert!(
            r.as_ref().is_err_and(|e| e.contains("budget")),
            "{src}: {}",
            short(&r)
        );
    }
    // Linear work over the same data is within budget.
    assert_eq!(
        run(&ctx, "${{ trigger.items.filter(x, x.i % 2 == 0).size() }}").unwrap(),
        json!(25_000)
    );
}

#[test]
fn catastrophic_regexes_finish() {
    let ctx = big_context();
    for pattern in [
        "(a+)+$",
        "(a|aa)+$",
        "(a*)*b",
        "^(([a-z])+.)+[A-Z]([a-z])+$",
        "(.*a){20}",
    ] {
        let src = format!("${{{{ trigger.text.matches('{pattern}') }}}}");
        let r = run(&ctx, &src);
        assert!(
            r.is_ok() || r.as_ref().is_err_and(|e| e.contains("regex")),
            "{pattern}: {r:?}"
        );
        let src = format!("${{{{ size(trigger.text.findAll('{pattern}')) }}}}");
        let _ = run(&ctx, &src);
    }
    // A pattern whose compiled form is too large is refused, not built.
    let e = run(&ctx, "${{ 'a'.matches('(\\\\w{100}){100}') }}").unwrap_err();
    assert!(e.contains("simplify"), "{e}");
    // Built at runtime, from data.
    let e = run(&ctx, "${{ 'a'.matches(trigger.text.substring(0, 3000)) }}").unwrap_err();
    assert!(e.contains("regex"), "{e}");
}

#[test]
fn injection_looking_strings_are_data() {
    let ctx = Context {
        trigger: Arc::new(json!({
            "x": "${{ secrets.ADMIN }}",
            "y": "'); drop table; --",
            "z": "{{secret:ADMIN}}"
        })),
        ..Context::default()
    };
    // Values are never re-parsed as templates.
    assert_eq!(
        run(&ctx, "${{ trigger.x }}").unwrap(),
        json!("${{ secrets.ADMIN }}")
    );
    assert_eq!(
        run(&ctx, "a ${{ trigger.x }} b").unwrap(),
        json!("a ${{ secrets.ADMIN }} b")
    );
    assert_eq!(
        run(&ctx, "${{ trigger.y + '!' }}").unwrap(),
        json!("'); drop table; --!")
    );
    let t = ValueTemplate::parse(&json!({"k": "${{ trigger.z }}"})).unwrap();
    assert!(t.references().secrets.is_empty());
}

#[test]
fn unicode_everywhere() {
    let ctx = Context {
        trigger: Arc::new(json!({"名前": "Ünïcødé ✓", "emoji": "🦀🦀"})),
        ..Context::default()
    };
    assert_eq!(
        run(&ctx, "${{ trigger['名前'].upper() }}").unwrap(),
        json!("ÜNÏCØDÉ ✓")
    );
    assert_eq!(run(&ctx, "${{ size(trigger.emoji) }}").unwrap(), json!(2));
    assert_eq!(
        run(&ctx, "→ ${{ trigger.emoji.reverse() }} ←").unwrap(),
        json!("→ 🦀🦀 ←")
    );
    let e = Template::parse("ñ ${{ ñ }}").unwrap_err();
    assert_eq!(e.offset, 6);
    assert!(run(&ctx, "${{ trigger.emoji.substring(1, 5) }}").is_err());
}

#[test]
fn deep_input_values_are_refused() {
    let mut v = json!(1);
    for _ in 0..400 {
        v = json!({"a": v});
    }
    let ctx = Context {
        trigger: Arc::new(v),
        ..Context::default()
    };
    assert!(
        run(&ctx, "${{ size(dyn(trigger)) }}")
            .unwrap_err()
            .contains("nested deeper")
    );
    // The plain path is walked, not converted.
    assert!(run(&ctx, "${{ trigger.a.a.a }}").is_ok());
    let nested = "[".repeat(300) + &"]".repeat(300);
    assert!(run(&ctx, &format!("${{{{ fromJson('{nested}') }}}}")).is_err());
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("trigger".to_string()),
        Just("steps".to_string()),
        Just("secrets".to_string()),
        Just("inputs".to_string()),
        Just("item".to_string()),
        Just("now()".to_string()),
        Just("success()".to_string()),
        Just(".".to_string()),
        Just(".?".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("}}".to_string()),
        Just("${{".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("?".to_string()),
        Just("+".to_string()),
        Just("-".to_string()),
        Just("*".to_string()),
        Just("/".to_string()),
        Just("%".to_string()),
        Just("==".to_string()),
        Just("<".to_string()),
        Just("!".to_string()),
        Just("&&".to_string()),
        Just("||".to_string()),
        Just(" in ".to_string()),
        Just("'s'".to_string()),
        Just("\"".to_string()),
        Just("'''".to_string()),
        Just("r'\\d'".to_string()),
        Just("b'\\xff'".to_string()),
        Just("1".to_string()),
        Just("1u".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("1.5e308".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("x".to_string()),
        Just("map(x, x)".to_string()),
        Just("filter(x, x)".to_string()),
        Just("all(x, x)".to_string()),
        Just("exists_one(x, x)".to_string()),
        Just("has(".to_string()),
        Just("lower(".to_string()),
        Just("matches(".to_string()),
        Just("repeat(".to_string()),
        Just("optional.of(".to_string()),
        Just("orValue(".to_string()),
        Just("`a b`".to_string()),
        Just("//".to_string()),
        Just("\n".to_string()),
        Just("é".to_string()),
        Just("\u{0}".to_string()),
        "[a-z]{1,3}".prop_map(|s| s),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Token soup: whatever parses, evaluates to a value or an error.
    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(token(), 0..40)) {
        let src = tokens.concat();
        let ctx = big_context_small();
        let _ = Expression::parse(&src).map(|e| e.eval(&ctx));
        let _ = run(&ctx, &format!("${{{{ {src} }}}}"));
        let _ = run(&ctx, &src);
    }

    /// Arbitrary strings as templates and expressions.
    #[test]
    fn arbitrary_strings_never_panic(src in "\\PC{0,200}") {
        let ctx = big_context_small();
        let _ = Expression::parse(&src).map(|e| e.eval(&ctx));
        let _ = run(&ctx, &src);
    }

    /// Every library function, with arbitrary arguments of every type, in both call styles.
    #[test]
    fn functions_with_arbitrary_arguments(
        f in prop::sample::select(allama_expr::functions().collect::<Vec<_>>()),
        args in prop::collection::vec(prop_oneof![
            Just("''".to_string()), Just("'a.b@c'".to_string()), Just("-1".to_string()),
            Just("0".to_string()), Just("3".to_string()), Just("9223372036854775807".to_string()),
            Just("2.5".to_string()), Just("null".to_string()), Just("true".to_string()),
            Just("[]".to_string()), Just("[1, 'a', null]".to_string()), Just("{'a': 1}".to_string()),
            Just("b'\\xff'".to_string()), Just("timestamp('2024-01-01T00:00:00Z')".to_string()),
            Just("duration('1s')".to_string()), Just("'%'".to_string()), Just("'('".to_string()),
            Just("trigger.text".to_string()), Just("trigger.items".to_string()),
        ], 0..4),
    ) {
        let ctx = big_context_small();
        let global = format!("{}({})", f.name, args.join(", "));
        let _ = Expression::parse(&global).map(|e| e.eval(&ctx));
        if let Some((first, rest)) = args.split_first() {
            let member = format!("({first}).{}({})", f.name, rest.join(", "));
            let _ = Expression::parse(&member).map(|e| e.eval(&ctx));
        }
    }
}

fn big_context_small() -> Context {
    Context {
        trigger: Arc::new(json!({
            "items": [{"i": 1}, {"i": 2}],
            "text": "hello world 1.2.3.4 http://x.y",
        })),
        ..Context::default()
    }
}
