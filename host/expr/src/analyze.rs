//! Parsing one expression: the static limits, the CEL parser, then one walk over the AST that
//! checks it, records what it reads, and rewrites it for evaluation.
//!
//! Rewrites (the names starting with `@` cannot be written in CEL source):
//! - `secrets.NAME` becomes the string literal `{{secret:NAME}}`, the handle the host
//!   runtime substitutes at call time; no secret value ever enters the engine.
//! - `always()`, `success()`, `failure()`, `cancelled()` and `now()` become identifiers
//!   (`@success`, …, `@now`) bound per evaluation from the [`crate::Context`].
//! - `a + b` becomes `@charge(a + b)`, which meters and caps what `+` produced, and `x in l`
//!   becomes `x in @scan(l)`, which meters the scan.
//! - each comprehension's step gets an `@step(…)` that counts iterations against the budget.

use std::collections::BTreeMap;

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators};
use cel::common::types::CelString;

use crate::References;
use crate::error::ParseError;
use crate::functions;
use crate::limits::{MAX_COMPREHENSION_NESTING, MAX_EXPRESSION_LEN, MAX_NESTING, check_nesting};
use crate::path::{Path, Root, Seg, Trie};

/// Deepest AST the walk accepts: a safety net behind [`check_nesting`], which bounds the
/// same structure from the tokens before the parser runs.
const MAX_AST_DEPTH: usize = 4 * MAX_NESTING;

/// Names bound per evaluation for the rewritten calls.
pub(crate) const NOW: &str = "@now";
pub(crate) const ALWAYS: &str = "@always";
pub(crate) const SUCCESS: &str = "@success";
pub(crate) const FAILURE: &str = "@failure";
pub(crate) const CANCELLED: &str = "@cancelled";
/// Internal functions inserted by the rewrites.
pub(crate) const CHARGE: &str = "@charge";
pub(crate) const STEP: &str = "@step";
pub(crate) const SCAN: &str = "@scan";

/// CEL's own functions and macros (the `cel` crate's standard library, without `matches`,
/// which the library replaces with a size-limited, cached one).
const STANDARD: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "duration",
    "dyn",
    "int",
    "string",
    "timestamp",
    "type",
    "uint",
    "size",
    "contains",
    "endsWith",
    "startsWith",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getFullYear",
    "getHours",
    "getMilliseconds",
    "getMinutes",
    "getMonth",
    "getSeconds",
    "value",
    "hasValue",
    "or",
    "orValue",
];

/// Functions of the `optional.` namespace.
const OPTIONAL: &[&str] = &["none", "of", "ofNonZeroValue"];

/// Macros: a call with this name that was not expanded has the wrong shape.
const MACROS: &[(&str, &str)] = &[
    ("has", "has(a.b)"),
    ("all", "list.all(x, predicate)"),
    ("exists", "list.exists(x, predicate)"),
    ("exists_one", "list.exists_one(x, predicate)"),
    (
        "map",
        "list.map(x, expression) or list.map(x, predicate, expression)",
    ),
    ("filter", "list.filter(x, predicate)"),
];

/// Identifiers that name CEL types (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
    "dyn",
    "optional_type",
];

/// What one expression reads and how it can be evaluated.
#[derive(Clone, Debug, Default)]
pub(crate) struct Analysis {
    pub(crate) refs: References,
    /// Every fixed path read, in source order (for error diagnosis).
    pub(crate) paths: Vec<Path>,
    /// The same paths merged per root, for pruning what is bound.
    pub(crate) tries: BTreeMap<Root, Trie>,
    /// Whether `now()` is called.
    pub(crate) uses_now: bool,
    /// The whole expression is a plain member path: evaluated by walking JSON.
    pub(crate) pure_path: Option<Path>,
}

