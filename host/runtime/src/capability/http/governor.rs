//! A gate shared by every run: once a vendor answers 429 with Retry-After,
//! later calls from the same package to the same origin wait (if the wait is
//! short enough) or fail fast with `rate-limited`, instead of hammering it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The longest Retry-After we honour; a vendor cannot park us for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Per (package, origin): not before this instant.
#[derive(Default)]
pub struct RateGovernor {
    until: Mutex<HashMap<(String, String), Instant>>,
}

impl RateGovernor {
    /// A governor with no one waiting.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a call must still wait, if at all.
    pub fn wait_for(&self, package: &str, origin: &str, now: Instant) -> Option<Duration> {
        let mut until = self.until.lock().unwrap();
        let key = (package.to_string(), origin.to_string());
        match until.get(&key) {
            Some(t) if *t > now => Some(*t - now),
            Some(_) => {
                until.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Hold calls back for `wait` (capped), keeping the later deadline.
    pub fn hold(&self, package: &str, origin: &str, wait: Duration, now: Instant) {
        let t = now + wait.min(MAX_RETRY_AFTER);
        let mut until = self.until.lock().unwrap();
        let e = until
            .entry((package.to_string(), origin.to_string()))
            .or_insert(t);
        if *e < t {
            *e = t;
        }
    }
}

/// Parse a Retry-After value: delay-seconds or an HTTP-date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        for bad in ["", "-1", "soon", "1.5", "Wed, 99 Foo 2026", "\u{1F600}"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn holds_per_package_and_origin_and_keeps_the_later_deadline() {
        let g = RateGovernor::new();
        let now = Instant::now();
        g.hold(
            "vt",
            "https://www.virustotal.com:443",
            Duration::from_secs(5),
            now,
        );
        g.hold(
            "vt",
            "https://www.virustotal.com:443",
            Duration::from_secs(1),
            now,
        );
        assert_eq!(
            g.wait_for("vt", "https://www.virustotal.com:443", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            g.wait_for("other", "https://www.virustotal.com:443", now),
            None
        );
        assert_eq!(g.wait_for("vt", "https://api.abuseipdb.com:443", now), None);
        assert_eq!(
            g.wait_for(
                "vt",
                "https://www.virustotal.com:443",
                now + Duration::from_secs(6)
            ),
            None
        );
    }
}
