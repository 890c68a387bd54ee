//! Backoff arithmetic. Jitter is derived from the task's identity and the
//! failure count, not from a random source, so a replayed history arms the
//! same timer.

use allama_playbook::{Backoff, BackoffKind};
use sha2::{Digest, Sha256};

/// The longest `Retry-After` honoured, so a vendor cannot park a run for a year.
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// Delay before the next attempt after the `n`th failure of this class
/// (`n` ≥ 1), honouring the vendor's `retry_after_ms` when it is longer.
pub fn delay_ms(
    b: &Backoff,
    n: u32,
    retry_after_ms: Option<u64>,
    run: &str,
    step: &str,
    item: Option<u32>,
) -> u64 {
    let base = b.delay.as_millis() as u64;
    let cap = (b.max_delay.as_millis() as u64).max(base);
    let mut delay = match b.kind {
        BackoffKind::Fixed => base,
        BackoffKind::Exponential => {
            let factor = 1u64
                .checked_shl(n.saturating_sub(1).min(40))
                .unwrap_or(u64::MAX);
            base.saturating_mul(factor).min(cap)
        }
    };
    if b.jitter {
        // Between half and all of the delay ("equal jitter").
        let unit = unit_fraction(run, step, item, n);
        delay = delay / 2 + ((delay as f64 / 2.0) * unit) as u64;
    }
    delay.max(retry_after_ms.unwrap_or(0).min(MAX_RETRY_AFTER_MS))
}

fn unit_fraction(run: &str, step: &str, item: Option<u32>, n: u32) -> f64 {
    let mut h = Sha256::new();
    h.update(run.as_bytes());
    h.update([0]);
    h.update(step.as_bytes());
    h.update(item.unwrap_or(u32::MAX).to_le_bytes());
    h.update(n.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}
