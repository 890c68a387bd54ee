//! `[kv]`: the component's private key-value store. The section's presence
//! grants kv; its absence denies it.

use serde::Deserialize;
use toml::Spanned;

use crate::{Ctx, GrantError, Int};

/// Quota for a component's key-value store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvGrant {
    /// Maximum number of keys stored at once.
    pub max_keys: u64,
    /// Maximum total size of all keys and values, in bytes.
    pub max_total_bytes: u64,
    /// Maximum size of one value, in bytes (never more than `max_total_bytes`).
    pub max_value_bytes: u64,
}

const DEFAULT_MAX_KEYS: u64 = 1000;
const DEFAULT_MAX_TOTAL_KIB: u64 = 1024;
const DEFAULT_MAX_VALUE_KIB: u64 = 64;

impl Default for KvGrant {
    /// The quota an empty `[kv]` section grants.
    fn default() -> Self {
        KvGrant {
            max_keys: DEFAULT_MAX_KEYS,
            max_total_bytes: DEFAULT_MAX_TOTAL_KIB << 10,
            max_value_bytes: DEFAULT_MAX_VALUE_KIB << 10,
        }
    }
}

/// `[kv]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "kv",
    description = "Key-value storage for the package; present (even empty) grants it."
)]
pub(crate) struct RawKv {
    /// Most keys.
    #[schemars(with = "Option<u64>", range(min = 1, max = 10000000), extend("default" = 1000))]
    max_keys: Option<Spanned<Int>>,
    /// Most bytes of keys and values together, in KiB.
    #[schemars(with = "Option<u64>", range(min = 1, max = 1048576), extend("default" = 1024))]
    max_total_kib: Option<Spanned<Int>>,
    /// Largest single value, in KiB (at most max_total_kib).
    #[schemars(with = "Option<u64>", range(min = 1, max = 65536), extend("default" = 64))]
    max_value_kib: Option<Spanned<Int>>,
}

impl RawKv {
    pub(crate) fn compile(self, ctx: &Ctx<'_>) -> Result<KvGrant, GrantError> {
        let max_keys = ctx.int(
            self.max_keys,
            "kv.max_keys",
            DEFAULT_MAX_KEYS,
            1..=10_000_000,
            "keys",
        )?;
        let max_total_kib = ctx.int(
            self.max_total_kib,
            "kv.max_total_kib",
            DEFAULT_MAX_TOTAL_KIB,
            1..=1_048_576,
            "KiB",
        )?;
        let value_span = self.max_value_kib.as_ref().map(|v| v.span());
        let max_value_kib = ctx.int(
            self.max_value_kib,
            "kv.max_value_kib",
            DEFAULT_MAX_VALUE_KIB,
            1..=65_536,
            "KiB",
        )?;
        // An explicit per-value cap above the total can never be reached and
        // is probably a typo; a defaulted one is just clamped to the total.
        let max_value_kib = match value_span {
            Some(span) if max_value_kib > max_total_kib => {
                return Err(ctx.error(
                    Some(span),
                    "kv.max_value_kib",
                    format!(
                        "{max_value_kib} is larger than kv.max_total_kib ({max_total_kib}); \
                         a value can never be bigger than the whole store"
                    ),
                ));
            }
            _ => max_value_kib.min(max_total_kib),
        };
        Ok(KvGrant {
            max_keys,
            max_total_bytes: max_total_kib << 10,
            max_value_bytes: max_value_kib << 10,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;

    fn kv(src: &str) -> Result<Option<KvGrant>, GrantError> {
        Grant::from_toml_str(src, "<inline>").map(|g| g.kv)
    }

    #[test]
    fn presence_grants() {
        assert_eq!(kv("").unwrap(), None);
        assert_eq!(kv("[limits]").unwrap(), None);
        assert_eq!(kv("[kv]").unwrap(), Some(KvGrant::default()));
        assert_eq!(kv("kv = {}").unwrap(), Some(KvGrant::default()));
    }

    #[test]
    fn values() {
        let table = [
            ("max_keys = 1", (1, 1024 << 10, 64 << 10)),
            ("max_total_kib = 2048", (1000, 2048 << 10, 64 << 10)),
            ("max_value_kib = 1", (1000, 1024 << 10, 1 << 10)),
            // Defaulted value cap is clamped to a smaller total.
            ("max_total_kib = 16", (1000, 16 << 10, 16 << 10)),
            (
                "max_total_kib = 16\nmax_value_kib = 16",
                (1000, 16 << 10, 16 << 10),
            ),
        ];
        for (body, (keys, total, value)) in table {
            let got = kv(&format!("[kv]\n{body}\n")).unwrap().unwrap();
            assert_eq!(
                got,
                KvGrant {
                    max_keys: keys,
                    max_total_bytes: total,
                    max_value_bytes: value
                },
                "{body}"
            );
        }
    }

    #[test]
    fn value_above_total_is_an_error() {
        let e = kv("[kv]\nmax_total_kib = 16\nmax_value_kib = 32\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("kv.max_value_kib"));
        assert_eq!((e.line, e.column), (Some(3), Some(17)));
        assert!(e.message.contains("larger than kv.max_total_kib"), "{e}");
    }

    #[test]
    fn bad_values() {
        for (body, key) in [
            ("max_keys = 0", "kv.max_keys"),
            ("max_keys = -1", "kv.max_keys"),
            ("max_keys = \"1000\"", "kv.max_keys"),
            ("max_total_kib = 0", "kv.max_total_kib"),
            ("max_value_kib = 0", "kv.max_value_kib"),
            ("max_value_kib = 1.5", "kv.max_value_kib"),
            ("enabled = true", "kv.enabled"),
        ] {
            let e = kv(&format!("[kv]\n{body}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{body}: {e}");
            assert_eq!(e.line, Some(2), "{body}: {e}");
        }
    }
}
