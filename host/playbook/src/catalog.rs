//! Checks that need to know what is installed: actions, their input schemas, child playbooks.

use std::collections::BTreeMap;

use allama_expr::Template;
use indexmap::IndexMap;
use jsonschema::error::ValidationErrorKind;
use semver::Version;
use serde_json::Value;

use crate::analyze::{Draft, StepDraft, clip};
use crate::diag::{Sink, did_you_mean, field, index};
use crate::model::{ActionRef, InputSpec, StepKind};
use crate::yaml::{Kind, Node, Pos};

/// What is installed, as far as validation needs to know.
pub trait Catalog {
    /// The newest installed version of the action matching `r`, with its schemas.
    fn action(&self, r: &ActionRef) -> Result<ActionInfo, CatalogError>;
    /// The playbook with this id, if it exists.
    fn playbook(&self, id: &str) -> Option<PlaybookInfo>;
}

/// An installed action.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionInfo {
    /// The package version `uses` resolved to.
    pub version: Version,
    /// JSON Schema of the action's input (`with`).
    pub input_schema: Value,
    /// JSON Schema of the action's output.
    pub output_schema: Value,
}

/// An existing playbook, as a child run sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlaybookInfo {
    /// Its declared inputs.
    pub inputs: IndexMap<String, InputSpec>,
}

/// Why `uses` does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// No package of that name is installed.
    #[error("unknown package (installed: {})", list(known))]
    UnknownPackage {
        /// Installed package names.
        known: Vec<String>,
    },
    /// The package has no action of that name.
    #[error("unknown action (the package has: {})", list(known))]
    UnknownAction {
        /// The package's actions.
        known: Vec<String>,
    },
    /// No installed version matches the requirement.
    #[error("no installed version matches (installed: {})", list(available))]
    NoMatchingVersion {
        /// Installed versions of the package.
        available: Vec<Version>,
    },
}

fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A package's versions → its actions → (input schema, output schema).
type Versions = BTreeMap<Version, BTreeMap<String, (Value, Value)>>;

/// A catalog held in memory: for tests, and for tools that load packages themselves.
#[derive(Debug, Clone, Default)]
pub struct MemoryCatalog {
    packages: BTreeMap<String, Versions>,
    playbooks: BTreeMap<String, PlaybookInfo>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> MemoryCatalog {
        MemoryCatalog::default()
    }

    /// Adds an action of a package version.
    pub fn add_action(
        &mut self,
        package: &str,
        version: Version,
        action: &str,
        input_schema: Value,
        output_schema: Value,
    ) -> &mut Self {
        self.packages
            .entry(package.to_string())
            .or_default()
            .entry(version)
            .or_default()
            .insert(action.to_string(), (input_schema, output_schema));
        self
    }

    /// Adds a playbook that steps may start as a child.
    pub fn add_playbook(&mut self, id: &str, info: PlaybookInfo) -> &mut Self {
        self.playbooks.insert(id.to_string(), info);
        self
    }
}

impl Catalog for MemoryCatalog {
    fn action(&self, r: &ActionRef) -> Result<ActionInfo, CatalogError> {
        let versions =
            self.packages
                .get(&r.package)
                .ok_or_else(|| CatalogError::UnknownPackage {
                    known: self.packages.keys().cloned().collect(),
                })?;
        let (version, actions) = versions
            .iter()
            .rev()
            .find(|(v, _)| r.version.matches(v))
            .ok_or_else(|| CatalogError::NoMatchingVersion {
                available: versions.keys().cloned().collect(),
            })?;
        let (input, output) =
            actions
                .get(&r.action)
                .ok_or_else(|| CatalogError::UnknownAction {
                    known: actions.keys().cloned().collect(),
                })?;
        Ok(ActionInfo {
            version: version.clone(),
            input_schema: input.clone(),
            output_schema: output.clone(),
        })
    }

    fn playbook(&self, id: &str) -> Option<PlaybookInfo> {
        self.playbooks.get(id).cloned()
    }
}

/// Resolves every step against the catalog and checks its `with`.
pub(crate) fn check(sink: &mut Sink, draft: &Draft<'_>, catalog: &dyn Catalog) {
    for step in &draft.steps {
        let Some(kind_node) = step.kind_node else {
            continue;
        };
        match &step.kind {
            Some(StepKind::Action(r)) => {
                let path = field(&step.path, "uses");
                match catalog.action(r) {
                    Ok(info) => check_action_input(sink, step, r, &info),
                    Err(e) => sink.err(kind_node.pos, &path, catalog_message(r, &e)),
                }
            }
            Some(StepKind::Playbook(id)) => match catalog.playbook(id) {
                Some(info) => check_child_inputs(sink, step, id, &info),
                None => sink.err(
                    kind_node.pos,
                    &field(&step.path, "playbook"),
                    format!("unknown playbook `{}`", clip(id)),
                ),
            },
            _ => {}
        }
    }
}

