//! An operator's *grant*: everything one component (package) may do.
//!
//! A grant is a TOML file. Every section and key is optional; an empty file
//! denies everything and applies default limits. Parsing is strict (unknown
//! keys are errors, numbers are range-checked) and every error carries the
//! file, line, column and key so that an operator can fix it without guessing.
//!
//! ```toml
//! [limits]
//! memory_mib = 64
//! timeout_ms = 10000
//!
//! [http]
//! allow = ["https://api.example.com", "https://*.example.com:8443"]
//! allow_private = ["http://127.0.0.1:8080"]
//!
//! [secrets.VT_API_KEY]
//! hosts = ["https://www.virustotal.com"]
//!
//! [kv]
//! max_keys = 1000
//! ```
//!
//! This crate is pure: no I/O, no networking, no wasmtime. The runtime uses
//! the compiled types ([`Grant`], [`HttpGrant`], ...) to decide each request.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Range, RangeInclusive};

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub mod address;
pub mod http;
pub mod kv;
pub mod limits;
pub mod secrets;
pub mod template;

pub use address::{AddressClass, classify};
pub use http::{Denial, Destination, HostPattern, HostRule, HttpGrant, PatternError, Scheme};
pub use kv::KvGrant;
pub use limits::Limits;
pub use secrets::SecretGrant;
pub use template::{
    Placeholder, SubstituteError, TemplateError, find_placeholders, is_valid_secret_name,
    substitute,
};

/// Everything one component may do: limits, network destinations, secrets, kv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Resource limits for each step.
    pub limits: Limits,
    /// Outgoing HTTP destinations and per-request limits.
    pub http: HttpGrant,
    /// Secrets the component may use, by name.
    pub secrets: BTreeMap<String, SecretGrant>,
    /// Key-value store quota; `None` means kv is denied.
    pub kv: Option<KvGrant>,
}

impl Grant {
    /// Parse and validate a grant. `origin` is the file name (or `"<inline>"`)
    /// used in error messages.
    pub fn from_toml_str(src: &str, origin: &str) -> Result<Grant, GrantError> {
        let ctx = Ctx {
            src,
            origin,
            prefix: "",
        };
        let table = DeTable::parse(src).map_err(|e| {
            // A partial tree often still tells us which key the error is in.
            let (partial, _) = DeTable::parse_recoverable(src);
            ctx.toml_error(&e, Some(partial.get_ref()))
        })?;
        let raw = RawGrant::deserialize(toml::de::Deserializer::from(table)).map_err(|e| {
            // Parsing succeeded a moment ago; re-parse to walk the tree for the key path.
            let tree = DeTable::parse(src).ok();
            ctx.toml_error(&e, tree.as_ref().map(|t| t.get_ref()))
        })?;
        raw.compile(&ctx)
    }

    /// No http, no secrets, no kv, default limits.
    pub fn deny_all() -> Grant {
        Grant {
            limits: Limits::default(),
            http: HttpGrant::default(),
            secrets: BTreeMap::new(),
            kv: None,
        }
    }
}

impl Default for Grant {
    fn default() -> Self {
        Grant::deny_all()
    }
}

/// A TOML file parsed once, with spans, for files that embed grant-shaped
/// sections (the package manifest's `[capabilities]`). Errors from any part
/// of it name the file, line, column and key.
pub struct TomlDoc<'a> {
    ctx: Ctx<'a>,
    tree: Spanned<DeTable<'a>>,
}

impl<'a> TomlDoc<'a> {
    /// Parse `src`; `origin` names it in errors.
    pub fn parse(src: &'a str, origin: &'a str) -> Result<Self, GrantError> {
        let ctx = Ctx {
            src,
            origin,
            prefix: "",
        };
        let tree = DeTable::parse(src).map_err(|e| {
            let (partial, _) = DeTable::parse_recoverable(src);
            ctx.toml_error(&e, Some(partial.get_ref()))
        })?;
        Ok(Self { ctx, tree })
    }

    /// Deserialize the whole document (use `serde(deny_unknown_fields)` and
    /// `toml::Spanned` fields to get located errors for everything).
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, GrantError> {
        T::deserialize(toml::de::Deserializer::from(self.tree.clone()))
            .map_err(|e| self.ctx.toml_error(&e, Some(self.tree.get_ref())))
    }

