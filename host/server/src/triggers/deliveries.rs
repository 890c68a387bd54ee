//! Webhook delivery ids, so a delivery sent twice starts one run.
//!
//! Tree `webhook_deliveries`, key `workspace 0x00 playbook 0x00 id` →
//! `{"run": …, "at": ms, "boot": n}`. An id is *claimed* with the id its
//! run will have, before the run starts, so the claim is durable with the
//! run's start, and one write records both. Whether that run started is
//! the run store's to say: a claim whose run exists is a duplicate; one
//! whose run does not exist is in flight if this process made it, and was
//! left by a crash (taken over at once) if an earlier process did (`boot`
//! tells them apart).
//!
//! Expired ids are forgotten by a sweep that walks the tree a slice at a
//! time ([`Deliveries::prune`]), not through a second index by time: that
//! index cost one more sled write on every delivery (the hot path), while
//! the sweep reads in the background. An id is remembered for at least
//! the retention and forgotten within one sweep after it (see
//! [`Deliveries::sweep_every_ms`]). Older versions kept the time index in
//! tree `webhook_deliveries_by_time`; it is dropped when the store opens.
//!
//! Entries written before `boot` existed: `{"at"}` is a claim (taken over
//! after [`STALE_CLAIM_MS`]), `{"run", "at"}` a settled delivery.

use serde::{Deserialize, Serialize};

/// What a delivery id is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Not seen within the retention: go on and start the run.
    New,
    /// Seen, and its run started: answer with that run.
    Duplicate {
        /// The run the first delivery started.
        run: String,
    },
    /// Seen a moment ago and still being accepted (a concurrent retry).
    InFlight,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot: Option<u64>,
}

/// A claim whose run has not started after this long was left behind (a
/// start that failed and could not be released, or an entry of an older
/// version); the next delivery takes it over. A start takes milliseconds.
pub const STALE_CLAIM_MS: u64 = 60_000;

/// Entries one [`Deliveries::prune`] call reads at most: a slice of the
/// sweep small enough for a scheduler tick.
pub const SWEEP_SLICE: usize = 4096;

/// Delivery ids seen, per workspace and playbook.
pub struct Deliveries {
    ids: allama_store::gate::Tree,
    /// How long an id is remembered.
    pub retention_ms: u64,
    /// This process's claims, told from those of earlier processes.
    boot: u64,
    /// Where the sweep goes on (after this key), or when the next one starts.
    sweep: std::sync::Mutex<Sweep>,
    /// Entries read per [`Deliveries::prune`] call.
    slice: usize,
}

/// The state of the sweep that forgets expired ids.
enum Sweep {
    /// Under way: the next slice starts after this key.
    After(Vec<u8>),
    /// Resting; the next sweep starts at this time (ms). A process starts
    /// with `Idle(0)`: its first sweep at once.
    Idle(u64),
}

fn key(ws: &str, playbook: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ws.len() + playbook.len() + id.len() + 2);
    k.extend_from_slice(ws.as_bytes());
    k.push(0);
    k.extend_from_slice(playbook.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn encode(e: &Entry) -> Vec<u8> {
    serde_json::to_vec(e).unwrap_or_default()
}

fn new_boot() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Distinct across restarts without randomness too.
        return allama_engine::driver::now_ms() ^ (u64::from(std::process::id()) << 40);
    }
    u64::from_be_bytes(b)
}

impl Deliveries {
    /// The delivery ids in `db`, remembered for `retention_ms`.
    pub fn open(db: &allama_store::gate::Db, retention_ms: u64) -> Result<Self, sled::Error> {
        // The time index of older versions: the sweep does without it.
        db.drop_tree("webhook_deliveries_by_time")?;
        Ok(Self {
            ids: db.open_tree("webhook_deliveries")?,
            retention_ms,
            boot: new_boot(),
            sweep: std::sync::Mutex::new(Sweep::Idle(0)),
            slice: SWEEP_SLICE,
        })
    }

    /// How long a finished sweep waits before the next one starts: a
    /// 24th of the retention (an hour for the default day), so an id is
    /// forgotten within about that long after it expired, plus the sweep.
    pub fn sweep_every_ms(&self) -> u64 {
        self.retention_ms / 24
    }

