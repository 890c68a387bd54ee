//! Cron schedules: every enabled playbook's `schedule` triggers, in their
//! time zones (croner for the expressions, chrono-tz for the zones).
//!
//! Tree `schedules`, key `workspace 0x00 playbook 0x00 trigger index` →
//! the last occurrence fired (ms since the epoch, u64 big-endian). A
//! schedule seen for the first time starts from now (no back-fill). An
//! occurrence is marked fired *before* its run starts, so the mark is
//! durable with the start: each occurrence starts at most one run. After a
//! stop, the occurrences missed are coalesced into one run, whose trigger
//! says `late: true`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use allama_playbook::Trigger;
use allama_store::audit::AuditEntry;

use crate::app::AppState;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The expression as written.
    pub cron: String,
    /// The time zone's name.
    pub timezone: String,
    expr: Cron,
    tz: Tz,
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression.
    #[error("`{cron}` is not a cron expression: {why}")]
    Cron {
        /// As written.
        cron: String,
        /// Why.
        why: String,
    },
    /// The time zone.
    #[error("`{0}` is not a time zone this server knows (IANA names such as `Europe/Paris`)")]
    TimeZone(String),
}

impl Schedule {
    /// Parses a trigger's expression and zone (UTC when absent).
    pub fn new(cron: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let expr = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| ScheduleError::Cron {
                cron: cron.to_string(),
                why: e.to_string(),
            })?;
        let name = timezone.unwrap_or("UTC");
        let tz = Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.to_string()))?;
        Ok(Self {
            cron: cron.to_string(),
            timezone: name.to_string(),
            expr,
            tz,
        })
    }

    /// The first occurrence strictly after `after_ms`.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let t = self.tz.timestamp_millis_opt(after_ms as i64).single()?;
        let next = self.expr.find_next_occurrence(&t, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }

    /// The last occurrence at or before `now_ms`, if it is after `after_ms`.
    pub fn latest_due(&self, after_ms: u64, now_ms: u64) -> Option<u64> {
        let first = self.next_after(after_ms)?;
        if first > now_ms {
            return None;
        }
        let t = self.tz.timestamp_millis_opt(now_ms as i64).single()?;
        let last = self
            .expr
            .find_previous_occurrence(&t, true)
            .ok()
            .and_then(|p| u64::try_from(p.timestamp_millis()).ok())
            .unwrap_or(first);
        Some(last.max(first))
    }
}

/// The schedule triggers of a playbook, by their index among its triggers.
pub fn schedules_of(
    pb: &allama_playbook::Playbook,
) -> Vec<(usize, Result<Schedule, ScheduleError>)> {
    pb.triggers
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match t {
            Trigger::Schedule { cron, timezone } => {
                Some((i, Schedule::new(cron, timezone.as_deref())))
            }
            _ => None,
        })
        .collect()
}

fn key(ws: &str, playbook: &str, index: usize) -> Vec<u8> {
    let mut k = ws.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(playbook.as_bytes());
    k.push(0);
    k.extend_from_slice(&(index as u32).to_be_bytes());
    k
}

fn read_ms(v: &[u8]) -> Option<u64> {
    v.try_into().ok().map(u64::from_be_bytes)
}

