//! `${{ … }}` templates: in one string ([`Template`]) and in a JSON tree ([`ValueTemplate`]).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::convert::MAX_VALUE_DEPTH;
use crate::error::{EvalError, ParseError};
use crate::expression::Expression;
use crate::limits::{MAX_STRING_BYTES, MAX_TEMPLATE_EXPRESSIONS, skip_string};
use crate::{Context, References};

/// One part of a template string.
#[derive(Clone, Debug)]
pub(crate) enum Piece {
    Text(String),
    Expr(Expression),
}

/// Splits a template string into text and parsed expressions.
///
/// An expression runs from `${{` to the first `}}` that is outside a string literal, a
/// comment and any `{…}` the expression opened, so `${{ {'a': {'b': 1}} }}` and
/// `${{ "}}" }}` work. There is no escape for a literal `${{`: write `${{ "${{" }}`.
pub(crate) fn split(src: &str) -> Result<Vec<Piece>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut expressions = 0;
    let mut i = 0;
    while i < chars.len() {
        if !(chars[i] == '$' && chars.get(i + 1) == Some(&'{') && chars.get(i + 2) == Some(&'{')) {
            text.push(chars[i]);
            i += 1;
            continue;
        }
        let open = i;
        let start = i + 3;
        let end = find_close(&chars, start)
            .ok_or_else(|| ParseError::new(open, "`${{` is not closed by `}}`"))?;
        expressions += 1;
        if expressions > MAX_TEMPLATE_EXPRESSIONS {
            return Err(ParseError::new(
                open,
                format!("more than {MAX_TEMPLATE_EXPRESSIONS} `${{{{ }}}}` in one string"),
            ));
        }
        let inner: String = chars[start..end].iter().collect();
        let expr = Expression::parse_bare(&inner).map_err(|e| e.shifted(start))?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Expr(expr));
        i = end + 2;
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The index of the `}}` closing an expression that starts at `i`.
fn find_close(chars: &[char], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' => {
                i = skip_string(chars, i);
                continue;
            }
            'r' | 'R' | 'b' | 'B'
                if matches!(chars.get(i + 1), Some('"' | '\''))
                    || (matches!(chars.get(i + 1), Some('r' | 'R' | 'b' | 'B'))
                        && matches!(chars.get(i + 2), Some('"' | '\''))) =>
            {
                if i > 0 && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '_') {
                    i += 1;
                    continue;
                }
                i = skip_string(chars, i);
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '{' => depth += 1,
            '}' if depth == 0 && chars.get(i + 1) == Some(&'}') => return Some(i),
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// A string that may contain `${{ expr }}` segments, parsed once.
///
/// Cloning is cheap for the expressions (shared); it is `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
    refs: References,
}

impl Template {
    /// Parses a template string. Error offsets are character offsets into `src`.
    pub fn parse(src: &str) -> Result<Template, ParseError> {
        let pieces = split(src)?;
        let mut refs = References::default();
        for piece in &pieces {
            if let Piece::Expr(e) = piece {
                refs.merge(e.references());
            }
        }
        Ok(Template {
            source: src.to_owned(),
            pieces,
            refs,
        })
    }

    /// The source string.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether there is no `${{ }}` at all: rendering gives the source back.
    pub fn is_literal(&self) -> bool {
        !self.pieces.iter().any(|p| matches!(p, Piece::Expr(_)))
    }

    /// What the template's expressions read.
    pub fn references(&self) -> &References {
        &self.refs
    }

    /// Whole-string template (`"${{ x }}"` with nothing around it) keeps the value's JSON type
    /// (number, list, map…); otherwise segments are rendered to text (strings raw, everything
    /// else as compact JSON) and concatenated. The result of a concatenation is at most
    /// [`MAX_STRING_BYTES`].
    pub fn render(&self, ctx: &Context) -> Result<Value, EvalError> {
        self.render_cow(ctx).map(Cow::into_owned)
    }

