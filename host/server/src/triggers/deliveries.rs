//! Webhook delivery ids, so a delivery sent twice starts one run.
//!
//! Tree `webhook_deliveries`, key `workspace 0x00 playbook 0x00 id` →
//! `{"run": …, "at": ms}`; tree `webhook_deliveries_by_time`, key
//! `at (u64 big-endian) ++ that key` → empty, so pruning reads only what
//! expired. An id is *claimed* (no run yet) before its run starts, so the
//! claim is durable with the run's start; it is *settled* with the run id
//! once the run has started.

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
}

/// A claim without a run older than this was left by a crash between the
/// claim and the run's start; the next delivery takes it over.
pub const STALE_CLAIM_MS: u64 = 60_000;

/// Delivery ids seen, per workspace and playbook.
pub struct Deliveries {
    ids: allama_store::gate::Tree,
    by_time: allama_store::gate::Tree,
    /// How long an id is remembered.
    pub retention_ms: u64,
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

fn time_key(at: u64, k: &[u8]) -> Vec<u8> {
    let mut t = at.to_be_bytes().to_vec();
    t.extend_from_slice(k);
    t
}

fn encode(e: &Entry) -> Vec<u8> {
    serde_json::to_vec(e).unwrap_or_default()
}

impl Deliveries {
    /// The delivery ids in `db`, remembered for `retention_ms`.
    pub fn open(db: &allama_store::gate::Db, retention_ms: u64) -> Result<Self, sled::Error> {
        Ok(Self {
            ids: db.open_tree("webhook_deliveries")?,
            by_time: db.open_tree("webhook_deliveries_by_time")?,
            retention_ms,
        })
    }

    /// Claims a delivery id, or says who has it.
    pub fn claim(
        &self,
        ws: &str,
        playbook: &str,
        id: &str,
        now: u64,
    ) -> Result<Claim, sled::Error> {
        let k = key(ws, playbook, id);
        let mine = encode(&Entry { run: None, at: now });
        loop {
            let old = self.ids.get(&k)?;
            if let Some(v) = &old {
                match serde_json::from_slice::<Entry>(v) {
                    Ok(Entry { run: Some(run), at })
                        if now.saturating_sub(at) < self.retention_ms =>
                    {
                        return Ok(Claim::Duplicate { run });
                    }
                    Ok(Entry { run: None, at }) if now.saturating_sub(at) < STALE_CLAIM_MS => {
                        return Ok(Claim::InFlight);
                    }
                    // Expired, stale or damaged: taken over below.
                    _ => {}
                }
            }
            if self
                .ids
                .compare_and_swap(&k, old.as_ref(), Some(mine.clone()))?
                .is_ok()
            {
                self.by_time.insert(time_key(now, &k), &[])?;
                return Ok(Claim::New);
            }
        }
    }

    /// Records the run a claimed delivery started.
    pub fn settle(
        &self,
        ws: &str,
        playbook: &str,
        id: &str,
        run: &str,
        now: u64,
    ) -> Result<(), sled::Error> {
        let k = key(ws, playbook, id);
        self.ids.insert(
            &k,
            encode(&Entry {
                run: Some(run.to_string()),
                at: now,
            }),
        )?;
        self.by_time.insert(time_key(now, &k), &[])?;
        Ok(())
    }

    /// Gives a claim up (its run could not start): a retry may try again.
    pub fn release(&self, ws: &str, playbook: &str, id: &str) -> Result<(), sled::Error> {
        self.ids.remove(key(ws, playbook, id))?;
        Ok(())
    }

