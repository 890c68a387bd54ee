//! Local HTTP peers for tests.
//!
//! A [`Peer`] is a small HTTP/1.1 server on `127.0.0.1` that answers the way a
//! vendor's documented API does (success, 401/403/404, 429 with `Retry-After`,
//! 5xx, pagination, redirects, slow answers, compression bombs) and records
//! every request it receives, so a test can assert what the host actually sent.
//!
//! ```no_run
//! use allama_test_peer::{Peer, Reply, Router, sequence};
//! use serde_json::json;
//!
//! # async fn demo() {
//! let peer = Peer::start(
//!     Router::new()
//!         .route("GET", "/api/v3/ip_addresses/1.2.3.4", |req| {
//!             match req.header("x-apikey") {
//!                 Some("real-key") => Reply::json(200, json!({"data": {"id": "1.2.3.4"}})),
//!                 _ => Reply::error(401, "WrongCredentialsError"),
//!             }
//!         })
//!         .route("GET", "/flaky", sequence(vec![Reply::status(503), Reply::text(200, "ok")])),
//! )
//! .await;
//! let url = peer.url("/api/v3/ip_addresses/1.2.3.4");
//! // ... make the host call `url` ...
//! assert_eq!(peer.requests()[0].header("x-apikey"), Some("real-key"));
//! # }
//! ```
//!
//! Ready-made peers for particular vendors (VirusTotal, AbuseIPDB, Slack,
//! Jira), with fixtures, failure knobs and handles on what was written, are in
//! [`vendors`].

mod body;
mod helpers;
mod peer;
mod recorded;
mod reply;
mod router;
mod tls;
pub mod vendors;

pub use helpers::{paginated, sequence};
pub use peer::{DEFAULT_BODY_LIMIT, Peer};
pub use recorded::Recorded;
pub use reply::Reply;
pub use router::Router;