    /// The grant-shaped table under top-level `key`; a missing table is
    /// [`Grant::deny_all`].
    pub fn grant_at(&self, key: &'a str) -> Result<Grant, GrantError> {
        let Some((_, value)) = self.tree.get_ref().iter().find(|(k, _)| k.get_ref() == key) else {
            return Ok(Grant::deny_all());
        };
        let DeValue::Table(table) = value.get_ref() else {
            return Err(self.error(Some(value.span()), key, "expected a table"));
        };
        let ctx = Ctx {
            src: self.ctx.src,
            origin: self.ctx.origin,
            prefix: key,
        };
        let sub = Spanned::new(value.span(), table.clone());
        let raw = RawGrant::deserialize(toml::de::Deserializer::from(sub))
            .map_err(|e| ctx.toml_error(&e, Some(self.tree.get_ref())))?;
        raw.compile(&ctx)
    }

    /// An error at `span` (a byte range of the source) about `key`.
    pub fn error(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> GrantError {
        self.ctx.error(span, key.to_string(), message)
    }
}

/// A grant file that could not be parsed or failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantError {
    /// File name (or `"<inline>"`) the grant came from.
    pub origin: String,
    /// 1-based line of the offending text, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending text, when known.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `http.allow[1]`, when known.
    pub key: Option<String>,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for GrantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for GrantError {}

/// The whole file as written, before validation.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Allama grant",
    description = "What one package's component may do. Every key is optional; an empty grant allows computation only."
)]
pub(crate) struct RawGrant {
    /// Resource limits for each step.
    limits: Option<limits::RawLimits>,
    /// Outbound HTTP.
    http: Option<http::RawHttp>,
    /// Secrets by name (letters, digits and `_`, not starting with a digit).
    #[schemars(with = "Option<BTreeMap<String, secrets::RawSecret>>")]
    secrets: Option<BTreeMap<Spanned<String>, secrets::RawSecret>>,
    /// Key-value storage; absent means denied.
    kv: Option<kv::RawKv>,
}

/// The JSON Schema of the grant format (also the manifest's `[capabilities]`).
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(RawGrant)
}

/// The grant format's schema, as a subschema to embed in another format's schema.
pub fn json_schema_in(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<RawGrant>()
}

impl RawGrant {
    fn compile(self, ctx: &Ctx<'_>) -> Result<Grant, GrantError> {
        let limits = match self.limits {
            Some(raw) => raw.compile(ctx)?,
            None => Limits::default(),
        };
        let http = match self.http {
            Some(raw) => raw.compile(ctx)?,
            None => HttpGrant::default(),
        };
        let mut secrets = BTreeMap::new();
        for (name, raw) in self.secrets.unwrap_or_default() {
            let span = name.span();
            let name = name.into_inner();
            if !is_valid_secret_name(&name) {
                return Err(ctx.error(
                    Some(span),
                    key_path(&["secrets", &name]),
                    format!(
                        "`{}` is not a valid secret name: use letters, digits and `_`, \
                         not starting with a digit, at most 128 characters (e.g. `VT_API_KEY`)",
                        display_snippet(&name)
                    ),
                ));
            }
            let grant = raw.compile(ctx, &name)?;
            secrets.insert(name, grant);
        }
        let kv = match self.kv {
            Some(raw) => Some(raw.compile(ctx)?),
            None => None,
        };
        Ok(Grant {
            limits,
            http,
            secrets,
            kv,
        })
    }
}

/// Source text and origin, for turning byte spans into `file:line:col` errors.
pub(crate) struct Ctx<'a> {
    src: &'a str,
    origin: &'a str,
    /// Key path of the table being read, when a grant is embedded in a
    /// larger file (e.g. `capabilities` in a package manifest).
    prefix: &'a str,
}

