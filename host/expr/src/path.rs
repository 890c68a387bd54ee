//! Fixed member paths (`steps.vt.output.malicious`, `trigger.alerts[0].ip`): walking them
//! straight through the JSON, and the trie of them that prunes what is bound for CEL.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::error::EvalError;
use crate::{Context, StepView};

/// The contexts an expression can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Root {
    Trigger,
    Inputs,
    Steps,
    Item,
    Index,
}

impl Root {
    pub(crate) fn parse(name: &str) -> Option<Root> {
        Some(match name {
            "trigger" => Root::Trigger,
            "inputs" => Root::Inputs,
            "steps" => Root::Steps,
            "item" => Root::Item,
            "index" => Root::Index,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Root::Trigger => "trigger",
            Root::Inputs => "inputs",
            Root::Steps => "steps",
            Root::Item => "item",
            Root::Index => "index",
        }
    }
}

/// One step of a path: a field or map key, or a list index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Seg {
    Key(String),
    Index(i64),
}

/// A root and the fixed segments read under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path {
    pub(crate) root: Root,
    pub(crate) segs: Vec<Seg>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root.name())?;
        write_segs(f, &self.segs)
    }
}

fn write_segs(f: &mut impl fmt::Write, segs: &[Seg]) -> fmt::Result {
    for seg in segs {
        match seg {
            Seg::Key(k) if is_ident(k) => write!(f, ".{k}")?,
            Seg::Key(k) => write!(f, "[{}]", Value::String(k.clone()))?,
            Seg::Index(i) => write!(f, "[{i}]")?,
        }
    }
    Ok(())
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a path names so far, for error messages.
fn shown(root: Root, segs: &[Seg]) -> String {
    let mut s = root.name().to_string();
    let _ = write_segs(&mut s, segs);
    s
}

/// The paths read under one root, merged: `whole` means the value at this node is read in
/// full (a bare reference, a dynamic index, a function argument), so nothing below is pruned.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Trie {
    pub(crate) whole: bool,
    pub(crate) children: BTreeMap<Seg, Trie>,
}

impl Trie {
    pub(crate) fn insert(&mut self, segs: &[Seg]) {
        let mut node = self;
        for seg in segs {
            if node.whole {
                return;
            }
            node = node.children.entry(seg.clone()).or_default();
        }
        node.whole = true;
        node.children.clear();
    }

    /// The sub-trie for a child, if it is read at all.
    pub(crate) fn child(&self, seg: &Seg) -> Option<&Trie> {
        self.children.get(seg)
    }
}

/// A JSON value's kind, as CEL names it, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_f64() => "a double",
        Value::Number(_) => "an int",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The keys of an object, for a "no such key" hint.
fn key_hint(map: &Map<String, Value>) -> String {
    const SHOWN: usize = 8;
    if map.is_empty() {
        return " (the map is empty)".into();
    }
    let mut keys: Vec<String> = map
        .keys()
        .take(SHOWN)
        .map(|k| Value::String(k.clone()).to_string())
        .collect();
    if map.len() > SHOWN {
        keys.push(format!("… {} more", map.len() - SHOWN));
    }
    format!(" (keys: {})", keys.join(", "))
}

/// The JSON a step shows to expressions.
pub(crate) fn step_json(view: &StepView) -> Value {
    let mut m = Map::new();
    m.insert("status".into(), Value::String(view.status.into()));
    m.insert(
        "output".into(),
        view.output.as_deref().cloned().unwrap_or(Value::Null),
    );
    m.insert(
        "error".into(),
        view.error.as_deref().cloned().unwrap_or(Value::Null),
    );
    Value::Object(m)
}

/// The message for a step id that is not in the context.
pub(crate) fn no_step(id: &str) -> EvalError {
    EvalError::new(format!(
        "steps.{id}: no step `{id}` is visible here (a step reads only the steps it needs, \
         directly or indirectly)"
    ))
}

