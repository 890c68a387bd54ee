//! A validated playbook prepared for running: steps by index, dependency
//! lists, error branches. Built once per playbook version and shared by all
//! its runs.

use std::collections::HashMap;
use std::sync::Arc;

use allama_playbook::{DeadlineAction, OnError, Playbook, Step};
use sha2::{Digest, Sha256};

/// A playbook version ready to run.
#[derive(Debug)]
pub struct Plan {
    /// The validated playbook.
    pub playbook: Playbook,
    /// Content digest of the source the playbook was read from.
    pub digest: String,
    index: HashMap<String, usize>,
    deps: Vec<Vec<usize>>,
    branch_of: Vec<Option<usize>>,
    reads: Vec<Vec<usize>>,
}

impl Plan {
    /// Prepares a validated playbook; `source` is the text it was parsed from
    /// (its SHA-256 is the version's digest).
    pub fn new(playbook: Playbook, source: &str) -> Arc<Self> {
        let digest = hex::encode(Sha256::digest(source.as_bytes()));
        Self::with_digest(playbook, digest)
    }

    /// Prepares a validated playbook whose digest is already known.
    pub fn with_digest(playbook: Playbook, digest: String) -> Arc<Self> {
        let index: HashMap<String, usize> = playbook
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i))
            .collect();
        let mut deps: Vec<Vec<usize>> = playbook
            .steps
            .iter()
            .map(|s| {
                s.needs
                    .iter()
                    .filter_map(|n| index.get(n).copied())
                    .collect()
            })
            .collect();
        let mut branch_of = vec![None; playbook.steps.len()];
        for (i, s) in playbook.steps.iter().enumerate() {
            if let OnError::Branch(b) = &s.on_error
                && let Some(&bi) = index.get(b)
            {
                branch_of[bi] = Some(i);
                if !deps[bi].contains(&i) {
                    deps[bi].push(i);
                }
            }
        }
        let reads = playbook
            .steps
            .iter()
            .map(|s| {
                let mut ids = s.with.references().steps;
                for e in [&s.if_, &s.for_each].into_iter().flatten() {
                    ids.extend(e.references().steps.iter().cloned());
                }
                let mut level = s.approval.as_ref();
                while let Some(a) = level {
                    ids.extend(a.message.references().steps.iter().cloned());
                    level = match &a.on_deadline {
                        DeadlineAction::Escalate(next) => Some(next),
                        _ => None,
                    };
                }
                ids.iter().filter_map(|id| index.get(id).copied()).collect()
            })
            .collect();
        Arc::new(Self {
            playbook,
            digest,
            index,
            deps,
            branch_of,
            reads,
        })
    }

    /// The playbook's id.
    pub fn id(&self) -> &str {
        &self.playbook.id
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.playbook.steps.len()
    }

    /// Whether the playbook has no steps.
    pub fn is_empty(&self) -> bool {
        self.playbook.steps.is_empty()
    }

    /// The step at `i`.
    pub fn step(&self, i: usize) -> &Step {
        &self.playbook.steps[i]
    }

    /// The index of the step with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// What step `i` waits for: its `needs`, plus the step it is the error
    /// branch of.
    pub fn deps(&self, i: usize) -> &[usize] {
        &self.deps[i]
    }

    /// The steps whose state step `i`'s expressions read.
    pub fn reads(&self, i: usize) -> &[usize] {
        &self.reads[i]
    }

    /// The step whose `on_error` names step `i`, if any.
    pub fn branch_of(&self, i: usize) -> Option<usize> {
        self.branch_of[i]
    }
}