impl Ctx<'_> {
    /// Build an error located at `span` (a byte range into the source).
    pub(crate) fn error(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> GrantError {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = line_col(self.src, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        let mut key = key.into();
        if !self.prefix.is_empty() && !key.is_empty() && !key.starts_with(self.prefix) {
            key = format!("{}.{key}", self.prefix);
        }
        GrantError {
            origin: self.origin.to_owned(),
            line,
            column,
            key: (!key.is_empty()).then_some(key),
            message: message.into(),
        }
    }

    /// Convert a toml syntax or serde error, finding the key path via `tree`.
    fn toml_error(&self, e: &toml::de::Error, tree: Option<&DeTable<'_>>) -> GrantError {
        let span = e.span();
        let key = match (&span, tree) {
            (Some(span), Some(tree)) => key_path_at(tree, span.start).unwrap_or_default(),
            _ => String::new(),
        };
        let mut message = bounded(e.message().trim_end(), 400);
        if message == "missing field `hosts`" {
            message.push_str(
                "; say where this secret may be sent, e.g. \
                 `hosts = [\"https://api.example.com\"]`, or `hosts = []` for nowhere",
            );
        }
        self.error(span, bounded(&key, 200), message)
    }

    /// Read an optional integer key, applying its default and range.
    pub(crate) fn int(
        &self,
        value: Option<Spanned<Int>>,
        key: &str,
        default: u64,
        range: RangeInclusive<u64>,
        unit: &str,
    ) -> Result<u64, GrantError> {
        let Some(value) = value else {
            return Ok(default);
        };
        let n = value.get_ref().0;
        match u64::try_from(n) {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(self.error(
                Some(value.span()),
                key,
                format!(
                    "{n} is out of range: must be between {} and {} ({unit})",
                    range.start(),
                    range.end()
                ),
            )),
        }
    }
}

/// 1-based (line, column) of byte `offset`; column counts characters.
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = src[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Dotted path of the deepest key or value whose span contains `offset`.
fn key_path_at(tree: &DeTable<'_>, offset: usize) -> Option<String> {
    let mut path = String::new();
    walk_table(tree, offset, &mut path);
    (!path.is_empty()).then_some(path)
}

fn span_contains(span: Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut String) -> bool {
    for (k, v) in table.iter() {
        if span_contains(k.span(), offset) {
            push_key(path, k.get_ref());
            return true;
        }
        if span_contains(v.span(), offset) {
            push_key(path, k.get_ref());
            walk_value(v.get_ref(), offset, path);
            return true;
        }
    }
    // Header tables (`[a.b]`) and arrays of tables (`[[a]]`) span only their
    // headers; look inside anyway.
    for (k, v) in table.iter() {
        let len = path.len();
        match v.get_ref() {
            DeValue::Table(inner) => {
                push_key(path, k.get_ref());
                if walk_table(inner, offset, path) {
                    return true;
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(inner) = item.get_ref() {
                        push_key(path, k.get_ref());
                        path.push_str(&format!("[{i}]"));
                        if walk_table(inner, offset, path) {
                            return true;
                        }
                        path.truncate(len);
                    }
                }
            }
            _ => {}
        }
        path.truncate(len);
    }
    false
}

fn walk_value(value: &DeValue<'_>, offset: usize, path: &mut String) {
    match value {
        DeValue::Table(t) => {
            walk_table(t, offset, path);
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if span_contains(item.span(), offset) {
                    path.push_str(&format!("[{i}]"));
                    walk_value(item.get_ref(), offset, path);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// Append one key to a dotted path, quoting it if it is not a bare TOML key.
fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        path.push('"');
        path.push_str(&display_snippet(key));
        path.push('"');
    }
}

/// Dotted key path from parts, quoting non-bare keys.
pub(crate) fn key_path(parts: &[&str]) -> String {
    let mut path = String::new();
    for part in parts {
        push_key(&mut path, part);
    }
    path
}

/// A user-supplied string made safe for an error message: control characters
/// escaped (no forged log lines) and truncated (no megabyte messages).
pub(crate) fn display_snippet(s: &str) -> String {
    const MAX_CHARS: usize = 100;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || c == '`' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` with control characters escaped and at most `max` characters, for
/// messages that may quote user input (toml's own messages do).
fn bounded(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A TOML integer; its own type so a wrong type reads "expected an integer".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Int(pub(crate) i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::custom("integer is too large"))
            }
        }
        d.deserialize_i64(IntVisitor)
    }
}

/// An array of strings, each with its span, for per-entry error locations.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrList(pub(crate) Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an array of strings, e.g. ["https://api.example.com"]"#)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    out.push(item);
                }
                Ok(StrList(out))
            }
        }
        d.deserialize_seq(ListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::time::Duration;

    const EXAMPLE: &str = r#"# Grant for the VirusTotal integration.
[limits]
memory_mib = 128
timeout_ms = 30000
output_kib = 2048
log_kib = 512

[http]
allow = ["https://www.virustotal.com", "https://*.example.com:8443"]
allow_private = ["http://127.0.0.1:8080", "https://jira.corp.internal"]
timeout_ms = 5000
max_response_kib = 20480
max_redirects = 3
rate_limit_wait_ms = 1500

[secrets.VT_API_KEY]
hosts = ["https://www.virustotal.com"]
reveal = false
hmac = true

[secrets.JIRA_TOKEN]
hosts = []
reveal = true

[kv]
max_keys = 500
max_total_kib = 4096
max_value_kib = 128
"#;

    fn parse(src: &str) -> Result<Grant, GrantError> {
        Grant::from_toml_str(src, "grant.toml")
    }

    fn err(src: &str) -> GrantError {
        match parse(src) {
            Ok(g) => panic!("expected an error for {src:?}, got {g:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn example_round_trips_every_field() {
        let g = parse(EXAMPLE).unwrap();
        assert_eq!(
            g.limits,
            Limits {
                memory_bytes: 128 << 20,
                timeout: Duration::from_secs(30),
                output_bytes: 2048 << 10,
                log_bytes: 512 << 10,
            }
        );
        let allow: Vec<String> = g.http.allow.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            allow,
            ["https://www.virustotal.com", "https://*.example.com:8443"]
        );
        let private: Vec<String> = g.http.allow_private.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            private,
            ["http://127.0.0.1:8080", "https://jira.corp.internal"]
        );
        assert_eq!(
            g.http.allow_private[0].host,
            HostPattern::Ip("127.0.0.1".parse::<IpAddr>().unwrap())
        );
        assert_eq!(g.http.timeout, Duration::from_millis(5000));
        assert_eq!(g.http.max_response_bytes, 20480 << 10);
        assert_eq!(g.http.max_redirects, 3);
        assert_eq!(g.http.rate_limit_wait, Duration::from_millis(1500));

        assert_eq!(g.secrets.len(), 2);
        let vt = &g.secrets["VT_API_KEY"];
        assert_eq!(vt.hosts.len(), 1);
        assert_eq!(vt.hosts[0].to_string(), "https://www.virustotal.com");
        assert!(!vt.reveal);
        assert!(vt.hmac);
        let jira = &g.secrets["JIRA_TOKEN"];
        assert!(jira.hosts.is_empty());
        assert!(jira.reveal);
        assert!(!jira.hmac);

        assert_eq!(
            g.kv,
            Some(KvGrant {
                max_keys: 500,
                max_total_bytes: 4096 << 10,
                max_value_bytes: 128 << 10,
            })
        );

        // The canonical forms parse back to the same rules.
        for rule in g.http.allow.iter().chain(&g.http.allow_private) {
            assert_eq!(&rule.to_string().parse::<HostRule>().unwrap(), rule);
        }
    }

    #[test]
    fn empty_file_denies_everything() {
        for src in ["", "\n\n", "# nothing granted\n", "\u{feff}"] {
            let g = parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
            assert_eq!(g, Grant::deny_all());
            assert_eq!(g, Grant::default());
        }
        let g = Grant::deny_all();
        assert!(g.http.allow.is_empty() && g.http.allow_private.is_empty());
        assert!(g.secrets.is_empty());
        assert!(g.kv.is_none());
        assert_eq!(g.limits, Limits::default());
        let url = url::Url::parse("https://api.example.com/").unwrap();
        assert!(g.http.check_url(&url).is_err());
    }

    #[test]
    fn defaults() {
        let g = parse("[limits]\n[http]\n[kv]\n").unwrap();
        assert_eq!(g.limits.memory_bytes, 64 << 20);
        assert_eq!(g.limits.timeout, Duration::from_millis(10_000));
        assert_eq!(g.limits.output_bytes, 1024 << 10);
        assert_eq!(g.limits.log_bytes, 256 << 10);
        assert_eq!(g.http.timeout, Duration::from_millis(10_000));
        assert_eq!(g.http.max_response_bytes, 10240 << 10);
        assert_eq!(g.http.max_redirects, 5);
        assert_eq!(g.http.rate_limit_wait, Duration::from_millis(2000));
        assert_eq!(
            g.kv,
            Some(KvGrant {
                max_keys: 1000,
                max_total_bytes: 1024 << 10,
                max_value_bytes: 64 << 10,
            })
        );
        assert_eq!(parse("kv = {}").unwrap().kv, Some(KvGrant::default()));
    }

    #[test]
    fn display_format_matches_spec() {
        let src = "[http]\nallow = [\n  \"https://api.example.com\",\n  \"https://*.\",\n]\n";
        let e = err(src);
        assert_eq!(e.line, Some(4));
        assert_eq!(e.column, Some(3));
        assert_eq!(e.key.as_deref(), Some("http.allow[1]"));
        assert_eq!(
            e.to_string(),
            "grant.toml:4:3: http.allow[1]: `https://*.` is not a valid host pattern: \
             expected `scheme://host[:port]`, e.g. `https://api.example.com` or \
             `https://*.example.com:8443`"
        );
        let bare = GrantError {
            origin: "<inline>".into(),
            line: None,
            column: None,
            key: None,
            message: "boom".into(),
        };
        assert_eq!(bare.to_string(), "<inline>: boom");
        let e: Box<dyn std::error::Error> = Box::new(bare);
        assert_eq!(e.to_string(), "<inline>: boom");
    }

    /// (source, line, key, message fragment) for each out-of-range number.
    #[test]
    fn out_of_range_numbers() {
        let cases: &[(&str, &str, i64, &str, &str)] = &[
            (
                "limits",
                "memory_mib",
                0,
                "limits.memory_mib",
                "between 1 and 4096",
            ),
            ("limits", "memory_mib", 4097, "limits.memory_mib", "4097"),
            ("limits", "memory_mib", -1, "limits.memory_mib", "-1"),
            (
                "limits",
                "timeout_ms",
                0,
                "limits.timeout_ms",
                "between 1 and 900000",
            ),
            (
                "limits",
                "timeout_ms",
                900_001,
                "limits.timeout_ms",
                "900001",
            ),
            (
                "limits",
                "output_kib",
                0,
                "limits.output_kib",
                "between 1 and 65536",
            ),
            ("limits", "output_kib", 65_537, "limits.output_kib", "65537"),
            (
                "limits",
                "log_kib",
                0,
                "limits.log_kib",
                "between 1 and 65536",
            ),
            ("limits", "log_kib", 65_537, "limits.log_kib", "65537"),
            (
                "http",
                "timeout_ms",
                0,
                "http.timeout_ms",
                "between 1 and 900000",
            ),
            ("http", "timeout_ms", 900_001, "http.timeout_ms", "900001"),
            (
                "http",
                "max_response_kib",
                0,
                "http.max_response_kib",
                "1048576",
            ),
            (
                "http",
                "max_response_kib",
                1_048_577,
                "http.max_response_kib",
                "1048577",
            ),
            (
                "http",
                "max_redirects",
                -1,
                "http.max_redirects",
                "between 0 and 20",
            ),
            ("http", "max_redirects", 21, "http.max_redirects", "21"),
            (
                "http",
                "rate_limit_wait_ms",
                -5,
                "http.rate_limit_wait_ms",
                "between 0 and 60000",
            ),
            (
                "http",
                "rate_limit_wait_ms",
                60_001,
                "http.rate_limit_wait_ms",
                "60001",
            ),
            ("kv", "max_keys", 0, "kv.max_keys", "between 1 and 10000000"),
            ("kv", "max_keys", 10_000_001, "kv.max_keys", "10000001"),
            (
                "kv",
                "max_total_kib",
                0,
                "kv.max_total_kib",
                "between 1 and 1048576",
            ),
            (
                "kv",
                "max_total_kib",
                1_048_577,
                "kv.max_total_kib",
                "1048577",
            ),
            (
                "kv",
                "max_value_kib",
                0,
                "kv.max_value_kib",
                "between 1 and 65536",
            ),
            ("kv", "max_value_kib", 65_537, "kv.max_value_kib", "65537"),
        ];
        for &(section, field, value, key, fragment) in cases {
            // Put the bad key on line 4, after a comment and a blank line.
            let src = format!("# grant\n[{section}]\n\n{field} = {value}\n");
            let e = err(&src);
            assert_eq!(e.line, Some(4), "{src}: {e}");
            assert_eq!(e.column, Some(field.len() + 4), "{src}: {e}");
            assert_eq!(e.key.as_deref(), Some(key), "{src}: {e}");
            assert!(e.message.contains(fragment), "{src}: {e}");
            assert!(e.to_string().starts_with("grant.toml:4:"), "{e}");
        }
        // i64::MAX and friends are caught too, not wrapped.
        let e = err("[limits]\nmemory_mib = 9223372036854775807\n");
        assert_eq!(e.key.as_deref(), Some("limits.memory_mib"));
        let e = err("[limits]\nmemory_mib = -9223372036854775808\n");
        assert_eq!(e.key.as_deref(), Some("limits.memory_mib"));
    }

    #[test]
    fn boundary_numbers_accepted() {
        let g = parse(
            "[limits]\nmemory_mib = 4096\ntimeout_ms = 900000\noutput_kib = 1\nlog_kib = 65536\n\
             [http]\nmax_redirects = 0\nrate_limit_wait_ms = 0\nmax_response_kib = 1048576\n\
             [kv]\nmax_keys = 10000000\n",
        )
        .unwrap();
        assert_eq!(g.limits.memory_bytes, 4096 << 20);
        assert_eq!(g.limits.output_bytes, 1024);
        assert_eq!(g.http.max_redirects, 0);
        assert_eq!(g.http.rate_limit_wait, Duration::ZERO);
        assert_eq!(g.kv.unwrap().max_keys, 10_000_000);
        // TOML integer spellings are fine.
        let g = parse("[limits]\nmemory_mib = 0x80\ntimeout_ms = 1_000\n").unwrap();
        assert_eq!(g.limits.memory_bytes, 128 << 20);
        assert_eq!(g.limits.timeout, Duration::from_secs(1));
    }

    #[test]
    fn unknown_keys() {
        let cases: &[(&str, usize, &str)] = &[
            ("bogus = 1\n", 1, "bogus"),
            ("\n[limits]\nmemory_mb = 64\n", 3, "limits.memory_mb"),
            ("[http]\nallow = []\nallowed = []\n", 3, "http.allowed"),
            ("[http]\nproxy = \"x\"\n", 2, "http.proxy"),
            (
                "[secrets.K]\nhosts = []\nreveals = true\n",
                3,
                "secrets.K.reveals",
            ),
            ("[kv]\nmax_key = 5\n", 2, "kv.max_key"),
            ("[network]\n", 1, "network"),
            ("[limits.extra]\n", 1, "limits.extra"),
            ("limits.cpu = 1\n", 1, "limits.cpu"),
        ];
        for &(src, line, key) in cases {
            let e = err(src);
            assert_eq!(e.line, Some(line), "{src:?}: {e}");
            assert_eq!(e.key.as_deref(), Some(key), "{src:?}: {e}");
            assert!(e.message.contains("unknown field"), "{src:?}: {e}");
        }
    }

    #[test]
    fn wrong_types() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[limits]\nmemory_mib = \"64\"\n",
                "limits.memory_mib",
                "expected an integer",
            ),
            (
                "[limits]\nmemory_mib = 64.0\n",
                "limits.memory_mib",
                "expected an integer",
            ),
            (
                "[limits]\nmemory_mib = true\n",
                "limits.memory_mib",
                "expected an integer",
            ),
            (
                "[limits]\ntimeout_ms = [1]\n",
                "limits.timeout_ms",
                "expected an integer",
            ),
            (
                "[http]\nallow = \"https://api.example.com\"\n",
                "http.allow",
                "expected an array of strings",
            ),
            (
                "[http]\nallow = [1]\n",
                "http.allow[0]",
                "expected a string",
            ),
            (
                "[http]\nallow = [\"https://a.com\", [\"x\"]]\n",
                "http.allow[1]",
                "string",
            ),
            (
                "[secrets.K]\nhosts = []\nreveal = \"yes\"\n",
                "secrets.K.reveal",
                "bool",
            ),
            (
                "[secrets.K]\nhosts = []\nhmac = 1\n",
                "secrets.K.hmac",
                "bool",
            ),
            ("secrets = 1\n", "secrets", "map"),
            ("secrets.K = \"value\"\n", "secrets.K", "struct"),
            ("kv = true\n", "kv", "struct"),
            ("limits = []\n", "limits", "struct"),
            ("http = \"https://x.com\"\n", "http", "struct"),
            ("[[http]]\n", "http[0]", "expected an array of strings"),
        ];
        for &(src, key, fragment) in cases {
            let e = err(src);
            assert_eq!(e.key.as_deref(), Some(key), "{src:?}: {e}");
            assert!(e.message.contains(fragment), "{src:?}: {e}");
            assert!(e.line.is_some(), "{src:?}: {e}");
        }
    }

    #[test]
    fn missing_secret_hosts() {
        let e = err("[secrets.VT_API_KEY]\nreveal = true\n");
        assert!(e.message.contains("missing field `hosts`"), "{e}");
        assert_eq!(e.key.as_deref(), Some("secrets.VT_API_KEY"), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let cases: &[(&str, usize)] = &[
            ("[limits\n", 1),
            ("[limits]\nmemory_mib = \n", 2),
            ("[http]\nallow = [\"https://a.com\"\n", 2),
            ("[limits]\nmemory_mib = 1\nmemory_mib = 2\n", 3),
            ("[kv]\n[kv]\n", 2),
            ("a = \"unterminated\n", 1),
            ("\n\n= 1\n", 3),
        ];
        for &(src, line) in cases {
            let e = err(src);
            assert_eq!(e.line, Some(line), "{src:?}: {e}");
            assert!(e.column.is_some(), "{src:?}: {e}");
            assert!(!e.message.is_empty());
            assert!(!e.message.contains('\n'), "{e}");
            assert!(e.to_string().starts_with(&format!("grant.toml:{line}:")));
        }
        // Syntax errors point at the offending text even when no key is known.
        let e = err("[limits]\nmemory_mib = 1\nmemory_mib = 2\n");
        assert_eq!((e.line, e.column), (Some(3), Some(1)), "{e}");
    }

    #[test]
    fn secret_names_validated() {
        for bad in [
            "\"\"",
            "\"1KEY\"",
            "\"my-key\"",
            "\"my key\"",
            "\"KEY\\n\"",
            "\"ключ\"",
            "\"a.b\"",
            "\"{{secret:X}}\"",
        ] {
            let src = format!("\n[secrets.{bad}]\nhosts = []\n");
            let e = err(&src);
            assert_eq!(e.line, Some(2), "{src}: {e}");
            assert!(e.key.as_deref().unwrap().starts_with("secrets."), "{e}");
            assert!(e.message.contains("not a valid secret name"), "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        let long = "A".repeat(129);
        let e = err(&format!("[secrets.{long}]\nhosts = []\n"));
        assert!(e.message.contains("not a valid secret name"));
        assert!(e.message.len() < 400, "snippet is truncated: {e}");
        let ok = "A".repeat(128);
        let g = parse(&format!(
            "[secrets.{ok}]\nhosts = []\n[secrets._x9]\nhosts = []\n"
        ))
        .unwrap();
        assert_eq!(g.secrets.len(), 2);
        // Names are case-sensitive, so these are two secrets.
        let g = parse("[secrets.key]\nhosts = []\n[secrets.KEY]\nhosts = []\n").unwrap();
        assert_eq!(g.secrets.len(), 2);
    }

    #[test]
    fn secret_host_patterns_validated() {
        let e = err("[secrets.K]\nhosts = [\"https://ok.example.com\", \"ftp://x.com\"]\n");
        assert_eq!(e.key.as_deref(), Some("secrets.K.hosts[1]"));
        assert_eq!(e.line, Some(2));
        assert_eq!(e.column, Some(36));
        assert!(
            e.message
                .contains("`ftp://x.com` is not a valid host pattern")
        );
    }

    #[test]
    fn http_validation_errors_carry_location() {
        let e = err("[http]\nallow = [\"http://10.0.0.1\"]\n");
        assert_eq!(e.key.as_deref(), Some("http.allow[0]"));
        assert_eq!((e.line, e.column), (Some(2), Some(10)));
        assert!(e.message.contains("http.allow_private"), "{e}");
        let e =
            err("[http]\nallow_private = [\n \"https://a.corp\",\n \"https://*.corp.internal\"]\n");
        assert_eq!(e.key.as_deref(), Some("http.allow_private[1]"));
        assert_eq!((e.line, e.column), (Some(4), Some(2)));
        assert!(e.message.contains("exact"), "{e}");
    }

    #[test]
    fn hostile_input() {
        // A huge pattern: refused, and the message does not echo a megabyte.
        let huge = format!("https://{}.com", "a".repeat(1 << 20));
        let e = err(&format!("[http]\nallow = [\"{huge}\"]\n"));
        assert_eq!(e.key.as_deref(), Some("http.allow[0]"));
        assert!(e.to_string().len() < 1000);
        // Many entries are fine.
        let many: Vec<String> = (0..2000)
            .map(|i| format!("\"https://h{i}.example.com\""))
            .collect();
        let g = parse(&format!("[http]\nallow = [{}]\n", many.join(","))).unwrap();
        assert_eq!(g.http.allow.len(), 2000);
        // Deep nesting is a parse error, not a stack overflow.
        let deep = format!("x = {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err());
        // Control characters in a pattern cannot forge extra lines in the error.
        let e = err("[http]\nallow = [\"https://a.com\\nERROR forged\"]\n");
        assert!(!e.to_string().contains('\n'), "{e}");
        // NUL and other junk are plain errors.
        assert!(parse("\0").is_err());
        assert!(parse("[http]\nallow = [\"\"]\n").is_err());
        // Unicode in keys is an unknown key, quoted in the path.
        let e = err("[limits]\n\"mémoire\" = 1\n");
        assert_eq!(e.key.as_deref(), Some("limits.\"mémoire\""));
        // Column counts characters, not bytes.
        let line = r#"allow = ["https://bücher.example", "ftp://x.com"]"#;
        let e = err(&format!("[http]\n{line}\n"));
        let want = line[..line.find("\"ftp").unwrap()].chars().count() + 1;
        assert_eq!((e.line, e.column), (Some(2), Some(want)));
        assert_eq!(want, 36);
    }

    #[test]
    fn toml_messages_quoting_input_are_bounded() {
        let big = "9".repeat(100_000);
        let e = err(&format!("[limits]\nmemory_mib = \"{big}\"\n"));
        assert_eq!(e.key.as_deref(), Some("limits.memory_mib"));
        assert!(e.message.chars().count() <= 401, "{}", e.message.len());
        let e = err(&format!("[limits]\nk{big} = 1\n"));
        assert!(e.to_string().len() < 1000);
        let e = err("[limits]\nmemory_mib = \"a\\nb\\u0000\"\n");
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(!e.to_string().contains('\0'), "{e}");
        // Deep nesting gives a short key path.
        let deep = format!("x = {}{}\n", "[".repeat(1000), "]".repeat(1000));
        let e = err(&deep);
        assert!(e.key.map_or(0, |k| k.len()) <= 210);
    }

    #[test]
    fn missing_hosts_hint() {
        let e = err("[secrets.K]\n");
        assert!(e.message.contains("hosts = []"), "{e}");
    }

    #[test]
    fn origin_is_reported() {
        let e = Grant::from_toml_str("bogus = 1", "<inline>").unwrap_err();
        assert!(e.to_string().starts_with("<inline>:1:1: bogus: "), "{e}");
    }

    #[test]
    fn line_col_helper() {
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("abc", 2), (1, 3));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("a\r\nbc", 4), (2, 2));
        assert_eq!(line_col("é", 1), (1, 1)); // not a char boundary: rounds down
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn key_paths_quote_odd_keys() {
        assert_eq!(key_path(&["http", "allow"]), "http.allow");
        assert_eq!(key_path(&["secrets", "a b"]), "secrets.\"a b\"");
        assert_eq!(key_path(&["secrets", ""]), "secrets.\"\"");
        assert_eq!(key_path(&["x", "a\nb"]), "x.\"a\\nb\"");
        assert_eq!(display_snippet(&"x".repeat(500)).chars().count(), 101);
    }
}