    /// Forgets ids older than the retention; returns how many.
    pub fn prune(&self, now: u64) -> Result<usize, sled::Error> {
        let cutoff = now.saturating_sub(self.retention_ms);
        let mut n = 0;
        for item in self.by_time.range(..cutoff.to_be_bytes().to_vec()) {
            let (t, _) = item?;
            let k = &t[8..];
            // Only if the entry was not renewed since (settle writes a newer time).
            if let Some(v) = self.ids.get(k)?
                && serde_json::from_slice::<Entry>(&v).is_ok_and(|e| e.at < cutoff)
            {
                self.ids.remove(k)?;
                n += 1;
            }
            self.by_time.remove(&t)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliveries(retention_ms: u64) -> (tempfile::TempDir, Deliveries) {
        let d = tempfile::tempdir().unwrap();
        let db = allama_store::gate::Db::from(sled::open(d.path()).unwrap());
        let x = Deliveries::open(&db, retention_ms).unwrap();
        (d, x)
    }

    #[test]
    fn an_id_starts_one_run_within_the_retention() {
        let (_d, x) = deliveries(10_000);
        assert_eq!(x.claim("soc", "triage", "msg_1", 1000).unwrap(), Claim::New);
        assert_eq!(
            x.claim("soc", "triage", "msg_1", 1001).unwrap(),
            Claim::InFlight
        );
        x.settle("soc", "triage", "msg_1", "r1", 1002).unwrap();
        assert_eq!(
            x.claim("soc", "triage", "msg_1", 5000).unwrap(),
            Claim::Duplicate { run: "r1".into() }
        );
        // The same id for another playbook or workspace is another delivery.
        assert_eq!(x.claim("soc", "other", "msg_1", 5000).unwrap(), Claim::New);
        assert_eq!(x.claim("ir", "triage", "msg_1", 5000).unwrap(), Claim::New);
        // Past the retention it is new again.
        assert_eq!(
            x.claim("soc", "triage", "msg_1", 20_000).unwrap(),
            Claim::New
        );
    }

    #[test]
    fn a_claim_left_by_a_crash_is_taken_over_and_a_released_one_at_once() {
        let (_d, x) = deliveries(3_600_000);
        assert_eq!(x.claim("soc", "t", "a", 0).unwrap(), Claim::New);
        assert_eq!(
            x.claim("soc", "t", "a", STALE_CLAIM_MS - 1).unwrap(),
            Claim::InFlight
        );
        assert_eq!(
            x.claim("soc", "t", "a", STALE_CLAIM_MS).unwrap(),
            Claim::New
        );
        assert_eq!(x.claim("soc", "t", "b", 0).unwrap(), Claim::New);
        x.release("soc", "t", "b").unwrap();
        assert_eq!(x.claim("soc", "t", "b", 1).unwrap(), Claim::New);
    }

    #[test]
    fn pruning_forgets_only_what_expired() {
        let (_d, x) = deliveries(1000);
        for (id, at) in [("old", 0u64), ("mid", 500), ("new", 1500)] {
            x.claim("soc", "t", id, at).unwrap();
            x.settle("soc", "t", id, &format!("r-{id}"), at).unwrap();
        }
        assert_eq!(x.prune(1600).unwrap(), 2);
        assert_eq!(
            x.claim("soc", "t", "new", 1600).unwrap(),
            Claim::Duplicate {
                run: "r-new".into()
            }
        );
        assert_eq!(x.claim("soc", "t", "old", 1600).unwrap(), Claim::New);
        assert_eq!(x.prune(1600).unwrap(), 0);
    }

    #[test]
    fn hostile_ids_are_kept_as_they_are() {
        // Workspace and playbook names never hold NUL (they are checked
        // names), so only the id's own bytes follow the second NUL.
        let (_d, x) = deliveries(10_000);
        for id in ["b\0c", "../../x", &"☃".repeat(100), ""] {
            assert_eq!(x.claim("soc", "a", id, 0).unwrap(), Claim::New, "{id:?}");
            x.settle("soc", "a", id, "r1", 0).unwrap();
            assert_eq!(
                x.claim("soc", "a", id, 1).unwrap(),
                Claim::Duplicate { run: "r1".into() },
                "{id:?}"
            );
        }
        assert_eq!(x.claim("soc", "a", "b", 1).unwrap(), Claim::New);
    }
}
