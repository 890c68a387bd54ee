//! `http`: outbound requests through reqwest, limited by the grant.
//!
//! Parts: [`resolver`] (the name resolver that refuses private addresses for
//! names not granted as private), [`governor`] (shared Retry-After gate per
//! package and origin), `host.rs` (the request path: URL and header checks,
//! secret substitution toward granted hosts, redirects re-checked hop by hop,
//! size and time caps, scrubbing of secrets from responses), `tape.rs` (its
//! record and replay hook) and its audit events below.

pub mod governor;
mod host;
pub mod resolver;
pub(crate) mod tape;
#[cfg(test)]
mod tests;

pub use governor::RateGovernor;
pub use host::HttpStep;
pub(crate) use host::{Marks, scrub, scrub_marks};
pub use resolver::{NameResolver, StaticResolver, SystemResolver};

use allama_grant::{HostPattern, HttpGrant};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

use super::secrets::Secrets;
use super::{Capability, StepEnv};

/// Operator-level network settings shared by every package's client.
pub struct Network {
    resolver: Arc<dyn NameResolver>,
    pinned: Arc<std::collections::HashMap<String, Vec<std::net::SocketAddr>>>,
    roots: Vec<reqwest::Certificate>,
}

impl Network {
    /// Validate the settings once, at runtime start.
    pub fn new(
        resolver: Arc<dyn NameResolver>,
        pinned: &std::collections::HashMap<String, Vec<std::net::SocketAddr>>,
        roots_pem: &[String],
    ) -> Result<Self, String> {
        let mut roots = Vec::new();
        for (i, pem) in roots_pem.iter().enumerate() {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("certificate #{}: not valid PEM: {e}", i + 1))?;
            if certs.is_empty() {
                return Err(format!("certificate #{}: no certificate in the PEM", i + 1));
            }
            roots.extend(certs);
        }
        let pinned = pinned
            .iter()
            .map(|(k, v)| (k.trim_end_matches('.').to_ascii_lowercase(), v.clone()))
            .collect();
        Ok(Self {
            resolver,
            pinned: Arc::new(pinned),
            roots,
        })
    }
}

/// The http capability of one package: its grant and its own client (no
/// connection is shared between packages).
pub struct Http {
    package: String,
    grant: HttpGrant,
    client: reqwest::Client,
    governor: Arc<RateGovernor>,
    secrets: Arc<Secrets>,
}

/// The HTTP client could not be built (TLS roots, resolver).
#[derive(Debug, thiserror::Error)]
#[error("http: could not build the HTTP client for package `{package}`: {message}")]
pub struct HttpConfigError {
    /// Package name.
    pub package: String,
    /// What failed.
    pub message: String,
}

impl Http {
    /// Configure from the grant's `[http]` section.
    pub fn configure(
        package: &str,
        grant: &HttpGrant,
        secrets: Arc<Secrets>,
        network: Arc<Network>,
        governor: Arc<RateGovernor>,
    ) -> Result<Self, HttpConfigError> {
        // Names (not IP literals) the operator vouched for as private.
        let private_names: HashSet<String> = grant
            .allow_private
            .iter()
            .filter_map(|r| match &r.host {
                HostPattern::Exact(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let guarded = resolver::GuardedResolver::new(
            network.resolver.clone(),
            private_names,
            network.pinned.clone(),
        );
        let mut builder = reqwest::Client::builder();
        for root in &network.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder
            // Proxies from the environment would bypass the address checks.
            .no_proxy()
            // Redirects are followed by hand so each hop is checked.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(guarded))
            .gzip(true)
            .referer(false)
            .connect_timeout(grant.timeout)
            .user_agent(concat!("allama/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpConfigError {
                package: package.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            package: package.to_string(),
            grant: grant.clone(),
            client,
            governor,
            secrets,
        })
    }
}

impl Capability for Http {
    const NAME: &'static str = "http";
    type Step = HttpStep;
    fn prepare(self: &Arc<Self>, env: &StepEnv) -> HttpStep {
        HttpStep::new(self.clone(), env.clone())
    }
}

/// Audit events of the http capability. URLs are recorded as the component
/// wrote them, placeholders and all: secret values never appear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum HttpEvent {
    /// A request got a response.
    Request {
        /// Method.
        method: String,
        /// The URL as requested (with placeholders).
        url: String,
        /// The final URL after redirects, if different.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        final_url: Option<String>,
        /// Response status.
        status: u16,
        /// Redirects followed.
        redirects: u32,
        /// Secrets substituted, by name.
        secrets: Vec<String>,
        /// Request body bytes.
        bytes_sent: u64,
        /// Response body bytes (decompressed).
        bytes_received: u64,
        /// Wall time, microseconds.
        duration_us: u64,
    },
    /// A request was refused by the grant.
    Denied {
        /// Method.
        method: String,
        /// The URL as requested (with placeholders), or the redirect target.
        url: String,
        /// Why.
        reason: String,
    },
    /// A request failed after it was allowed (timeout, connection, too large).
    Failed {
        /// Method.
        method: String,
        /// The URL as requested.
        url: String,
        /// What went wrong.
        error: String,
        /// Wall time, microseconds.
        duration_us: u64,
    },
    /// The shared rate governor held a request back.
    RateLimited {
        /// The vendor's origin.
        origin: String,
        /// How long it asked us to wait, milliseconds.
        wait_ms: u64,
        /// Whether the request waited (`true`) or failed fast (`false`).
        waited: bool,
    },
}

impl HttpEvent {
    /// Whether this is a refusal by the grant.
    pub fn is_denial(&self) -> bool {
        matches!(self, HttpEvent::Denied { .. })
    }
}
