//! Name resolution for outbound HTTP. The check happens on the addresses the
//! connection will actually use: a public name that resolves to a private,
//! loopback, link-local or metadata address is refused, unless the operator
//! granted that name under `http.allow_private`.

use allama_grant::address::classify;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;

/// Resolves host names to addresses.
pub trait NameResolver: Send + Sync {
    /// All addresses for `name`.
    fn lookup(&self, name: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (getaddrinfo through tokio).
pub struct SystemResolver;

impl NameResolver for SystemResolver {
    fn lookup(&self, name: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

/// Fixed answers, then the system resolver (like curl's `--resolve`); tests
/// use it to point vendor names at local peers.
#[derive(Default, Clone)]
pub struct StaticResolver {
    map: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// Answer `name` with `addrs`.
    pub fn with(mut self, name: &str, addrs: &[IpAddr]) -> Self {
        self.map.insert(name.to_ascii_lowercase(), addrs.to_vec());
        self
    }
}

impl NameResolver for StaticResolver {
    fn lookup(&self, name: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        match self.map.get(&name.to_ascii_lowercase()) {
            Some(a) => {
                let a = a.clone();
                Box::pin(async move { Ok(a) })
            }
            None => SystemResolver.lookup(name),
        }
    }
}

/// A resolved address the grant does not allow. The message does not show
/// the address: under a wildcard grant it would let a component map
/// internal names. Found in reqwest's error
/// chain and turned into a `denied` error.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "host {name} resolved to a {class} address; grant it by name under http.allow_private to allow it"
)]
pub struct AddressDenied {
    /// The name looked up.
    pub name: String,
    /// The offending address.
    pub addr: IpAddr,
    /// Its class, in words.
    pub class: &'static str,
}

/// The resolver reqwest uses for one package.
pub(crate) struct GuardedResolver {
    inner: Arc<dyn NameResolver>,
    private_names: HashSet<String>,
    pinned: Arc<HashMap<String, Vec<SocketAddr>>>,
}

impl GuardedResolver {
    pub(crate) fn new(
        inner: Arc<dyn NameResolver>,
        private_names: HashSet<String>,
        pinned: Arc<HashMap<String, Vec<SocketAddr>>>,
    ) -> Self {
        Self {
            inner,
            private_names,
            pinned,
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        // Pinned by the operator: not looked up, and vouched for.
        if let Some(addrs) = self.pinned.get(&name) {
            let addrs = addrs.clone();
            return Box::pin(async move {
                let it: reqwest::dns::Addrs = Box::new(addrs.into_iter());
                Ok(it)
            });
        }
        let private_ok = self.private_names.contains(&name);
        let lookup = self.inner.lookup(name.clone());
        Box::pin(async move {
            let addrs = lookup.await?;
            if addrs.is_empty() {
                return Err(format!("no address found for {name}").into());
            }
            if !private_ok {
                // One non-public answer refuses the name: a mixed answer is
                // how rebinding attacks look.
                if let Some(addr) = addrs.iter().find(|a| !classify(**a).is_public()) {
                    let class = classify(*addr).describe();
                    return Err(Box::new(AddressDenied {
                        name,
                        addr: *addr,
                        class,
                    }) as _);
                }
            }
            let it: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(it)
        })
    }
}