    /// What an existing entry means now, `None` if it may be taken over.
    fn existing(&self, v: &[u8], now: u64, started: &dyn Fn(&str) -> bool) -> Option<Claim> {
        let Ok(e) = serde_json::from_slice::<Entry>(v) else {
            return None; // damaged: taken over
        };
        let age = now.saturating_sub(e.at);
        if age >= self.retention_ms {
            return None;
        }
        match (e.run, e.boot) {
            // Settled by an older version: its run started.
            (Some(run), None) => Some(Claim::Duplicate { run }),
            (Some(run), Some(_)) if started(&run) => Some(Claim::Duplicate { run }),
            // This process is starting it now.
            (Some(_), Some(boot)) if boot == self.boot && age < STALE_CLAIM_MS => {
                Some(Claim::InFlight)
            }
            // An older version's claim.
            (None, _) if age < STALE_CLAIM_MS => Some(Claim::InFlight),
            // Never started: a crash before the start was written.
            _ => None,
        }
    }

    /// Claims a delivery id for the run `run` (not started yet), or says
    /// who has it; `started` says whether a run exists.
    pub fn claim(
        &self,
        ws: &str,
        playbook: &str,
        id: &str,
        run: &str,
        now: u64,
        started: &dyn Fn(&str) -> bool,
    ) -> Result<Claim, sled::Error> {
        let k = key(ws, playbook, id);
        let mine = encode(&Entry {
            run: Some(run.to_string()),
            at: now,
            boot: Some(self.boot),
        });
        // Most ids are new: try to claim first, look only if one is there.
        let mut old: Option<sled::IVec> = None;
        loop {
            match self
                .ids
                .compare_and_swap(&k, old.as_ref(), Some(mine.clone()))?
            {
                Ok(()) => return Ok(Claim::New),
                Err(e) => {
                    if let Some(claim) = e
                        .current
                        .as_ref()
                        .and_then(|v| self.existing(v, now, started))
                    {
                        return Ok(claim);
                    }
                    // Expired, stale or damaged: take it over from what it is.
                    old = e.current;
                }
            }
        }
    }

    /// Gives a claim up (its run could not start): a retry may try again.
    pub fn release(&self, ws: &str, playbook: &str, id: &str) -> Result<(), sled::Error> {
        self.ids.remove(key(ws, playbook, id))?;
        Ok(())
    }

