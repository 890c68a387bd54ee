//! What a fresh server starts with, so its first screen shows a working
//! system: packages (granted what they request) and example playbooks.
//! The caller supplies them (`allama serve` passes the first-party packages
//! and `examples/`); this module installs them like an editor would, each
//! change audited as done by `system`.

use allama_store::audit::AuditEntry;

use crate::app::Shared;
use crate::library::Stored;

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

/// Installs `demo` in workspace `ws`. Playbooks that start other playbooks
/// are stored after them, whatever the order given.
pub async fn install(state: &Shared, ws: &str, demo: Demo) -> Result<Installed, String> {
    let mut done = Installed::default();
    let trust = state.runner.trust().clone();
    for bytes in demo.packages {
        let installed = state
            .shelf
            .install(state.store.as_ref(), &trust, ws, &bytes, "system")
            .map_err(|e| e.to_string())?;
        let name = installed.record.name.clone();
        state
            .shelf
            .grant(state.store.as_ref(), &trust, ws, &name, None, "system")
            .map_err(|e| e.to_string())?;
        for action in ["package.install", "package.grant"] {
            state.audit(
                ws,
                AuditEntry {
                    actor: "system".into(),
                    action: action.into(),
                    target: name.clone(),
                    denied: false,
                    detail: serde_json::json!({ "version": installed.record.version, "demo": true }),
                },
            );
        }
        done.packages.push(name);
    }
    let (runner, w) = (state.runner.clone(), ws.to_string());
    tokio::task::spawn_blocking(move || runner.reload(&w))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut left = demo.playbooks;
    while !left.is_empty() {
        let catalog = state.runner.catalog(ws).map_err(|e| e.to_string())?;
        let before = left.len();
        let mut next = Vec::new();
        let mut errors = Vec::new();
        for (name, source) in left {
            match allama_playbook::validate(&source, &name, &catalog) {
                Ok(pb) => {
                    let stored = state
                        .library
                        .store(state.store.as_ref(), ws, &pb, &source, "system")
                        .map_err(|e| e.to_string())?;
                    if let Stored::Created(r) | Stored::NewVersion(r) = stored {
                        state.audit(
                            ws,
                            AuditEntry {
                                actor: "system".into(),
                                action: "playbook.create".into(),
                                target: r.id.clone(),
                                denied: false,
                                detail: serde_json::json!({ "demo": true }),
                            },
                        );
                    }
                    done.playbooks.push(pb.id);
                }
                Err(d) => {
                    errors.push(format!("{name}: {d}"));
                    next.push((name, source));
                }
            }
        }
        if next.len() == before {
            // A pass that stored nothing: what is left does not validate.
            return Err(errors.join("\n"));
        }
        left = next;
    }
    state.commit().await.map_err(|e| e.message)?;
    Ok(done)
}
