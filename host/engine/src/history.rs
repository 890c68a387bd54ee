//! Reading a run back from the store: its events and the state they fold to.

use std::collections::HashMap;

use crate::codec;
use crate::driver::{EngineError, Plans};
use crate::event::Event;
use crate::machine::Run;
use crate::store::{RunStore, StoreError};

/// Why a run could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// No such run.
    #[error("no run {0}")]
    NotFound(String),
    /// The store failed or holds damaged records.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The history does not begin with `started`.
    #[error("run {0}: the history does not begin with `started`")]
    NoStart(String),
    /// The playbook version the run started with is not available.
    #[error("run {run}: playbook {playbook} version {digest} is not available")]
    NoPlan {
        /// The run.
        run: String,
        /// The playbook.
        playbook: String,
        /// Its digest.
        digest: String,
    },
    /// An event does not fit.
    #[error(transparent)]
    Apply(#[from] crate::machine::ApplyError),
}

impl From<RebuildError> for EngineError {
    fn from(e: RebuildError) -> Self {
        match e {
            RebuildError::Store(s) => EngineError::Store(s),
            other => EngineError::Store(StoreError::Io(other.to_string())),
        }
    }
}

/// A run's decoded history.
pub fn events(store: &dyn RunStore, run: &str) -> Result<Vec<Event>, RebuildError> {
    let records = store.history(run)?;
    if records.is_empty() {
        return Err(RebuildError::NotFound(run.to_string()));
    }
    let mut cache = HashMap::new();
    records
        .iter()
        .enumerate()
        .map(|(seq, bytes)| {
            codec::decode(run, seq as u64, bytes, store, &mut cache).map_err(Into::into)
        })
        .collect()
}

/// A run's state, folded from its history with the playbook version it
/// started with.
pub fn rebuild(
    store: &dyn RunStore,
    plans: &dyn Plans,
    run: &str,
) -> Result<(Run, Vec<Event>), RebuildError> {
    let events = events(store, run)?;
    let Some(Event::Started {
        playbook, digest, ..
    }) = events.first()
    else {
        return Err(RebuildError::NoStart(run.to_string()));
    };
    let plan = plans
        .plan(playbook, Some(digest))
        .ok_or_else(|| RebuildError::NoPlan {
            run: run.to_string(),
            playbook: playbook.clone(),
            digest: digest.clone(),
        })?;
    let mut state = Run::new(run, plan);
    for e in &events {
        state.apply(e)?;
    }
    Ok((state, events))
}
