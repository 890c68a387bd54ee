//! `allama.toml`: what a package is and what it asks for.
//!
//! ```toml
//! [package]
//! name = "virustotal"
//! version = "1.2.0"
//! publisher = "allama"
//! description = "VirusTotal v3 lookups"
//!
//! [[actions]]
//! name = "ip-report"
//! description = "Reputation of an IP address"
//! input = "schemas/ip-report.input.json"   # a JSON Schema file beside the manifest…
//! output = { type = "object" }              # …or inline
//! sensitive = ["/data/attributes/whois"]    # JSON pointers into the output to mask
//!
//! [capabilities.http]                       # what it asks for: the grant format
//! allow = ["https://www.virustotal.com"]
//! [capabilities.secrets.VT_API_KEY]
//! hosts = ["https://www.virustotal.com"]
//! ```

use std::collections::BTreeMap;

use allama_grant::{Grant, GrantError, TomlDoc};
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Package name: lowercase letters, digits and `-`.
    pub name: String,
    /// Semantic version.
    pub version: semver::Version,
    /// Who publishes it (matched against the trust policy).
    pub publisher: String,
    /// One line for operators.
    pub description: String,
    /// The actions the component serves.
    pub actions: Vec<Action>,
    /// What the package asks to be granted.
    pub capabilities: Grant,
}

/// One action of a package.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Name passed to the component's `run`.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of the input, if declared.
    pub input: Option<serde_json::Value>,
    /// JSON Schema of the output, if declared.
    pub output: Option<serde_json::Value>,
    /// JSON pointers into the output whose values are masked in logs and views.
    pub sensitive: Vec<String>,
}

/// Where a schema comes from: a file beside the manifest, or inline.
#[derive(Debug, Clone, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawSchema {
    /// Path of a JSON file, relative to the manifest, inside the package directory.
    File(String),
    /// An inline JSON Schema (as a TOML table).
    Inline(serde_json::Map<String, serde_json::Value>),
}

impl<'de> Deserialize<'de> for RawSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawSchema;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON Schema file path (a string) or an inline JSON Schema (a table)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSchema, E> {
                Ok(RawSchema::File(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawSchema, A::Error> {
                let m = serde::Deserialize::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(RawSchema::Inline(m))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[package]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPackage {
    /// Lowercase letters, digits and `-`, starting with a letter; at most 64 characters.
    #[schemars(with = "String", regex(pattern = r"^[a-z][a-z0-9-]{0,63}$"))]
    name: Spanned<String>,
    /// A semantic version, e.g. `1.2.0`.
    #[schemars(with = "String", extend("examples" = ["1.2.0"]))]
    version: Spanned<String>,
    /// The publisher's name, as listed in operators' trust policies (same form as `name`).
    #[schemars(with = "String", regex(pattern = r"^[a-z][a-z0-9-]{0,63}$"))]
    publisher: Spanned<String>,
    /// One line telling an operator what the package is for.
    #[serde(default)]
    description: String,
}

/// One `[[actions]]` entry.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAction {
    /// The name the component's `run` is called with (same form as the package name).
    #[schemars(with = "String", regex(pattern = r"^[a-z][a-z0-9-]{0,63}$"))]
    name: Spanned<String>,
    /// What the action does.
    #[serde(default)]
    description: String,
    /// JSON Schema of the input: a file path relative to the manifest, or an inline table.
    #[schemars(with = "Option<RawSchema>")]
    input: Option<Spanned<RawSchema>>,
    /// JSON Schema of the output: a file path relative to the manifest, or an inline table.
    #[schemars(with = "Option<RawSchema>")]
    output: Option<Spanned<RawSchema>>,
    /// JSON pointers (RFC 6901) into the output whose values are masked in logs and views.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    sensitive: Vec<Spanned<String>>,
}

/// The whole manifest as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Allama package manifest (allama.toml)")]
pub(crate) struct RawManifest {
    /// Identity of the package.
    package: RawPackage,
    /// The actions the component serves; at least one.
    #[serde(default)]
    actions: Vec<RawAction>,
    /// What the package asks to be granted, in the grant format; an operator grants all or part.
    #[schemars(with = "Option<serde_json::Value>")]
    #[allow(dead_code)] // read by `TomlDoc::grant_at`, with its own located errors
    capabilities: Option<toml::Value>,
}

/// The JSON Schema of `allama.toml`, with the grant format embedded for `[capabilities]`.
pub fn json_schema() -> schemars::Schema {
    let mut generator = schemars::SchemaGenerator::default();
    let grant = allama_grant::json_schema_in(&mut generator);
    let mut schema = generator.into_root_schema_for::<RawManifest>();
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.insert("capabilities".into(), grant.to_value());
    }
    schema
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Reads schema files named by the manifest; `Err` is a message for the user.
pub trait SchemaFiles {
    /// The bytes of `path` (relative to the manifest).
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
}

impl SchemaFiles for BTreeMap<String, &[u8]> {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.get(path)
            .map(|b| b.to_vec())
            .ok_or_else(|| format!("`{path}` is not in the package"))
    }
}

impl SchemaFiles for BTreeMap<String, Vec<u8>> {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.get(path)
            .cloned()
            .ok_or_else(|| format!("`{path}` is not in the package"))
    }
}

/// A relative path inside the package directory: no absolute paths, no `..`,
/// no backslashes, no empty segments.
pub fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 256
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != ".." && seg != ".")
}

/// What a masked value is replaced with.
pub const MASK: &str = "[sensitive]";

/// Replace the values at `pointers` (JSON pointers; `""` is the whole
/// document) with [`MASK`]; returns how many were masked. Pointers that do
/// not resolve are skipped: an optional field may be absent.
pub fn mask_sensitive(value: &mut serde_json::Value, pointers: &[String]) -> usize {
    let mut n = 0;
    for p in pointers {
        if let Some(v) = value.pointer_mut(p) {
            *v = serde_json::Value::String(MASK.into());
            n += 1;
        }
    }
    n
}

