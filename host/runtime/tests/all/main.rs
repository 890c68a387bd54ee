//! The runtime's integration tests: real components (built from
//! `host/guests/programs`), real wasmtime, real HTTP peers on loopback.

mod cache;
mod capabilities;
mod concurrency;
mod guests;
mod hostile;
mod python;
mod support;
mod tape;
