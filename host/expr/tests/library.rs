//! The function library: every documented example evaluates to its documented result, and
//! targeted cases for the functions whose edges matter.

use allama_expr::{Context, Expression, functions};
use serde_json::Value;

fn eval(src: &str) -> Result<Value, String> {
    Expression::parse(src)
        .map_err(|e| format!("parse: {e}"))?
        .eval(&Context::default())
        .map_err(|e| e.message)
}

/// Every function's example, as listed in `docs/expressions.md`: a broken function fails here
/// with its name.
#[test]
fn every_documented_example_holds() {
    let mut failures = Vec::new();
    for doc in functions() {
        let want: Value = serde_json::from_str(doc.result)
            .unwrap_or_else(|e| panic!("{}: bad expected JSON {:?}: {e}", doc.name, doc.result));
        match eval(doc.example) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!(
                "{}: `{}` gave {got}, want {want}",
                doc.name, doc.example
            )),
            Err(e) => failures.push(format!("{}: `{}` failed: {e}", doc.name, doc.example)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every function (and every arity) appears in `docs/expressions.md` with its example.
#[test]
fn every_function_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/expressions.md"
    ))
    .expect("docs/expressions.md exists");
    let missing: Vec<String> = functions()
        .filter(|f| {
            !doc.contains(&f.signature.replace('|', "\\|"))
                || !doc.contains(&f.example.replace('|', "\\|"))
        })
        .map(|f| f.signature.to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/expressions.md: {missing:#?}"
    );
}