fn catalog_message(r: &ActionRef, e: &CatalogError) -> String {
    match e {
        CatalogError::UnknownPackage { known } => format!(
            "no package `{}` is installed{} (installed: {})",
            r.package,
            did_you_mean(&r.package, known.iter().map(String::as_str)),
            list(known)
        ),
        CatalogError::UnknownAction { known } => format!(
            "package `{}` has no action `{}`{} (actions: {})",
            r.package,
            r.action,
            did_you_mean(&r.action, known.iter().map(String::as_str)),
            list(known)
        ),
        CatalogError::NoMatchingVersion { available } => format!(
            "no installed version of `{}` matches `{}` (installed: {})",
            r.package,
            r.version,
            list(available)
        ),
    }
}

/// How a string leaf of `with` evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
    /// The whole string is one `${{ }}`: any JSON value.
    Whole,
    /// Text with `${{ }}` inside: always a string.
    Interpolated,
}

/// JSON pointers of every templated string below `value`.
fn template_leaves(value: &Value, pointer: &str, out: &mut BTreeMap<String, Leaf>) {
    match value {
        Value::String(s) => {
            if let Ok(t) = Template::parse(s)
                && !t.is_literal()
            {
                let leaf = if is_whole(s) {
                    Leaf::Whole
                } else {
                    Leaf::Interpolated
                };
                out.insert(pointer.to_string(), leaf);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                template_leaves(v, &format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let k = k.replace('~', "~0").replace('/', "~1");
                template_leaves(v, &format!("{pointer}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// Whether the string is exactly one `${{ ... }}` with nothing around it, which renders to the
/// expression's value of any type (as `allama_expr::Template::render` does).
fn is_whole(s: &str) -> bool {
    s.starts_with("${{") && s.ends_with("}}") && s.matches("${{").count() == 1
}

/// The value with every whole-string template replaced by null (its type is unknown).
fn literal_projection(value: &Value, pointer: &str, leaves: &BTreeMap<String, Leaf>) -> Value {
    match value {
        Value::String(_) if leaves.get(pointer) == Some(&Leaf::Whole) => Value::Null,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| literal_projection(v, &format!("{pointer}/{i}"), leaves))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let e = k.replace('~', "~0").replace('/', "~1");
                    (
                        k.clone(),
                        literal_projection(v, &format!("{pointer}/{e}"), leaves),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether `a` is `b` or below it, as JSON pointers.
fn at_or_below(a: &str, b: &str) -> bool {
    a == b || (a.starts_with(b) && a.as_bytes().get(b.len()) == Some(&b'/'))
}

/// Checks the literal parts of an action's `with` against its input schema.
fn check_action_input(sink: &mut Sink, step: &StepDraft<'_>, r: &ActionRef, info: &ActionInfo) {
    let with_path = field(&step.path, "with");
    let uses_pos = step.kind_node.map_or(step.pos, |n| n.pos);
    let validator = match jsonschema::validator_for(&info.input_schema) {
        Ok(v) => v,
        Err(e) => {
            sink.err(
                uses_pos,
                &field(&step.path, "uses"),
                format!(
                    "the installed `{}` has an invalid input schema ({}); reinstall or fix the package",
                    r.text,
                    clip(&e.to_string())
                ),
            );
            return;
        }
    };
    let mut leaves = BTreeMap::new();
    template_leaves(&step.with_json, "", &mut leaves);
    let instance = literal_projection(&step.with_json, "", &leaves);
    let properties: Vec<String> = info.input_schema["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for error in validator.iter_errors(&instance) {
        let pointer = error.instance_path().as_str().to_string();
        let kind = error.kind();
        let structural = matches!(
            kind,
            ValidationErrorKind::Required { .. }
                | ValidationErrorKind::AdditionalProperties { .. }
                | ValidationErrorKind::Type { .. }
                | ValidationErrorKind::MinProperties { .. }
                | ValidationErrorKind::MaxProperties { .. }
                | ValidationErrorKind::MinItems { .. }
                | ValidationErrorKind::MaxItems { .. }
        );
        let keep = leaves.iter().all(|(leaf, how)| {
            if at_or_below(&pointer, leaf) {
                // At a template: a whole template can be anything; interpolated text is a
                // string, so only a wrong type is certain.
                *how == Leaf::Interpolated
                    && pointer == *leaf
                    && matches!(kind, ValidationErrorKind::Type { .. })
            } else if at_or_below(leaf, &pointer) {
                // Above a template: only checks that do not look into values are certain.
                structural
            } else {
                true
            }
        });
        if !keep {
            continue;
        }
        let (node, path) = locate(step, &pointer, &with_path);
        let pos = node.map_or(uses_pos, |n| n.pos);
        match kind {
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_string);
                let pos = if pointer.is_empty() {
                    step.node.key("with").map_or(uses_pos, |k| k.pos)
                } else {
                    pos
                };
                sink.err(
                    pos,
                    &path,
                    format!("missing required input `{name}` of `{}`", r.text),
                );
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    let key_pos = node.and_then(|n| n.key(name)).map_or(pos, |k| k.pos);
                    let hint = if pointer.is_empty() {
                        format!(
                            "{} (inputs: {})",
                            did_you_mean(name, properties.iter().map(String::as_str)),
                            list(&properties)
                        )
                    } else {
                        String::new()
                    };
                    sink.err(
                        key_pos,
                        &field(&path, name),
                        format!("`{}` takes no input `{}`{hint}", r.text, clip(name)),
                    );
                }
            }
            _ => {
                let text = error.to_string();
                let text = if text.chars().count() > 200 {
                    format!("{}...", text.chars().take(197).collect::<String>())
                } else {
                    text
                };
                sink.err(
                    pos,
                    &path,
                    format!("does not match the input schema of `{}`: {text}", r.text),
                );
            }
        }
    }
}

/// The node and the diagnostic path of a JSON pointer into `with`.
fn locate<'n>(step: &StepDraft<'n>, pointer: &str, with_path: &str) -> (Option<&'n Node>, String) {
    let mut path = with_path.to_string();
    let mut node = step.with_node;
    for token in pointer.split('/').skip(1) {
        let name = token.replace("~1", "/").replace("~0", "~");
        let is_seq = matches!(node.map(|n| &n.kind), Some(Kind::Seq(_)));
        path = match (is_seq, name.parse::<usize>()) {
            (true, Ok(i)) => index(&path, i),
            _ => field(&path, &name),
        };
        node = node.and_then(|n| n.at_pointer(&format!("/{token}")));
    }
    (node, path)
}

/// Checks a child playbook's inputs: names, required ones, literal types.
fn check_child_inputs(sink: &mut Sink, step: &StepDraft<'_>, id: &str, info: &PlaybookInfo) {
    let with_path = field(&step.path, "with");
    let anchor: Pos = step
        .node
        .key("with")
        .map_or(step.kind_node.map_or(step.pos, |n| n.pos), |k| k.pos);
    let given = step.with_json.as_object().cloned().unwrap_or_default();
    for (name, spec) in &info.inputs {
        if spec.required && !given.contains_key(name) {
            sink.err(
                anchor,
                &with_path,
                format!("missing required input `{name}` of playbook `{id}`"),
            );
        }
    }
    for (name, value) in &given {
        let node = step.with_node.and_then(|n| {
            n.at_pointer(&format!("/{}", name.replace('~', "~0").replace('/', "~1")))
        });
        let key_pos = step
            .with_node
            .and_then(|n| n.key(name))
            .map_or(anchor, |k| k.pos);
        let path = field(&with_path, name);
        let Some(spec) = info.inputs.get(name) else {
            let names: Vec<&str> = info.inputs.keys().map(String::as_str).collect();
            sink.err(
                key_pos,
                &path,
                format!(
                    "playbook `{id}` has no input `{}`{} (inputs: {})",
                    clip(name),
                    did_you_mean(name, names.iter().copied()),
                    list(&names)
                ),
            );
            continue;
        };
        let effective = match value {
            Value::String(s) => match Template::parse(s) {
                Ok(t) if !t.is_literal() && is_whole(s) => continue,
                _ => value,
            },
            _ => value,
        };
        if !spec.kind.accepts(effective) {
            sink.err(
                node.map_or(key_pos, |n| n.pos),
                &path,
                format!(
                    "playbook `{id}` takes input `{name}` as {}, but this is {}",
                    spec.kind.name(),
                    node.map_or("a different type", |n| n.describe())
                ),
            );
        }
    }
}
