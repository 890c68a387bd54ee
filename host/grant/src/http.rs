//! `[http]`: which destinations a component may send requests to.
//!
//! # Host patterns
//!
//! An allow-list entry is `scheme://host[:port]` with an optional trailing
//! `/` and nothing else: no path, query, fragment, user info or
//! percent-encoding.
//!
//! - `scheme` is `http` or `https`.
//! - `host` is a DNS name, an IPv4 address or a bracketed IPv6 address. It is
//!   normalised exactly the way request URLs are (by the `url` crate): lower
//!   case, IDNA/punycode (`bücher.example` is `xn--bcher-kva.example`), and
//!   odd IPv4 spellings (`0x7f.1` is `127.0.0.1`). So a rule and a request
//!   that name the same host always compare equal.
//! - A wildcard is allowed only as a whole leading label: `*.example.com`
//!   matches `a.example.com` and `a.b.example.com` but not `example.com`.
//!   At least two labels must follow `*.` (`*.com` is refused as too broad).
//!   The public suffix list is not consulted, so `*.co.uk` is accepted: the
//!   operator is trusted to mean it.
//! - `port` defaults to the scheme's (80 or 443); a rule matches one port only.
//! - Trailing dots are refused in patterns, and request hosts with a trailing
//!   dot (`https://api.example.com./`) never match: they are rare in practice
//!   and refusing them is simpler than reasoning about two spellings.
//!
//! # Private addresses
//!
//! `http.allow` reaches public addresses only. The runtime checks every
//! address a name resolves to with [`Destination::check_address`], so DNS
//! pointing a public name at `10.0.0.1` or `169.254.169.254` is refused.
//! `http.allow_private` names exact hosts (never wildcards) that may resolve
//! to, or be, non-public addresses.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::{Host, Url};

use crate::address::{AddressClass, classify};
use crate::{Ctx, GrantError, Int, StrList, display_snippet};

/// A URL scheme a component may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain `http`.
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// The scheme as written in URLs: `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// Port used when a URL or pattern names none: 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// The scheme of a parsed URL, if it is one a component may use.
    pub fn of_url(url: &Url) -> Option<Scheme> {
        match url.scheme() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host part of a [`HostRule`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One DNS name, lower case and punycode-normalised.
    Exact(String),
    /// The suffix after `*.`: matches names with at least one more label.
    Wildcard(String),
    /// An IP address literal.
    Ip(IpAddr),
}

/// One allow-list entry: scheme, host pattern and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostRule {
    /// Scheme the request must use.
    pub scheme: Scheme,
    /// Host the request must name.
    pub host: HostPattern,
    /// Port the request must use (explicit or the scheme's default).
    pub port: u16,
}

/// A host pattern that does not follow the accepted grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{pattern}` is not a valid host pattern: {message}")]
pub struct PatternError {
    /// The pattern as written (control characters escaped, long ones truncated).
    pub pattern: String,
    /// What is wrong, with the accepted form and examples.
    pub message: String,
}

impl PatternError {
    fn new(pattern: &str, message: impl Into<String>) -> Self {
        PatternError {
            pattern: display_snippet(pattern),
            message: message.into(),
        }
    }
}

const ACCEPTED: &str = "expected `scheme://host[:port]`, e.g. `https://api.example.com` or `https://*.example.com:8443`";

/// Longer patterns are certainly mistakes (DNS names stop at 253 bytes).
const MAX_PATTERN_LEN: usize = 1024;

impl FromStr for HostRule {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |message: String| PatternError::new(s, message);
        if s.is_empty() {
            return Err(fail(format!("the pattern is empty; {ACCEPTED}")));
        }
        if s.len() > MAX_PATTERN_LEN {
            return Err(fail(format!(
                "the pattern is longer than {MAX_PATTERN_LEN} bytes; {ACCEPTED}"
            )));
        }
        // The url crate silently strips these; an operator would not expect that.
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail(format!(
                "it contains whitespace or a control character; {ACCEPTED}"
            )));
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(fail(ACCEPTED.to_owned()));
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "" => return Err(fail(ACCEPTED.to_owned())),
            other => {
                return Err(fail(format!(
                    "scheme `{}` is not allowed: use `http` or `https`; {ACCEPTED}",
                    display_snippet(other)
                )));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(fail(format!(
                "user info (`user@`) is not allowed; {ACCEPTED}"
            )));
        }
        if rest.contains(['/', '?', '#', '\\']) {
            return Err(fail(format!(
                "a host pattern has no path, query or fragment (only an optional trailing `/`); {ACCEPTED}"
            )));
        }
        if rest.contains('%') {
            return Err(fail(format!(
                "percent-encoding is not allowed in a host pattern; {ACCEPTED}"
            )));
        }
        let (wildcard, hostport) = match rest.strip_prefix("*.") {
            Some(suffix) => (true, suffix),
            None => (false, rest),
        };
        if hostport.is_empty() || hostport.starts_with(':') {
            return Err(fail(ACCEPTED.to_owned()));
        }
        if hostport.contains('*') {
            return Err(fail(
                "`*` is only allowed as the whole first label, as in `https://*.example.com`"
                    .to_owned(),
            ));
        }
        if hostport.ends_with(':') {
            return Err(fail(format!("the port after `:` is empty; {ACCEPTED}")));
        }
        let url = Url::parse(&format!("{}://{hostport}/", scheme.as_str()))
            .map_err(|e| fail(format!("{e}; {ACCEPTED}")))?;
        // Belt and braces: the checks above should make these impossible.
        if url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(fail(ACCEPTED.to_owned()));
        }
        let port = url.port_or_known_default().unwrap_or(scheme.default_port());
        if port == 0 {
            return Err(fail("port 0 is not a destination port".to_owned()));
        }
        let host = match url.host() {
            Some(Host::Domain(name)) => {
                check_domain(name).map_err(&fail)?;
                if wildcard {
                    if !name.contains('.') {
                        return Err(fail(format!(
                            "`*.{name}` is too broad: a wildcard needs at least two labels \
                             after `*.`, as in `https://*.example.com`"
                        )));
                    }
                    HostPattern::Wildcard(name.to_owned())
                } else {
                    HostPattern::Exact(name.to_owned())
                }
            }
            Some(Host::Ipv4(a)) if !wildcard => HostPattern::Ip(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) if !wildcard => HostPattern::Ip(IpAddr::V6(a)),
            Some(_) => {
                return Err(fail(
                    "a wildcard cannot be combined with an IP address".to_owned(),
                ));
            }
            None => return Err(fail(ACCEPTED.to_owned())),
        };
        Ok(HostRule { scheme, host, port })
    }
}

