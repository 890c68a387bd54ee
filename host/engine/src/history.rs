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

/// Cancels a run that no engine is carrying (the CLI's `runs cancel` on the
/// local data directory), with its unfinished child runs: writes a
/// `cancel_requested` at the end of each history and makes it durable.
///
/// This comes *before* the runs are resumed, so an attempt a crash cut short
/// is never dispatched again just to be cancelled: resuming a history that
/// ends in a cancel only records the end. Returns the runs cancelled (none
/// when `run` has already finished).
pub async fn cancel_stored(
    store: &dyn RunStore,
    plans: &dyn Plans,
    run: &str,
    by: &str,
) -> Result<Vec<String>, RebuildError> {
    let prefix = format!("{run}~");
    let mut ids = vec![run.to_string()];
    ids.extend(
        store
            .active()?
            .into_iter()
            .filter(|id| id.starts_with(&prefix)),
    );
    let mut cancelled = Vec::new();
    let at = crate::driver::now_ms();
    for id in ids {
        let (state, _) = rebuild(store, plans, &id)?;
        if state.status().is_final() {
            continue;
        }
        let event = Event::CancelRequested {
            by: by.to_string(),
            at,
        };
        let bytes = codec::encode(&event, codec::DEFAULT_BLOB_THRESHOLD, store)?;
        store.append(&id, state.applied(), &[bytes])?;
        cancelled.push(id);
    }
    store.commit().await?;
    Ok(cancelled)
}