    fn render_cow<'c>(&'c self, ctx: &'c Context) -> Result<Cow<'c, Value>, EvalError> {
        match self.pieces.as_slice() {
            [] => Ok(Cow::Owned(Value::String(String::new()))),
            [Piece::Expr(e)] => e.eval_cow(ctx),
            [Piece::Text(t)] => Ok(Cow::Owned(Value::String(t.clone()))),
            pieces => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Expr(e) => match e.eval_cow(ctx)?.as_ref() {
                            Value::String(s) => out.push_str(s),
                            other => out.push_str(&other.to_string()),
                        },
                    }
                    if out.len() > MAX_STRING_BYTES {
                        return Err(EvalError::new(format!(
                            "the rendered string is longer than {MAX_STRING_BYTES} bytes"
                        )));
                    }
                }
                Ok(Cow::Owned(Value::String(out)))
            }
        }
    }
}

/// A JSON tree whose strings may be templates (a step's `with:`, a playbook's `outputs:`).
///
/// Object keys are taken literally; only string values are templates.
#[derive(Clone, Debug)]
pub struct ValueTemplate {
    node: Node,
    refs: References,
}

#[derive(Clone, Debug)]
enum Node {
    /// A subtree without any `${{ }}`, rendered by cloning.
    Literal(Value),
    Template(Template),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// One step of a JSON pointer (RFC 6901).
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl ValueTemplate {
    /// Parses every string in `v` as a template. Errors carry the JSON pointer of the
    /// failing string (e.g. `/headers/0`).
    pub fn parse(v: &Value) -> Result<ValueTemplate, (String /*json pointer*/, ParseError)> {
        let mut refs = References::default();
        let mut pointer = String::new();
        let node = parse_node(v, &mut pointer, &mut refs, 0)?;
        Ok(ValueTemplate { node, refs })
    }

    /// What all the templates in the tree read.
    pub fn references(&self) -> References {
        self.refs.clone()
    }

    /// Whether no string in the tree has a `${{ }}`.
    pub fn is_literal(&self) -> bool {
        matches!(self.node, Node::Literal(_))
    }

    /// Renders every template in the tree; an error says the JSON pointer where it happened.
    pub fn render(&self, ctx: &Context) -> Result<Value, EvalError> {
        let mut pointer = String::new();
        render_node(&self.node, ctx, &mut pointer)
    }
}

fn parse_node(
    v: &Value,
    pointer: &mut String,
    refs: &mut References,
    depth: usize,
) -> Result<Node, (String, ParseError)> {
    if depth > MAX_VALUE_DEPTH {
        return Err((
            pointer.clone(),
            ParseError::new(
                0,
                format!("value is nested deeper than {MAX_VALUE_DEPTH} levels"),
            ),
        ));
    }
    Ok(match v {
        Value::String(s) => {
            let t = Template::parse(s).map_err(|e| (pointer.clone(), e))?;
            if t.is_literal() {
                Node::Literal(v.clone())
            } else {
                refs.merge(t.references());
                Node::Template(t)
            }
        }
        Value::Array(items) => {
            let mut nodes = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                nodes.push(parse_node(item, pointer, refs, depth + 1)?);
                pointer.truncate(len);
            }
            if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                Node::Literal(v.clone())
            } else {
                Node::Array(nodes)
            }
        }
        Value::Object(map) => {
            let mut nodes = Vec::with_capacity(map.len());
            for (k, item) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&pointer_token(k));
                nodes.push((k.clone(), parse_node(item, pointer, refs, depth + 1)?));
                pointer.truncate(len);
            }
            if nodes.iter().all(|(_, n)| matches!(n, Node::Literal(_))) {
                Node::Literal(v.clone())
            } else {
                Node::Object(nodes)
            }
        }
        other => Node::Literal(other.clone()),
    })
}