/// The root value, borrowed from the context where it is shared.
pub(crate) fn root_value(ctx: &Context, root: Root) -> Result<Cow<'_, Value>, EvalError> {
    match root {
        Root::Trigger => Ok(Cow::Borrowed(&ctx.trigger)),
        Root::Inputs => Ok(Cow::Borrowed(&ctx.inputs)),
        Root::Item => ctx
            .item
            .as_deref()
            .map(Cow::Borrowed)
            .ok_or_else(|| EvalError::new("`item` is only defined inside `for_each`")),
        Root::Index => ctx
            .index
            .map(|i| Cow::Owned(Value::from(i)))
            .ok_or_else(|| EvalError::new("`index` is only defined inside `for_each`")),
        Root::Steps => Ok(Cow::Owned(Value::Object(
            ctx.steps
                .iter()
                .map(|(id, view)| (id.clone(), step_json(view)))
                .collect(),
        ))),
    }
}

/// Reads `path` straight from the context: what CEL would compute for the same member
/// chain, with errors that name the path.
pub(crate) fn walk<'a>(ctx: &'a Context, path: &Path) -> Result<Cow<'a, Value>, EvalError> {
    let segs = &path.segs[..];
    if path.root != Root::Steps {
        let value = root_value(ctx, path.root)?;
        return descend(value, path.root, segs, 0);
    }
    let Some(first) = segs.first() else {
        return root_value(ctx, Root::Steps);
    };
    let Seg::Key(id) = first else {
        return Err(EvalError::new(format!(
            "{}: steps are named by their id, not by a number",
            shown(Root::Steps, &segs[..1])
        )));
    };
    let view = ctx.steps.get(id).ok_or_else(|| no_step(id))?;
    let Some(field) = segs.get(1) else {
        return Ok(Cow::Owned(step_json(view)));
    };
    let part = match field {
        Seg::Key(k) if k == "status" => {
            return descend(
                Cow::Owned(Value::String(view.status.into())),
                Root::Steps,
                segs,
                2,
            );
        }
        Seg::Key(k) if k == "output" => &view.output,
        Seg::Key(k) if k == "error" => &view.error,
        _ => {
            return Err(EvalError::new(format!(
                "{}: a step has only `status`, `output` and `error`",
                shown(Root::Steps, &segs[..2])
            )));
        }
    };
    match part.as_deref() {
        Some(value) => descend(Cow::Borrowed(value), Root::Steps, segs, 2),
        None if segs.len() == 2 => Ok(Cow::Owned(Value::Null)),
        None => Err(EvalError::new(format!(
            "{}: step `{id}` has no {} (its status is {})",
            shown(Root::Steps, &segs[..2]),
            if matches!(field, Seg::Key(k) if k == "output") {
                "output"
            } else {
                "error"
            },
            view.status
        ))),
    }
}

/// Follows `segs[from..]` down from `value`, which `segs[..from]` named.
fn descend<'a>(
    mut value: Cow<'a, Value>,
    root: Root,
    segs: &[Seg],
    from: usize,
) -> Result<Cow<'a, Value>, EvalError> {
    for (i, seg) in segs.iter().enumerate().skip(from) {
        let here = || shown(root, &segs[..=i]);
        let next = match value {
            Cow::Borrowed(v) => Cow::Borrowed(step(v, seg, &here, root, &segs[..i])?),
            Cow::Owned(v) => Cow::Owned(step(&v, seg, &here, root, &segs[..i])?.clone()),
        };
        value = next;
    }
    Ok(value)
}

