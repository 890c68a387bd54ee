//! Each first-party package, built, signed, verified and run in the real
//! runtime against a local peer that answers as the vendor's documented API
//! does. The peer serves HTTPS under the vendor's real host name (pinned to
//! loopback and trusted through an extra root, as an operator would for a
//! mirror), so the grant is exactly the manifest's least-privilege request.

mod abuseipdb;
mod http;
mod jira;
mod slack;
mod support;
mod virustotal;
