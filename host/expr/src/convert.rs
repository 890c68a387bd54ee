//! Between JSON and CEL values.
//!
//! Binding converts a JSON tree into CEL values that *borrow* its strings (no string bytes are
//! copied), pruned to the paths the expression reads. Results come back as owned
//! [`cel::Value`]s and are turned into JSON.

use std::collections::HashMap;
use std::sync::Arc;

use cel::Value as Cel;
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::objects::{Key, Map as CelMapValue};
use chrono::SecondsFormat;
use serde_json::{Map, Number, Value};

use crate::path::{Seg, Trie};

/// Deepest JSON or CEL value converted; deeper values are refused rather than recursed into.
pub(crate) const MAX_VALUE_DEPTH: usize = 256;

fn too_deep() -> String {
    format!("value is nested deeper than {MAX_VALUE_DEPTH} levels")
}

/// A JSON number as the CEL number it is: `int` when it fits, `uint` above `int`'s range,
/// `double` otherwise.
fn number<'a>(n: &Number) -> Box<dyn Val + 'a> {
    if let Some(i) = n.as_i64() {
        Box::new(CelInt::from(i))
    } else if let Some(u) = n.as_u64() {
        Box::new(CelUInt::from(u))
    } else {
        Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
    }
}

/// Binds `value` for CEL, keeping only what `trie` reads (everything when `trie` is `None` or
/// reads the node whole). Strings are borrowed from `value`.
pub(crate) fn bind<'a>(
    value: &'a Value,
    trie: Option<&Trie>,
    depth: usize,
) -> Result<Box<dyn Val + 'a>, String> {
    if depth > MAX_VALUE_DEPTH {
        return Err(too_deep());
    }
    let pruned = trie.filter(|t| !t.whole);
    Ok(match value {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => number(n),
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => {
            let list: Vec<Box<dyn Val + 'a>> = match pruned {
                None => items
                    .iter()
                    .map(|v| bind(v, None, depth + 1))
                    .collect::<Result<_, _>>()?,
                Some(t) => {
                    // Only fixed indices are read: keep positions, leave the rest null.
                    let last = t
                        .children
                        .keys()
                        .filter_map(|s| match s {
                            Seg::Index(i) => usize::try_from(*i).ok(),
                            Seg::Key(_) => None,
                        })
                        .max();
                    let len = last.map_or(0, |l| (l + 1).min(items.len()));
                    items[..len]
                        .iter()
                        .enumerate()
                        .map(|(i, v)| match t.child(&Seg::Index(i as i64)) {
                            Some(child) => bind(v, Some(child), depth + 1),
                            None => Ok(Box::new(CelNull) as Box<dyn Val + 'a>),
                        })
                        .collect::<Result<_, _>>()?
                }
            };
            Box::new(CelList::from(list))
        }
        Value::Object(map) => {
            let mut out: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::new();
            match pruned {
                None => {
                    out.reserve(map.len());
                    for (k, v) in map {
                        out.insert(CelMapKey::from(k.as_str()), bind(v, None, depth + 1)?);
                    }
                }
                Some(t) => {
                    for (seg, child) in &t.children {
                        if let Seg::Key(k) = seg
                            && let Some((key, v)) = map.get_key_value(k)
                        {
                            out.insert(
                                CelMapKey::from(key.as_str()),
                                bind(v, Some(child), depth + 1)?,
                            );
                        }
                    }
                }
            }
            Box::new(CelMap::from(out))
        }
    })
}

/// An owned CEL value for JSON (the result of `fromJson`, `fromYaml`, `get`).
pub(crate) fn json_to_cel(value: &Value) -> Result<Cel, String> {
    fn go(value: &Value, depth: usize) -> Result<Cel, String> {
        if depth > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        Ok(match value {
            Value::Null => Cel::Null,
            Value::Bool(b) => Cel::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Cel::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Cel::UInt(u)
                } else {
                    Cel::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Cel::String(Arc::new(s.clone())),
            Value::Array(items) => Cel::List(Arc::new(
                items
                    .iter()
                    .map(|v| go(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            )),
            Value::Object(map) => {
                let mut out = HashMap::with_capacity(map.len());
                for (k, v) in map {
                    out.insert(Key::String(Arc::new(k.clone())), go(v, depth + 1)?);
                }
                Cel::Map(CelMapValue { map: Arc::new(out) })
            }
        })
    }
    go(value, 0)
}

/// The JSON text of a map key: strings as they are, numbers and bools written out.
pub(crate) fn key_string(key: &Key) -> String {
    match key {
        Key::String(s) => s.as_str().to_owned(),
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
    }
}

/// A CEL duration as CEL writes it: seconds with a fraction when needed, e.g. `"5400s"`.
pub(crate) fn duration_string(d: &chrono::Duration) -> String {
    let secs = d.num_seconds();
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{secs}s")
    } else {
        let sign = if secs < 0 || nanos < 0 { "-" } else { "" };
        let frac = format!("{:09}", nanos.unsigned_abs());
        format!(
            "{sign}{}.{}s",
            secs.unsigned_abs(),
            frac.trim_end_matches('0')
        )
    }
}

/// A CEL timestamp as CEL's `string()` writes it: RFC 3339 in UTC (`Z`), the fraction of a
/// second without trailing zeros.
pub(crate) fn timestamp_string(t: &chrono::DateTime<chrono::FixedOffset>) -> String {
    let s = t
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(SecondsFormat::Nanos, true);
    // `…:SS.fffffffff<offset>`: trim the fraction's zeros (and its dot when nothing is left).
    let Some(dot) = s.rfind('.') else {
        return s;
    };
    let end = s[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(s.len(), |i| dot + 1 + i);
    let fraction = s[dot + 1..end].trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}{}", &s[..dot], &s[end..])
    } else {
        format!("{}.{fraction}{}", &s[..dot], &s[end..])
    }
}