fn step<'v>(
    value: &'v Value,
    seg: &Seg,
    here: &dyn Fn() -> String,
    root: Root,
    parent: &[Seg],
) -> Result<&'v Value, EvalError> {
    match (value, seg) {
        (Value::Object(map), Seg::Key(k)) => map.get(k).ok_or_else(|| {
            EvalError::new(format!(
                "{}: no such key {}{}",
                here(),
                Value::String(k.clone()),
                key_hint(map)
            ))
        }),
        (Value::Object(map), Seg::Index(i)) => Err(EvalError::new(format!(
            "{}: no such key {i} (map keys are strings; write [\"{i}\"]){}",
            here(),
            key_hint(map)
        ))),
        (Value::Array(list), Seg::Index(i)) => usize::try_from(*i)
            .ok()
            .and_then(|i| list.get(i))
            .ok_or_else(|| {
                EvalError::new(format!(
                    "{}: index {i} is out of bounds (the list has {} elements)",
                    here(),
                    list.len()
                ))
            }),
        (other, seg) => {
            let reading = match seg {
                Seg::Key(k) => format!("field {}", Value::String(k.clone())),
                Seg::Index(i) => format!("index {i}"),
            };
            Err(EvalError::new(format!(
                "{}: cannot read {reading} of {}, which is {}",
                here(),
                shown(root, parent),
                kind(other)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn ctx() -> Context {
        let mut c = Context {
            trigger: Arc::new(json!({"alert": {"ip": "1.2.3.4", "tags": ["a", "b"], "n": 3}})),
            ..Context::default()
        };
        c.steps.insert(
            "vt".into(),
            StepView {
                status: "succeeded",
                output: Some(Arc::new(json!({"malicious": 4}))),
                error: None,
            },
        );
        c.steps.insert(
            "later".into(),
            StepView {
                status: "pending",
                output: None,
                error: None,
            },
        );
        c
    }

    fn p(root: Root, segs: &[Seg]) -> Path {
        Path {
            root,
            segs: segs.to_vec(),
        }
    }

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn walks_and_borrows() {
        let c = ctx();
        let v = walk(&c, &p(Root::Trigger, &[k("alert"), k("ip")])).unwrap();
        assert!(matches!(v, Cow::Borrowed(_)));
        assert_eq!(*v, json!("1.2.3.4"));
        let v = walk(
            &c,
            &p(Root::Trigger, &[k("alert"), k("tags"), Seg::Index(1)]),
        )
        .unwrap();
        assert_eq!(*v, json!("b"));
        let v = walk(&c, &p(Root::Steps, &[k("vt"), k("output"), k("malicious")])).unwrap();
        assert_eq!(*v, json!(4));
        let v = walk(&c, &p(Root::Steps, &[k("vt"), k("status")])).unwrap();
        assert_eq!(*v, json!("succeeded"));
        let v = walk(&c, &p(Root::Steps, &[k("later"), k("output")])).unwrap();
        assert_eq!(*v, Value::Null);
    }

    #[test]
    fn errors_name_the_path() {
        let c = ctx();
        let err = |path: Path| walk(&c, &path).unwrap_err().message;
        assert_eq!(
            err(p(Root::Steps, &[k("vt"), k("output"), k("malicous")])),
            "steps.vt.output.malicous: no such key \"malicous\" (keys: \"malicious\")"
        );
        assert!(err(p(Root::Steps, &[k("nope"), k("output")])).starts_with("steps.nope: no step"));
        assert!(
            err(p(Root::Steps, &[k("later"), k("output"), k("x")]))
                .contains("step `later` has no output (its status is pending)")
        );
        assert!(
            err(p(Root::Trigger, &[k("alert"), k("tags"), Seg::Index(5)]))
                .contains("index 5 is out of bounds (the list has 2 elements)")
        );
        assert_eq!(
            err(p(Root::Trigger, &[k("alert"), k("ip"), k("x")])),
            "trigger.alert.ip.x: cannot read field \"x\" of trigger.alert.ip, which is a string"
        );
        assert!(err(p(Root::Item, &[])).contains("only defined inside `for_each`"));
        assert!(
            err(p(Root::Trigger, &[k("odd key"), k("x")])).starts_with("trigger[\"odd key\"]:")
        );
    }

    #[test]
    fn trie_whole_wins() {
        let mut t = Trie::default();
        t.insert(&[k("a"), k("b")]);
        t.insert(&[k("a")]);
        t.insert(&[k("a"), k("c")]);
        assert!(t.children[&k("a")].whole);
        assert!(t.children[&k("a")].children.is_empty());
    }
}