impl Manifest {
    /// Parse and validate `src`. Schema files are read through `files`; every
    /// error names `origin`, the line, the column and the key.
    pub fn parse(
        src: &str,
        origin: &str,
        files: &dyn SchemaFiles,
    ) -> Result<(Manifest, Vec<String>), GrantError> {
        let doc = TomlDoc::parse(src, origin)?;
        let raw: RawManifest = doc.deserialize()?;
        let capabilities = doc.grant_at("capabilities")?;
        let at = |s: &Spanned<String>, key: &str, msg: String| doc.error(Some(s.span()), key, msg);

        let p = raw.package;
        if !valid_name(p.name.get_ref()) {
            return Err(at(
                &p.name,
                "package.name",
                format!(
                    "`{}` is not a valid package name: use lowercase letters, digits and `-`, starting with a letter, at most 64 characters (e.g. `virustotal`)",
                    snippet(p.name.get_ref())
                ),
            ));
        }
        if !valid_name(p.publisher.get_ref()) {
            return Err(at(
                &p.publisher,
                "package.publisher",
                format!(
                    "`{}` is not a valid publisher name: use lowercase letters, digits and `-`, starting with a letter (e.g. `acme-security`)",
                    snippet(p.publisher.get_ref())
                ),
            ));
        }
        let version = semver::Version::parse(p.version.get_ref()).map_err(|e| {
            at(
                &p.version,
                "package.version",
                format!(
                    "`{}` is not a semantic version ({e}); e.g. `1.2.0`",
                    snippet(p.version.get_ref())
                ),
            )
        })?;
        let no_controls = |text: &str, key: &str| -> Result<(), GrantError> {
            if text.chars().any(char::is_control) || text.len() > 1024 {
                return Err(doc.error(
                    None,
                    key,
                    "must be one line of at most 1024 bytes without control characters (operators read it in `allama package inspect`)",
                ));
            }
            Ok(())
        };
        no_controls(&p.description, "package.description")?;
        for (i, a) in raw.actions.iter().enumerate() {
            no_controls(&a.description, &format!("actions[{i}].description"))?;
        }
        if raw.actions.is_empty() {
            return Err(doc.error(
                None,
                "actions",
                "the package declares no action: add at least one [[actions]] with a name",
            ));
        }

        let mut used_files = Vec::new();
        let mut actions: Vec<Action> = Vec::new();
        for (i, a) in raw.actions.into_iter().enumerate() {
            let key = |field: &str| format!("actions[{i}].{field}");
            if !valid_name(a.name.get_ref()) {
                return Err(at(
                    &a.name,
                    &key("name"),
                    format!(
                        "`{}` is not a valid action name: lowercase letters, digits and `-`, starting with a letter (e.g. `ip-report`)",
                        snippet(a.name.get_ref())
                    ),
                ));
            }
            if actions.iter().any(|x| &x.name == a.name.get_ref()) {
                return Err(at(
                    &a.name,
                    &key("name"),
                    format!("action `{}` is declared twice", a.name.get_ref()),
                ));
            }
            let mut schema = |s: Option<Spanned<RawSchema>>,
                              field: &str|
             -> Result<Option<serde_json::Value>, GrantError> {
                let Some(s) = s else { return Ok(None) };
                let span = s.span();
                let value = match s.into_inner() {
                    RawSchema::Inline(map) => serde_json::Value::Object(map),
                    RawSchema::File(path) => {
                        if !is_safe_relative_path(&path) {
                            return Err(doc.error(Some(span), &key(field), format!(
                                "`{}` must be a relative path inside the package directory (no `/` at the start, no `..`)",
                                snippet(&path)
                            )));
                        }
                        let bytes = files
                            .read(&path)
                            .map_err(|m| doc.error(Some(span.clone()), &key(field), m))?;
                        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                            doc.error(
                                Some(span.clone()),
                                &key(field),
                                format!("`{path}` is not valid JSON: {e}"),
                            )
                        })?;
                        used_files.push(path);
                        v
                    }
                };
                if !value.is_object() && !value.is_boolean() {
                    return Err(doc.error(
                        Some(span),
                        &key(field),
                        "a JSON Schema must be an object (or true/false)",
                    ));
                }
                Ok(Some(value))
            };
            let input = schema(a.input, "input")?;
            let output = schema(a.output, "output")?;
            let mut sensitive = Vec::new();
            for (j, ptr) in a.sensitive.into_iter().enumerate() {
                let p = ptr.get_ref();
                if !(p.is_empty() || p.starts_with('/'))
                    || p.len() > 512
                    || p.chars().any(char::is_control)
                {
                    return Err(at(
                        &ptr,
                        &format!("actions[{i}].sensitive[{j}]"),
                        format!(
                            "`{}` is not a JSON pointer: it must start with `/`, e.g. `/data/attributes/whois`",
                            snippet(p)
                        ),
                    ));
                }
                sensitive.push(p.clone());
            }
            actions.push(Action {
                name: a.name.into_inner(),
                description: a.description,
                input,
                output,
                sensitive,
            });
        }
        used_files.sort();
        used_files.dedup();
        Ok((
            Manifest {
                name: p.name.into_inner(),
                version,
                publisher: p.publisher.into_inner(),
                description: p.description,
                actions,
                capabilities,
            },
            used_files,
        ))
    }

    /// The action named `name`.
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// `name version by publisher`.
    pub fn title(&self) -> String {
        format!("{} {} by {}", self.name, self.version, self.publisher)
    }
}

fn snippet(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(80)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}