/// The JSON for a CEL result. Bytes become base64 (standard alphabet), timestamps RFC 3339
/// strings, durations CEL duration strings, map keys strings; optionals their value or
/// `null`. NaN, infinities, functions and type-less opaque values have no JSON.
pub(crate) fn cel_to_json(value: &Cel) -> Result<Value, String> {
    fn go(value: &Cel, depth: usize) -> Result<Value, String> {
        if depth > MAX_VALUE_DEPTH {
            return Err(too_deep());
        }
        Ok(match value {
            Cel::Null => Value::Null,
            Cel::Bool(b) => Value::Bool(*b),
            Cel::Int(i) => Value::from(*i),
            Cel::UInt(u) => Value::from(*u),
            Cel::Float(f) => Number::from_f64(*f)
                .map(Value::Number)
                .ok_or_else(|| format!("{f} has no JSON representation"))?,
            Cel::String(s) => Value::String(s.as_str().to_owned()),
            Cel::Bytes(b) => {
                use base64::Engine;
                Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_slice()))
            }
            Cel::List(items) => Value::Array(
                items
                    .iter()
                    .map(|v| go(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Cel::Map(map) => {
                let mut out = Map::new();
                for (k, v) in map.map.iter() {
                    out.insert(key_string(k), go(v, depth + 1)?);
                }
                Value::Object(out)
            }
            Cel::Timestamp(t) => Value::String(timestamp_string(t)),
            Cel::Duration(d) => Value::String(duration_string(d)),
            Cel::Opaque(o) => match o.downcast_ref::<cel::objects::OptionalValue>() {
                Some(opt) => match opt.value() {
                    Some(v) => go(v, depth + 1)?,
                    None => Value::Null,
                },
                None => return Err(format!("a {} value has no JSON", o.runtime_type_name())),
            },
            Cel::Function(name, _) => return Err(format!("function `{name}` is not a value")),
            Cel::Struct(_) => return Err("a message value has no JSON".into()),
        })
    }
    go(value, 0)
}

/// A CEL value's type name, for messages.
pub(crate) fn type_name(value: &Cel) -> &'static str {
    match value {
        Cel::Null => "null",
        Cel::Bool(_) => "bool",
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bytes(_) => "bytes",
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        Cel::Timestamp(_) => "timestamp",
        Cel::Duration(_) => "duration",
        Cel::Opaque(_) => "optional",
        Cel::Function(..) => "function",
        Cel::Struct(_) => "message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(v: &Value, trie: Option<&Trie>) -> Value {
        let bound = bind(v, trie, 0).unwrap();
        let cel = Cel::try_from(bound.as_ref()).unwrap();
        cel_to_json(&cel).unwrap()
    }

    #[test]
    fn binding_round_trips() {
        let v = json!({"a": [1, -2, 1.5, "x", null, true, {"b": 18446744073709551615u64}]});
        assert_eq!(round_trip(&v, None), v);
    }

    #[test]
    fn binding_borrows_strings() {
        let v = json!("a long string that should not be copied");
        let bound = bind(&v, None, 0).unwrap();
        let s = bound.downcast_ref::<CelString>().unwrap();
        assert!(std::ptr::eq(s.inner(), v.as_str().unwrap()));
    }

    #[test]
    fn pruning_keeps_only_read_paths() {
        let v =
            json!({"a": {"b": 1, "c": 2}, "big": [1, 2, 3], "list": [10, {"x": 1, "y": 2}, 30]});
        let mut t = Trie::default();
        t.insert(&[Seg::Key("a".into()), Seg::Key("b".into())]);
        t.insert(&[Seg::Key("list".into()), Seg::Index(1), Seg::Key("y".into())]);
        t.insert(&[Seg::Key("missing".into())]);
        assert_eq!(
            round_trip(&v, Some(&t)),
            json!({"a": {"b": 1}, "list": [null, {"y": 2}]})
        );
    }

    #[test]
    fn deep_values_are_refused() {
        let mut v = json!(1);
        for _ in 0..300 {
            v = json!([v]);
        }
        assert!(bind(&v, None, 0).is_err());
        assert!(json_to_cel(&v).is_err());
    }

    #[test]
    fn special_values_to_json() {
        assert!(cel_to_json(&Cel::Float(f64::NAN)).is_err());
        assert_eq!(
            cel_to_json(&Cel::Bytes(Arc::new(b"hi".to_vec()))).unwrap(),
            json!("aGk=")
        );
        assert_eq!(
            duration_string(&chrono::Duration::milliseconds(1500)),
            "1.5s"
        );
        assert_eq!(
            duration_string(&chrono::Duration::milliseconds(-1500)),
            "-1.5s"
        );
        assert_eq!(duration_string(&chrono::Duration::hours(1)), "3600s");
        let t = |s: &str| timestamp_string(&chrono::DateTime::parse_from_rfc3339(s).unwrap());
        assert_eq!(t("2024-01-01T00:00:00.250Z"), "2024-01-01T00:00:00.25Z");
        assert_eq!(t("2024-01-01T00:00:00Z"), "2024-01-01T00:00:00Z");
        assert_eq!(t("2024-01-01T02:00:00.5+02:00"), "2024-01-01T00:00:00.5Z");
    }
}