fn ok(src: &str) -> Value {
    eval(src).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn fails(src: &str, needle: &str) {
    match eval(src) {
        Ok(v) => panic!("{src}: expected an error with {needle:?}, got {v}"),
        Err(e) => assert!(e.contains(needle), "{src}: {e}"),
    }
}

#[test]
fn strings() {
    assert_eq!(ok("'a,b'.split(',', 0)"), serde_json::json!([]));
    assert_eq!(
        ok("'a,b,c'.split(',', -1)"),
        serde_json::json!(["a", "b", "c"])
    );
    assert_eq!(ok("'abc'.split('')"), serde_json::json!(["a", "b", "c"]));
    assert_eq!(ok("'abc'.split('', 2)"), serde_json::json!(["a", "bc"]));
    assert_eq!(ok("'héllo'.substring(1, 2)"), serde_json::json!("é"));
    fails("'abc'.substring(4)", "out of range");
    fails("'abc'.substring(2, 1)", "before start");
    assert_eq!(ok("'héllo'.indexOf('l')"), serde_json::json!(2));
    assert_eq!(ok("'abc'.indexOf('z')"), serde_json::json!(-1));
    assert_eq!(ok("'abc'.charAt(3)"), serde_json::json!(""));
    fails("'abc'.charAt(4)", "out of range");
    assert_eq!(ok("'ab'.padStart(5, 'xy')"), serde_json::json!("xyxab"));
    fails("'a'.padStart(3, '')", "must not be empty");
    assert_eq!(ok("'x'.repeat(0)"), serde_json::json!(""));
    fails("'x'.repeat(-1)", "must not be negative");
    assert_eq!(ok("''.capitalize()"), serde_json::json!(""));
    assert_eq!(ok("'aaa'.replace('', '-')"), serde_json::json!("-a-a-a-"));
    fails("[{'a': 1}].join()", "only strings, numbers and bools");
    fails("'%d'.format(['x'])", "needs an int");
    fails("'%s %s'.format(['x'])", "no matching value");
    fails("'%q'.format([1])", "not a supported format verb");
    fails("'100%'.format([])", "lone `%`");
    assert_eq!(
        ok("'%x/%X'.format([255, 'hi'])"),
        serde_json::json!("ff/6869")
    );
    assert_eq!(ok("'%.3f'.format([2])"), serde_json::json!("2.000"));
    assert_eq!(
        ok("'%s'.format([{'a': [1]}])"),
        serde_json::json!("{\"a\":[1]}")
    );
}

#[test]
fn regexes() {
    assert_eq!(ok("'abc'.find('z')"), serde_json::json!(""));
    assert_eq!(ok("'a1b2'.findAll('\\\\d', 0)"), serde_json::json!([]));
    assert_eq!(
        ok(
            "'2024-01-02'.regexReplace('(?P<y>\\\\d+)-(?P<m>\\\\d+)-(?P<d>\\\\d+)', '${d}/${m}/${y}')"
        ),
        serde_json::json!("02/01/2024")
    );
    assert_eq!(
        ok("'ab'.captures('(a)(x)?')"),
        serde_json::json!(["a", "a", null])
    );
    assert_eq!(ok("'zz'.captures('a')"), serde_json::json!([]));
    assert_eq!(ok("'zz'.namedCaptures('(?P<a>a)')"), serde_json::json!({}));
    assert_eq!(ok("'ABC'.matches('(?i)^abc$')"), serde_json::json!(true));
    fails("'a'.matches(trigger.x.orValue('('))", "");
    let e = Expression::parse("'a'.matches('(')").unwrap_err();
    assert_eq!(e.message, "invalid regex: unclosed group");
    // A pattern from data is checked when it runs.
    let ctx = Context {
        trigger: std::sync::Arc::new(serde_json::json!({"re": "["})),
        ..Context::default()
    };
    let e = Expression::parse("'a'.matches(trigger.re)")
        .unwrap()
        .eval(&ctx)
        .unwrap_err();
    assert!(e.message.contains("invalid regex"), "{e}");
}

#[test]
fn collections() {
    fails("[1, 'a'].sort()", "cannot compare");
    assert_eq!(
        ok("[null, 2, 1].sortBy('x')"),
        serde_json::json!([null, 2, 1])
    );
    assert_eq!(
        ok("[{'s': 2}, {}, {'s': 1}].sortBy('s')"),
        serde_json::json!([{}, {"s": 1}, {"s": 2}])
    );
    assert_eq!(
        ok("[[1], [1], {'a': 1}, {'a': 1}].unique()"),
        serde_json::json!([[1], {"a": 1}])
    );
    assert_eq!(ok("[1, 2, 3].slice(5)"), serde_json::json!([]));
    assert_eq!(ok("[1, 2, 3].slice(2, 1)"), serde_json::json!([]));
    assert_eq!(ok("[1, 2, 3].slice(-10, -1)"), serde_json::json!([1, 2]));
    fails("[1].chunk(0)", "at least 1");
    assert_eq!(ok("range(3, 1)"), serde_json::json!([]));
    assert_eq!(ok("[].sum()"), serde_json::json!(0));
    fails("[9223372036854775807, 1].sum()", "overflows");
    fails("['a'].sum()", "not a number");
    assert_eq!(ok("[].avg()"), serde_json::Value::Null);
    assert_eq!(ok("[].min()"), serde_json::Value::Null);
    fails("[1, 'a'].max()", "cannot compare");
    assert_eq!(ok("{1: 'a', 2: 'b'}.keys()"), serde_json::json!([1, 2]));
    fails("fromEntries([[[1], 2]])", "map keys are");
    fails("fromEntries([1])", "not a [key, value] pair");
    fails("merge([{'a': 1}, 2])", "not a map");
    fails("[{'h': 1}, {}].groupBy('h')", "element 1 has no key \"h\"");
    assert_eq!(
        ok("[1, 1, true].countBy()"),
        serde_json::json!({"1": 2, "true": 1})
    );
    fails("[[1]].countBy()", "map keys are");
    assert_eq!(
        ok("{'a': [{'b': 1}]}.get(['a', 0, 'b'])"),
        serde_json::json!(1)
    );
    assert_eq!(ok("{'a': [{'b': 1}]}.get('a.0.b')"), serde_json::json!(1));
    assert_eq!(ok("{'a': 1}.get('a.b.c')"), serde_json::Value::Null);
    assert_eq!(ok("{'a': null}.get('a', 5)"), serde_json::json!(5));
    fails("{'a': 1}.get(1)", "must be a string or a list");
    assert_eq!(ok("coalesce(null, null)"), serde_json::Value::Null);
    assert_eq!(
        ok("isEmpty(null) && isEmpty({}) && !isEmpty(' ')"),
        serde_json::json!(true)
    );
    assert_eq!(ok("round(-2.5)"), serde_json::json!(-3.0));
    assert_eq!(ok("round(7)"), serde_json::json!(7));
    fails("abs(-9223372036854775807 - 1)", "overflows");
    assert_eq!(
        ok("{'a': 1}.contains('a') && !{'a': 1}.contains(1)"),
        serde_json::json!(true)
    );
    assert_eq!(ok("'abc'.contains('b')"), serde_json::json!(true));
}

#[test]
fn time() {
    assert_eq!(
        ok("string(parseTimestamp('2024-04-03 10:30:00 +0200', '%Y-%m-%d %H:%M:%S %z'))"),
        serde_json::json!("2024-04-03T08:30:00Z")
    );
    assert_eq!(
        ok("string(parseTimestamp('2024-04-03', '%Y-%m-%d'))"),
        serde_json::json!("2024-04-03T00:00:00Z")
    );
    fails("parseTimestamp('nope', '%Y')", "does not match");
    // A bad strftime specifier is an error, not a panic.
    fails(
        "formatTimestamp(timestamp('2024-01-01T00:00:00Z'), '%Q %')",
        "not a valid format",
    );
    fails(
        "formatTimestamp('yesterday', '%Y')",
        "not an RFC 3339 timestamp",
    );
    fails("fromUnix(1e300)", "out of range");
    fails("fromUnixMillis(9223372036854775807)", "out of range");
    assert_eq!(
        ok("string(fromUnix(1.5))"),
        serde_json::json!("1970-01-01T00:00:01.5Z")
    );
    assert_eq!(
        ok("unixSeconds('1970-01-01T00:01:00Z')"),
        serde_json::json!(60)
    );
}

#[test]
fn encodings() {
    assert_eq!(ok("base64Decode('aGk')"), serde_json::json!("hi"));
    assert_eq!(ok("base64Decode('aG k=\\n')"), serde_json::json!("hi"));
    fails("base64Decode('!!!')", "invalid base64");
    fails(
        "base64Decode('//79')",
        "not UTF-8 text; use base64DecodeBytes",
    );
    assert_eq!(ok("base64Encode(b'\\xff\\x00')"), serde_json::json!("/wA="));
    fails("hexDecode('zz')", "invalid hex");
    fails("urlDecode('%ff')", "not UTF-8");
    fails("fromJson('{')", "invalid JSON");
    fails("fromYaml('a: [')", "invalid YAML");
    // Alias expansion is bounded (a "billion laughs" document).
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]";
    let _ = eval(&format!("size(fromYaml('{laughs}'))"));
    fails("toJson(1.0 / 0.0)", "no JSON representation");
    assert_eq!(
        ok("parseUrl('HTTP://user@Evil.com/a%20b?x=1&x=2')"),
        serde_json::json!({
            "scheme": "http", "host": "evil.com", "port": 80, "path": "/a%20b",
            "query": "x=1&x=2", "fragment": null, "username": "user", "params": {"x": "1"}
        })
    );
    fails("parseUrl('not a url')", "invalid URL");
    fails(
        "toQueryString({'a': {'b': 1}})",
        "use strings, numbers, bools",
    );
    assert_eq!(
        ok("md5(b'')"),
        serde_json::json!("d41d8cd98f00b204e9800998ecf8427e")
    );
    assert_eq!(
        ok("hmacSha256(b'key', 'msg') == hmacSha256('key', b'msg')"),
        serde_json::json!(true)
    );
}

#[test]
fn networks() {
    fails("inCidr('10.0.0.1', '10.0.0.0/33')", "not a CIDR range");
    assert_eq!(ok("inCidr('nope', '10.0.0.0/8')"), serde_json::json!(false));
    assert_eq!(
        ok("inCidr('10.0.0.1', '10.0.0.1')"),
        serde_json::json!(true)
    );
    assert_eq!(
        ok("inCidr('2001:db8::1', '2001:db8::/32')"),
        serde_json::json!(true)
    );
    assert_eq!(
        ok("inCidr('10.0.0.1', '2001:db8::/32')"),
        serde_json::json!(false)
    );
    assert_eq!(ok("isIp(' 1.2.3.4 ')"), serde_json::json!(true));
    assert_eq!(ok("extractIps('')"), serde_json::json!([]));
    assert_eq!(
        ok("extractUrls('(see http://a.example/x), and ftp://f.example.')"),
        serde_json::json!(["http://a.example/x", "ftp://f.example"])
    );
    assert_eq!(
        ok("extractDomains('report.pdf invoice.zip evil[.]ru Setup.EXE')"),
        serde_json::json!(["evil.ru"])
    );
}
