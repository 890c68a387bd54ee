//! Playbook versions for the engine, from the workspaces' libraries.
//!
//! The engine knows nothing of workspaces, so inside it a playbook's id is
//! qualified: `WORKSPACE/ID`, and a `playbook:` step's child id is
//! qualified the same way before the plan is built. A child run therefore
//! always starts a playbook of its parent's workspace, and a run's
//! summary names its workspace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use allama_engine::{Plan, Plans, RunStore};
use allama_playbook::{Playbook, StepKind};
use allama_store::SledStore;

use crate::library::Library;

/// `WORKSPACE/ID`, the engine's name for a workspace's playbook.
pub fn qualify(workspace: &str, id: &str) -> String {
    format!("{workspace}/{id}")
}

/// The workspace and the playbook id of a qualified id.
pub fn split(qualified: &str) -> Option<(&str, &str)> {
    qualified.split_once('/')
}

/// The playbook as the engine runs it in `workspace`: its id and its child
/// playbooks' ids qualified.
pub fn in_workspace(workspace: &str, mut pb: Playbook) -> Playbook {
    pb.id = qualify(workspace, &pb.id);
    for step in &mut pb.steps {
        if let StepKind::Playbook(child) = &mut step.kind {
            *child = qualify(workspace, child);
        }
    }
    pb
}

/// Plans built from the library's stored sources, cached by version.
pub struct ServerPlans {
    library: Arc<Library>,
    blobs: Arc<SledStore>,
    /// `(qualified id, digest)` → plan; versions never change.
    cache: Mutex<HashMap<(String, String), Arc<Plan>>>,
}

/// Most plans kept in memory; past it the cache starts over (plans are
/// rebuilt from their sources on demand).
const MAX_CACHED: usize = 4096;

impl ServerPlans {
    /// Plans over `library`, whose sources are blobs in `blobs`.
    pub fn new(library: Arc<Library>, blobs: Arc<SledStore>) -> Self {
        Self {
            library,
            blobs,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The version of `workspace`'s playbook `id` with this digest.
    pub fn version(&self, workspace: &str, id: &str, digest: &str) -> Option<Arc<Plan>> {
        let key = (qualify(workspace, id), digest.to_string());
        if let Some(p) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Some(p.clone());
        }
        let source = String::from_utf8(self.blobs.get_blob(digest).ok()??).ok()?;
        let pb = match allama_playbook::parse(&source, &format!("{}@{digest:.12}", key.0)) {
            Ok(pb) if pb.id == id => pb,
            // A stored version always parsed when it was stored: this is a
            // different playbook's source or a newer grammar's; refuse it.
            _ => return None,
        };
        let plan = Plan::with_digest(in_workspace(workspace, pb), digest.to_string());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, plan.clone());
        Some(plan)
    }

    /// The current version of `workspace`'s playbook `id`.
    pub fn current(&self, workspace: &str, id: &str) -> Option<Arc<Plan>> {
        let record = self.library.get(workspace, id).ok()??;
        let digest = record.current()?.digest.clone();
        self.version(workspace, id, &digest)
    }
}

impl Plans for ServerPlans {
    fn plan(&self, id: &str, digest: Option<&str>) -> Option<Arc<Plan>> {
        let (ws, local) = split(id)?;
        match digest {
            Some(d) => self.version(ws, local, d),
            None => self.current(ws, local),
        }
    }
}
