//! What a fresh server starts with, so its first screen shows a working
//! system: packages (granted what they request) and example playbooks.
//! The caller supplies them (`allama serve` passes the first-party packages
//! and `examples/`); this module installs them like an editor would, each
//! change audited as done by `system`.

use crate::app::Shared;
use crate::error::ApiError;
use crate::routes::packages;
use crate::routes::playbooks::{self, Format, Source};

/// Who the demo's changes are audited as.
const ACTOR: &str = "system";

/// Packages and playbooks to install.
#[derive(Default)]
pub struct Demo {
    /// Package files.
    pub packages: Vec<Vec<u8>>,
    /// Playbook sources, each with a name for messages.
    pub playbooks: Vec<(String, String)>,
}

/// What was installed.
#[derive(Debug, Default)]
pub struct Installed {
    /// Package names.
    pub packages: Vec<String>,
    /// Playbook ids.
    pub playbooks: Vec<String>,
}

/// Installs `demo` in workspace `ws` as the API would (the same checks,
/// including schedules, and audit records), as done by `system`. Playbooks
/// that start other playbooks are stored after them, whatever the order
/// given.
pub async fn install(state: &Shared, ws: &str, demo: Demo) -> Result<Installed, ApiError> {
    let mut done = Installed::default();
    for bytes in demo.packages {
        let record = packages::install(state, ws, bytes, ACTOR).await?;
        if !record.granted {
            packages::grant_package(state, ACTOR, ws, &record.name, None).await?;
        }
        done.packages.push(record.name);
    }
    packages::reload(state, ws).await?;
    let mut left = demo.playbooks;
    while !left.is_empty() {
        let before = left.len();
        let mut next = Vec::new();
        let mut problems = Vec::new();
        for (name, source) in left {
            let src = Source {
                source,
                format: Format::Yaml,
            };
            match playbooks::check(state, ws, &src) {
                Ok(pb) => {
                    playbooks::store_checked(state, ws, &pb, &src.source, ACTOR)?;
                    done.playbooks.push(pb.id);
                }
                Err(p) => {
                    let first = &p[0];
                    problems.push(format!(
                        "{name}:{}:{}: {}",
                        first.line, first.column, first.message
                    ));
                    next.push((name, src.source));
                }
            }
        }
        if next.len() == before {
            // A pass that stored nothing: what is left does not validate.
            return Err(ApiError::invalid(format!(
                "demo playbooks that do not validate: {}",
                problems.join("; ")
            )));
        }
        left = next;
    }
    state.commit().await?;
    Ok(done)
}
