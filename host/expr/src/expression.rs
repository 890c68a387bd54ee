//! One expression, parsed once, evaluated many times.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use cel::ExecutionError;
use cel::common::ast::IdedExpr;
use cel::common::types::{CelBool, CelInt, CelMap, CelMapKey, CelString, CelTimestamp};
use cel::common::value::Val;
use serde_json::Value;

use crate::analyze::{self, ALWAYS, Analysis, CANCELLED, FAILURE, NOW, SUCCESS};
use crate::convert::{self, type_name};
use crate::error::{EvalError, ParseError};
use crate::meter::Metered;
use crate::path::{self, Path, Root, Seg, Trie};
use crate::template;
use crate::{Context, References, StepView, functions};

/// One bare expression (for `if:` and `for_each:`); accepts either `a > 1` or `${{ a > 1 }}`.
///
/// Cloning is cheap (the parsed form is shared); it is `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Expression {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: String,
    refs: References,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Reads nothing that changes: evaluated once, at parse time.
    Constant(Value),
    /// A plain member path: evaluated by walking the JSON, without CEL.
    Path(Path),
    /// Anything else.
    Cel(Box<Compiled>),
}

#[derive(Debug)]
struct Compiled {
    ast: IdedExpr,
    analysis: Analysis,
}

/// A JSON null to borrow for steps without output or error.
static NULL: Value = Value::Null;

impl Expression {
    /// Parses one expression, bare or wrapped in a single `${{ … }}`.
    pub fn parse(src: &str) -> Result<Expression, ParseError> {
        let trimmed_start = src.len() - src.trim_start().len();
        let trimmed = src.trim();
        if trimmed.starts_with("${{") {
            let pieces = template::split(src)?;
            return match pieces.as_slice() {
                [template::Piece::Expr(e)] => Ok(e.clone()),
                _ => Err(ParseError::new(
                    src[..trimmed_start].chars().count(),
                    "write an expression either bare or as one `${{ … }}` with nothing around it",
                )),
            };
        }
        Expression::parse_bare(src)
    }

    /// Parses the inside of a `${{ … }}` (or a bare expression). Offsets are relative to
    /// `src`.
    pub(crate) fn parse_bare(src: &str) -> Result<Expression, ParseError> {
        let (ast, analysis) = analyze::parse(src)?;
        let refs = analysis.refs.clone();
        let kind = if let Some(path) = analysis.pure_path.clone() {
            Kind::Path(path)
        } else {
            let compiled = Compiled { ast, analysis };
            match compiled.constant() {
                Some(value) => Kind::Constant(value),
                None => Kind::Cel(Box::new(compiled)),
            }
        };
        Ok(Expression {
            inner: Arc::new(Inner {
                source: src.to_owned(),
                refs,
                kind,
            }),
        })
    }

    /// The source this expression was parsed from.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// What this expression reads.
    pub fn references(&self) -> &References {
        &self.inner.refs
    }

    /// Evaluates to a JSON value.
    pub fn eval(&self, ctx: &Context) -> Result<Value, EvalError> {
        self.eval_cow(ctx).map(Cow::into_owned)
    }

    /// Evaluates a condition: an error unless the result is a bool.
    pub fn eval_bool(&self, ctx: &Context) -> Result<bool, EvalError> {
        match self.eval_cow(ctx)?.as_ref() {
            Value::Bool(b) => Ok(*b),
            other => Err(EvalError::new(format!(
                "`{}` must evaluate to a bool, not {} ({})",
                short(&self.inner.source),
                path::kind(other),
                short(&other.to_string())
            ))),
        }
    }

    /// Evaluates, borrowing from the context when the expression is a plain path.
    pub(crate) fn eval_cow<'c>(&'c self, ctx: &'c Context) -> Result<Cow<'c, Value>, EvalError> {
        match &self.inner.kind {
            Kind::Constant(v) => Ok(Cow::Borrowed(v)),
            Kind::Path(p) => path::walk(ctx, p),
            Kind::Cel(c) => c
                .eval(ctx)
                .map(Cow::Owned)
                .map_err(|e| e.into_eval_error(&self.inner.source)),
        }
    }
}

/// An evaluation error, and whether its message already names where it happened.
struct Failure {
    message: String,
    located: bool,
}

impl Failure {
    fn located(e: EvalError) -> Failure {
        Failure {
            message: e.message,
            located: true,
        }
    }

    fn plain(message: String) -> Failure {
        Failure {
            message,
            located: false,
        }
    }

    fn into_eval_error(self, source: &str) -> EvalError {
        if self.located {
            EvalError::new(self.message)
        } else {
            EvalError::new(format!("`{}`: {}", short(source), self.message))
        }
    }
}

/// `s` cut to a length that fits in a message.
fn short(s: &str) -> Cow<'_, str> {
    const MAX: usize = 80;
    let s = s.trim();
    match s.char_indices().nth(MAX) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
    }
}

