//! The function library, and the CEL environment it is registered in.
//!
//! Every library function is registered under its name both as a global function and as a
//! method on its first argument: `lower(s)` and `s.lower()` are the same call. Arguments
//! are declared `dyn` and checked by the implementation, so a wrong type gets a message
//! naming the function and the argument rather than "no matching overload".
//!
//! Implementations work on owned [`cel::Value`]s; [`call`] converts the arguments, meters
//! them and the result against the evaluation budget, and enforces the size caps.

mod collections;
mod encode;
mod net;
mod text;
mod time;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use cel::common::functions::Function;
use cel::common::types::{CelBytes, CelString, DYN_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::Key;
use cel::{Env, ExecutionError, Value as Cel};
use regex::Regex;

use crate::analyze::{CHARGE, SCAN, STEP};
use crate::convert::type_name;
use crate::limits::{MAX_LIST_ITEMS, MAX_REGEX_PATTERN_LEN, MAX_REGEX_SIZE, MAX_STRING_BYTES};
use crate::meter::{self, bytes_cost};

/// An implementation: the arguments (receiver first), already converted.
pub(crate) type Imp = fn(&[Cel]) -> Result<Cel, String>;

/// The documentation of one library function (and one arity of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionDoc {
    /// The section of `docs/expressions.md` it is listed in.
    pub category: &'static str,
    /// The name, as called: `lower`.
    pub name: &'static str,
    /// Parameters and result: `lower(s: string) -> string`.
    pub signature: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
    /// An expression using it.
    pub example: &'static str,
    /// The JSON the example evaluates to.
    pub result: &'static str,
}

/// One registered function: its documentation, arity and CEL entry point.
pub(crate) struct Def {
    pub(crate) doc: FunctionDoc,
    pub(crate) arity: usize,
    pub(crate) f: Function,
}

/// Declares a library function: name, arity, implementation, then its documentation.
macro_rules! def {
    ($name:literal, $arity:literal, $imp:path, $sig:literal, $summary:literal,
     $example:literal => $result:literal) => {
        crate::functions::Def {
            doc: crate::functions::FunctionDoc {
                category: "",
                name: $name,
                signature: $sig,
                summary: $summary,
                example: $example,
                result: $result,
            },
            arity: $arity,
            f: |args| crate::functions::call($name, args, $imp),
        }
    };
}
pub(crate) use def;

static DEFS: LazyLock<Vec<Def>> = LazyLock::new(|| {
    let mut defs = Vec::new();
    for (category, part) in [
        ("Strings and regexes", text::defs()),
        ("Lists, maps and numbers", collections::defs()),
        ("Time", time::defs()),
        ("JSON, YAML, encodings and hashes", encode::defs()),
        ("Addresses and indicators", net::defs()),
    ] {
        defs.extend(part.into_iter().map(|mut d| {
            d.doc.category = category;
            d
        }));
    }
    defs
});

static NAMES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| DEFS.iter().map(|d| d.doc.name).collect());

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(build_env()));

/// The documentation of every library function, in the order of `docs/expressions.md`
/// (CEL's own functions, the status functions and `now()` are documented there too).
pub fn functions() -> impl Iterator<Item = &'static FunctionDoc> {
    DEFS.iter().map(|d| &d.doc)
}

/// Library function names (each once).
pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    NAMES.iter().copied()
}

/// The signatures of a library function, when `name` is one and takes no `arity` arguments
/// (counting the receiver): for a parse-time message.
pub(crate) fn wrong_arity(name: &str, arity: usize) -> Option<String> {
    let mut sigs = DEFS.iter().filter(|d| d.doc.name == name).peekable();
    sigs.peek()?;
    let mut known = Vec::new();
    for d in sigs {
        if d.arity == arity {
            return None;
        }
        known.push(format!("`{}`", d.doc.signature));
    }
    Some(known.join(" or "))
}

/// Whether `name` is a library function.
pub(crate) fn is_function(name: &str) -> bool {
    NAMES.contains(name)
}

/// The shared CEL environment: the standard library plus ours.
pub(crate) fn env() -> Arc<Env> {
    Arc::clone(&ENV)
}

