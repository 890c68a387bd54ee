//! `[limits]`: resource caps for each step a component runs.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::{Ctx, GrantError, Int};

/// Resource caps applied to each step of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time per step.
    pub timeout: Duration,
    /// Maximum size of the step's output JSON, in bytes.
    pub output_bytes: u64,
    /// Maximum volume of log + stdout + stderr per step, in bytes.
    pub log_bytes: u64,
}

const DEFAULT_MEMORY_MIB: u64 = 64;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_OUTPUT_KIB: u64 = 1024;
const DEFAULT_LOG_KIB: u64 = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_MIB << 20,
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            output_bytes: DEFAULT_OUTPUT_KIB << 10,
            log_bytes: DEFAULT_LOG_KIB << 10,
        }
    }
}

/// `[limits]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "limits", description = "Resource limits for each step.")]
pub(crate) struct RawLimits {
    /// Linear memory per step, in MiB; past it the step fails with a memory-limit error.
    #[schemars(with = "Option<u64>", range(min = 1, max = 4096), extend("default" = 64))]
    memory_mib: Option<Spanned<Int>>,
    /// Wall time per step, in milliseconds, including time waiting on HTTP.
    #[schemars(with = "Option<u64>", range(min = 1, max = 900000), extend("default" = 10000))]
    timeout_ms: Option<Spanned<Int>>,
    /// Largest JSON output, in KiB.
    #[schemars(with = "Option<u64>", range(min = 1, max = 65536), extend("default" = 1024))]
    output_kib: Option<Spanned<Int>>,
    /// Log lines, stdout and stderr together, in KiB; past it output is dropped and counted.
    #[schemars(with = "Option<u64>", range(min = 1, max = 65536), extend("default" = 256))]
    log_kib: Option<Spanned<Int>>,
}

impl RawLimits {
    pub(crate) fn compile(self, ctx: &Ctx<'_>) -> Result<Limits, GrantError> {
        let memory_mib = ctx.int(
            self.memory_mib,
            "limits.memory_mib",
            DEFAULT_MEMORY_MIB,
            1..=4096,
            "MiB",
        )?;
        let timeout_ms = ctx.int(
            self.timeout_ms,
            "limits.timeout_ms",
            DEFAULT_TIMEOUT_MS,
            1..=900_000,
            "milliseconds",
        )?;
        let output_kib = ctx.int(
            self.output_kib,
            "limits.output_kib",
            DEFAULT_OUTPUT_KIB,
            1..=65_536,
            "KiB",
        )?;
        let log_kib = ctx.int(
            self.log_kib,
            "limits.log_kib",
            DEFAULT_LOG_KIB,
            1..=65_536,
            "KiB",
        )?;
        Ok(Limits {
            memory_bytes: memory_mib << 20,
            timeout: Duration::from_millis(timeout_ms),
            output_bytes: output_kib << 10,
            log_bytes: log_kib << 10,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;

    fn limits(src: &str) -> Result<Limits, crate::GrantError> {
        Grant::from_toml_str(src, "<inline>").map(|g| g.limits)
    }

    #[test]
    fn default_values() {
        let l = Limits::default();
        assert_eq!(l.memory_bytes, 67_108_864);
        assert_eq!(l.timeout, Duration::from_secs(10));
        assert_eq!(l.output_bytes, 1_048_576);
        assert_eq!(l.log_bytes, 262_144);
        assert_eq!(limits("[limits]").unwrap(), l);
    }

    #[test]
    fn units_convert() {
        let table = [
            (
                "memory_mib = 1",
                Limits {
                    memory_bytes: 1 << 20,
                    ..Limits::default()
                },
            ),
            (
                "memory_mib = 4096",
                Limits {
                    memory_bytes: 4 << 30,
                    ..Limits::default()
                },
            ),
            (
                "timeout_ms = 1",
                Limits {
                    timeout: Duration::from_millis(1),
                    ..Limits::default()
                },
            ),
            (
                "timeout_ms = 900000",
                Limits {
                    timeout: Duration::from_secs(900),
                    ..Limits::default()
                },
            ),
            (
                "output_kib = 65536",
                Limits {
                    output_bytes: 64 << 20,
                    ..Limits::default()
                },
            ),
            (
                "log_kib = 1",
                Limits {
                    log_bytes: 1024,
                    ..Limits::default()
                },
            ),
        ];
        for (line, want) in table {
            assert_eq!(
                limits(&format!("[limits]\n{line}\n")).unwrap(),
                want,
                "{line}"
            );
        }
    }

    #[test]
    fn inline_table_form() {
        let l = limits("limits = { memory_mib = 32, log_kib = 8 }").unwrap();
        assert_eq!(l.memory_bytes, 32 << 20);
        assert_eq!(l.log_bytes, 8 << 10);
        let e = limits("limits = { memory_mib = 0 }").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("limits.memory_mib"));
        assert_eq!((e.line, e.column), (Some(1), Some(25)));
    }

    #[test]
    fn bad_values() {
        for (src, key) in [
            ("[limits]\nmemory_mib = 0", "limits.memory_mib"),
            ("[limits]\nmemory_mib = 99999999999", "limits.memory_mib"),
            ("[limits]\ntimeout_ms = -1", "limits.timeout_ms"),
            ("[limits]\noutput_kib = 0", "limits.output_kib"),
            ("[limits]\nlog_kib = 100000", "limits.log_kib"),
            ("[limits]\nlog_kib = 'lots'", "limits.log_kib"),
            ("[limits]\nlog_kib = nan", "limits.log_kib"),
            ("[limits]\nlog_kib = 1979-05-27", "limits.log_kib"),
        ] {
            let e = limits(src).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{src}: {e}");
            assert_eq!(e.line, Some(2), "{src}: {e}");
        }
    }
}