/// Parses, checks and rewrites one expression. Offsets in errors are character offsets
/// into `src`.
pub(crate) fn parse(src: &str) -> Result<(IdedExpr, Analysis), ParseError> {
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(ParseError::new(
            0,
            format!(
                "expression is too long ({} bytes; at most {MAX_EXPRESSION_LEN})",
                src.len()
            ),
        ));
    }
    if src.trim().is_empty() {
        return Err(ParseError::new(0, "empty expression"));
    }
    check_nesting(src)?;
    let parsed = cel::parser::Parser::new()
        .enable_optional_syntax(true)
        .enable_ident_escape_syntax(true)
        // `check_nesting` already bounds this; the parser's own limit stays a backstop.
        .max_recursion_depth(u16::try_from(MAX_AST_DEPTH).unwrap_or(u16::MAX))
        .error_recovery_limit(4)
        .parse_with_source_info(src);
    let (mut expr, info) = match parsed {
        Ok(ok) => ok,
        Err(errors) => {
            let first = errors.errors.into_iter().min_by_key(|e| e.pos);
            return Err(match first {
                Some(e) => {
                    ParseError::new(char_offset(src, e.pos.0, e.pos.1), syntax_message(&e.msg))
                }
                None => ParseError::new(0, "cannot parse the expression"),
            });
        }
    };
    let mut walker = Walker {
        info: &info,
        scopes: Vec::new(),
        comprehensions: 0,
        depth: 0,
        next_id: u64::MAX / 2,
        secret_reads: 0,
        analysis: Analysis::default(),
    };
    walker.expr(&mut expr, false)?;
    let mut analysis = walker.analysis;
    analysis.pure_path = pure_path(&expr);
    for path in &analysis.paths {
        analysis.refs.contexts.insert(path.root.name().to_owned());
        if path.root == Root::Steps
            && let Some(Seg::Key(id)) = path.segs.first()
        {
            analysis.refs.steps.insert(id.clone());
        }
    }
    Ok((expr, analysis))
}

/// The character offset of a parser position (1-based line, 1-based column in characters).
fn char_offset(src: &str, line: isize, col: isize) -> usize {
    let line = usize::try_from(line.max(1)).unwrap_or(1);
    let col = usize::try_from(col.max(1)).unwrap_or(1);
    let before: usize = src
        .split_inclusive('\n')
        .take(line - 1)
        .map(|l| l.chars().count())
        .sum();
    (before + col - 1).min(src.chars().count())
}

/// The parser's (ANTLR's) message, shortened for an analyst.
fn syntax_message(msg: &str) -> String {
    let msg = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    let token = |rest: &str| -> String {
        let t = rest.split(" expecting").next().unwrap_or(rest).trim();
        let t = t.trim_matches('\'');
        if t == "<EOF>" {
            "end of expression".to_owned()
        } else {
            format!("`{t}`")
        }
    };
    if let Some(rest) = msg.strip_prefix("mismatched input ") {
        format!("unexpected {}", token(rest))
    } else if let Some(rest) = msg.strip_prefix("extraneous input ") {
        format!("unexpected {}", token(rest))
    } else if let Some(rest) = msg.strip_prefix("token recognition error at: ") {
        format!("unexpected character {}", token(rest))
    } else if let Some(rest) = msg.strip_prefix("no viable alternative at input ") {
        format!("cannot parse {}", token(rest))
    } else if let Some(rest) = msg.strip_prefix("missing ") {
        match rest.split_once(" at ") {
            Some((what, at)) => format!("missing {} before {}", token(what), token(at)),
            None => format!("missing {}", token(rest)),
        }
    } else if msg.starts_with("Recursion limit") {
        format!("expression is nested too deeply (more than {MAX_NESTING} levels)")
    } else {
        msg.to_owned()
    }
}

/// The closest known function name, if one is close enough to be a likely typo.
fn did_you_mean(name: &str) -> Option<&'static str> {
    functions::names()
        .chain(STANDARD.iter().copied())
        .chain(["now", "always", "success", "failure", "cancelled"])
        .map(|known| (strsim::damerau_levenshtein(name, known), known))
        .filter(|(d, known)| *d <= 2.max(known.len() / 4) && *d < name.len().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

struct Walker<'s> {
    info: &'s SourceInfo,
    /// Comprehension variables in scope, innermost last.
    scopes: Vec<String>,
    comprehensions: usize,
    depth: usize,
    next_id: u64,
    /// `secrets.NAME` reads rewritten so far.
    secret_reads: usize,
    analysis: Analysis,
}

