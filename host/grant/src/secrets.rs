//! `[secrets.NAME]`: which secrets a component may use, and how.
//!
//! By default a component never sees a secret's value: it writes
//! `{{secret:NAME}}` into a request and the host substitutes the value on the
//! way out, only for requests to the secret's `hosts`. `reveal` and `hmac`
//! loosen that, one capability each.

use serde::Deserialize;
use url::Url;

use crate::http::{HostRule, compile_rules};
use crate::{Ctx, GrantError, StrList, key_path};

/// What a component may do with one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretGrant {
    /// Destinations the host may send this secret to (may be empty).
    pub hosts: Vec<HostRule>,
    /// May the component read the plaintext?
    pub reveal: bool,
    /// May the component compute HMAC-SHA256 with it?
    pub hmac: bool,
}

impl SecretGrant {
    /// May the host substitute this secret into a request to `url`? URLs with
    /// user info never qualify (see [`HostRule::allows`]).
    pub fn may_send_to(&self, url: &Url) -> bool {
        self.hosts.iter().any(|rule| rule.allows(url))
    }
}

/// `[secrets.NAME]` as written. `hosts` is required so that an operator
/// states where the secret goes, even if the answer is "nowhere" (`[]`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "secret",
    description = "One secret: where the host may send it, and whether the component may read it or sign with it."
)]
pub(crate) struct RawSecret {
    /// Where the host may send this secret (as `{{secret:NAME}}` in a header, query value or body). Required; may be empty.
    #[schemars(with = "Vec<String>")]
    hosts: StrList,
    /// May the component read the plaintext (secrets.reveal)?
    #[schemars(extend("default" = false))]
    reveal: Option<bool>,
    /// May the component compute HMAC-SHA256 with it (secrets.hmac-sha256)?
    #[schemars(extend("default" = false))]
    hmac: Option<bool>,
}

impl RawSecret {
    /// `name` has already been validated by the caller.
    pub(crate) fn compile(self, ctx: &Ctx<'_>, name: &str) -> Result<SecretGrant, GrantError> {
        let key = key_path(&["secrets", name, "hosts"]);
        let hosts = compile_rules(ctx, self.hosts, &key, |_, _| Ok(()))?;
        Ok(SecretGrant {
            hosts,
            reveal: self.reveal.unwrap_or(false),
            hmac: self.hmac.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;
    use std::collections::BTreeMap;

    fn secrets(src: &str) -> Result<BTreeMap<String, SecretGrant>, GrantError> {
        Grant::from_toml_str(src, "grant.toml").map(|g| g.secrets)
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn defaults_are_closed() {
        let s = secrets("[secrets.K]\nhosts = []\n").unwrap();
        assert_eq!(
            s["K"],
            SecretGrant {
                hosts: vec![],
                reveal: false,
                hmac: false
            }
        );
        assert!(!s["K"].may_send_to(&url("https://api.example.com/")));
    }

    #[test]
    fn flags() {
        for (body, reveal, hmac) in [
            ("reveal = true", true, false),
            ("hmac = true", false, true),
            ("reveal = true\nhmac = true", true, true),
            ("reveal = false\nhmac = false", false, false),
        ] {
            let s = secrets(&format!("[secrets.K]\nhosts = []\n{body}\n")).unwrap();
            assert_eq!((s["K"].reveal, s["K"].hmac), (reveal, hmac), "{body}");
        }
    }

    #[test]
    fn may_send_to() {
        let s = secrets(
            "[secrets.VT_API_KEY]\nhosts = [\"https://www.virustotal.com\", \"https://*.vt.example:8443\"]\n",
        )
        .unwrap();
        let vt = &s["VT_API_KEY"];
        for (u, want) in [
            ("https://www.virustotal.com/api/v3/files/x", true),
            ("https://WWW.VirusTotal.com/", true),
            ("https://a.vt.example:8443/", true),
            ("https://a.vt.example/", false),
            ("http://www.virustotal.com/", false),
            ("https://virustotal.com/", false),
            ("https://www.virustotal.com.evil.com/", false),
            ("https://www.virustotal.com@evil.com/", false),
            ("https://x:y@www.virustotal.com/", false),
            ("https://www.virustotal.com:444/", false),
            ("ftp://www.virustotal.com/", false),
        ] {
            assert_eq!(vt.may_send_to(&url(u)), want, "{u}");
        }
    }

    #[test]
    fn private_hosts_allowed_in_secret_hosts() {
        // Secret hosts only narrow where a secret goes; reachability is http's job.
        let s = secrets("[secrets.JIRA]\nhosts = [\"http://10.0.0.5:8080\"]\n").unwrap();
        assert!(s["JIRA"].may_send_to(&url("http://10.0.0.5:8080/rest")));
    }

    #[test]
    fn errors() {
        let cases = [
            ("[secrets.K]\n", "secrets.K", "missing field `hosts`"),
            (
                "[secrets.K]\nhosts = \"https://a.com\"\n",
                "secrets.K.hosts",
                "array",
            ),
            (
                "[secrets.K]\nhosts = [\"https://a.com/x\"]\n",
                "secrets.K.hosts[0]",
                "no path",
            ),
            (
                "[secrets.K]\nhosts = []\nvalue = \"hunter2\"\n",
                "secrets.K.value",
                "unknown field",
            ),
            (
                "[secrets.\"K-1\"]\nhosts = []\n",
                "secrets.K-1",
                "valid secret name",
            ),
            (
                "[secrets.9K]\nhosts = []\n",
                "secrets.9K",
                "valid secret name",
            ),
        ];
        for (src, key, fragment) in cases {
            let e = secrets(src).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{src}: {e}");
            assert!(e.message.contains(fragment), "{src}: {e}");
            assert!(e.line.is_some(), "{src}: {e}");
        }
    }

    #[test]
    fn inline_and_dotted_forms() {
        let s = secrets("secrets = { A = { hosts = [], reveal = true } }\n").unwrap();
        assert!(s["A"].reveal);
        let s = secrets("secrets.B.hosts = [\"https://b.example.com\"]\n").unwrap();
        assert_eq!(s["B"].hosts.len(), 1);
    }
}
