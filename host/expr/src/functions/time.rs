//! Timestamps beyond CEL's own `timestamp()`, `duration()` and `get*()` accessors.

use std::fmt::Write;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};

use cel::Value as Cel;

use super::{Def, def, int, number, str_value, string, too_long, wrong};
use crate::limits::MAX_STRING_BYTES;

pub(super) fn defs() -> Vec<Def> {
    vec![
        def!("parseTimestamp", 2, parse_timestamp,
            "parseTimestamp(s: string, format: string) -> timestamp",
            "Parses with a strftime format; without a `%z` offset the time is UTC, without a time \
             it is midnight.",
            "string(parseTimestamp('03/04/2024 10:30', '%d/%m/%Y %H:%M'))"
                => r#""2024-04-03T10:30:00Z""#),
        def!("formatTimestamp", 2, format_timestamp,
            "formatTimestamp(t: timestamp|string, format: string) -> string",
            "Formats in UTC with a strftime format (a string is read as RFC 3339 first).",
            "formatTimestamp(timestamp('2024-04-03T10:30:00Z'), '%Y-%m-%d %H:%M')"
                => r#""2024-04-03 10:30""#),
        def!("unixSeconds", 1, unix_seconds, "unixSeconds(t: timestamp|string) -> int",
            "Seconds since the Unix epoch.",
            "unixSeconds(timestamp('2024-01-01T00:00:00Z'))" => "1704067200"),
        def!("unixMillis", 1, unix_millis, "unixMillis(t: timestamp|string) -> int",
            "Milliseconds since the Unix epoch.",
            "unixMillis('2024-01-01T00:00:00.250Z')" => "1704067200250"),
        def!("fromUnix", 1, from_unix, "fromUnix(seconds: number) -> timestamp",
            "The timestamp `seconds` after the Unix epoch (a double keeps the fraction).",
            "string(fromUnix(1704067200))" => r#""2024-01-01T00:00:00Z""#),
        def!("fromUnixMillis", 1, from_unix_millis, "fromUnixMillis(ms: int) -> timestamp",
            "The timestamp `ms` milliseconds after the Unix epoch.",
            "string(fromUnixMillis(1704067200250))" => r#""2024-01-01T00:00:00.25Z""#),
    ]
}

/// A timestamp argument: a CEL timestamp, or an RFC 3339 string.
fn timestamp(args: &[Cel], i: usize) -> Result<DateTime<FixedOffset>, String> {
    match args.get(i) {
        Some(Cel::Timestamp(t)) => Ok(*t),
        Some(Cel::String(s)) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("{:?} is not an RFC 3339 timestamp: {e}", s.as_str())),
        _ => Err(wrong(args, i, "a timestamp or an RFC 3339 string")),
    }
}

fn parse_timestamp(args: &[Cel]) -> Result<Cel, String> {
    let (s, fmt) = (string(args, 0)?, string(args, 1)?);
    if let Ok(t) = DateTime::parse_from_str(s, fmt) {
        return Ok(Cel::Timestamp(t));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
        return Ok(Cel::Timestamp(t.and_utc().fixed_offset()));
    }
    match NaiveDate::parse_from_str(s, fmt) {
        Ok(d) => Ok(Cel::Timestamp(
            d.and_hms_opt(0, 0, 0)
                .ok_or_else(|| "invalid date".to_owned())?
                .and_utc()
                .fixed_offset(),
        )),
        Err(e) => Err(format!("{s:?} does not match {fmt:?}: {e}")),
    }
}

fn format_timestamp(args: &[Cel]) -> Result<Cel, String> {
    let t = timestamp(args, 0)?;
    let fmt = string(args, 1)?;
    let mut out = String::new();
    // A bad specifier makes chrono's Display fail: written out, not `to_string()`d (which
    // would panic).
    write!(out, "{}", t.with_timezone(&Utc).format(fmt))
        .map_err(|_| format!("{fmt:?} is not a valid format"))?;
    if out.len() > MAX_STRING_BYTES {
        return Err(too_long(out.len()));
    }
    str_value(out)
}

fn unix_seconds(args: &[Cel]) -> Result<Cel, String> {
    Ok(Cel::Int(timestamp(args, 0)?.timestamp()))
}

fn unix_millis(args: &[Cel]) -> Result<Cel, String> {
    Ok(Cel::Int(timestamp(args, 0)?.timestamp_millis()))
}

fn out_of_range() -> String {
    "the time is out of range".to_owned()
}

fn from_unix(args: &[Cel]) -> Result<Cel, String> {
    let t = match &args[0] {
        Cel::Float(_) => {
            let secs = number(args, 0)?;
            if !secs.is_finite() || secs.abs() > 1.0e13 {
                return Err(out_of_range());
            }
            let whole = secs.floor();
            let nanos = ((secs - whole) * 1e9).round() as u32;
            DateTime::<Utc>::from_timestamp(whole as i64, nanos.min(999_999_999))
        }
        _ => DateTime::<Utc>::from_timestamp(int(args, 0)?, 0),
    };
    t.map(|t| Cel::Timestamp(t.fixed_offset()))
        .ok_or_else(out_of_range)
}

fn from_unix_millis(args: &[Cel]) -> Result<Cel, String> {
    DateTime::<Utc>::from_timestamp_millis(int(args, 0)?)
        .map(|t| Cel::Timestamp(t.fixed_offset()))
        .ok_or_else(out_of_range)
}
