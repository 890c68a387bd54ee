//! Runs the engine's step invocations on the sandboxed runtime.
//!
//! - [`Registry`]: installed packages (verified, bound to their grants),
//!   resolution of `uses: package/action@version`, and the catalog the
//!   playbook validator checks `uses` and `with` against.
//! - [`RuntimeExecutor`]: the engine's [`Executor`]: one invocation becomes
//!   one `Package::run`, and the runtime's outcome becomes the engine's
//!   failure classes (typed action errors vs the sandbox stopping a step).
//!
//! The engine knows nothing of wasmtime and the runtime nothing of
//! playbooks; this crate is the only place both are known.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use allama_engine::{Executor, Failure, Invocation, Outcome, Target};
use allama_playbook::{ActionInfo, ActionRef, Catalog, CatalogError, PlaybookInfo};
use allama_runtime::{ActionErrorKind, StepContext, StepError, Tape};
use serde_json::Value;

mod tapes;

pub use tapes::{Recording, Replay, TapeMode, Tapes, key as tape_key};

/// One installed package version.
pub struct Installed {
    /// Its verified manifest.
    pub manifest: allama_package::Manifest,
    /// The component bound to its effective grant; `None` when only the
    /// manifest was loaded (validation needs nothing more).
    pub package: Option<Arc<allama_runtime::Package>>,
}

/// Installed packages by name, each with its versions.
#[derive(Default)]
pub struct Registry {
    packages: BTreeMap<String, Vec<Installed>>,
    playbooks: BTreeMap<String, PlaybookInfo>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a package version (replacing the same version if present).
    pub fn install(&mut self, installed: Installed) {
        let versions = self
            .packages
            .entry(installed.manifest.name.clone())
            .or_default();
        versions.retain(|v| v.manifest.version != installed.manifest.version);
        versions.push(installed);
        versions.sort_by(|a, b| b.manifest.version.cmp(&a.manifest.version));
    }

    /// Makes a playbook known to validation (for child `playbook:` steps).
    pub fn add_playbook(&mut self, id: &str, info: PlaybookInfo) {
        self.playbooks.insert(id.to_string(), info);
    }

    /// Installed package names.
    pub fn names(&self) -> Vec<String> {
        self.packages.keys().cloned().collect()
    }

    /// The newest installed version matching `r` that has the action.
    pub fn resolve(&self, r: &ActionRef) -> Result<&Installed, CatalogError> {
        let Some(versions) = self.packages.get(&r.package) else {
            return Err(CatalogError::UnknownPackage {
                known: self.names(),
            });
        };
        let Some(found) = versions
            .iter()
            .find(|v| r.version.matches(&v.manifest.version))
        else {
            return Err(CatalogError::NoMatchingVersion {
                available: versions
                    .iter()
                    .map(|v| v.manifest.version.clone())
                    .collect(),
            });
        };
        if found.manifest.action(&r.action).is_none() {
            return Err(CatalogError::UnknownAction {
                known: found
                    .manifest
                    .actions
                    .iter()
                    .map(|a| a.name.clone())
                    .collect(),
            });
        }
        Ok(found)
    }
}

impl Catalog for Registry {
    fn action(&self, r: &ActionRef) -> Result<ActionInfo, CatalogError> {
        let found = self.resolve(r)?;
        let action = found.manifest.action(&r.action);
        let schema = |s: Option<&Value>| s.cloned().unwrap_or(Value::Bool(true));
        Ok(ActionInfo {
            version: found.manifest.version.clone(),
            input_schema: schema(action.and_then(|a| a.input.as_ref())),
            output_schema: schema(action.and_then(|a| a.output.as_ref())),
        })
    }

    fn playbook(&self, id: &str) -> Option<PlaybookInfo> {
        self.playbooks.get(id).cloned()
    }
}

/// The engine's executor on the runtime.
pub struct RuntimeExecutor {
    registry: Arc<Registry>,
    tapes: TapeMode,
    package_limits: BTreeMap<String, usize>,
}

impl RuntimeExecutor {
    /// Runs invocations against the registry's packages.
    pub fn new(registry: Arc<Registry>, tapes: TapeMode) -> Self {
        Self {
            registry,
            tapes,
            package_limits: BTreeMap::new(),
        }
    }

    /// Caps how many steps of `package` run at once.
    pub fn limit_package(&mut self, package: &str, limit: usize) {
        self.package_limits.insert(package.to_string(), limit);
    }
}