impl Walker<'_> {
    fn offset(&self, id: u64) -> usize {
        self.info
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize)
    }

    fn error(&self, id: u64, message: impl Into<String>) -> ParseError {
        ParseError::new(self.offset(id), message)
    }

    fn bound(&self, name: &str) -> bool {
        name.starts_with('@') || self.scopes.iter().any(|s| s == name)
    }

    fn wrap(&mut self, func: &str, inner: IdedExpr) -> IdedExpr {
        self.next_id += 1;
        IdedExpr {
            id: self.next_id,
            expr: Expr::Call(CallExpr {
                func_name: func.to_owned(),
                target: None,
                args: vec![inner],
            }),
        }
    }

    fn record(&mut self, path: Path) {
        self.analysis
            .tries
            .entry(path.root)
            .or_default()
            .insert(&path.segs);
        self.analysis.paths.push(path);
    }

    /// The fixed path `e` reads, if it is a member chain on a context root.
    fn path_of(&self, e: &IdedExpr) -> Option<Path> {
        let mut segs = Vec::new();
        let mut cur = e;
        let mut top = true;
        loop {
            match &cur.expr {
                Expr::Ident(name) => {
                    if self.bound(name) {
                        return None;
                    }
                    let root = Root::parse(name)?;
                    segs.reverse();
                    return Some(Path { root, segs });
                }
                Expr::Select(s) => {
                    if s.test && !top {
                        return None;
                    }
                    segs.push(Seg::Key(s.field.clone()));
                    cur = &s.operand;
                }
                Expr::Call(c)
                    if c.func_name == operators::INDEX
                        && c.target.is_none()
                        && c.args.len() == 2 =>
                {
                    segs.push(literal_seg(&c.args[1])?);
                    cur = &c.args[0];
                }
                _ => return None,
            }
            top = false;
        }
    }

    /// Walks `e`. `extends` is set when the parent is a member step of a path already
    /// recorded, so `e` itself is not recorded again.
    fn expr(&mut self, e: &mut IdedExpr, extends: bool) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_AST_DEPTH {
            return Err(self.error(
                e.id,
                format!("expression is nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        let result = self.expr_inner(e, extends);
        self.depth -= 1;
        result
    }

    fn expr_inner(&mut self, e: &mut IdedExpr, extends: bool) -> Result<(), ParseError> {
        let id = e.id;
        // Rewrites that replace the node are decided first, on a shared borrow.
        if let Some(replacement) = self.replacement(e)? {
            e.expr = replacement;
            return Ok(());
        }
        if extends && is_path_step(e) {
            return self.path_operand(e);
        }
        if !extends
            && matches!(e.expr, Expr::Select(_) | Expr::Call(_))
            && let Some(path) = self.path_of(e)
        {
            self.record(path);
            return self.path_operand(e);
        }
        match &mut e.expr {
            Expr::Unspecified => Err(self.error(id, "malformed expression")),
            Expr::Literal(_) => Ok(()),
            Expr::Ident(name) => {
                self.ident(id, &name.clone(), extends);
                Ok(())
            }
            Expr::Select(s) => self.expr(&mut s.operand, extends),
            Expr::Call(_) => self.call(e),
            Expr::List(list) => {
                for item in &mut list.elements {
                    self.expr(item, false)?;
                }
                Ok(())
            }
            Expr::Map(map) => {
                for entry in &mut map.entries {
                    match &mut entry.expr {
                        EntryExpr::MapEntry(m) => {
                            self.expr(&mut m.key, false)?;
                            self.expr(&mut m.value, false)?;
                        }
                        EntryExpr::StructField(_) => {
                            return Err(self.error(entry.id, "malformed map literal"));
                        }
                    }
                }
                Ok(())
            }
            Expr::Struct(s) => Err(self.error(
                id,
                format!(
                    "message construction (`{}{{…}}`) is not supported; use a map literal",
                    s.type_name
                ),
            )),
            Expr::Comprehension(_) => self.comprehension(e),
        }
    }

    /// Walks the operand chain of a recorded path (there is nothing else in it: the index
    /// keys are literals).
    fn path_operand(&mut self, e: &mut IdedExpr) -> Result<(), ParseError> {
        match &mut e.expr {
            Expr::Select(s) => self.expr(&mut s.operand, true),
            Expr::Call(c) => match c.args.first_mut() {
                Some(operand) => self.expr(operand, true),
                None => Ok(()),
            },
            Expr::Ident(name) => {
                let name = name.clone();
                self.ident(e.id, &name, true);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn ident(&mut self, _id: u64, name: &str, _extends: bool) {
        if self.bound(name) {
            return;
        }
        if let Some(root) = Root::parse(name) {
            self.analysis.refs.contexts.insert(root.name().to_owned());
            if !_extends {
                self.record(Path {
                    root,
                    segs: Vec::new(),
                });
            }
            return;
        }
        if TYPE_NAMES.contains(&name) {
            return;
        }
        self.analysis.refs.unknown.insert(name.to_owned());
    }

    /// A node that is replaced outright: `secrets.NAME`, the status functions, `now()`.
    fn replacement(&mut self, e: &IdedExpr) -> Result<Option<Expr>, ParseError> {
        match &e.expr {
            Expr::Ident(name) if name == "secrets" && !self.bound(name) => Err(self.error(
                e.id,
                "read a secret as `secrets.NAME`; the secrets themselves are not a value",
            )),
            Expr::Select(s) if matches!(&s.operand.expr, Expr::Ident(n) if n == "secrets" && !self.bound(n)) =>
            {
                if s.test {
                    return Err(self.error(
                        e.id,
                        "`has(secrets.NAME)` is not supported: secrets are checked when the \
                         playbook is installed",
                    ));
                }
                let name = s.field.clone();
                if !valid_secret_name(&name) {
                    return Err(self.error(
                        e.id,
                        format!("`{name}` is not a secret name ([A-Za-z_][A-Za-z0-9_]*)"),
                    ));
                }
                self.secret_reads += 1;
                let refs = &mut self.analysis.refs;
                refs.contexts.insert("secrets".to_owned());
                refs.secrets.insert(name.clone());
                Ok(Some(Expr::Literal(LiteralValue::String(CelString::from(
                    format!("{{{{secret:{name}}}}}"),
                )))))
            }
            Expr::Call(c) if c.target.is_none() => {
                let bound = match c.func_name.as_str() {
                    "always" => ALWAYS,
                    "success" => SUCCESS,
                    "failure" => FAILURE,
                    "cancelled" => CANCELLED,
                    "now" => NOW,
                    _ => return Ok(None),
                };
                if !c.args.is_empty() {
                    return Err(self.error(e.id, format!("`{}()` takes no arguments", c.func_name)));
                }
                if bound == NOW {
                    self.analysis.uses_now = true;
                } else {
                    self.analysis.refs.status_functions = true;
                }
                Ok(Some(Expr::Ident(bound.to_owned())))
            }
            _ => Ok(None),
        }
    }

    fn call(&mut self, e: &mut IdedExpr) -> Result<(), ParseError> {
        let id = e.id;
        let Expr::Call(c) = &mut e.expr else {
            return Ok(());
        };
        let name = c.func_name.clone();
        let is_operator = !name.starts_with(|ch: char| ch.is_ascii_alphabetic());
        // `optional.of(x)`: the target names a namespace, not a value.
        let namespaced = matches!(
            c.target.as_deref().map(|t| &t.expr),
            Some(Expr::Ident(ns)) if ns == "optional" && !self.bound(ns)
        );
        if namespaced {
            if !OPTIONAL.contains(&name.as_str()) {
                return Err(self.error(id, format!("unknown function `optional.{name}`")));
            }
        } else if !is_operator {
            self.check_function(id, &name)?;
            let arity = c.args.len() + usize::from(c.target.is_some());
            if let Some(signatures) = functions::wrong_arity(&name, arity) {
                return Err(self.error(
                    id,
                    format!("`{name}` does not take {arity} argument(s): {signatures}"),
                ));
            }
            self.check_regex_literal(c)?;
        }
        let secrets_before = self.secret_reads;
        if !namespaced && let Some(target) = c.target.as_deref_mut() {
            self.expr(target, false)?;
        }
        for arg in &mut c.args {
            self.expr(arg, false)?;
        }
        if self.secret_reads > secrets_before
            && !is_operator
            && !namespaced
            && functions::is_function(&name)
            && !functions::keeps_handles(&name)
        {
            return Err(self.error(
                id,
                format!(
                    "`{name}` cannot work on a secret: `secrets.NAME` is a handle that the host \
                     replaces with the value only when a request is sent"
                ),
            ));
        }
        match name.as_str() {
            operators::ADD if !is_accumulator(c.args.first()) => {
                let inner = std::mem::take(e);
                *e = self.wrap(CHARGE, inner);
                e.id = id;
            }
            operators::IN if c.args.len() == 2 => {
                let list = std::mem::take(&mut c.args[1]);
                c.args[1] = self.wrap(SCAN, list);
            }
            _ => {}
        }
        Ok(())
    }

    fn check_function(&self, id: u64, name: &str) -> Result<(), ParseError> {
        if let Some((_, usage)) = MACROS.iter().find(|(m, _)| *m == name) {
            return Err(self.error(id, format!("`{name}` is written {usage}")));
        }
        if functions::is_function(name) || STANDARD.contains(&name) {
            return Ok(());
        }
        let hint = did_you_mean(name)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        Err(self.error(id, format!("unknown function `{name}`{hint}")))
    }

    /// A regex written as a literal is compiled now, so a bad pattern is a parse error.
    fn check_regex_literal(&self, c: &CallExpr) -> Result<(), ParseError> {
        if !functions::takes_regex(&c.func_name) {
            return Ok(());
        }
        let mut args = c.target.as_deref().into_iter().chain(c.args.iter());
        let Some(pattern) = args.nth(1) else {
            return Ok(());
        };
        if let Expr::Literal(LiteralValue::String(p)) = &pattern.expr
            && let Err(message) = functions::regex(p.inner())
        {
            return Err(self.error(pattern.id, message));
        }
        Ok(())
    }

    fn comprehension(&mut self, e: &mut IdedExpr) -> Result<(), ParseError> {
        let id = e.id;
        let Expr::Comprehension(c) = &mut e.expr else {
            return Ok(());
        };
        self.expr(&mut c.iter_range, false)?;
        self.expr(&mut c.accu_init, false)?;
        self.comprehensions += 1;
        if self.comprehensions > MAX_COMPREHENSION_NESTING {
            return Err(self.error(
                id,
                format!(
                    "comprehensions (map, filter, all, exists) are nested more than \
                     {MAX_COMPREHENSION_NESTING} deep"
                ),
            ));
        }
        let scope_len = self.scopes.len();
        self.scopes.push(c.iter_var.clone());
        if let Some(v) = &c.iter_var2 {
            self.scopes.push(v.clone());
        }
        self.scopes.push(c.accu_var.clone());
        let walked = self
            .expr(&mut c.loop_cond, false)
            .and_then(|()| self.expr(&mut c.loop_step, false))
            .and_then(|()| self.expr(&mut c.result, false));
        self.scopes.truncate(scope_len);
        self.comprehensions -= 1;
        walked?;
        let accu = c.accu_var.clone();
        if is_fold(&c.loop_step, &accu) {
            // `all`/`exists` defer an error in their step (a later element may still decide
            // the result), so a spent budget there would not stop the loop: count in the loop
            // condition instead, whose errors end it at once.
            let cond = std::mem::take(&mut c.loop_cond);
            c.loop_cond = self.wrap(STEP, cond);
        } else {
            self.instrument(&mut c.loop_step, &accu);
        }
        Ok(())
    }

    /// Inserts `@step` into a comprehension's loop step where it runs once per iteration,
    /// keeping the shapes the interpreter optimises (`@result + [e]` for map and filter,
    /// `cond ? @result + 1 : @result` for exists_one).
    fn instrument(&mut self, step: &mut IdedExpr, accu: &str) {
        let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if n == accu);
        let target: &mut IdedExpr = match &mut step.expr {
            Expr::Call(c) if c.func_name == operators::CONDITIONAL && c.args.len() == 3 => {
                &mut c.args[0]
            }
            Expr::Call(c)
                if c.func_name == operators::ADD
                    && c.args.len() == 2
                    && is_accu(&c.args[0])
                    && matches!(&c.args[1].expr, Expr::List(l) if l.elements.len() == 1) =>
            {
                match &mut c.args[1].expr {
                    Expr::List(l) => &mut l.elements[0],
                    _ => return,
                }
            }
            _ => step,
        };
        let inner = std::mem::take(target);
        *target = self.wrap(STEP, inner);
    }
}

/// Whether a loop step is `@result && p` (all) or `@result || p` (exists).
fn is_fold(step: &IdedExpr, accu: &str) -> bool {
    matches!(&step.expr, Expr::Call(c)
        if (c.func_name == operators::LOGICAL_AND || c.func_name == operators::LOGICAL_OR)
            && c.args.len() == 2
            && matches!(&c.args[0].expr, Expr::Ident(n) if n == accu))
}

/// Whether `arg` is a comprehension accumulator (`@result`): the macros' own `+` steps are
/// left as the interpreter expects them.
fn is_accumulator(arg: Option<&IdedExpr>) -> bool {
    matches!(arg.map(|a| &a.expr), Some(Expr::Ident(n)) if n.starts_with('@'))
}

/// Whether `e` is one member step of a path: a field selection or a literal index.
fn is_path_step(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Select(_) => true,
        Expr::Call(c) => {
            c.func_name == operators::INDEX
                && c.target.is_none()
                && c.args.len() == 2
                && literal_seg(&c.args[1]).is_some()
        }
        _ => false,
    }
}

/// A literal index as a path segment.
fn literal_seg(e: &IdedExpr) -> Option<Seg> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(Seg::Key(s.inner().to_owned())),
        Expr::Literal(LiteralValue::Int(i)) => Some(Seg::Index(*i.inner())),
        Expr::Literal(LiteralValue::UInt(u)) => i64::try_from(*u.inner()).ok().map(Seg::Index),
        _ => None,
    }
}

/// The path the whole expression is, when it is nothing but a member chain on a context
/// (no presence test, no call).
fn pure_path(e: &IdedExpr) -> Option<Path> {
    let mut segs = Vec::new();
    let mut cur = e;
    loop {
        match &cur.expr {
            Expr::Ident(name) => {
                let root = Root::parse(name)?;
                segs.reverse();
                return Some(Path { root, segs });
            }
            Expr::Select(s) if !s.test => {
                segs.push(Seg::Key(s.field.clone()));
                cur = &s.operand;
            }
            Expr::Call(c)
                if c.func_name == operators::INDEX && c.target.is_none() && c.args.len() == 2 =>
            {
                segs.push(literal_seg(&c.args[1])?);
                cur = &c.args[0];
            }
            _ => return None,
        }
    }
}

fn valid_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(src: &str) -> References {
        parse(src).unwrap().1.refs
    }

    fn err(src: &str) -> ParseError {
        parse(src).unwrap_err()
    }

    #[test]
    fn records_contexts_steps_and_secrets() {
        let r = refs(
            "steps.vt.output.malicious > 3 && steps['abuse'].status == 'ok' && \
             inputs.x == secrets.API_KEY && trigger.a[0] != item && index > 0",
        );
        assert_eq!(
            r.contexts.iter().map(String::as_str).collect::<Vec<_>>(),
            ["index", "inputs", "item", "secrets", "steps", "trigger"]
        );
        assert_eq!(
            r.steps.iter().map(String::as_str).collect::<Vec<_>>(),
            ["abuse", "vt"]
        );
        assert_eq!(
            r.secrets.iter().map(String::as_str).collect::<Vec<_>>(),
            ["API_KEY"]
        );
        assert!(!r.status_functions);
        assert!(r.unknown.is_empty());
    }

    #[test]
    fn records_unknown_roots_but_not_comprehension_variables_or_types() {
        let r = refs("trigger.ips.map(ip, ip + foo).exists(x, type(x) == string && bar.baz)");
        assert_eq!(
            r.unknown.iter().map(String::as_str).collect::<Vec<_>>(),
            ["bar", "foo"]
        );
    }

    #[test]
    fn status_functions_are_recorded() {
        assert!(refs("failure() || always()").status_functions);
        assert!(!refs("now() > timestamp('2020-01-01T00:00:00Z')").status_functions);
        assert!(err("success(1)").message.contains("takes no arguments"));
    }

    #[test]
    fn secrets_must_be_read_by_name() {
        assert!(err("secrets").message.contains("secrets.NAME"));
        assert!(err("secrets['X']").message.contains("secrets.NAME"));
        assert!(err("has(secrets.X)").message.contains("not supported"));
        // A comprehension variable may shadow the name.
        assert!(parse("[1].map(secrets, secrets + 1)").is_ok());
    }

    #[test]
    fn unknown_functions_suggest() {
        let e = err("'A'.lowr()");
        assert_eq!(e.message, "unknown function `lowr` (did you mean `lower`?)");
        assert_eq!(e.offset, 8);
        assert_eq!(
            err("frobnicate(1)").message,
            "unknown function `frobnicate`"
        );
        assert!(
            err("[1].map(x)")
                .message
                .contains("list.map(x, expression)")
        );
        assert!(err("optional.nope()").message.contains("optional.nope"));
        assert_eq!(
            err("lower('A', 'B')").message,
            "`lower` does not take 2 argument(s): `lower(s: string) -> string`"
        );
        assert!(parse("optional.of(1).orValue(2)").is_ok());
    }

    #[test]
    fn syntax_errors_are_short() {
        assert_eq!(err("1 + )"), ParseError::new(4, "unexpected `)`"));
        assert_eq!(
            err("(1 + "),
            ParseError::new(5, "unexpected end of expression")
        );
        let e = err("'é' + é");
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("unexpected character `é`"), "{e}");
        assert_eq!(err("a\n  + )").offset, 6);
    }

    #[test]
    fn limits_are_parse_errors() {
        assert!(err(&"1+".repeat(3000)).message.contains("too long"));
        assert!(err("   ").message.contains("empty"));
        assert!(err(&"(".repeat(4000)).message.contains("too deeply"));
        let nested = "[[[[1]]]].map(a, a.map(b, b.map(c, c.map(d, d))))";
        assert!(err(nested).message.contains("nested more than 3"));
        assert!(parse("[[[1]]].map(a, a.map(b, b.map(c, c)))").is_ok());
        assert!(err("Foo{a: 1}").message.contains("not supported"));
    }

    #[test]
    fn bad_literal_regex_is_a_parse_error() {
        let e = err("trigger.x.matches('(unclosed')");
        assert!(e.message.contains("regex"), "{e}");
        assert_eq!(e.offset, 18);
        assert!(parse("matches(trigger.x, '^a+$')").is_ok());
    }

    #[test]
    fn pure_paths_are_detected() {
        let p = |s: &str| parse(s).unwrap().1.pure_path.map(|p| p.to_string());
        assert_eq!(p("trigger.alert.ip").as_deref(), Some("trigger.alert.ip"));
        assert_eq!(
            p("steps.a.output['x-y'][0]").as_deref(),
            Some("steps.a.output[\"x-y\"][0]")
        );
        assert_eq!(p("trigger").as_deref(), Some("trigger"));
        assert_eq!(p("has(trigger.a)"), None);
        assert_eq!(p("trigger.a + 1"), None);
        assert_eq!(p("trigger[inputs.k]"), None);
        assert_eq!(p("foo.bar"), None);
    }

    #[test]
    fn tries_merge_paths() {
        let (_, a) =
            parse("trigger.a.b == 1 && size(trigger.c) > 0 && trigger[inputs.k] == 2").unwrap();
        let t = &a.tries[&Root::Trigger];
        assert!(t.whole, "a dynamic index reads the root whole");
        let (_, a) = parse("trigger.a.b == 1 && has(trigger.c.d)").unwrap();
        let t = &a.tries[&Root::Trigger];
        assert!(!t.whole);
        assert_eq!(t.children.len(), 2);
        assert!(
            a.tries[&Root::Trigger].children[&Seg::Key("c".into())].children[&Seg::Key("d".into())]
                .whole
        );
        assert!(!a.tries.contains_key(&Root::Inputs));
    }
}