    /// Forgets ids older than the retention, reading at most one slice of
    /// the sweep ([`SWEEP_SLICE`] entries); returns how many it forgot.
    /// Called on every scheduler tick: a sweep over the whole tree takes as
    /// many calls as it has slices, then rests [`Self::sweep_every_ms`].
    pub fn prune(&self, now: u64) -> Result<usize, sled::Error> {
        let mut sweep = self.sweep.lock().unwrap_or_else(|e| e.into_inner());
        let iter = match &*sweep {
            Sweep::Idle(at) if now < *at => return Ok(0),
            Sweep::Idle(_) => self.ids.iter(),
            Sweep::After(k) => self.ids.range::<&[u8], _>((
                std::ops::Bound::Excluded(k.as_slice()),
                std::ops::Bound::Unbounded,
            )),
        };
        let cutoff = now.saturating_sub(self.retention_ms);
        let (mut read, mut forgot) = (0, 0);
        let mut last = None;
        for item in iter.take(self.slice) {
            let (k, v) = item?;
            read += 1;
            // A damaged entry is forgotten too: a claim takes it over anyway.
            if serde_json::from_slice::<Entry>(&v).map_or(true, |e| e.at < cutoff) {
                // Only if it was not renewed since it was read (a takeover
                // writes a newer time).
                if self
                    .ids
                    .compare_and_swap(&k, Some(&v), None::<&[u8]>)?
                    .is_ok()
                {
                    forgot += 1;
                }
            }
            last = Some(k);
        }
        *sweep = match last {
            Some(k) if read == self.slice => Sweep::After(k.to_vec()),
            _ => Sweep::Idle(now.saturating_add(self.sweep_every_ms())),
        };
        Ok(forgot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    fn deliveries(retention_ms: u64) -> (tempfile::TempDir, allama_store::gate::Db, Deliveries) {
        let d = tempfile::tempdir().unwrap();
        let db = allama_store::gate::Db::from(sled::open(d.path()).unwrap());
        let x = Deliveries::open(&db, retention_ms).unwrap();
        (d, db, x)
    }

    /// The runs that exist, as the run store would say.
    #[derive(Default)]
    struct Runs(Mutex<HashSet<String>>);

    impl Runs {
        fn start(&self, run: &str) {
            self.0.lock().unwrap().insert(run.to_string());
        }
        fn claim(
            &self,
            x: &Deliveries,
            ws: &str,
            pb: &str,
            id: &str,
            run: &str,
            now: u64,
        ) -> Claim {
            x.claim(ws, pb, id, run, now, &|r| {
                self.0.lock().unwrap().contains(r)
            })
            .unwrap()
        }
    }

    #[test]
    fn an_id_starts_one_run_within_the_retention() {
        let (_d, _db, x) = deliveries(10_000);
        let runs = Runs::default();
        assert_eq!(
            runs.claim(&x, "soc", "triage", "msg_1", "r1", 1000),
            Claim::New
        );
        // Its run has not started yet: a retry now is told to wait.
        assert_eq!(
            runs.claim(&x, "soc", "triage", "msg_1", "r2", 1001),
            Claim::InFlight
        );
        runs.start("r1");
        assert_eq!(
            runs.claim(&x, "soc", "triage", "msg_1", "r3", 5000),
            Claim::Duplicate { run: "r1".into() }
        );
        // The same id for another playbook or workspace is another delivery.
        assert_eq!(
            runs.claim(&x, "soc", "other", "msg_1", "r4", 5000),
            Claim::New
        );
        assert_eq!(
            runs.claim(&x, "ir", "triage", "msg_1", "r5", 5000),
            Claim::New
        );
        // Past the retention it is new again.
        assert_eq!(
            runs.claim(&x, "soc", "triage", "msg_1", "r6", 20_000),
            Claim::New
        );
    }

    #[test]
    fn a_claim_left_by_a_crash_is_taken_over_at_once_and_a_released_one_too() {
        let (_d, db, x) = deliveries(3_600_000);
        let runs = Runs::default();
        assert_eq!(runs.claim(&x, "soc", "t", "a", "r1", 0), Claim::New);
        // The process stops before r1's start was written; the next one
        // (another boot) takes the claim over without waiting.
        drop(x);
        let x = Deliveries::open(&db, 3_600_000).unwrap();
        assert_eq!(runs.claim(&x, "soc", "t", "a", "r2", 1), Claim::New);
        assert_eq!(runs.claim(&x, "soc", "t", "a", "r3", 2), Claim::InFlight);
        // A claim of this process whose run never started is given up
        // after STALE_CLAIM_MS.
        assert_eq!(
            runs.claim(&x, "soc", "t", "a", "r4", STALE_CLAIM_MS + 1),
            Claim::New
        );
        assert_eq!(runs.claim(&x, "soc", "t", "b", "r5", 0), Claim::New);
        x.release("soc", "t", "b").unwrap();
        assert_eq!(runs.claim(&x, "soc", "t", "b", "r6", 1), Claim::New);
        // A started run is a duplicate for any process.
        runs.start("r6");
        let x = Deliveries::open(&db, 3_600_000).unwrap();
        assert_eq!(
            runs.claim(&x, "soc", "t", "b", "r7", 2),
            Claim::Duplicate { run: "r6".into() }
        );
    }

    #[test]
    fn entries_of_the_earlier_format_keep_their_meaning() {
        let (_d, db, x) = deliveries(3_600_000);
        let runs = Runs::default();
        let tree = db.open_tree("webhook_deliveries").unwrap();
        tree.insert(key("soc", "t", "settled"), &br#"{"run":"r0","at":0}"#[..])
            .unwrap();
        tree.insert(key("soc", "t", "claimed"), &br#"{"at":0}"#[..])
            .unwrap();
        tree.insert(key("soc", "t", "damaged"), &b"{not json"[..])
            .unwrap();
        assert_eq!(
            runs.claim(&x, "soc", "t", "settled", "r1", 10),
            Claim::Duplicate { run: "r0".into() }
        );
        assert_eq!(
            runs.claim(&x, "soc", "t", "claimed", "r2", 10),
            Claim::InFlight
        );
        assert_eq!(
            runs.claim(&x, "soc", "t", "claimed", "r3", STALE_CLAIM_MS),
            Claim::New
        );
        assert_eq!(runs.claim(&x, "soc", "t", "damaged", "r4", 10), Claim::New);
    }

    #[test]
    fn pruning_forgets_only_what_expired() {
        let (_d, _db, x) = deliveries(1000);
        let runs = Runs::default();
        for (id, at) in [("old", 0u64), ("mid", 500), ("new", 1500)] {
            let run = format!("r-{id}");
            runs.claim(&x, "soc", "t", id, &run, at);
            runs.start(&run);
        }
        assert_eq!(x.prune(1600).unwrap(), 2);
        assert_eq!(
            runs.claim(&x, "soc", "t", "new", "r9", 1600),
            Claim::Duplicate {
                run: "r-new".into()
            }
        );
        assert_eq!(runs.claim(&x, "soc", "t", "old", "r10", 1600), Claim::New);
        assert_eq!(x.prune(1600).unwrap(), 0);
    }

    #[test]
    fn the_sweep_goes_a_slice_at_a_time_and_rests_between_sweeps() {
        let (_d, db, mut x) = deliveries(24_000);
        assert_eq!(x.sweep_every_ms(), 1000);
        x.slice = 3;
        let runs = Runs::default();
        // Ten ids from time 0, interleaved with five from time 20 000.
        for i in 0..15u64 {
            let at = if i % 3 == 2 { 20_000 } else { 0 };
            let run = format!("r{i}");
            runs.claim(&x, "soc", "t", &format!("id{i:02}"), &run, at);
            runs.start(&run);
        }
        let tree = db.open_tree("webhook_deliveries").unwrap();
        let sweep_done = |x: &Deliveries| matches!(*x.sweep.lock().unwrap(), Sweep::Idle(_));
        // At 24 500 the first ten expired. A slice reads three entries:
        // the first forgets id00 and id01.
        assert_eq!(x.prune(24_500).unwrap(), 2);
        assert_eq!(tree.iter().count(), 13);
        // An expired id taken over between slices is kept (its time is new).
        assert_eq!(
            runs.claim(&x, "soc", "t", "id03", "r99", 24_500),
            Claim::New
        );
        let mut forgot = 2;
        while !sweep_done(&x) {
            forgot += x.prune(24_500).unwrap();
        }
        assert_eq!(forgot, 9);
        let left: Vec<String> = tree
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.unwrap().0).into_owned())
            .collect();
        assert_eq!(left.len(), 6, "{left:?}");
        assert!(left.iter().any(|k| k.ends_with("id03")));
        // The sweep rests a second: an expired entry waits for the next one.
        tree.insert(
            key("soc", "t", "old"),
            encode(&Entry {
                run: Some("r0".into()),
                at: 0,
                boot: None,
            }),
        )
        .unwrap();
        tree.insert(key("soc", "t", "bad"), &b"{not json"[..])
            .unwrap();
        assert_eq!(x.prune(25_000).unwrap(), 0);
        // The next sweep forgets everything expired by then, damaged entries too.
        let mut forgot = 0;
        loop {
            forgot += x.prune(50_000).unwrap();
            if sweep_done(&x) {
                break;
            }
        }
        assert_eq!(forgot, 8, "five from 20 000, id03, old and bad");
        assert!(tree.is_empty());
    }

    #[test]
    fn the_old_time_index_is_dropped_on_open() {
        let d = tempfile::tempdir().unwrap();
        let db = allama_store::gate::Db::from(sled::open(d.path()).unwrap());
        let old = db.open_tree("webhook_deliveries_by_time").unwrap();
        old.insert(b"\0\0\0\0\0\0\0\x01soc\0t\0a", &[]).unwrap();
        drop(old);
        let _x = Deliveries::open(&db, 1000).unwrap();
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| n.as_ref() == b"webhook_deliveries_by_time")
        );
    }

    #[test]
    fn hostile_ids_are_kept_as_they_are() {
        // Workspace and playbook names never hold NUL (they are checked
        // names), so only the id's own bytes follow the second NUL.
        let (_d, _db, x) = deliveries(10_000);
        let runs = Runs::default();
        for id in ["b\0c", "../../x", &"☃".repeat(100), ""] {
            assert_eq!(
                runs.claim(&x, "soc", "a", id, "r1", 0),
                Claim::New,
                "{id:?}"
            );
            runs.start("r1");
            assert_eq!(
                runs.claim(&x, "soc", "a", id, "r2", 1),
                Claim::Duplicate { run: "r1".into() },
                "{id:?}"
            );
        }
        assert_eq!(runs.claim(&x, "soc", "a", "b", "r3", 1), Claim::New);
    }
}