fn build_env() -> Env {
    let mut env = Env::stdlib();
    let mut register = |name: &str, arity: usize, f: Function| {
        let global = env.add_overload(name, &format!("{name}/{arity}"), dyns(arity), f);
        let member = match arity {
            0 => Ok(()),
            n => env.add_member_overload(name, &format!("{name}.{n}"), DYN_TYPE, dyns(n - 1), f),
        };
        // Names and arities are fixed in this crate; a clash is caught by the tests.
        debug_assert!(global.is_ok() && member.is_ok(), "{name}/{arity} clashes");
    };
    for def in DEFS.iter() {
        register(def.doc.name, def.arity, def.f);
    }
    register(CHARGE, 1, charge);
    register(SCAN, 1, scan);
    register(STEP, 1, step);
    env
}

/// `n` parameters of type `dyn` (`Type` is not `Clone`; the constant is).
fn dyns(n: usize) -> Vec<cel::common::types::Type> {
    (0..n).map(|_| DYN_TYPE).collect()
}

/// Calls `imp` with `args` converted, metered and capped.
pub(crate) fn call<'b, 'v>(
    name: &str,
    args: Vec<CowVal<'b, 'v>>,
    imp: Imp,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let fail = |m: String| ExecutionError::function_error(name, m);
    let mut values = Vec::with_capacity(args.len());
    for arg in &args {
        values.push(Cel::try_from(arg.as_ref()).map_err(|e| fail(e.to_string()))?);
    }
    drop(args);
    meter::charge(values.iter().map(weight).sum()).map_err(fail)?;
    let out = imp(&values).map_err(fail)?;
    check_size(&out).map_err(fail)?;
    meter::charge(weight(&out)).map_err(fail)?;
    let boxed: Box<dyn Val> = out
        .try_into()
        .map_err(|e: ExecutionError| fail(e.to_string()))?;
    Ok(CowVal::Owned(boxed))
}

/// The cost of processing a value: its bytes and elements, all the way down.
fn weight(v: &Cel) -> u64 {
    match v {
        Cel::String(s) => bytes_cost(s.len()),
        Cel::Bytes(b) => bytes_cost(b.len()),
        Cel::List(items) => 1 + items.iter().map(weight).sum::<u64>(),
        Cel::Map(m) => 1 + m.map.values().map(|v| 1 + weight(v)).sum::<u64>(),
        _ => 1,
    }
}

/// Refuses a result larger than the caps.
fn check_size(v: &Cel) -> Result<(), String> {
    match v {
        Cel::String(s) if s.len() > MAX_STRING_BYTES => Err(too_long(s.len())),
        Cel::Bytes(b) if b.len() > MAX_STRING_BYTES => Err(too_long(b.len())),
        Cel::List(items) if items.len() > MAX_LIST_ITEMS => Err(too_many(items.len())),
        Cel::Map(m) if m.map.len() > MAX_LIST_ITEMS => Err(too_many(m.map.len())),
        _ => Ok(()),
    }
}

pub(crate) fn too_long(len: usize) -> String {
    format!("the result would be {len} bytes; at most {MAX_STRING_BYTES} are allowed")
}

pub(crate) fn too_many(len: usize) -> String {
    format!("the result would have {len} elements; at most {MAX_LIST_ITEMS} are allowed")
}

/// The size of a value without converting it: bytes of a string, elements of a list.
fn shallow_size(v: &dyn Val) -> (usize, bool) {
    if let Some(s) = v.downcast_ref::<CelString>() {
        (s.inner().len(), true)
    } else if let Some(b) = v.downcast_ref::<CelBytes>() {
        (b.inner().len(), true)
    } else if let Some(sizer) = v.as_sizer() {
        (usize::try_from(*sizer.size().inner()).unwrap_or(0), false)
    } else {
        (0, false)
    }
}

fn first<'b, 'v>(name: &str, args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    args.into_iter()
        .next()
        .ok_or_else(|| ExecutionError::function_error(name, "missing argument"))
}