impl Compiled {
    /// The value of an expression that reads nothing (secrets are literals by now), when it
    /// evaluates without error.
    fn constant(&self) -> Option<Value> {
        let refs = &self.analysis.refs;
        let reads = refs.contexts.iter().any(|c| c != "secrets");
        if reads || !refs.unknown.is_empty() || refs.status_functions || self.analysis.uses_now {
            return None;
        }
        self.eval(&Context::default()).ok()
    }

    fn eval(&self, ctx: &Context) -> Result<Value, Failure> {
        let refs = &self.analysis.refs;
        if let Some(name) = refs.unknown.iter().next() {
            return Err(Failure::plain(format!(
                "unknown name `{name}` (expressions can read trigger, inputs, steps, item, \
                 index and secrets)"
            )));
        }
        let mut cel_ctx = cel::Context::with_env(functions::env());
        for (root, trie) in &self.analysis.tries {
            let bound = bind_root(ctx, *root, trie).map_err(Failure::located)?;
            cel_ctx.add_variable_as_val(root.name(), bound);
        }
        if self.analysis.uses_now {
            cel_ctx.add_variable_as_val(NOW, Box::new(CelTimestamp::from(now(ctx))));
        }
        if refs.status_functions {
            let deps = ctx.deps;
            for (name, value) in [
                (ALWAYS, true),
                (SUCCESS, deps.success()),
                (FAILURE, deps.any_failed),
                (CANCELLED, deps.cancelled),
            ] {
                cel_ctx.add_variable_as_val(name, Box::new(CelBool::from(value)));
            }
        }
        let result = {
            let _meter = Metered::start();
            cel::Value::resolve(&self.ast, &cel_ctx)
        };
        match result {
            Ok(v) => {
                convert::cel_to_json(&v).map_err(|e| Failure::plain(format!("the result {e}")))
            }
            Err(e) => Err(self.explain(e, ctx)),
        }
    }

    /// Turns the interpreter's error into one an analyst can act on: a failed member access
    /// is retraced on the JSON to name the path.
    fn explain(&self, err: ExecutionError, ctx: &Context) -> Failure {
        let failing_path = |want: &dyn Fn(&str) -> bool| {
            self.analysis
                .paths
                .iter()
                .filter_map(|p| path::walk(ctx, p).err())
                .find(|e| want(&e.message))
        };
        match err {
            ExecutionError::NoSuchKey(key) => {
                let quoted = Value::String(key.to_string()).to_string();
                let needle = format!("no such key {quoted}");
                let step = format!("no step `{key}`");
                match failing_path(&|m| m.contains(&needle) || m.contains(&step)) {
                    Some(e) => Failure::located(e),
                    None => Failure::plain(needle),
                }
            }
            ExecutionError::IndexOutOfBounds(i) => {
                let index = match &i {
                    cel::Value::Int(n) => n.to_string(),
                    cel::Value::UInt(n) => n.to_string(),
                    other => format!("{other:?}"),
                };
                let needle = format!("index {index} is out of bounds");
                match failing_path(&|m| m.contains(&needle)) {
                    Some(e) => Failure::located(e),
                    None => Failure::plain(needle),
                }
            }
            ExecutionError::NoSuchOverload(o) => {
                if matches!(o.function(), "_._" | "_[_]")
                    && let Some(e) = failing_path(&|_| true)
                {
                    return Failure::located(e);
                }
                let op = operator(o.function());
                let types = o.argument_types();
                Failure::plain(if o.is_member_function() && !types.is_empty() {
                    format!(
                        "`{op}` cannot be called on a {} with ({})",
                        types[0],
                        types[1..].join(", ")
                    )
                } else {
                    format!("`{op}` cannot be applied to ({})", types.join(", "))
                })
            }
            ExecutionError::UndeclaredReference(name) => {
                Failure::plain(format!("unknown name or function `{name}`"))
            }
            ExecutionError::FunctionError { function, message } => {
                if function.starts_with('@') {
                    Failure::plain(message)
                } else {
                    Failure::plain(format!("{function}(): {message}"))
                }
            }
            ExecutionError::DivisionByZero(_) => Failure::plain("division by zero".into()),
            ExecutionError::RemainderByZero(_) => Failure::plain("modulo by zero".into()),
            ExecutionError::Overflow(op, a, b) => Failure::plain(match b {
                cel::Value::Null => {
                    format!("integer overflow in `{}` of {}", operator(op), shown(&a))
                }
                b => format!(
                    "integer overflow in `{}` of {} and {}",
                    operator(op),
                    shown(&a),
                    shown(&b)
                ),
            }),
            ExecutionError::ValuesNotComparable(a, b) => Failure::plain(format!(
                "cannot compare {} with {}",
                type_name(&a),
                type_name(&b)
            )),
            ExecutionError::UnsupportedBinaryOperator(op, a, b) => Failure::plain(format!(
                "`{}` cannot be applied to ({}, {})",
                operator(op),
                type_name(&a),
                type_name(&b)
            )),
            ExecutionError::DuplicateKey(k) => {
                Failure::plain(format!("the map literal repeats the key {}", shown(&k)))
            }
            ExecutionError::UnsupportedKeyType(v) => Failure::plain(format!(
                "a {} cannot be a map key (keys are strings, ints, uints or bools)",
                type_name(&v)
            )),
            ExecutionError::UnexpectedType { got, want } => {
                Failure::plain(format!("expected {want}, got {got}"))
            }
            other => Failure::plain(other.to_string()),
        }
    }
}

