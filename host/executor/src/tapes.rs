//! Recording a whole run's capability exchanges, and replaying them: the
//! basis of `allama playbook run --record` and `allama playbook test`.
//!
//! Each attempt has its own tape, keyed `step#attempt` or
//! `step[item]#attempt`, so a run that retried replays its retries too. A
//! child run's attempts are keyed under the parent step that started it:
//! `triage[1]/vt#1` is attempt 1 of step `vt` in the child run started by
//! item 1 of step `triage` (child run ids are `<parent>~<step>[~<item>]`).

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

/// The tape key of an attempt of `step` in run `run`.
pub fn key(run: &str, step: &str, item: Option<u32>, attempt: u32) -> String {
    let mut k = String::new();
    // The root run's id differs from recording to replay; the path below it does not.
    let mut segments = run.split('~').skip(1).peekable();
    while let Some(step_of_parent) = segments.next() {
        k.push_str(step_of_parent);
        // An item index follows its step when the parent step fanned out.
        if let Some(n) = segments.peek().filter(|s| s.parse::<u32>().is_ok()) {
            k.push_str(&format!("[{n}]"));
            segments.next();
        }
        k.push('/');
    }
    match item {
        Some(i) => k.push_str(&format!("{step}[{i}]#{attempt}")),
        None => k.push_str(&format!("{step}#{attempt}")),
    }
    k
}

impl TapeMode {
    pub(crate) fn tape_for(&self, run: &str, step: &str, item: Option<u32>, attempt: u32) -> Tape {
        match self {
            TapeMode::Off => Tape::Off,
            TapeMode::Record(_) => Tape::Record(Recorder::new()),
            TapeMode::Replay(r) => {
                let k = key(run, step, item, attempt);
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

    pub(crate) fn finish(
        &self,
        run: &str,
        step: &str,
        item: Option<u32>,
        attempt: u32,
        tape: &Tape,
    ) {
        let k = key(run, step, item, attempt);
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

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn keys_are_relative_to_the_root_run() {
        assert_eq!(key("r1", "vt", None, 1), "vt#1");
        assert_eq!(key("r1", "each", Some(2), 3), "each[2]#3");
        assert_eq!(key("r9~check", "vt", None, 1), "check/vt#1");
        assert_eq!(key("r9~triage~1", "vt", None, 2), "triage[1]/vt#2");
        assert_eq!(
            key("r9~triage~1~deep~0", "x", Some(4), 1),
            "triage[1]/deep[0]/x[4]#1"
        );
        // Two children of one fanned-out step never share a key.
        assert_ne!(key("r1~t~0", "vt", None, 1), key("r1~t~1", "vt", None, 1));
    }
}
