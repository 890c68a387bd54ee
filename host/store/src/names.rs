//! Names that become parts of store keys and file names: checked before
//! they get there, so no name can reach another tenant's keys or a path
//! outside the data directory.

/// A name that is not allowed where it was used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` is not a valid {what} name: {rule}")]
pub struct NameError {
    /// What kind of name (`workspace`, `secret`).
    pub what: &'static str,
    /// The name as given, shortened and with control characters escaped.
    pub shown: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

fn shown(name: &str) -> String {
    let s: String = name.chars().take(40).flat_map(char::escape_debug).collect();
    if name.chars().count() > 40 {
        format!("{s}…")
    } else {
        s
    }
}

/// Workspace names: `[a-z0-9][a-z0-9-]{0,62}` (they appear in URLs and keys).
pub fn check_workspace(name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what: "workspace",
            shown: shown(name),
            rule: "use 1 to 63 lowercase letters, digits and `-`, starting with a letter or digit",
        })
    }
}

/// Secret names, as grants name them: letters, digits and `_`, not starting
/// with a digit, at most 128 characters.
pub fn check_secret(name: &str) -> Result<(), NameError> {
    if allama_grant::template::is_valid_secret_name(name) {
        Ok(())
    } else {
        Err(NameError {
            what: "secret",
            shown: shown(name),
            rule: "use letters, digits and `_`, not starting with a digit, at most 128 characters (e.g. `VT_API_KEY`)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names() {
        for good in ["soc", "a", "team-7", "0day", &"a".repeat(63)] {
            assert!(check_workspace(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            "A",
            "a_b",
            "a/b",
            "..",
            "a b",
            "é",
            "a\u{0}",
            &"a".repeat(64),
        ] {
            let e = check_workspace(bad).unwrap_err();
            assert!(e.to_string().contains("not a valid workspace name"), "{e}");
        }
        // Control characters are shown escaped, long names shortened.
        assert!(check_workspace("a\nb").unwrap_err().shown.contains("\\n"));
        assert!(
            check_workspace(&"Z".repeat(500))
                .unwrap_err()
                .shown
                .ends_with('…')
        );
    }

    #[test]
    fn secret_names() {
        assert!(check_secret("VT_API_KEY").is_ok());
        for bad in ["", "9K", "K-1", "../etc", "K\u{0}", &"K".repeat(129)] {
            assert!(check_secret(bad).is_err(), "{bad:?}");
        }
    }
}
