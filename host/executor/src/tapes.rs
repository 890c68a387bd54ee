//! Recording a whole run's capability exchanges, and replaying them: the
//! basis of `allama playbook run --record` and `allama playbook test`.
//!
//! Each attempt has its own tape, keyed `step#attempt` or
//! `step[item]#attempt`, so a run that retried replays its retries too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use allama_runtime::{Cassette, Exchange, Recorder, Tape};

/// Recorded exchanges of a run, by attempt key.
pub type Tapes = BTreeMap<String, Vec<Exchange>>;

/// Whether and how attempts are taped.
#[derive(Clone, Default)]
pub enum TapeMode {
    /// Live, untaped.
    #[default]
    Off,
    /// Live, every attempt recorded into the map.
    Record(Arc<Mutex<Tapes>>),
    /// Every attempt served from the map; problems collected for the report.
    Replay(Arc<Replay>),
}

/// A recording being replayed.
pub struct Replay {
    tapes: Tapes,
    problems: Mutex<Vec<String>>,
}

impl Replay {
    /// Replays `tapes`.
    pub fn new(tapes: Tapes) -> Self {
        Self {
            tapes,
            problems: Mutex::new(Vec::new()),
        }
    }

    /// What went wrong: attempts without a recording, exchanges the
    /// component never made.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.problems).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tape key of an attempt.
pub fn key(step: &str, item: Option<u32>, attempt: u32) -> String {
    match item {
        Some(i) => format!("{step}[{i}]#{attempt}"),
        None => format!("{step}#{attempt}"),
    }
}

impl TapeMode {
    pub(crate) fn tape_for(&self, step: &str, item: Option<u32>, attempt: u32) -> Tape {
        match self {
            TapeMode::Off => Tape::Off,
            TapeMode::Record(_) => Tape::Record(Recorder::new()),
            TapeMode::Replay(r) => {
                let k = key(step, item, attempt);
                match r.tapes.get(&k) {
                    Some(ex) => Tape::Replay(Cassette::new(ex.clone())),
                    None => {
                        // An attempt the recording never made: replay it
                        // against an empty cassette, so any capability use
                        // is a mismatch, and say so.
                        lock(&r.problems).push(format!("{k}: not in the recording"));
                        Tape::Replay(Cassette::new(Vec::new()))
                    }
                }
            }
        }
    }

    pub(crate) fn finish(&self, step: &str, item: Option<u32>, attempt: u32, tape: &Tape) {
        let k = key(step, item, attempt);
        match (self, tape) {
            (TapeMode::Record(map), Tape::Record(rec)) => {
                // Kept even when empty: replay then knows the attempt happened.
                lock(map).insert(k, rec.take());
            }
            (TapeMode::Replay(r), Tape::Replay(c)) => {
                if let Err(m) = c.finish() {
                    lock(&r.problems).push(format!("{k}: {m}"));
                }
            }
            _ => {}
        }
    }
}