/// `@charge(a + b)`: meters what `+` produced and refuses it past the caps.
fn charge<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = first(CHARGE, args)?;
    let (size, bytes) = shallow_size(v.as_ref());
    let fail = |m: String| ExecutionError::function_error(CHARGE, format!("`+`: {m}"));
    if bytes && size > MAX_STRING_BYTES {
        return Err(fail(too_long(size)));
    }
    if !bytes && size > MAX_LIST_ITEMS {
        return Err(fail(too_many(size)));
    }
    let units = if bytes {
        bytes_cost(size)
    } else {
        size as u64 + 1
    };
    meter::charge(units).map_err(|m| ExecutionError::function_error(CHARGE, m))?;
    Ok(v)
}

/// `x in @scan(list)`: meters the scan.
fn scan<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = first(SCAN, args)?;
    let (size, _) = shallow_size(v.as_ref());
    meter::charge(size as u64 + 1).map_err(|m| ExecutionError::function_error(SCAN, m))?;
    Ok(v)
}

/// `@step(x)`: one comprehension iteration.
fn step<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let v = first(STEP, args)?;
    meter::charge(1).map_err(|m| ExecutionError::function_error(STEP, m))?;
    Ok(v)
}

// ---- argument helpers -------------------------------------------------------------------

fn nth(i: usize) -> &'static str {
    match i {
        0 => "the first argument",
        1 => "the second argument",
        2 => "the third argument",
        _ => "the fourth argument",
    }
}

fn wrong(args: &[Cel], i: usize, want: &str) -> String {
    let got = args.get(i).map_or("nothing", type_name);
    format!("{} must be {want}, not {got}", nth(i))
}

pub(crate) fn string(args: &[Cel], i: usize) -> Result<&str, String> {
    match args.get(i) {
        Some(Cel::String(s)) => Ok(s.as_str()),
        _ => Err(wrong(args, i, "a string")),
    }
}

/// A string's or bytes' bytes.
pub(crate) fn data(args: &[Cel], i: usize) -> Result<&[u8], String> {
    match args.get(i) {
        Some(Cel::String(s)) => Ok(s.as_bytes()),
        Some(Cel::Bytes(b)) => Ok(b.as_slice()),
        _ => Err(wrong(args, i, "a string or bytes")),
    }
}