/// Structural checks on a normalised DNS name from a pattern.
fn check_domain(name: &str) -> Result<(), String> {
    if let Some(stripped) = name.strip_suffix('.') {
        return Err(format!(
            "remove the trailing dot: write `{}`",
            display_snippet(stripped)
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "a host name may contain only letters, digits, `-`, `_` and `.`; {ACCEPTED}"
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!("the host has an empty label; {ACCEPTED}"));
    }
    if name.len() > 253 {
        return Err("the host name is longer than 253 characters".to_owned());
    }
    if name.split('.').any(|label| label.len() > 63) {
        return Err("a label of the host name is longer than 63 characters".to_owned());
    }
    Ok(())
}

impl fmt::Display for HostRule {
    /// Canonical form, e.g. `https://*.example.com:8443`; default port omitted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme)?;
        match &self.host {
            HostPattern::Exact(name) => f.write_str(name)?,
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}")?,
            HostPattern::Ip(IpAddr::V4(a)) => write!(f, "{a}")?,
            HostPattern::Ip(IpAddr::V6(a)) => write!(f, "[{a}]")?,
        }
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl HostRule {
    /// Does this rule match the URL's scheme, host and port? URLs carrying
    /// user info never match, nor do hosts with a trailing dot or empty label.
    /// An IPv4-mapped IPv6 literal does not match an IPv4 rule (refusing is
    /// the safe direction).
    pub fn allows(&self, url: &Url) -> bool {
        if Scheme::of_url(url) != Some(self.scheme) {
            return false;
        }
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        if url.port_or_known_default() != Some(self.port) {
            return false;
        }
        match (&self.host, url.host()) {
            (HostPattern::Exact(name), Some(Host::Domain(host))) => host.eq_ignore_ascii_case(name),
            (HostPattern::Wildcard(suffix), Some(Host::Domain(host))) => {
                wildcard_matches(suffix, host)
            }
            (HostPattern::Ip(ip), Some(Host::Ipv4(a))) => *ip == IpAddr::V4(a),
            (HostPattern::Ip(ip), Some(Host::Ipv6(a))) => *ip == IpAddr::V6(a),
            _ => false,
        }
    }

    /// True unless the host is a wildcard (IP literals are exact).
    pub fn is_exact(&self) -> bool {
        !matches!(self.host, HostPattern::Wildcard(_))
    }
}

/// `host` is `<one or more non-empty labels>.<suffix>`.
fn wildcard_matches(suffix: &str, host: &str) -> bool {
    let Some(split) = host.len().checked_sub(suffix.len() + 1) else {
        return false;
    };
    let (Some(prefix), Some(rest)) = (host.get(..split), host.get(split..)) else {
        return false;
    };
    rest.as_bytes()[0] == b'.'
        && rest[1..].eq_ignore_ascii_case(suffix)
        && !prefix.is_empty()
        && prefix.split('.').all(|label| !label.is_empty())
}

/// The compiled `[http]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    /// Destinations reachable at public addresses only.
    pub allow: Vec<HostRule>,
    /// Exact hosts that may be (or resolve to) non-public addresses.
    pub allow_private: Vec<HostRule>,
    /// Time limit per request.
    pub timeout: Duration,
    /// Cap on a decompressed response body, in bytes.
    pub max_response_bytes: u64,
    /// How many redirects to follow (each hop is checked like the first).
    pub max_redirects: u32,
    /// How long a call may wait on a vendor's `Retry-After` before failing fast.
    pub rate_limit_wait: Duration,
}

const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_MAX_RESPONSE_KIB: u64 = 10_240;
const DEFAULT_MAX_REDIRECTS: u64 = 5;
const DEFAULT_RATE_LIMIT_WAIT_MS: u64 = 2_000;

impl Default for HttpGrant {
    /// No destinations, default limits.
    fn default() -> Self {
        HttpGrant {
            allow: Vec::new(),
            allow_private: Vec::new(),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            max_response_bytes: DEFAULT_MAX_RESPONSE_KIB << 10,
            max_redirects: DEFAULT_MAX_REDIRECTS as u32,
            rate_limit_wait: Duration::from_millis(DEFAULT_RATE_LIMIT_WAIT_MS),
        }
    }
}

impl HttpGrant {
    /// Is this request URL an allowed destination? Refuses a scheme other than
    /// http/https, user info, a missing host, a destination no rule matches,
    /// and a non-public IP literal not named by `http.allow_private`.
    ///
    /// Note that `url::Url` drops an empty `@` (`https://@host/` parses as
    /// `https://host/`), so such a URL is checked, and sent, without it.
    pub fn check_url(&self, url: &Url) -> Result<Destination, Denial> {
        let Some(scheme) = Scheme::of_url(url) else {
            return Err(Denial::Scheme {
                scheme: url.scheme().to_owned(),
            });
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Denial::Userinfo);
        }
        let Some(host) = url.host() else {
            return Err(Denial::NoHost);
        };
        let port = url.port_or_known_default().unwrap_or(scheme.default_port());
        let (host_str, literal) = match host {
            Host::Domain(name) => (name.to_ascii_lowercase(), None),
            Host::Ipv4(a) => (a.to_string(), Some(IpAddr::V4(a))),
            Host::Ipv6(a) => (a.to_string(), Some(IpAddr::V6(a))),
        };
        let private_ok = self.allow_private.iter().any(|rule| rule.allows(url));
        if !private_ok {
            if let Some(addr) = literal {
                let class = classify(addr);
                if !class.is_public() {
                    return Err(Denial::PrivateAddress {
                        host: host_str,
                        addr,
                        class,
                    });
                }
            }
            // A name granted private access is vouched for on its own scheme
            // and port only: the resolver cannot tell ports apart, so any
            // other use of that name is refused rather than let through.
            if let Host::Domain(name) = host {
                let vouched = self.allow_private.iter().any(
                    |r| matches!(&r.host, HostPattern::Exact(n) if n.eq_ignore_ascii_case(name)),
                );
                if vouched {
                    return Err(Denial::NotAllowed {
                        host: host_str,
                        port,
                        scheme: scheme.as_str().to_owned(),
                    });
                }
            }
            if !self.allow.iter().any(|rule| rule.allows(url)) {
                return Err(Denial::NotAllowed {
                    host: host_str,
                    port,
                    scheme: scheme.as_str().to_owned(),
                });
            }
        }
        Ok(Destination {
            scheme,
            host: host_str,
            port,
            private_ok,
        })
    }
}