/// An operator's name as written in source.
fn operator(function: &str) -> &str {
    match function {
        "_+_" => "+",
        "_-_" => "-",
        "_*_" => "*",
        "_/_" => "/",
        "_%_" => "%",
        "_==_" => "==",
        "_!=_" => "!=",
        "_<_" => "<",
        "_<=_" => "<=",
        "_>_" => ">",
        "_>=_" => ">=",
        "_[_]" => "[]",
        "_._" => ".",
        "@in" => "in",
        "!_" => "!",
        "-_" => "-",
        "_&&_" => "&&",
        "_||_" => "||",
        "_?_:_" => "?:",
        "add" => "+",
        "sub" => "-",
        "mul" => "*",
        "div" => "/",
        "rem" => "%",
        "negate" => "-",
        other => other,
    }
}

/// A short rendering of a CEL value for messages.
fn shown(v: &cel::Value) -> String {
    match convert::cel_to_json(v) {
        Ok(json) => short(&json.to_string()).into_owned(),
        Err(_) => type_name(v).to_owned(),
    }
}

/// The time `now()` returns: the pinned one, else the system clock.
fn now(ctx: &Context) -> chrono::DateTime<chrono::FixedOffset> {
    let millis = ctx.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    });
    let millis = i64::try_from(millis).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .fixed_offset()
}

/// The CEL value of one context root, pruned to what the expression reads.
fn bind_root<'a>(
    ctx: &'a Context,
    root: Root,
    trie: &Trie,
) -> Result<Box<dyn Val + 'a>, EvalError> {
    let value: &'a Value = match root {
        Root::Trigger => &ctx.trigger,
        Root::Inputs => &ctx.inputs,
        Root::Item => ctx
            .item
            .as_deref()
            .ok_or_else(|| EvalError::new("`item` is only defined inside `for_each`"))?,
        Root::Index => {
            let i = ctx
                .index
                .ok_or_else(|| EvalError::new("`index` is only defined inside `for_each`"))?;
            return Ok(Box::new(CelInt::from(i64::try_from(i).unwrap_or(i64::MAX))));
        }
        Root::Steps => return bind_steps(ctx, trie),
    };
    convert::bind(value, Some(trie), 0).map_err(|e| EvalError::new(format!("{}: {e}", root.name())))
}

fn bind_steps<'a>(ctx: &'a Context, trie: &Trie) -> Result<Box<dyn Val + 'a>, EvalError> {
    let mut out: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::new();
    let mut add = |id: &'a str, view: &'a StepView, sub: Option<&Trie>| {
        bind_step(id, view, sub).map(|v| {
            out.insert(CelMapKey::from(id), v);
        })
    };
    if trie.whole {
        for (id, view) in &ctx.steps {
            add(id, view, None)?;
        }
    } else {
        for (seg, sub) in &trie.children {
            if let Seg::Key(id) = seg
                && let Some((id, view)) = ctx.steps.get_key_value(id)
            {
                add(id, view, Some(sub))?;
            }
        }
    }
    Ok(Box::new(CelMap::from(out)))
}

fn bind_step<'a>(
    id: &str,
    view: &'a StepView,
    trie: Option<&Trie>,
) -> Result<Box<dyn Val + 'a>, EvalError> {
    let trie = trie.filter(|t| !t.whole);
    let wanted = |field: &str| match trie {
        None => Some(None),
        Some(t) => t.child(&Seg::Key(field.to_owned())).map(Some),
    };
    let mut out: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::new();
    if wanted("status").is_some() {
        out.insert(
            CelMapKey::from("status"),
            Box::new(CelString::from(view.status)),
        );
    }
    for (field, value) in [("output", &view.output), ("error", &view.error)] {
        if let Some(sub) = wanted(field) {
            let json: &'a Value = value.as_deref().unwrap_or(&NULL);
            let bound = convert::bind(json, sub, 0)
                .map_err(|e| EvalError::new(format!("steps.{id}.{field}: {e}")))?;
            out.insert(CelMapKey::from(field), bound);
        }
    }
    Ok(Box::new(CelMap::from(out)))
}