pub(crate) fn int(args: &[Cel], i: usize) -> Result<i64, String> {
    match args.get(i) {
        Some(Cel::Int(n)) => Ok(*n),
        Some(Cel::UInt(n)) => i64::try_from(*n).map_err(|_| format!("{} is too large", nth(i))),
        Some(Cel::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
        _ => Err(wrong(args, i, "an int")),
    }
}

/// A non-negative count, at most `max`.
pub(crate) fn count(args: &[Cel], i: usize, max: usize) -> Result<usize, String> {
    let n = int(args, i)?;
    let n = usize::try_from(n).map_err(|_| format!("{} must not be negative", nth(i)))?;
    if n > max {
        return Err(format!("{} is {n}; at most {max} is allowed", nth(i)));
    }
    Ok(n)
}

pub(crate) fn number(args: &[Cel], i: usize) -> Result<f64, String> {
    match args.get(i) {
        Some(Cel::Int(n)) => Ok(*n as f64),
        Some(Cel::UInt(n)) => Ok(*n as f64),
        Some(Cel::Float(f)) => Ok(*f),
        _ => Err(wrong(args, i, "a number")),
    }
}

pub(crate) fn list(args: &[Cel], i: usize) -> Result<&[Cel], String> {
    match args.get(i) {
        Some(Cel::List(items)) => Ok(items.as_slice()),
        _ => Err(wrong(args, i, "a list")),
    }
}

pub(crate) fn map(args: &[Cel], i: usize) -> Result<&HashMap<Key, Cel>, String> {
    match args.get(i) {
        Some(Cel::Map(m)) => Ok(&m.map),
        _ => Err(wrong(args, i, "a map")),
    }
}

pub(crate) fn str_value(s: impl Into<String>) -> Result<Cel, String> {
    let s = s.into();
    if s.len() > MAX_STRING_BYTES {
        return Err(too_long(s.len()));
    }
    Ok(Cel::String(Arc::new(s)))
}

pub(crate) fn list_value(items: Vec<Cel>) -> Cel {
    Cel::List(Arc::new(items))
}

pub(crate) fn map_value(entries: HashMap<Key, Cel>) -> Cel {
    Cel::Map(cel::objects::Map {
        map: Arc::new(entries),
    })
}

pub(crate) fn str_list(items: Vec<String>) -> Cel {
    list_value(
        items
            .into_iter()
            .map(|s| Cel::String(Arc::new(s)))
            .collect(),
    )
}

// ---- regexes ----------------------------------------------------------------------------

/// Functions that only move, join or serialise values: a secret handle (`{{secret:NAME}}`)
/// passing through them is still a handle the host can substitute. Any other function given
/// `secrets.NAME` would compute on the handle's text, not the secret, so the parser refuses it.
pub(crate) fn keeps_handles(name: &str) -> bool {
    matches!(
        name,
        "join"
            | "format"
            | "toJson"
            | "toPrettyJson"
            | "toYaml"
            | "coalesce"
            | "get"
            | "first"
            | "last"
            | "compact"
            | "flatten"
            | "slice"
            | "merge"
            | "pick"
            | "omit"
            | "values"
            | "entries"
            | "fromEntries"
            | "zip"
            | "chunk"
            | "isEmpty"
    )
}

/// Library functions whose second argument (counting the receiver) is a regex.
pub(crate) fn takes_regex(name: &str) -> bool {
    matches!(
        name,
        "matches" | "find" | "findAll" | "regexReplace" | "captures" | "namedCaptures"
    )
}

thread_local! {
    /// Compiled regexes by pattern. Patterns come from playbooks, so there are few; the
    /// cache is emptied when it fills rather than tracking use.
    static REGEXES: RefCell<HashMap<String, Arc<Regex>>> = RefCell::new(HashMap::new());
}

const REGEX_CACHE: usize = 128;

/// Compiles a pattern with the size limits (the `regex` crate runs in linear time).
pub(crate) fn regex(pattern: &str) -> Result<Arc<Regex>, String> {
    if let Some(re) = REGEXES.with(|c| c.borrow().get(pattern).cloned()) {
        return Ok(re);
    }
    if pattern.len() > MAX_REGEX_PATTERN_LEN {
        return Err(format!(
            "the regex is {} bytes long; at most {MAX_REGEX_PATTERN_LEN} are allowed",
            pattern.len()
        ));
    }
    let re = regex::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_SIZE)
        .dfa_size_limit(MAX_REGEX_SIZE)
        .nest_limit(64)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => {
                format!("the regex compiles to more than {MAX_REGEX_SIZE} bytes; simplify it")
            }
            regex::Error::Syntax(text) => {
                // The crate's message spans lines (pattern, caret, error); keep the error.
                let reason = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or(&text)
                    .trim()
                    .trim_start_matches("error: ")
                    .to_owned();
                format!("invalid regex: {reason}")
            }
            other => format!("invalid regex: {other}"),
        })?;
    let re = Arc::new(re);
    REGEXES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= REGEX_CACHE {
            c.clear();
        }
        c.insert(pattern.to_owned(), Arc::clone(&re));
    });
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_registers_without_clash() {
        let mut seen = HashSet::new();
        for d in DEFS.iter() {
            assert!(
                seen.insert((d.doc.name, d.arity)),
                "{}/{} is declared twice",
                d.doc.name,
                d.arity
            );
            assert!(
                d.doc.signature.starts_with(d.doc.name),
                "{}: signature",
                d.doc.name
            );
        }
        // Building the environment checks clashes with the standard library.
        let mut env = Env::stdlib();
        for d in DEFS.iter() {
            env.add_overload(
                d.doc.name,
                &format!("{}/{}", d.doc.name, d.arity),
                dyns(d.arity),
                d.f,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", d.doc.name));
        }
    }

    #[test]
    fn regex_limits() {
        assert!(regex("a+").is_ok());
        assert!(regex("(").unwrap_err().starts_with("invalid regex"));
        let huge = "\\w{1000}".repeat(10);
        assert!(regex(&huge).unwrap_err().contains("simplify"));
        assert!(regex(&"a".repeat(5000)).unwrap_err().contains("at most"));
        let nested = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert!(regex(&nested).is_err());
    }

    #[test]
    fn library_is_large() {
        assert!(DEFS.len() >= 100, "{} functions", DEFS.len());
    }
}
