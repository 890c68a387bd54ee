//! The playbook format: YAML (or JSON) files describing a DAG of steps, and their validation.
//!
//! [`parse`] checks everything that needs nothing else: YAML syntax, the shape of every field,
//! expressions, and the step graph (unknown or cyclic `needs`, steps reading results that may
//! not exist yet). [`validate`] adds what needs a [`Catalog`]: `uses` resolved to installed
//! actions, `with` checked against each action's input schema, child playbooks and their
//! inputs. Both report every problem with `file:line:col`, not only the first.
//!
//! The format is documented in `docs/playbooks.md`; its JSON Schema ([`json_schema`]) is
//! committed at `docs/schemas/playbook.schema.json`.

mod analyze;
mod catalog;
mod diag;
pub mod limits;
mod model;
pub mod raw;
mod read;
mod yaml;

#[cfg(test)]
mod tests;

pub use catalog::{ActionInfo, Catalog, CatalogError, MemoryCatalog, PlaybookInfo};
pub use diag::{Diagnostic, Diagnostics};
pub use model::{
    ActionRef, Approval, Approvers, Backoff, BackoffKind, DeadlineAction, InputSpec, InputType,
    OnError, Playbook, RetryPolicy, Span, Step, StepKind, Trigger, WebhookSignature,
};
pub use raw::json_schema;

use diag::Sink;
use limits::MAX_SOURCE_BYTES;
use yaml::Pos;

/// Parses and checks a playbook without a catalog: syntax, shape, expressions and the step
/// graph. `file` names the source in diagnostics; a name ending in `.json` is read as JSON.
pub fn parse(source: &str, file: &str) -> Result<Playbook, Diagnostics> {
    run(source, file, None)
}

/// Everything [`parse`] checks, plus `uses` resolved against the catalog, each `with` checked
/// against its action's input schema, and child playbooks (they exist, their inputs fit).
pub fn validate(source: &str, file: &str, catalog: &dyn Catalog) -> Result<Playbook, Diagnostics> {
    run(source, file, Some(catalog))
}

/// Parses `uses` text (`package/action@requirement`); the error says what is wrong.
pub fn parse_action_ref(text: &str) -> Result<ActionRef, String> {
    analyze::action_ref(text)
}

fn run(source: &str, file: &str, catalog: Option<&dyn Catalog>) -> Result<Playbook, Diagnostics> {
    let mut sink = Sink::new(file);
    let start = Pos { line: 1, col: 1 };
    if source.len() > MAX_SOURCE_BYTES {
        sink.err(
            start,
            "",
            format!(
                "the file is {} bytes; a playbook is at most {MAX_SOURCE_BYTES} bytes",
                source.len()
            ),
        );
        return Err(finish(sink));
    }
    if file.ends_with(".json") {
        // serde_json's own errors are exact for JSON; the tree (with positions) is then read
        // by the YAML parser, as JSON is YAML.
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(source) {
            let text = e.to_string();
            let message = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(m, _)| m);
            let pos = Pos {
                line: u32::try_from(e.line()).unwrap_or(u32::MAX).max(1),
                col: u32::try_from(e.column()).unwrap_or(u32::MAX).max(1),
            };
            sink.err(pos, "", format!("invalid JSON: {message}"));
            return Err(finish(sink));
        }
    }
    let root = match yaml::load(source) {
        Ok(root) => root,
        Err((pos, message)) => {
            sink.err(pos, "", format!("invalid YAML: {message}"));
            return Err(finish(sink));
        }
    };
    let draft = analyze::analyze(&root, &mut sink);
    if let Some(catalog) = catalog {
        catalog::check(&mut sink, &draft, catalog);
    }
    if sink.count() > 0 {
        return Err(finish(sink));
    }
    match analyze::assemble(draft) {
        Some(playbook) => Ok(playbook),
        None => {
            // Every missing part was reported as it was read; this guards the invariant.
            sink.err(start, "", "the playbook is incomplete");
            Err(finish(sink))
        }
    }
}

fn finish(sink: Sink) -> Diagnostics {
    sink.finish().unwrap_or(Diagnostics(Vec::new()))
}
