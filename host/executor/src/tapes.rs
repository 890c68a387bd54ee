//! Recording a whole run's capability exchanges, and replaying them: the
//! basis of `allama playbook run --record` and `allama playbook test`.
//!
//! Each attempt has its own tape, keyed `step#attempt` or
//! `step[item]#attempt`, so a run that retried replays its retries too. A
//! child run's attempts are keyed under the parent step that started it:
//! `triage[1]/vt#1` is attempt 1 of step `vt` in the child run started by
//! item 1 of step `triage` (child run ids are `<parent>~<step>[~<item>]`).
//!
//! An attempt the engine stopped before it ended (its step's `timeout`) is
//! recorded as far as it got and marked *cut off*. In replay it is served
//! the same exchanges; when it asks for the one past them (the call the cut
//! interrupted) it ends as the same timeout, at once, instead of waiting
//! for the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use allama_runtime::{Cassette, Exchange, Recorder, StepError, Tape};

/// Recorded exchanges of a run, by attempt key.
pub type Tapes = BTreeMap<String, Vec<Exchange>>;

/// What recording a run collects.
#[derive(Debug, Default)]
pub struct Recording {
    /// Every attempt's exchanges.
    pub tapes: Tapes,
    /// Attempts that were stopped before they ended (by their timeout).
    pub cut_off: BTreeSet<String>,
}

/// Whether and how attempts are taped.
#[derive(Clone, Default)]
pub enum TapeMode {
    /// Live, untaped.
    #[default]
    Off,
    /// Live, every attempt recorded.
    Record(Arc<Mutex<Recording>>),
    /// Every attempt served from the map; problems collected for the report.
    Replay(Arc<Replay>),
}

/// A recording being replayed.
pub struct Replay {
    tapes: Tapes,
    cut_off: BTreeSet<String>,
    problems: Mutex<Vec<String>>,
}

/// How a replayed attempt ended against its recording.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Replayed {
    /// As recorded (or with its problems noted).
    Ended,
    /// It reached the point where the recorded attempt was cut off.
    CutOff,
}

impl Replay {
    /// Replays `tapes`; the attempts in `cut_off` were stopped by their
    /// timeout when recorded.
    pub fn new(tapes: Tapes, cut_off: BTreeSet<String>) -> Self {
        Self {
            tapes,
            cut_off,
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

    /// After an attempt ended with `outcome`: keeps its recording, or checks
    /// its replay. Says whether a replay reached a recorded cut-off.
    pub(crate) fn finish<T>(
        &self,
        key: &str,
        tape: &Tape,
        outcome: &Result<T, StepError>,
    ) -> Replayed {
        match (self, tape) {
            (TapeMode::Record(rec), Tape::Record(r)) => {
                // Kept even when empty: replay then knows the attempt happened.
                lock(rec).tapes.insert(key.to_string(), r.take());
            }
            (TapeMode::Replay(r), Tape::Replay(c)) => {
                if let Some(recorded) = r.cut_off.contains(key).then(|| r.tapes.get(key)) {
                    let len = recorded.map_or(0, Vec::len);
                    // The first call past the recorded exchanges is the one
                    // the timeout interrupted.
                    if let Err(StepError::ReplayMismatch(m)) = outcome
                        && m.position == len + 1
                    {
                        return Replayed::CutOff;
                    }
                    lock(&r.problems).push(format!(
                        "{key}: the recording was cut off by the step's timeout after {len} exchange(s), but the replay ended the attempt{}",
                        match outcome {
                            Err(e) => format!(": {e}"),
                            Ok(_) => " with an output".into(),
                        }
                    ));
                    return Replayed::Ended;
                }
                if let Err(m) = c.finish() {
                    lock(&r.problems).push(format!("{key}: {m}"));
                }
            }
            _ => {}
        }
        Replayed::Ended
    }

    /// Records an attempt stopped before it ended, as far as it got.
    pub(crate) fn cut(&self, key: &str, tape: &Tape) {
        if let (TapeMode::Record(rec), Tape::Record(r)) = (self, tape) {
            let mut rec = lock(rec);
            rec.tapes.insert(key.to_string(), r.take());
            rec.cut_off.insert(key.to_string());
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
