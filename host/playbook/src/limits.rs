//! Limits on hostile or absurd input. Each is far above what a real playbook needs.

use std::time::Duration;

/// Largest playbook file, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Most steps in one playbook.
pub const MAX_STEPS: usize = 500;
/// Deepest nesting of YAML collections.
pub const MAX_DEPTH: usize = 64;
/// Most YAML values (scalars and collections) in one file.
pub const MAX_NODES: usize = 100_000;
/// Most declared inputs or outputs.
pub const MAX_INPUTS: usize = 200;
/// Most triggers.
pub const MAX_TRIGGERS: usize = 50;
/// Most chained escalations of one approval.
pub const MAX_ESCALATIONS: usize = 5;
/// Most attempts of a step in one retry class.
pub const MAX_ATTEMPTS: u32 = 100;
/// Largest `concurrency`.
pub const MAX_CONCURRENCY: u32 = 10_000;
/// Longest duration of any kind (timeouts, deadlines).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Most diagnostics reported for one file; the rest are counted.
pub const MAX_DIAGNOSTICS: usize = 200;