/// An allowed destination, as returned by [`HttpGrant::check_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Scheme of the request.
    pub scheme: Scheme,
    /// Host as in the URL: lower case, IPv6 without brackets.
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// True when an `allow_private` rule names this exact host: any resolved
    /// address is acceptable.
    pub private_ok: bool,
}

impl Destination {
    /// Called by the runtime for every address the host resolves to (and for
    /// IP literals): Ok if `private_ok` or the address is public.
    pub fn check_address(&self, addr: IpAddr) -> Result<(), Denial> {
        let class = classify(addr);
        if self.private_ok || class.is_public() {
            Ok(())
        } else {
            Err(Denial::PrivateAddress {
                host: self.host.clone(),
                addr,
                class,
            })
        }
    }

    /// `scheme://host:port` with the port always present, e.g.
    /// `https://api.example.com:443`; IPv6 hosts in brackets.
    pub fn origin(&self) -> String {
        format!(
            "{}://{}:{}",
            self.scheme,
            bracket_host(&self.host),
            self.port
        )
    }
}

fn bracket_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// A scheme other than http or https (`ftp:`, `file:`, `data:`, ...).
    Scheme {
        /// The refused scheme.
        scheme: String,
    },
    /// The URL carries a user name or password.
    Userinfo,
    /// The URL has no host.
    NoHost,
    /// No `http.allow` or `http.allow_private` rule matches.
    NotAllowed {
        /// Host as in the URL.
        host: String,
        /// Port, explicit or default.
        port: u16,
        /// Scheme of the URL.
        scheme: String,
    },
    /// The host is, or resolved to, a non-public address.
    PrivateAddress {
        /// Host as in the URL.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// Why the address is not public.
        class: AddressClass,
    },
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::Scheme { scheme } => write!(
                f,
                "scheme `{}` is not allowed: only http and https URLs may be requested",
                display_snippet(scheme)
            ),
            Denial::Userinfo => f.write_str(
                "URLs with user info (`user:password@host`) are refused; send credentials \
                 in a header instead, e.g. `Authorization: Bearer {{secret:NAME}}`",
            ),
            Denial::NoHost => f.write_str("the URL has no host"),
            Denial::NotAllowed { host, port, scheme } => write!(
                f,
                "{scheme}://{}:{port} is not in http.allow",
                bracket_host(host)
            ),
            Denial::PrivateAddress { host, addr, class } => write!(
                f,
                "host {host} resolved to {addr}, {} address; grant it by name under \
                 http.allow_private to allow it",
                class.with_article()
            ),
        }
    }
}

impl std::error::Error for Denial {}

/// `[http]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "http",
    description = "Outbound HTTP destinations and per-request limits."
)]
pub(crate) struct RawHttp {
    /// Destinations as `scheme://host[:port]`: exact hosts or `*.example.com` subdomain wildcards; public addresses only.
    #[serde(default)]
    #[schemars(with = "Vec<String>", extend("examples" = [["https://api.example.com", "https://*.example.com:8443"]]))]
    allow: StrList,
    /// Exact hosts that may be (or resolve to) loopback, private, link-local or other special addresses.
    #[serde(default)]
    #[schemars(with = "Vec<String>", extend("examples" = [["http://127.0.0.1:8080", "https://jira.corp.internal"]]))]
    allow_private: StrList,
    /// Per request, in milliseconds; also bounded by the step's deadline.
    #[schemars(with = "Option<u64>", range(min = 1, max = 900000), extend("default" = 10000))]
    timeout_ms: Option<Spanned<Int>>,
    /// Response body cap after decompression, in KiB.
    #[schemars(with = "Option<u64>", range(min = 1, max = 1048576), extend("default" = 10240))]
    max_response_kib: Option<Spanned<Int>>,
    /// Redirects followed, each re-checked against the grant.
    #[schemars(with = "Option<u64>", range(min = 0, max = 20), extend("default" = 5))]
    max_redirects: Option<Spanned<Int>>,
    /// How long a call may wait on a vendor's Retry-After before failing fast with rate-limited, in milliseconds.
    #[schemars(with = "Option<u64>", range(min = 0, max = 60000), extend("default" = 2000))]
    rate_limit_wait_ms: Option<Spanned<Int>>,
}

/// Parse each pattern of a list, locating errors at the offending entry.
pub(crate) fn compile_rules(
    ctx: &Ctx<'_>,
    list: StrList,
    key: &str,
    mut check: impl FnMut(&HostRule, &str) -> Result<(), String>,
) -> Result<Vec<HostRule>, GrantError> {
    let mut rules = Vec::with_capacity(list.0.len());
    for (i, entry) in list.0.into_iter().enumerate() {
        let span = entry.span();
        let text = entry.into_inner();
        let entry_key = format!("{key}[{i}]");
        let rule = text
            .parse::<HostRule>()
            .map_err(|e| ctx.error(Some(span.clone()), &entry_key, e.to_string()))?;
        check(&rule, &text).map_err(|message| ctx.error(Some(span), &entry_key, message))?;
        rules.push(rule);
    }
    Ok(rules)
}