fn render_node(node: &Node, ctx: &Context, pointer: &mut String) -> Result<Value, EvalError> {
    match node {
        Node::Literal(v) => Ok(v.clone()),
        Node::Template(t) => t.render(ctx).map_err(|e| e.at(pointer_or_root(pointer))),
        Node::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                out.push(render_node(item, ctx, pointer)?);
                pointer.truncate(len);
            }
            Ok(Value::Array(out))
        }
        Node::Object(entries) => {
            let mut out = Map::new();
            for (k, item) in entries {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&pointer_token(k));
                out.insert(k.clone(), render_node(item, ctx, pointer)?);
                pointer.truncate(len);
            }
            Ok(Value::Object(out))
        }
    }
}

/// The pointer for messages: the whole document is `/` rather than the empty string.
fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn ctx() -> Context {
        Context {
            trigger: Arc::new(json!({"ip": "1.2.3.4", "n": 3, "tags": ["a", "b"]})),
            ..Context::default()
        }
    }

    #[test]
    fn splits_text_and_expressions() {
        let t = Template::parse("ip ${{ trigger.ip }} n=${{trigger.n}}!").unwrap();
        assert!(!t.is_literal());
        assert_eq!(t.render(&ctx()).unwrap(), json!("ip 1.2.3.4 n=3!"));
    }

    #[test]
    fn whole_template_keeps_type() {
        let t = Template::parse("${{ trigger.tags }}").unwrap();
        assert_eq!(t.render(&ctx()).unwrap(), json!(["a", "b"]));
        let t = Template::parse(" ${{ trigger.n }}").unwrap();
        assert_eq!(t.render(&ctx()).unwrap(), json!(" 3"));
    }

    #[test]
    fn braces_and_strings_inside_expressions() {
        let t = Template::parse("${{ {'a': {'b': 1}} }}").unwrap();
        assert_eq!(t.render(&ctx()).unwrap(), json!({"a": {"b": 1}}));
        let t = Template::parse("x${{ \"}}\" }}y").unwrap();
        assert_eq!(t.render(&ctx()).unwrap(), json!("x}}y"));
        let t = Template::parse("${{ r'}}' + '${{' }}").unwrap();
        assert_eq!(t.render(&ctx()).unwrap(), json!("}}${{"));
    }

    #[test]
    fn literal_templates() {
        let t = Template::parse("no expressions { here } $ {{").unwrap();
        assert!(t.is_literal());
        assert_eq!(
            t.render(&ctx()).unwrap(),
            json!("no expressions { here } $ {{")
        );
        assert!(Template::parse("").unwrap().is_literal());
    }

    #[test]
    fn parse_errors_have_offsets_in_the_template() {
        let e = Template::parse("héllo ${{ trigger.ip").unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("not closed"));
        let e = Template::parse("héllo ${{ 1 + }}").unwrap_err();
        assert_eq!(e.offset, 14, "{e}");
        let e = Template::parse("a ${{ }} b").unwrap_err();
        assert_eq!(e.message, "empty expression");
        assert_eq!(e.offset, 5);
    }

    #[test]
    fn value_templates_render_with_pointers() {
        let v =
            json!({"a": "${{ trigger.ip }}", "b": ["x", "${{ trigger.n + 1 }}"], "c": {"d": 1}});
        let t = ValueTemplate::parse(&v).unwrap();
        assert!(!t.is_literal());
        assert_eq!(
            t.render(&ctx()).unwrap(),
            json!({"a": "1.2.3.4", "b": ["x", 4], "c": {"d": 1}})
        );
        let bad = ValueTemplate::parse(&json!({"h/x": ["ok", "${{ 1 + }}"]})).unwrap_err();
        assert_eq!(bad.0, "/h~1x/1");
        let t = ValueTemplate::parse(&json!({"h": ["${{ trigger.nope }}"]})).unwrap();
        let e = t.render(&ctx()).unwrap_err();
        assert!(
            e.message.starts_with("/h/0: trigger.nope: no such key"),
            "{e}"
        );
        assert!(
            ValueTemplate::parse(&json!({"a": [1, "b"]}))
                .unwrap()
                .is_literal()
        );
    }
}
