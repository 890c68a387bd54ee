//! Lists, maps, numbers and null handling.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cel::Value as Cel;
use cel::objects::Key;

use super::{Def, count, def, int, list, list_value, map, map_value, number, string, too_many};
use crate::convert::type_name;
use crate::limits::MAX_LIST_ITEMS;

pub(super) fn defs() -> Vec<Def> {
    vec![
        def!("contains", 2, contains, "contains(x: list|map, v) -> bool",
            "Whether a list has an element equal to `v`, or a map has the key `v` (on strings, \
             CEL's own substring test).",
            "['high', 'critical'].contains('critical')" => "true"),
        def!("sort", 1, sort, "sort(l: list) -> list",
            "Sorted ascending (numbers, strings, bools, timestamps or durations).",
            "[3, 1.5, 2].sort()" => "[1.5,2,3]"),
        def!("sortBy", 2, sort_by, "sortBy(l: list(map), key: string) -> list",
            "Maps sorted by the value at `key` (missing or null first).",
            "[{'n': 'b', 's': 2}, {'n': 'a', 's': 1}].sortBy('s').map(x, x.n)" => r#"["a","b"]"#),
        def!("unique", 1, unique, "unique(l: list) -> list",
            "Duplicates removed, first occurrence kept.",
            "['a', 'b', 'a', 1, 1.0].unique()" => r#"["a","b",1]"#),
        def!("flatten", 1, flatten, "flatten(l: list) -> list",
            "Elements that are lists are replaced by their elements (one level).",
            "[[1, 2], 3, [[4]]].flatten()" => "[1,2,3,[4]]"),
        def!("slice", 2, slice_from, "slice(l: list, start: int) -> list",
            "Elements from `start` (negative counts from the end; clamped to the list).",
            "[1, 2, 3, 4].slice(-2)" => "[3,4]"),
        def!("slice", 3, slice, "slice(l: list, start: int, end: int) -> list",
            "Elements from `start` up to (not including) `end`.",
            "[1, 2, 3, 4].slice(1, 3)" => "[2,3]"),
        def!("first", 1, first, "first(l: list) -> dyn",
            "The first element, or null for an empty list.", "[7, 8].first()" => "7"),
        def!("last", 1, last, "last(l: list) -> dyn",
            "The last element, or null for an empty list.", "[].last()" => "null"),
        def!("chunk", 2, chunk, "chunk(l: list, n: int) -> list(list)",
            "Consecutive groups of `n` elements (the last may be shorter).",
            "[1, 2, 3, 4, 5].chunk(2)" => "[[1,2],[3,4],[5]]"),
        def!("range", 1, range, "range(n: int) -> list(int)",
            "`[0, 1, …, n-1]`.", "range(3)" => "[0,1,2]"),
        def!("range", 2, range_from, "range(start: int, end: int) -> list(int)",
            "`[start, …, end-1]`.", "range(2, 5)" => "[2,3,4]"),
        def!("compact", 1, compact, "compact(l: list) -> list",
            "Nulls removed.", "[1, null, 'a', null].compact()" => r#"[1,"a"]"#),
        def!("difference", 2, difference, "difference(a: list, b: list) -> list",
            "Elements of `a` that are not in `b`.",
            "['1.1.1.1', '10.0.0.1'].difference(['10.0.0.1'])" => r#"["1.1.1.1"]"#),
        def!("intersection", 2, intersection, "intersection(a: list, b: list) -> list",
            "Elements of `a` that are also in `b`, without duplicates.",
            "[1, 2, 2, 3].intersection([2, 3, 4])" => "[2,3]"),
        def!("union", 2, union, "union(a: list, b: list) -> list",
            "Elements of `a` then of `b`, without duplicates.",
            "[1, 2].union([2, 3])" => "[1,2,3]"),
        def!("zip", 2, zip, "zip(a: list, b: list) -> list(list)",
            "Pairs `[a[i], b[i]]`, as many as the shorter list has.",
            "zip(['a', 'b'], [1, 2, 3])" => r#"[["a",1],["b",2]]"#),
        def!("sum", 1, sum, "sum(l: list(number)) -> number",
            "The sum: an int if every element is an int, else a double; 0 when empty.",
            "[1, 2, 3.5].sum()" => "6.5"),
        def!("avg", 1, avg, "avg(l: list(number)) -> double",
            "The mean, or null for an empty list.", "[1, 2].avg()" => "1.5"),
        def!("min", 1, min_list, "min(l: list) -> dyn",
            "The smallest element, or null for an empty list.", "[3, 1, 2].min()" => "1"),
        def!("min", 2, min2, "min(a, b) -> dyn",
            "The smaller of two comparable values.", "min(4, 2.5)" => "2.5"),
        def!("max", 1, max_list, "max(l: list) -> dyn",
            "The largest element, or null for an empty list.", "['a', 'c', 'b'].max()" => r#""c""#),
        def!("max", 2, max2, "max(a, b) -> dyn",
            "The larger of two comparable values.", "max(4, 2.5)" => "4"),
        def!("keys", 1, keys, "keys(m: map) -> list",
            "The keys, sorted.", "{'b': 1, 'a': 2}.keys()" => r#"["a","b"]"#),
        def!("values", 1, values, "values(m: map) -> list",
            "The values, in the order of the sorted keys.",
            "{'b': 1, 'a': 2}.values()" => "[2,1]"),
        def!("entries", 1, entries, "entries(m: map) -> list(list)",
            "`[key, value]` pairs, sorted by key.",
            "{'b': 1, 'a': 2}.entries()" => r#"[["a",2],["b",1]]"#),
        def!("fromEntries", 1, from_entries, "fromEntries(l: list) -> map",
            "A map from `[key, value]` pairs (a later pair wins).",
            "fromEntries([['a', 1], ['b', 2]])" => r#"{"a":1,"b":2}"#),
        def!("merge", 1, merge_all, "merge(l: list(map)) -> map",
            "The maps merged left to right (shallow; a later key wins).",
            "merge([{'a': 1}, {'b': 2}, {'a': 3}])" => r#"{"a":3,"b":2}"#),
        def!("merge", 2, merge, "merge(a: map, b: map) -> map",
            "`a` with the entries of `b` added (shallow; `b` wins).",
            "{'a': 1, 'b': 1}.merge({'b': 2})" => r#"{"a":1,"b":2}"#),
        def!("pick", 2, pick, "pick(m: map, keys: list) -> map",
            "Only the entries whose key is in `keys`.",
            "{'ip': '1.2.3.4', 'raw': '...'}.pick(['ip'])" => r#"{"ip":"1.2.3.4"}"#),
        def!("omit", 2, omit, "omit(m: map, keys: list) -> map",
            "The entries whose key is not in `keys`.",
            "{'ip': '1.2.3.4', 'raw': '...'}.omit(['raw'])" => r#"{"ip":"1.2.3.4"}"#),
        def!("groupBy", 2, group_by, "groupBy(l: list(map), key: string) -> map",
            "Maps grouped by the value at `key` (a string, int, uint or bool; every element must \
             have it).",
            "[{'h': 'a', 'n': 1}, {'h': 'b', 'n': 2}, {'h': 'a', 'n': 3}].groupBy('h').a.map(x, x.n)"
                => "[1,3]"),
        def!("countBy", 1, count_values, "countBy(l: list) -> map",
            "How many times each value (string, int, uint or bool) occurs.",
            "['a', 'b', 'a'].countBy()" => r#"{"a":2,"b":1}"#),
        def!("countBy", 2, count_by, "countBy(l: list(map), key: string) -> map",
            "How many maps have each value at `key`.",
            "[{'sev': 'high'}, {'sev': 'low'}, {'sev': 'high'}].countBy('sev')"
                => r#"{"high":2,"low":1}"#),
        def!("get", 2, get, "get(x: map|list, path: string|list) -> dyn",
            "The value at a dotted path (`'a.b.0'`) or a list of keys and indices; null when \
             any step is missing.",
            "{'a': {'b': [10, 20]}}.get('a.b.1')" => "20"),
        def!("get", 3, get_or, "get(x: map|list, path: string|list, default) -> dyn",
            "Like `get`, with `default` instead of null when missing.",
            "{'a': 1}.get(['x', 'y'], 'none')" => r#""none""#),
        def!("coalesce", 2, coalesce, "coalesce(a, b) -> dyn",
            "The first argument that is not null.", "coalesce(null, 'fallback')" => r#""fallback""#),
        def!("coalesce", 3, coalesce, "coalesce(a, b, c) -> dyn",
            "The first argument that is not null.", "coalesce(null, null, 3)" => "3"),
        def!("isEmpty", 1, is_empty, "isEmpty(x) -> bool",
            "Whether `x` is null, or an empty string, bytes, list or map.",
            "isEmpty('') && isEmpty([]) && !isEmpty(0)" => "true"),
        def!("round", 1, round, "round(x: number) -> number",
            "Rounded to the nearest integer (half away from zero); ints unchanged.",
            "round(2.5)" => "3.0"),
        def!("round", 2, round_to, "round(x: number, digits: int) -> double",
            "Rounded to `digits` decimals.", "round(3.14159, 2)" => "3.14"),
        def!("floor", 1, floor, "floor(x: number) -> number",
            "Rounded down; ints unchanged.", "floor(2.7)" => "2.0"),
        def!("ceil", 1, ceil, "ceil(x: number) -> number",
            "Rounded up; ints unchanged.", "ceil(2.1)" => "3.0"),
        def!("abs", 1, abs, "abs(x: number) -> number",
            "The absolute value.", "abs(-3)" => "3"),
    ]
}

/// A value's identity for deduplication: equal values (CEL equality, so `1 == 1.0`) share it.
fn identity(v: &Cel) -> String {
    match v {
        Cel::Int(n) => format!("n{n}"),
        Cel::UInt(n) => format!("n{n}"),
        Cel::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => format!("n{}", *f as i64),
        Cel::Float(f) => format!("f{f}"),
        Cel::String(s) => format!("s{s}"),
        Cel::Bool(b) => format!("b{b}"),
        Cel::Null => "null".to_owned(),
        Cel::Bytes(b) => format!("x{}", hex::encode(b.as_slice())),
        Cel::List(items) => {
            let inner: Vec<String> = items.iter().map(identity).collect();
            format!("l[{}]", inner.join(","))
        }
        Cel::Map(m) => {
            let mut inner: Vec<String> = m
                .map
                .iter()
                .map(|(k, v)| format!("{}={}", identity(&Cel::from(k)), identity(v)))
                .collect();
            inner.sort();
            format!("m{{{}}}", inner.join(","))
        }
        other => format!("{other:?}"),
    }
}

fn contains(args: &[Cel]) -> Result<Cel, String> {
    match args.first() {
        Some(Cel::List(items)) => Ok(Cel::Bool(items.iter().any(|v| v == &args[1]))),
        Some(Cel::Map(m)) => Ok(Cel::Bool(
            to_key(&args[1]).is_some_and(|k| m.map.contains_key(&k)),
        )),
        _ => Err(super::wrong(
            args,
            0,
            "a list or a map (or a string, with a string)",
        )),
    }
}

fn compare(a: &Cel, b: &Cel) -> Result<Ordering, String> {
    a.partial_cmp(b)
        .ok_or_else(|| format!("cannot compare {} with {}", type_name(a), type_name(b)))
}

/// Sorts with `compare`, failing on the first incomparable pair.
fn sorted(mut items: Vec<Cel>, key: impl Fn(&Cel) -> Cel) -> Result<Vec<Cel>, String> {
    let mut failure = None;
    items.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        match (&ka, &kb) {
            (Cel::Null, Cel::Null) => Ordering::Equal,
            (Cel::Null, _) => Ordering::Less,
            (_, Cel::Null) => Ordering::Greater,
            _ => compare(&ka, &kb).unwrap_or_else(|e| {
                failure.get_or_insert(e);
                Ordering::Equal
            }),
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(items),
    }
}

fn sort(args: &[Cel]) -> Result<Cel, String> {
    Ok(list_value(sorted(list(args, 0)?.to_vec(), Cel::clone)?))
}

fn field(v: &Cel, key: &str) -> Cel {
    match v {
        Cel::Map(m) => m
            .map
            .get(&Key::String(Arc::new(key.to_owned())))
            .cloned()
            .unwrap_or(Cel::Null),
        _ => Cel::Null,
    }
}

fn sort_by(args: &[Cel]) -> Result<Cel, String> {
    let key = string(args, 1)?;
    Ok(list_value(sorted(list(args, 0)?.to_vec(), |v| {
        field(v, key)
    })?))
}

fn unique(args: &[Cel]) -> Result<Cel, String> {
    let mut seen = HashSet::new();
    Ok(list_value(
        list(args, 0)?
            .iter()
            .filter(|v| seen.insert(identity(v)))
            .cloned()
            .collect(),
    ))
}

fn flatten(args: &[Cel]) -> Result<Cel, String> {
    let mut out = Vec::new();
    for v in list(args, 0)? {
        match v {
            Cel::List(inner) => out.extend(inner.iter().cloned()),
            other => out.push(other.clone()),
        }
        if out.len() > MAX_LIST_ITEMS {
            return Err(too_many(out.len()));
        }
    }
    Ok(list_value(out))
}

/// A Python-style index, clamped to `0..=len`.
fn clamp(i: i64, len: usize) -> usize {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let i = if i < 0 { len_i.saturating_add(i) } else { i };
    usize::try_from(i.clamp(0, len_i)).unwrap_or(0)
}

fn slice_from(args: &[Cel]) -> Result<Cel, String> {
    let items = list(args, 0)?;
    let start = clamp(int(args, 1)?, items.len());
    Ok(list_value(items[start..].to_vec()))
}

fn slice(args: &[Cel]) -> Result<Cel, String> {
    let items = list(args, 0)?;
    let start = clamp(int(args, 1)?, items.len());
    let end = clamp(int(args, 2)?, items.len()).max(start);
    Ok(list_value(items[start..end].to_vec()))
}

fn first(args: &[Cel]) -> Result<Cel, String> {
    Ok(list(args, 0)?.first().cloned().unwrap_or(Cel::Null))
}

fn last(args: &[Cel]) -> Result<Cel, String> {
    Ok(list(args, 0)?.last().cloned().unwrap_or(Cel::Null))
}

fn chunk(args: &[Cel]) -> Result<Cel, String> {
    let items = list(args, 0)?;
    let n = count(args, 1, MAX_LIST_ITEMS)?;
    if n == 0 {
        return Err("the chunk size must be at least 1".into());
    }
    Ok(list_value(
        items.chunks(n).map(|c| list_value(c.to_vec())).collect(),
    ))
}

fn int_range(start: i64, end: i64) -> Result<Cel, String> {
    let len = end.saturating_sub(start).max(0);
    if len > MAX_LIST_ITEMS as i64 {
        return Err(too_many(usize::try_from(len).unwrap_or(usize::MAX)));
    }
    Ok(list_value((start..end).map(Cel::Int).collect()))
}

fn range(args: &[Cel]) -> Result<Cel, String> {
    int_range(0, int(args, 0)?)
}

fn range_from(args: &[Cel]) -> Result<Cel, String> {
    int_range(int(args, 0)?, int(args, 1)?)
}

fn compact(args: &[Cel]) -> Result<Cel, String> {
    Ok(list_value(
        list(args, 0)?
            .iter()
            .filter(|v| !matches!(v, Cel::Null))
            .cloned()
            .collect(),
    ))
}

fn identities(items: &[Cel]) -> HashSet<String> {
    items.iter().map(identity).collect()
}

fn difference(args: &[Cel]) -> Result<Cel, String> {
    let remove = identities(list(args, 1)?);
    Ok(list_value(
        list(args, 0)?
            .iter()
            .filter(|v| !remove.contains(&identity(v)))
            .cloned()
            .collect(),
    ))
}

fn intersection(args: &[Cel]) -> Result<Cel, String> {
    let keep = identities(list(args, 1)?);
    let mut seen = HashSet::new();
    Ok(list_value(
        list(args, 0)?
            .iter()
            .filter(|v| {
                let id = identity(v);
                keep.contains(&id) && seen.insert(id)
            })
            .cloned()
            .collect(),
    ))
}

fn union(args: &[Cel]) -> Result<Cel, String> {
    let mut seen = HashSet::new();
    let out: Vec<Cel> = list(args, 0)?
        .iter()
        .chain(list(args, 1)?)
        .filter(|v| seen.insert(identity(v)))
        .cloned()
        .collect();
    Ok(list_value(out))
}

fn zip(args: &[Cel]) -> Result<Cel, String> {
    let (a, b) = (list(args, 0)?, list(args, 1)?);
    Ok(list_value(
        a.iter()
            .zip(b)
            .map(|(x, y)| list_value(vec![x.clone(), y.clone()]))
            .collect(),
    ))
}

fn sum(args: &[Cel]) -> Result<Cel, String> {
    let items = list(args, 0)?;
    if items.iter().all(|v| matches!(v, Cel::Int(_))) {
        let mut total: i64 = 0;
        for v in items {
            if let Cel::Int(n) = v {
                total = total
                    .checked_add(*n)
                    .ok_or_else(|| "the sum overflows an int".to_owned())?;
            }
        }
        return Ok(Cel::Int(total));
    }
    let mut total = 0.0;
    for (i, v) in items.iter().enumerate() {
        total += number(std::slice::from_ref(v), 0)
            .map_err(|_| format!("element {i} is a {}, not a number", type_name(v)))?;
    }
    Ok(Cel::Float(total))
}

fn avg(args: &[Cel]) -> Result<Cel, String> {
    let items = list(args, 0)?;
    if items.is_empty() {
        return Ok(Cel::Null);
    }
    let mut total = 0.0;
    for (i, v) in items.iter().enumerate() {
        total += number(std::slice::from_ref(v), 0)
            .map_err(|_| format!("element {i} is a {}, not a number", type_name(v)))?;
    }
    Ok(Cel::Float(total / items.len() as f64))
}

fn extreme(items: &[Cel], want: Ordering) -> Result<Cel, String> {
    let mut best: Option<&Cel> = None;
    for v in items {
        best = Some(match best {
            None => v,
            Some(b) if compare(v, b)? == want => v,
            Some(b) => b,
        });
    }
    Ok(best.cloned().unwrap_or(Cel::Null))
}

fn min_list(args: &[Cel]) -> Result<Cel, String> {
    extreme(list(args, 0)?, Ordering::Less)
}

fn max_list(args: &[Cel]) -> Result<Cel, String> {
    extreme(list(args, 0)?, Ordering::Greater)
}

fn min2(args: &[Cel]) -> Result<Cel, String> {
    extreme(args, Ordering::Less)
}

fn max2(args: &[Cel]) -> Result<Cel, String> {
    extreme(args, Ordering::Greater)
}

fn sorted_entries(m: &HashMap<Key, Cel>) -> Vec<(&Key, &Cel)> {
    let mut entries: Vec<(&Key, &Cel)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn keys(args: &[Cel]) -> Result<Cel, String> {
    Ok(list_value(
        sorted_entries(map(args, 0)?)
            .into_iter()
            .map(|(k, _)| Cel::from(k))
            .collect(),
    ))
}

fn values(args: &[Cel]) -> Result<Cel, String> {
    Ok(list_value(
        sorted_entries(map(args, 0)?)
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect(),
    ))
}

fn entries(args: &[Cel]) -> Result<Cel, String> {
    Ok(list_value(
        sorted_entries(map(args, 0)?)
            .into_iter()
            .map(|(k, v)| list_value(vec![Cel::from(k), v.clone()]))
            .collect(),
    ))
}

/// A value usable as a map key.
fn to_key(v: &Cel) -> Option<Key> {
    match v {
        Cel::String(s) => Some(Key::String(Arc::clone(s))),
        Cel::Int(n) => Some(Key::Int(*n)),
        Cel::UInt(n) => Some(Key::Uint(*n)),
        Cel::Bool(b) => Some(Key::Bool(*b)),
        _ => None,
    }
}

fn key_or_err(v: &Cel, what: &str) -> Result<Key, String> {
    to_key(v).ok_or_else(|| {
        format!(
            "{what} is a {}; map keys are strings, ints, uints or bools",
            type_name(v)
        )
    })
}

fn from_entries(args: &[Cel]) -> Result<Cel, String> {
    let mut out = HashMap::new();
    for (i, pair) in list(args, 0)?.iter().enumerate() {
        let Cel::List(kv) = pair else {
            return Err(format!("element {i} is not a [key, value] pair"));
        };
        let [k, v] = kv.as_slice() else {
            return Err(format!("element {i} is not a [key, value] pair"));
        };
        out.insert(
            key_or_err(k, &format!("the key of element {i}"))?,
            v.clone(),
        );
    }
    Ok(map_value(out))
}

fn merge(args: &[Cel]) -> Result<Cel, String> {
    let mut out = map(args, 0)?.clone();
    for (k, v) in map(args, 1)? {
        out.insert(k.clone(), v.clone());
    }
    Ok(map_value(out))
}

fn merge_all(args: &[Cel]) -> Result<Cel, String> {
    let mut out = HashMap::new();
    for (i, m) in list(args, 0)?.iter().enumerate() {
        let Cel::Map(m) = m else {
            return Err(format!("element {i} is a {}, not a map", type_name(m)));
        };
        for (k, v) in m.map.iter() {
            out.insert(k.clone(), v.clone());
        }
        if out.len() > MAX_LIST_ITEMS {
            return Err(too_many(out.len()));
        }
    }
    Ok(map_value(out))
}

fn key_set(items: &[Cel]) -> HashSet<Key> {
    items.iter().filter_map(to_key).collect()
}

fn pick(args: &[Cel]) -> Result<Cel, String> {
    let wanted = key_set(list(args, 1)?);
    Ok(map_value(
        map(args, 0)?
            .iter()
            .filter(|(k, _)| wanted.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

fn omit(args: &[Cel]) -> Result<Cel, String> {
    let unwanted = key_set(list(args, 1)?);
    Ok(map_value(
        map(args, 0)?
            .iter()
            .filter(|(k, _)| !unwanted.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

/// The key each element is grouped under.
fn group_key(v: &Cel, i: usize, key: &str) -> Result<Key, String> {
    let value = field(v, key);
    if matches!(value, Cel::Null) {
        return Err(format!("element {i} has no key {key:?} (or it is null)"));
    }
    key_or_err(&value, &format!("element {i}'s {key:?}"))
}

fn group_by(args: &[Cel]) -> Result<Cel, String> {
    let key = string(args, 1)?;
    let mut groups: HashMap<Key, Vec<Cel>> = HashMap::new();
    for (i, v) in list(args, 0)?.iter().enumerate() {
        groups
            .entry(group_key(v, i, key)?)
            .or_default()
            .push(v.clone());
    }
    Ok(map_value(
        groups
            .into_iter()
            .map(|(k, v)| (k, list_value(v)))
            .collect(),
    ))
}

fn counts(keys: impl Iterator<Item = Result<Key, String>>) -> Result<Cel, String> {
    let mut out: HashMap<Key, i64> = HashMap::new();
    for k in keys {
        *out.entry(k?).or_default() += 1;
    }
    Ok(map_value(
        out.into_iter().map(|(k, n)| (k, Cel::Int(n))).collect(),
    ))
}

fn count_values(args: &[Cel]) -> Result<Cel, String> {
    counts(
        list(args, 0)?
            .iter()
            .enumerate()
            .map(|(i, v)| key_or_err(v, &format!("element {i}"))),
    )
}

fn count_by(args: &[Cel]) -> Result<Cel, String> {
    let key = string(args, 1)?;
    counts(
        list(args, 0)?
            .iter()
            .enumerate()
            .map(|(i, v)| group_key(v, i, key)),
    )
}

/// One step of a `get` path.
enum Step {
    Key(String),
    Index(i64),
}

fn get_path(path: &Cel) -> Result<Vec<Step>, String> {
    match path {
        Cel::String(s) if s.is_empty() => Ok(Vec::new()),
        Cel::String(s) => Ok(s.split('.').map(|p| Step::Key(p.to_owned())).collect()),
        Cel::List(items) => items
            .iter()
            .map(|v| match v {
                Cel::String(s) => Ok(Step::Key(s.as_str().to_owned())),
                Cel::Int(n) => Ok(Step::Index(*n)),
                Cel::UInt(n) => Ok(Step::Index(i64::try_from(*n).unwrap_or(i64::MAX))),
                other => Err(format!(
                    "a path step must be a string or an int, not {}",
                    type_name(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "the path must be a string or a list, not {}",
            type_name(other)
        )),
    }
}

fn lookup(root: &Cel, path: &[Step]) -> Option<Cel> {
    let mut cur = root;
    for step in path {
        cur = match (cur, step) {
            (Cel::Map(m), Step::Key(k)) => m.map.get(&Key::String(Arc::new(k.clone())))?,
            (Cel::Map(m), Step::Index(i)) => m.map.get(&Key::Int(*i))?,
            (Cel::List(items), Step::Index(i)) => items.get(usize::try_from(*i).ok()?)?,
            (Cel::List(items), Step::Key(k)) => items.get(k.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur.clone())
}

fn get(args: &[Cel]) -> Result<Cel, String> {
    let path = get_path(&args[1])?;
    Ok(lookup(&args[0], &path).unwrap_or(Cel::Null))
}

fn get_or(args: &[Cel]) -> Result<Cel, String> {
    let path = get_path(&args[1])?;
    Ok(match lookup(&args[0], &path) {
        Some(Cel::Null) | None => args[2].clone(),
        Some(v) => v,
    })
}

fn coalesce(args: &[Cel]) -> Result<Cel, String> {
    Ok(args
        .iter()
        .find(|v| !matches!(v, Cel::Null))
        .cloned()
        .unwrap_or(Cel::Null))
}

fn is_empty(args: &[Cel]) -> Result<Cel, String> {
    Ok(Cel::Bool(match &args[0] {
        Cel::Null => true,
        Cel::String(s) => s.is_empty(),
        Cel::Bytes(b) => b.is_empty(),
        Cel::List(items) => items.is_empty(),
        Cel::Map(m) => m.map.is_empty(),
        _ => false,
    }))
}

fn on_double(args: &[Cel], f: fn(f64) -> f64) -> Result<Cel, String> {
    match &args[0] {
        Cel::Int(_) | Cel::UInt(_) => Ok(args[0].clone()),
        Cel::Float(x) => Ok(Cel::Float(f(*x))),
        _ => Err(super::wrong(args, 0, "a number")),
    }
}

fn round(args: &[Cel]) -> Result<Cel, String> {
    on_double(args, f64::round)
}

fn round_to(args: &[Cel]) -> Result<Cel, String> {
    let x = number(args, 0)?;
    let digits = int(args, 1)?.clamp(-15, 15);
    let scale = 10f64.powi(i32::try_from(digits).unwrap_or(0));
    Ok(Cel::Float((x * scale).round() / scale))
}

fn floor(args: &[Cel]) -> Result<Cel, String> {
    on_double(args, f64::floor)
}

fn ceil(args: &[Cel]) -> Result<Cel, String> {
    on_double(args, f64::ceil)
}

fn abs(args: &[Cel]) -> Result<Cel, String> {
    match &args[0] {
        Cel::Int(n) => n
            .checked_abs()
            .map(Cel::Int)
            .ok_or_else(|| "the absolute value overflows an int".to_owned()),
        Cel::UInt(_) => Ok(args[0].clone()),
        Cel::Float(f) => Ok(Cel::Float(f.abs())),
        _ => Err(super::wrong(args, 0, "a number")),
    }
}