/// `localhost` and `*.localhost` always resolve to loopback (RFC 6761).
fn is_localhost(host: &HostPattern) -> bool {
    match host {
        HostPattern::Exact(name) | HostPattern::Wildcard(name) => {
            name == "localhost" || name.ends_with(".localhost")
        }
        HostPattern::Ip(_) => false,
    }
}

impl RawHttp {
    pub(crate) fn compile(self, ctx: &Ctx<'_>) -> Result<HttpGrant, GrantError> {
        let allow = compile_rules(ctx, self.allow, "http.allow", |rule, text| {
            let text = display_snippet(text);
            if let HostPattern::Ip(ip) = rule.host {
                let class = classify(ip);
                if !class.is_public() {
                    return Err(format!(
                        "`{text}` is {} address, which http.allow never reaches; \
                         list it under http.allow_private instead",
                        class.with_article()
                    ));
                }
            }
            if is_localhost(&rule.host) {
                return Err(format!(
                    "`{text}` always resolves to a loopback address, which http.allow never \
                     reaches; list it under http.allow_private instead"
                ));
            }
            Ok(())
        })?;
        let allow_private = compile_rules(
            ctx,
            self.allow_private,
            "http.allow_private",
            |rule, text| {
                if rule.is_exact() {
                    Ok(())
                } else {
                    Err(format!(
                        "`{}` is a wildcard; http.allow_private entries must name one exact \
                         host, because any address it resolves to is accepted",
                        display_snippet(text)
                    ))
                }
            },
        )?;
        let timeout_ms = ctx.int(
            self.timeout_ms,
            "http.timeout_ms",
            DEFAULT_TIMEOUT_MS,
            1..=900_000,
            "milliseconds",
        )?;
        let max_response_kib = ctx.int(
            self.max_response_kib,
            "http.max_response_kib",
            DEFAULT_MAX_RESPONSE_KIB,
            1..=1_048_576,
            "KiB",
        )?;
        let max_redirects = ctx.int(
            self.max_redirects,
            "http.max_redirects",
            DEFAULT_MAX_REDIRECTS,
            0..=20,
            "redirects",
        )?;
        let rate_limit_wait_ms = ctx.int(
            self.rate_limit_wait_ms,
            "http.rate_limit_wait_ms",
            DEFAULT_RATE_LIMIT_WAIT_MS,
            0..=60_000,
            "milliseconds",
        )?;
        Ok(HttpGrant {
            allow,
            allow_private,
            timeout: Duration::from_millis(timeout_ms),
            max_response_bytes: max_response_kib << 10,
            // Range-checked to 0..=20 above, so this cannot truncate.
            max_redirects: max_redirects as u32,
            rate_limit_wait: Duration::from_millis(rate_limit_wait_ms),
        })
    }
}

#[cfg(test)]
mod private_name_tests {
    use super::*;