impl Executor for RuntimeExecutor {
    fn invoke(&self, inv: Invocation) -> Pin<Box<dyn Future<Output = Outcome> + Send>> {
        let registry = self.registry.clone();
        let tapes = self.tapes.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let Target::Action(r) = &inv.target else {
                return Outcome {
                    result: Err(Failure::infrastructure(
                        "not_an_action",
                        format!("step `{}` is not an action", inv.step),
                    )),
                    duration: started.elapsed(),
                };
            };
            let installed = match registry.resolve(r) {
                Ok(i) => i,
                Err(e) => {
                    return Outcome {
                        result: Err(Failure::infrastructure(
                            "not_installed",
                            format!("step `{}`: `uses: {r}`: {e}", inv.step),
                        )),
                        duration: started.elapsed(),
                    };
                }
            };
            let ctx = StepContext {
                run_id: inv.run.clone(),
                step_id: match inv.item {
                    Some(i) => format!("{}[{i}]", inv.step),
                    None => inv.step.clone(),
                },
                idempotency_key: inv.idempotency_key.clone(),
                attempt: inv.attempt,
            };
            let input = match serde_json::to_string(&*inv.input) {
                Ok(s) => s,
                Err(e) => {
                    return Outcome {
                        result: Err(Failure::infrastructure("input", e.to_string())),
                        duration: started.elapsed(),
                    };
                }
            };
            let Some(package) = &installed.package else {
                return Outcome {
                    result: Err(Failure::infrastructure(
                        "not_loaded",
                        format!(
                            "step `{}`: package {} is installed but may not run: it is not granted (an editor grants it), or its grant could not be applied (the server log says why)",
                            inv.step, r.package
                        ),
                    )),
                    duration: started.elapsed(),
                };
            };
            let tape = tapes.tape_for(&inv.run, &inv.step, inv.item, inv.attempt);
            let key = tape_key(&inv.run, &inv.step, inv.item, inv.attempt);
            // The engine drops this future when the step's timeout passes;
            // the guard then records the attempt as far as it got.
            let mut guard = CutOffGuard {
                tapes: &tapes,
                key: &key,
                tape: &tape,
                armed: true,
            };
            let report = package.run_taped(&r.action, &input, &ctx, &tape).await;
            guard.armed = false;
            if tapes.finish(&key, &tape, &report.outcome) == tapes::Replayed::CutOff {
                let ms = inv.timeout_ms.unwrap_or(0);
                return Outcome {
                    result: Err(match inv.timeout_ms {
                        Some(ms) => Failure::step_timeout(ms),
                        None => Failure::infrastructure(
                            "interrupted",
                            "the recorded attempt was stopped before it ended",
                        ),
                    }),
                    duration: std::time::Duration::from_millis(ms),
                };
            }
            let result = match report.outcome {
                Ok(v) => Ok(Arc::new(v)),
                Err(e) => Err(failure_of(&e)),
            };
            Outcome {
                result,
                duration: report.duration,
            }
        })
    }

    fn package_limit(&self, package: &str) -> Option<usize> {
        self.package_limits.get(package).copied()
    }
}

/// Records an attempt as cut off if its future is dropped before it ends.
struct CutOffGuard<'a> {
    tapes: &'a TapeMode,
    key: &'a str,
    tape: &'a Tape,
    armed: bool,
}

impl Drop for CutOffGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.tapes.cut(self.key, self.tape);
        }
    }
}

/// The engine's failure for a runtime error: the component's typed errors
/// are action errors (their `retryable` decides), everything the sandbox did
/// is infrastructure.
pub fn failure_of(e: &StepError) -> Failure {
    match e {
        StepError::Action {
            kind,
            message,
            retryable,
        } => {
            let (code, retry_after) = match kind {
                ActionErrorKind::InvalidInput => ("invalid_input", None),
                ActionErrorKind::Unauthorized => ("unauthorized", None),
                ActionErrorKind::NotFound => ("not_found", None),
                ActionErrorKind::RateLimited { retry_after_ms } => {
                    ("rate_limited", *retry_after_ms)
                }
                ActionErrorKind::Upstream { .. } => ("upstream", None),
                ActionErrorKind::Timeout => ("timeout", None),
                ActionErrorKind::Denied => ("denied", None),
                ActionErrorKind::Internal => ("internal", None),
            };
            let mut f = Failure::action(code, message.clone(), *retryable);
            f.retry_after_ms = retry_after;
            f
        }
        StepError::Timeout { .. } => Failure::infrastructure("timeout", e.to_string()),
        StepError::MemoryLimit { .. } => Failure::infrastructure("memory_limit", e.to_string()),
        StepError::StackOverflow => Failure::infrastructure("stack_overflow", e.to_string()),
        StepError::Trap { .. } => Failure::infrastructure("trap", e.to_string()),
        StepError::OutputTooLarge { .. } => {
            Failure::infrastructure("output_too_large", e.to_string())
        }
        StepError::OutputNotJson { .. } => {
            Failure::infrastructure("output_not_json", e.to_string())
        }
        // A recording that does not match is a test failure, never worth a retry.
        StepError::ReplayMismatch(_) => Failure::new(
            allama_engine::FailureClass::Expression,
            "replay_mismatch",
            e.to_string(),
        ),
        _ => Failure::infrastructure("runtime", e.to_string()),
    }
}