/// A schedule, as listed.
#[derive(Serialize, ToSchema)]
pub struct ScheduleInfo {
    /// The playbook.
    pub playbook: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone.
    pub timezone: String,
    /// Whether the playbook is enabled (a disabled one is not started).
    pub enabled: bool,
    /// The next occurrence (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_at: Option<u64>,
    /// The last occurrence that started a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_fired_at: Option<u64>,
    /// Why the schedule cannot run, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The scheduler's state in sled.
pub struct Scheduler {
    tree: allama_store::gate::Tree,
}

impl Scheduler {
    /// The schedules tree of `db`.
    pub fn open(db: &allama_store::gate::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            tree: db.open_tree("schedules")?,
        })
    }

    fn last(&self, k: &[u8]) -> Option<u64> {
        self.tree.get(k).ok().flatten().and_then(|v| read_ms(&v))
    }

    /// The workspace's schedules.
    pub fn list(&self, state: &AppState, ws: &str, now: u64) -> Result<Vec<ScheduleInfo>, String> {
        let mut out = Vec::new();
        for record in state.library.list(ws).map_err(|e| e.to_string())? {
            let Some(plan) = state.runner.plans.current(ws, &record.id) else {
                continue;
            };
            for (i, s) in schedules_of(&plan.playbook) {
                let last = self.last(&key(ws, &record.id, i));
                out.push(match s {
                    Ok(s) => ScheduleInfo {
                        playbook: record.id.clone(),
                        next_at: s.next_after(last.unwrap_or(now).max(now)),
                        cron: s.cron,
                        timezone: s.timezone,
                        enabled: record.enabled,
                        last_fired_at: last,
                        error: None,
                    },
                    Err(e) => ScheduleInfo {
                        playbook: record.id.clone(),
                        cron: String::new(),
                        timezone: String::new(),
                        enabled: record.enabled,
                        next_at: None,
                        last_fired_at: last,
                        error: Some(e.to_string()),
                    },
                });
            }
        }
        Ok(out)
    }

    /// Starts every run that is due at `now`; returns the runs started.
    pub async fn tick(&self, state: &AppState, now: u64) -> Vec<String> {
        let mut started = Vec::new();
        let Ok(workspaces) = state.accounts.workspaces() else {
            return started;
        };
        for ws in workspaces {
            let Ok(records) = state.library.list(&ws.name) else {
                continue;
            };
            for record in records.into_iter().filter(|r| r.enabled) {
                let Some(plan) = state.runner.plans.current(&ws.name, &record.id) else {
                    continue;
                };
                for (i, s) in schedules_of(&plan.playbook) {
                    let Ok(s) = s else { continue };
                    let k = key(&ws.name, &record.id, i);
                    let old = self.tree.get(&k).ok().flatten();
                    let Some(last) = old.as_deref().and_then(read_ms) else {
                        // First seen: from now on.
                        let _ = self.tree.insert(&k, &now.to_be_bytes());
                        state.store.mark_dirty();
                        continue;
                    };
                    let Some(due) = s.latest_due(last, now) else {
                        continue;
                    };
                    // Mark first: the mark is durable with the run's start.
                    if !matches!(
                        self.tree
                            .compare_and_swap(&k, old.as_ref(), Some(&due.to_be_bytes()[..])),
                        Ok(Ok(()))
                    ) {
                        continue;
                    }
                    let scheduled = DateTime::<Utc>::from_timestamp_millis(due as i64)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    let trigger = json!({
                        "kind": "schedule",
                        "cron": s.cron,
                        "timezone": s.timezone,
                        "scheduled_at": scheduled,
                        "late": now.saturating_sub(due) > 60_000,
                    });
                    match state
                        .runner
                        .engine
                        .start_run(plan.clone(), trigger, Value::Object(Default::default()))
                        .await
                    {
                        Ok(run) => {
                            state.audit(
                                &ws.name,
                                AuditEntry {
                                    actor: "schedule".into(),
                                    action: "schedule.fire".into(),
                                    target: run.clone(),
                                    denied: false,
                                    detail: json!({ "playbook": record.id, "cron": s.cron, "scheduled_at": scheduled }),
                                },
                            );
                            started.push(run);
                        }
                        Err(e) => {
                            tracing::error!(workspace = %ws.name, playbook = %record.id, error = %e, "a scheduled run could not start");
                            state.audit(
                                &ws.name,
                                AuditEntry {
                                    actor: "schedule".into(),
                                    action: "schedule.fire".into(),
                                    target: record.id.clone(),
                                    denied: true,
                                    detail: json!({ "error": e.to_string(), "scheduled_at": scheduled }),
                                },
                            );
                        }
                    }
                }
            }
        }
        started
    }
}

/// How often the scheduler looks: occurrences start within this of their time.
pub const TICK: Duration = Duration::from_millis(500);

/// Runs the scheduler until the state is dropped.
pub fn spawn(state: &Arc<AppState>) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(state) = weak.upgrade() else { break };
            let now = allama_engine::driver::now_ms();
            state.scheduler.tick(&state, now).await;
            if let Err(e) = state.deliveries.prune(now) {
                tracing::warn!(error = %e, "pruning webhook delivery ids");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() as u64
    }

    #[test]
    fn occurrences_follow_the_time_zone() {
        // 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
        let s = Schedule::new("0 9 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            s.next_after(ms("2026-01-10T12:00:00Z")),
            Some(ms("2026-01-11T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(ms("2026-07-10T12:00:00Z")),
            Some(ms("2026-07-11T07:00:00Z"))
        );
        let utc = Schedule::new("*/15 * * * *", None).unwrap();
        assert_eq!(utc.timezone, "UTC");
        assert_eq!(
            utc.next_after(ms("2026-01-10T12:00:00Z")),
            Some(ms("2026-01-10T12:15:00Z"))
        );
        let secs = Schedule::new("*/10 * * * * *", None).unwrap();
        assert_eq!(
            secs.next_after(ms("2026-01-10T12:00:00Z")),
            Some(ms("2026-01-10T12:00:10Z"))
        );
    }

    #[test]
    fn missed_occurrences_coalesce_into_the_latest() {
        let s = Schedule::new("0 * * * *", None).unwrap();
        let last = ms("2026-01-10T09:00:00Z");
        assert_eq!(s.latest_due(last, ms("2026-01-10T09:59:59Z")), None);
        assert_eq!(
            s.latest_due(last, ms("2026-01-10T10:00:00Z")),
            Some(ms("2026-01-10T10:00:00Z"))
        );
        assert_eq!(
            s.latest_due(last, ms("2026-01-10T13:30:00Z")),
            Some(ms("2026-01-10T13:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        for (cron, tz, needle) in [
            ("61 * * * *", None, "is not a cron expression"),
            ("* * *", None, "is not a cron expression"),
            ("0 9 * * *", Some("Mars/Olympus"), "Mars/Olympus"),
            (
                "0 9 * * *",
                Some("../../etc/localtime"),
                "is not a time zone",
            ),
        ] {
            let e = Schedule::new(cron, tz).unwrap_err().to_string();
            assert!(e.contains(needle), "{cron} {tz:?}: {e}");
        }
    }
}