    #[test]
    fn a_private_name_is_reachable_only_on_its_own_scheme_and_port() {
        let g = crate::Grant::from_toml_str(
            "[http]\nallow = [\"https://*.corp.example\"]\nallow_private = [\"http://jira.corp.example:8080\"]",
            "g.toml",
        )
        .unwrap()
        .http;
        let ok = Url::parse("http://jira.corp.example:8080/rest").unwrap();
        assert!(g.check_url(&ok).unwrap().private_ok);
        for other in [
            "https://jira.corp.example/",
            "http://jira.corp.example:9090/",
        ] {
            assert!(g.check_url(&Url::parse(other).unwrap()).is_err(), "{other}");
        }
        // Other names under the wildcard are unaffected.
        assert!(
            !g.check_url(&Url::parse("https://wiki.corp.example/").unwrap())
                .unwrap()
                .private_ok
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grant;

    fn rule(s: &str) -> HostRule {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse as a URL: {e}"))
    }

    fn grant(allow: &[&str], allow_private: &[&str]) -> HttpGrant {
        HttpGrant {
            allow: allow.iter().map(|s| rule(s)).collect(),
            allow_private: allow_private.iter().map(|s| rule(s)).collect(),
            ..HttpGrant::default()
        }
    }

    #[test]
    fn patterns_parse_to_canonical_form() {
        let cases = [
            ("https://api.example.com", "https://api.example.com"),
            ("https://api.example.com/", "https://api.example.com"),
            ("HTTPS://API.Example.COM", "https://api.example.com"),
            ("https://api.example.com:443", "https://api.example.com"),
            (
                "https://api.example.com:8443",
                "https://api.example.com:8443",
            ),
            ("http://api.example.com:80", "http://api.example.com"),
            ("http://api.example.com:443", "http://api.example.com:443"),
            ("https://*.example.com:8443", "https://*.example.com:8443"),
            ("https://*.Example.com", "https://*.example.com"),
            ("https://*.a.b.example.com/", "https://*.a.b.example.com"),
            ("https://bücher.example", "https://xn--bcher-kva.example"),
            ("https://BÜCHER.example", "https://xn--bcher-kva.example"),
            (
                "https://*.bücher.example",
                "https://*.xn--bcher-kva.example",
            ),
            (
                "https://xn--bcher-kva.example",
                "https://xn--bcher-kva.example",
            ),
            ("https://中国", "https://xn--fiqs8s"),
            ("https://ａｐｉ.example.com", "https://api.example.com"), // fullwidth
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://0x7f.1", "https://127.0.0.1"),
            ("http://2130706433", "http://127.0.0.1"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://[2606:4700::1111]", "https://[2606:4700::1111]"),
            ("https://[::FFFF:8.8.8.8]", "https://[::ffff:8.8.8.8]"),
            ("http://jira", "http://jira"),
            ("https://a_b.example.com", "https://a_b.example.com"),
            ("https://x:65535", "https://x:65535"),
        ];
        for (input, canonical) in cases {
            let r = rule(input);
            assert_eq!(r.to_string(), canonical, "{input}");
            assert_eq!(rule(canonical), r, "{canonical} round-trips");
        }
    }

    #[test]
    fn pattern_fields() {
        let r = rule("https://*.example.com:8443");
        assert_eq!(
            r,
            HostRule {
                scheme: Scheme::Https,
                host: HostPattern::Wildcard("example.com".into()),
                port: 8443,
            }
        );
        assert!(!r.is_exact());
        let r = rule("http://api.example.com");
        assert_eq!(r.host, HostPattern::Exact("api.example.com".into()));
        assert_eq!(r.port, 80);
        assert!(r.is_exact());
        let r = rule("http://[::1]");
        assert_eq!(r.host, HostPattern::Ip("::1".parse().unwrap()));
        assert!(r.is_exact());
    }

    #[test]
    fn bad_patterns() {
        // (pattern, fragment of the message)
        let cases = [
            ("", "empty"),
            ("api.example.com", "expected `scheme://host[:port]`"),
            ("//api.example.com", "expected `scheme://host[:port]`"),
            ("https:api.example.com", "expected `scheme://host[:port]`"),
            ("https:/api.example.com", "expected `scheme://host[:port]`"),
            ("https:///api.example.com", "no path"),
            ("https://", "expected `scheme://host[:port]`"),
            ("https:///", "expected `scheme://host[:port]`"),
            ("://api.example.com", "expected `scheme://host[:port]`"),
            ("ftp://api.example.com", "scheme `ftp` is not allowed"),
            ("file:///etc/passwd", "scheme `file` is not allowed"),
            ("ws://api.example.com", "scheme `ws` is not allowed"),
            ("data://x", "scheme `data` is not allowed"),
            ("https://api.example.com/v1", "no path"),
            ("https://api.example.com//", "no path"),
            ("https://api.example.com?x=1", "no path, query"),
            ("https://api.example.com#frag", "fragment"),
            ("https://api.example.com\\evil.com", "no path"),
            ("https://user@api.example.com", "user info"),
            ("https://user:pw@api.example.com", "user info"),
            ("https://@api.example.com", "user info"),
            ("https://api.example.com@evil.com", "user info"),
            ("https://%61pi.example.com", "percent-encoding"),
            ("https://*.", "expected `scheme://host[:port]`"),
            ("https://*", "first label"),
            ("https://api.example.com;evil.com", "only letters, digits"),
            ("https://a!b.com", "only letters, digits"),
            ("https://*.com", "too broad"),
            ("https://*.localhost", "too broad"),
            ("https://**.example.com", "first label"),
            ("https://*.*.example.com", "first label"),
            ("https://a*.example.com", "first label"),
            ("https://api.*.example.com", "first label"),
            ("https://*example.com", "first label"),
            ("https://*.1.2.3", "wildcard cannot be combined with an IP"),
            ("https://*.[::1]", "wildcard cannot be combined with an IP"),
            ("https://api.example.com.", "trailing dot"),
            ("https://api.example.com./", "trailing dot"),
            ("https://.example.com", "empty label"),
            ("https://api..example.com", "empty label"),
            ("https://api.example.com:", "port after `:` is empty"),
            ("https://:443", "expected `scheme://host[:port]`"),
            ("https://api.example.com:0", "port 0"),
            ("https://api.example.com:65536", "invalid port"),
            ("https://api.example.com:-1", "invalid port"),
            ("https://api.example.com:https", "invalid port"),
            ("https:// api.example.com", "whitespace"),
            ("https://api.example.com ", "whitespace"),
            (" https://api.example.com", "whitespace"),
            ("https://api.exa\nmple.com", "control"),
            ("https://api.example.com\u{0}", "control"),
            ("https://api.example.com\t", "whitespace"),
            ("https://api.example.com\u{a0}", "whitespace"),
            ("https://[::1", "invalid IPv6"),
            ("https://[fe80::1%eth0]", "percent-encoding"),
            ("https://1.2.3.4.5", "invalid IPv4"),
            ("https://a.example.123", "invalid IPv4"),
            ("https://exa<mple.com", "invalid"),
            ("https://xn--", "invalid"),
        ];
        for (input, fragment) in cases {
            let e = input
                .parse::<HostRule>()
                .expect_err(&format!("{input:?} should be refused"));
            let shown = e.to_string();
            assert!(
                shown.contains("is not a valid host pattern: "),
                "{input:?}: {shown}"
            );
            assert!(shown.contains(fragment), "{input:?}: {shown}");
            assert!(!shown.contains('\n'), "{input:?}: {shown}");
        }
    }

    #[test]
    fn pattern_error_display_spec() {
        let e = "https://*.".parse::<HostRule>().unwrap_err();
        assert_eq!(e.pattern, "https://*.");
        assert_eq!(
            e.to_string(),
            "`https://*.` is not a valid host pattern: expected `scheme://host[:port]`, \
             e.g. `https://api.example.com` or `https://*.example.com:8443`"
        );
    }

    #[test]
    fn huge_and_long_patterns() {
        let huge = format!("https://{}.com", "a".repeat(100_000));
        let e = huge.parse::<HostRule>().unwrap_err();
        assert!(e.message.contains("longer than 1024 bytes"));
        assert!(e.to_string().len() < 600);
        let long_label = format!("https://{}.com", "a".repeat(64));
        assert!(long_label.parse::<HostRule>().is_err());
        let ok_label = format!("https://{}.com", "a".repeat(63));
        assert!(ok_label.parse::<HostRule>().is_ok());
        let long_name = format!("https://{}com", "a.".repeat(130));
        let e = long_name.parse::<HostRule>().unwrap_err();
        assert!(e.message.contains("253"), "{e}");
    }

    #[test]
    fn exact_rule_matching() {
        let r = rule("https://api.example.com");
        let cases = [
            ("https://api.example.com/", true),
            ("https://api.example.com/v1/x?y=1#z", true),
            ("https://API.Example.COM/", true),
            ("https://api.example.com:443/", true),
            ("https://ａｐｉ.example.com/", true),
            ("https://api.example.com./", false), // trailing dot: refused
            ("https://api.example.com:8443/", false),
            ("http://api.example.com/", false),
            ("http://api.example.com:443/", false),
            ("https://example.com/", false),
            ("https://x.api.example.com/", false),
            ("https://api.example.com.evil.com/", false),
            ("https://evilapi.example.com/", false),
            ("https://api.example.com@evil.com/", false),
            ("https://user:pw@api.example.com/", false),
            ("https://user@api.example.com/", false),
            ("https://:pw@api.example.com/", false),
            ("ftp://api.example.com/", false),
            ("wss://api.example.com/", false),
            ("file:///etc/passwd", false),
            ("data:text/plain,api.example.com", false),
        ];
        for (u, want) in cases {
            assert_eq!(r.allows(&url(u)), want, "{u}");
        }
    }

    #[test]
    fn wildcard_rule_matching() {
        let r = rule("https://*.example.com");
        let cases = [
            ("https://a.example.com/", true),
            ("https://a.b.example.com/", true),
            ("https://A.EXAMPLE.com/", true),
            ("https://xn--bcher-kva.example.com/", true),
            ("https://bücher.example.com/", true),
            ("https://example.com/", false),
            ("https://evilexample.com/", false),
            ("https://a.evilexample.com/", false),
            ("https://example.com.evil.com/", false),
            ("https://a.example.com.evil.com/", false),
            ("https://a.example.com./", false),
            ("https://.example.com/", false),
            ("https://a..example.com/", false),
            ("https://a.example.com:8443/", false),
            ("http://a.example.com/", false),
            ("https://user@a.example.com/", false),
            ("https://a.example.co/", false),
            ("https://1.2.3.4/", false),
        ];
        for (u, want) in cases {
            assert_eq!(r.allows(&url(u)), want, "{u}");
        }
        let r = rule("https://*.example.com:8443");
        assert!(r.allows(&url("https://a.example.com:8443/")));
        assert!(!r.allows(&url("https://a.example.com/")));
    }

    #[test]
    fn wildcard_helper_edges() {
        assert!(wildcard_matches("example.com", "a.example.com"));
        assert!(!wildcard_matches("example.com", "example.com"));
        assert!(!wildcard_matches("example.com", ".example.com"));
        assert!(!wildcard_matches("example.com", "xexample.com"));
        assert!(!wildcard_matches("example.com", ""));
        assert!(!wildcard_matches("example.com", "é.example.co"));
        assert!(!wildcard_matches("example.com", "éxample.com"));
    }

    #[test]
    fn punycode_and_unicode_hosts_are_the_same_host() {
        for pattern in ["https://bücher.example", "https://xn--bcher-kva.example"] {
            let r = rule(pattern);
            for u in [
                "https://bücher.example/",
                "https://BÜCHER.example/",
                "https://xn--bcher-kva.example/",
                "https://XN--BCHER-KVA.example/",
            ] {
                assert!(r.allows(&url(u)), "{pattern} vs {u}");
            }
            assert!(!r.allows(&url("https://bucher.example/")), "{pattern}");
        }
    }

    #[test]
    fn ip_rule_matching() {
        let r = rule("http://127.0.0.1:8080");
        let cases = [
            ("http://127.0.0.1:8080/", true),
            ("http://2130706433:8080/", true), // same address, other spelling
            ("http://0x7f.0.0.1:8080/", true),
            ("http://0177.0.0.1:8080/", true),
            ("http://127.1:8080/", true),
            ("http://127.0.0.1/", false),
            ("https://127.0.0.1:8080/", false),
            ("http://127.0.0.2:8080/", false),
            ("http://[::ffff:127.0.0.1]:8080/", false), // different literal: refused
            ("http://localhost:8080/", false),
        ];
        for (u, want) in cases {
            assert_eq!(r.allows(&url(u)), want, "{u}");
        }
        let r = rule("http://[::1]");
        assert!(r.allows(&url("http://[::1]/")));
        assert!(r.allows(&url("http://[0:0:0:0:0:0:0:1]:80/")));
        assert!(!r.allows(&url("http://127.0.0.1/")));
    }

    #[test]
    fn check_url_allows_public_names() {
        let g = grant(
            &["https://api.example.com", "https://*.example.com:8443"],
            &[],
        );
        let d = g.check_url(&url("https://API.Example.COM/v1?q=1")).unwrap();
        assert_eq!(
            d,
            Destination {
                scheme: Scheme::Https,
                host: "api.example.com".into(),
                port: 443,
                private_ok: false,
            }
        );
        assert_eq!(d.origin(), "https://api.example.com:443");
        let d = g.check_url(&url("https://a.b.example.com:8443/")).unwrap();
        assert_eq!(d.host, "a.b.example.com");
        assert_eq!(d.port, 8443);
        assert!(!d.private_ok);
    }

    #[test]
    fn check_url_denials() {
        let g = grant(
            &["https://api.example.com", "https://*.example.com:8443"],
            &["http://127.0.0.1:8080"],
        );
        let not_allowed = |host: &str, port: u16, scheme: &str| Denial::NotAllowed {
            host: host.into(),
            port,
            scheme: scheme.into(),
        };
        let private = |host: &str, addr: &str, class| Denial::PrivateAddress {
            host: host.into(),
            addr: addr.parse().unwrap(),
            class,
        };
        use AddressClass::*;
        let cases = [
            (
                "ftp://api.example.com/",
                Denial::Scheme {
                    scheme: "ftp".into(),
                },
            ),
            (
                "file:///etc/passwd",
                Denial::Scheme {
                    scheme: "file".into(),
                },
            ),
            (
                "data:text/plain,hello",
                Denial::Scheme {
                    scheme: "data".into(),
                },
            ),
            (
                "javascript:alert(1)",
                Denial::Scheme {
                    scheme: "javascript".into(),
                },
            ),
            (
                "gopher://api.example.com/",
                Denial::Scheme {
                    scheme: "gopher".into(),
                },
            ),
            ("https://api.example.com@evil.com/", Denial::Userinfo),
            ("https://user:pw@api.example.com/", Denial::Userinfo),
            ("https://user@api.example.com/", Denial::Userinfo),
            ("https://:pw@api.example.com/", Denial::Userinfo),
            ("https://evil.com/", not_allowed("evil.com", 443, "https")),
            (
                "http://api.example.com/",
                not_allowed("api.example.com", 80, "http"),
            ),
            (
                "https://api.example.com:444/",
                not_allowed("api.example.com", 444, "https"),
            ),
            (
                "https://example.com:8443/",
                not_allowed("example.com", 8443, "https"),
            ),
            (
                "https://evilexample.com:8443/",
                not_allowed("evilexample.com", 8443, "https"),
            ),
            (
                "https://a.example.com/",
                not_allowed("a.example.com", 443, "https"),
            ),
            (
                "https://api.example.com./",
                not_allowed("api.example.com.", 443, "https"),
            ),
            ("https://8.8.8.8/", not_allowed("8.8.8.8", 443, "https")),
            (
                "http://2130706433/",
                private("127.0.0.1", "127.0.0.1", Loopback),
            ),
            (
                "http://0x7f.0.0.1/",
                private("127.0.0.1", "127.0.0.1", Loopback),
            ),
            (
                "http://0177.0.0.1/",
                private("127.0.0.1", "127.0.0.1", Loopback),
            ),
            ("http://127.1/", private("127.0.0.1", "127.0.0.1", Loopback)),
            (
                "http://[::ffff:127.0.0.1]:8080/",
                private("::ffff:127.0.0.1", "::ffff:127.0.0.1", Loopback),
            ),
            (
                "http://[::ffff:127.0.0.1]/",
                private("::ffff:127.0.0.1", "::ffff:127.0.0.1", Loopback),
            ),
            (
                "http://[::ffff:8.8.8.8]/",
                not_allowed("::ffff:8.8.8.8", 80, "http"),
            ),
            ("http://[::1]:8080/", private("::1", "::1", Loopback)),
            (
                "http://169.254.169.254/latest/meta-data/",
                private("169.254.169.254", "169.254.169.254", LinkLocal),
            ),
            ("http://10.0.0.1/", private("10.0.0.1", "10.0.0.1", Private)),
            (
                "http://0.0.0.0:8080/",
                private("0.0.0.0", "0.0.0.0", Unspecified),
            ),
            (
                "http://[fd00:ec2::254]/",
                private("fd00:ec2::254", "fd00:ec2::254", UniqueLocal),
            ),
            (
                "http://127.0.0.1:8081/",
                private("127.0.0.1", "127.0.0.1", Loopback),
            ),
            (
                "https://127.0.0.1:8080/",
                private("127.0.0.1", "127.0.0.1", Loopback),
            ),
        ];
        for (u, want) in cases {
            assert_eq!(g.check_url(&url(u)), Err(want), "{u}");
        }
    }

    #[test]
    fn no_host_message() {
        // http(s) URLs always have a host once parsed, so NoHost is defensive.
        assert_eq!(Denial::NoHost.to_string(), "the URL has no host");
    }

    #[test]
    fn empty_at_sign_is_dropped_by_url_parser() {
        // `https://@api.example.com/` parses to a URL with no user info at all,
        // so what is checked is exactly what would be sent.
        let u = url("https://@api.example.com/");
        assert_eq!(u.as_str(), "https://api.example.com/");
        let g = grant(&["https://api.example.com"], &[]);
        assert!(g.check_url(&u).is_ok());
    }

    #[test]
    fn private_grants() {
        let g = grant(
            &["https://api.example.com"],
            &[
                "http://127.0.0.1:8080",
                "https://jira.corp.internal",
                "http://[::1]",
            ],
        );
        let d = g.check_url(&url("http://127.0.0.1:8080/x")).unwrap();
        assert!(d.private_ok);
        assert_eq!(d.host, "127.0.0.1");
        assert_eq!(d.origin(), "http://127.0.0.1:8080");
        assert!(d.check_address("127.0.0.1".parse().unwrap()).is_ok());
        // Other spellings of the same address reach the same grant.
        assert!(
            g.check_url(&url("http://2130706433:8080/"))
                .unwrap()
                .private_ok
        );

        let d = g
            .check_url(&url("https://jira.corp.internal/rest"))
            .unwrap();
        assert!(d.private_ok);
        assert!(d.check_address("10.1.2.3".parse().unwrap()).is_ok());
        assert!(d.check_address("8.8.8.8".parse().unwrap()).is_ok());

        let d = g.check_url(&url("http://[::1]/")).unwrap();
        assert_eq!(d.host, "::1");
        assert_eq!(d.origin(), "http://[::1]:80");

        // A private grant does not extend to other names, ports or schemes.
        assert!(g.check_url(&url("https://x.corp.internal/")).is_err());
        assert!(g.check_url(&url("http://jira.corp.internal/")).is_err());
        assert!(
            g.check_url(&url("https://jira.corp.internal:8443/"))
                .is_err()
        );
    }

    #[test]
    fn check_address_for_public_names() {
        let g = grant(&["https://api.example.com"], &[]);
        let d = g.check_url(&url("https://api.example.com/")).unwrap();
        for (addr, ok) in [
            ("93.184.216.34", true),
            ("2606:4700::1111", true),
            ("127.0.0.1", false),
            ("10.0.0.1", false),
            ("169.254.169.254", false),
            ("100.100.100.200", false),
            ("::1", false),
            ("::ffff:10.0.0.1", false),
            ("fd00:ec2::254", false),
            ("0.0.0.0", false),
            ("224.0.0.1", false),
        ] {
            let addr: IpAddr = addr.parse().unwrap();
            assert_eq!(d.check_address(addr).is_ok(), ok, "{addr}");
        }
        let e = d.check_address("10.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "host api.example.com resolved to 10.0.0.1, a private (RFC 1918) address; \
             grant it by name under http.allow_private to allow it"
        );
    }

    #[test]
    fn denial_messages() {
        let g = grant(&["https://api.example.com"], &[]);
        let msg = |u: &str| g.check_url(&url(u)).unwrap_err().to_string();
        assert_eq!(
            msg("https://evil.com/"),
            "https://evil.com:443 is not in http.allow"
        );
        assert_eq!(
            msg("http://10.0.0.1/"),
            "host 10.0.0.1 resolved to 10.0.0.1, a private (RFC 1918) address; \
             grant it by name under http.allow_private to allow it"
        );
        assert_eq!(
            msg("https://[2606:4700::1]:8443/"),
            "https://[2606:4700::1]:8443 is not in http.allow"
        );
        assert!(msg("ftp://x.com/").contains("scheme `ftp` is not allowed"));
        assert!(msg("https://u:p@api.example.com/").contains("user info"));
        assert!(msg("https://u:p@api.example.com/").contains("{{secret:NAME}}"));
        assert!(msg("http://0.0.0.0/").contains("an unspecified"));
        assert!(msg("http://169.254.169.254/").contains("cloud metadata"));
    }

    #[test]
    fn public_ip_rules_in_allow() {
        let g = grant(&["https://8.8.8.8", "https://[2606:4700::1111]"], &[]);
        let d = g.check_url(&url("https://8.8.8.8/")).unwrap();
        assert!(!d.private_ok);
        assert!(d.check_address("8.8.8.8".parse().unwrap()).is_ok());
        assert!(g.check_url(&url("https://[2606:4700::1111]/")).is_ok());
        // A mapped spelling of the same public address is a different literal.
        assert!(g.check_url(&url("https://[::ffff:8.8.8.8]/")).is_err());
    }

    fn http(src: &str) -> Result<HttpGrant, GrantError> {
        Grant::from_toml_str(src, "grant.toml").map(|g| g.http)
    }

    #[test]
    fn allow_refuses_private_literals() {
        for (pattern, class) in [
            ("http://127.0.0.1:8080", "loopback"),
            ("http://0x7f.1", "loopback"),
            ("http://10.0.0.1", "private (RFC 1918)"),
            ("http://169.254.169.254", "link-local"),
            ("http://100.100.100.200", "shared CGNAT"),
            ("http://0.0.0.0", "unspecified"),
            ("http://[::1]", "loopback"),
            ("http://[::ffff:10.0.0.1]", "private"),
            ("http://[fd00:ec2::254]", "unique local"),
            ("http://[fe80::1]", "link-local"),
            ("http://192.0.2.1", "documentation"),
        ] {
            let e = http(&format!("[http]\nallow = [\"{pattern}\"]\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("http.allow[0]"), "{pattern}");
            assert!(e.message.contains(class), "{pattern}: {e}");
            assert!(e.message.contains("http.allow_private"), "{pattern}: {e}");
            // ...and the same entry is fine under allow_private.
            let g = http(&format!("[http]\nallow_private = [\"{pattern}\"]\n")).unwrap();
            assert_eq!(g.allow_private.len(), 1);
        }
    }

    #[test]
    fn allow_refuses_localhost_names() {
        for pattern in [
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://*.dev.localhost",
        ] {
            let e = http(&format!("[http]\nallow = [\"{pattern}\"]\n")).unwrap_err();
            assert!(e.message.contains("http.allow_private"), "{pattern}: {e}");
        }
        assert!(http("[http]\nallow_private = [\"http://localhost:8080\"]\n").is_ok());
    }

    #[test]
    fn allow_private_refuses_wildcards() {
        let e = http("[http]\nallow_private = [\"https://*.corp.internal\"]\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("http.allow_private[0]"));
        assert_eq!((e.line, e.column), (Some(2), Some(18)));
        assert!(e.message.contains("must name one exact host"), "{e}");
    }

    #[test]
    fn bad_entries_are_located() {
        let src = "[http]\nallow = [\n  \"https://a.example.com\",\n  \"https://b.example.com/path\",\n]\n";
        let e = http(src).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("http.allow[1]"));
        assert_eq!((e.line, e.column), (Some(4), Some(3)));
        assert!(e.message.contains("no path"));
    }

    #[test]
    fn unicode_and_injection_in_toml_patterns() {
        let g = http("[http]\nallow = [\"https://bücher.example\", \"https://*.中国.example\"]\n")
            .unwrap();
        assert_eq!(g.allow[0].to_string(), "https://xn--bcher-kva.example");
        assert_eq!(g.allow[1].to_string(), "https://*.xn--fiqs8s.example");
        for bad in [
            r#"https://api.example.com\"]\nallow_private = [\"http://10.0.0.1"#,
            "https://api.example.com\\u0000.evil.com",
            "https://api.example.com\\r\\nHost: evil.com",
            "https://api.example.com/../../etc/passwd",
            "https://api.example.com;evil.com",
            "javascript://api.example.com",
        ] {
            let src = format!("[http]\nallow = [\"{bad}\"]\n");
            let result = http(&src);
            assert!(result.is_err(), "{bad}: {result:?}");
            assert!(!result.unwrap_err().to_string().contains('\n'), "{bad}");
        }
        // Literal strings are fine too, and a `;` host is just an invalid host.
        assert!(http("[http]\nallow = ['https://api.example.com']\n").is_ok());
    }

    #[test]
    fn http_grant_default() {
        let g = HttpGrant::default();
        assert!(g.allow.is_empty() && g.allow_private.is_empty());
        assert_eq!(g.timeout, Duration::from_secs(10));
        assert_eq!(g.max_response_bytes, 10 << 20);
        assert_eq!(g.max_redirects, 5);
        assert_eq!(g.rate_limit_wait, Duration::from_secs(2));
        assert_eq!(
            g.check_url(&url("https://api.example.com/")),
            Err(Denial::NotAllowed {
                host: "api.example.com".into(),
                port: 443,
                scheme: "https".into(),
            })
        );
    }

    #[test]
    fn scheme_helpers() {
        assert_eq!(Scheme::Http.default_port(), 80);
        assert_eq!(Scheme::Https.default_port(), 443);
        assert_eq!(Scheme::Https.to_string(), "https");
        assert_eq!(Scheme::of_url(&url("HTTP://x.com/")), Some(Scheme::Http));
        assert_eq!(Scheme::of_url(&url("ws://x.com/")), None);
    }
}
