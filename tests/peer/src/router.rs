//! Which handler answers which request.

use std::fmt;
use std::sync::Arc;

use crate::peer::DEFAULT_BODY_LIMIT;
use crate::{Recorded, Reply};

/// A request handler, shared by every connection of a peer.
pub(crate) type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// Maps requests to handlers.
///
/// Matching, first hit wins:
/// 1. exact routes ([`Router::route`]), in the order added;
/// 2. prefix routes ([`Router::prefix`]), longest prefix first;
/// 3. the fallback ([`Router::fallback`], [`Router::any`]);
/// 4. otherwise `404` with `{"error": "not found"}`.
///
/// Paths are compared without the query. Methods compare case-insensitively;
/// the method `"*"` matches any method.
#[derive(Clone)]
pub struct Router {
    exact: Vec<Route>,
    prefixes: Vec<Route>,
    fallback: Option<Handler>,
    pub(crate) body_limit: usize,
}

#[derive(Clone)]
struct Route {
    /// Uppercase method, or `None` for any.
    method: Option<String>,
    path: String,
    handler: Handler,
}

impl Route {
    fn new(
        method: &str,
        path: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Route {
        Route {
            method: (method != "*").then(|| method.to_ascii_uppercase()),
            path: path.to_owned(),
            handler: Arc::new(handler),
        }
    }

    fn method_matches(&self, method: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

impl Router {
    /// A router with no routes: everything is answered `404`.
    pub fn new() -> Router {
        Router {
            exact: Vec::new(),
            prefixes: Vec::new(),
            fallback: None,
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }

    /// Answers `method` requests for exactly `path` (query ignored) with `handler`.
    pub fn route(
        mut self,
        method: &str,
        path: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Router {
        self.exact.push(Route::new(method, path, handler));
        self
    }

    /// Answers `method` requests whose path starts with `prefix` with
    /// `handler` (which can read the rest from [`Recorded::path`]).
    pub fn prefix(
        mut self,
        method: &str,
        prefix: &str,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Router {
        self.prefixes.push(Route::new(method, prefix, handler));
        // Longest prefix first; the sort is stable, so ties keep their order.
        self.prefixes
            .sort_by_key(|r| std::cmp::Reverse(r.path.len()));
        self
    }

    /// One handler for everything.
    pub fn any(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Router {
        Router::new().fallback(handler)
    }

    /// Answers requests no route matches with `handler` instead of `404`.
    pub fn fallback(
        mut self,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> Router {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// Sets the largest request body the peer reads (default
    /// [`DEFAULT_BODY_LIMIT`]); a longer one is recorded cut at the limit and
    /// answered `413` without calling any handler.
    pub fn body_limit(mut self, bytes: usize) -> Router {
        self.body_limit = bytes;
        self
    }

    /// The handler for `req`, if any route or fallback matches.
    pub(crate) fn handler_for(&self, req: &Recorded) -> Option<&Handler> {
        let exact = self
            .exact
            .iter()
            .find(|r| r.path == req.path && r.method_matches(&req.method));
        let prefix = || {
            self.prefixes
                .iter()
                .find(|r| req.path.starts_with(&r.path) && r.method_matches(&req.method))
        };
        exact
            .or_else(prefix)
            .map(|r| &r.handler)
            .or(self.fallback.as_ref())
    }

    /// The reply for `req`.
    pub(crate) fn dispatch(&self, req: &Recorded) -> Reply {
        match self.handler_for(req) {
            Some(handler) => handler(req),
            None => Reply::error(404, "not found"),
        }
    }
}

impl Default for Router {
    fn default() -> Router {
        Router::new()
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let describe = |routes: &[Route]| {
            routes
                .iter()
                .map(|r| format!("{} {}", r.method.as_deref().unwrap_or("*"), r.path))
                .collect::<Vec<_>>()
        };
        f.debug_struct("Router")
            .field("exact", &describe(&self.exact))
            .field("prefixes", &describe(&self.prefixes))
            .field("fallback", &self.fallback.is_some())
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str) -> Recorded {
        Recorded {
            method: method.into(),
            path: path.into(),
            query: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn answer(router: &Router, method: &str, path: &str) -> String {
        let reply = router.dispatch(&req(method, path));
        reply
            .header_value("x-which")
            .map_or_else(|| reply.code().to_string(), str::to_owned)
    }

    fn tagged(tag: &'static str) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
        move |_| Reply::status(200).header("x-which", tag)
    }

    #[test]
    fn exact_then_longest_prefix_then_fallback() {
        let router = Router::new()
            .prefix("GET", "/api/", tagged("api"))
            .prefix("GET", "/api/v2/", tagged("v2"))
            .route("get", "/api/v2/exact", tagged("exact"))
            .route("*", "/anything", tagged("any-method"));
        assert_eq!(answer(&router, "GET", "/api/v2/exact"), "exact");
        assert_eq!(answer(&router, "GET", "/api/v2/other"), "v2");
        assert_eq!(answer(&router, "GET", "/api/v1/x"), "api");
        assert_eq!(answer(&router, "DELETE", "/anything"), "any-method");
        assert_eq!(answer(&router, "POST", "/api/v2/exact"), "404");
        assert_eq!(answer(&router, "GET", "/nope"), "404");

        let router = router.fallback(tagged("fallback"));
        assert_eq!(answer(&router, "GET", "/nope"), "fallback");
        assert_eq!(answer(&Router::any(tagged("all")), "PUT", "/x"), "all");
    }
}
