//! The guest programs used by tests and by `allama bench runtime`.
//!
//! `build.rs` compiles `programs/` for `wasm32-wasip2`; each constant here is
//! the path of one built component:
//! - `BENCH`: the trivial action the runtime benchmark measures;
//! - `CAPS`: a well-behaved component exercising every capability;
//! - `HOSTILE`: a component whose actions try to escape or exhaust the host;
//! - `PYTHON_EXAMPLE`: `sdk/python/examples/ip_reputation`, built with
//!   componentize-py (CPython in Wasm) and the Python SDK.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The bench component's bytes, embedded so the `allama` binary can run its
/// benchmark anywhere.
pub const BENCH_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bench.wasm"));

/// Every guest by name, so a test can check each one is used by a host test.
pub const ALL: &[(&str, &str)] = &[
    ("bench", BENCH),
    ("caps", CAPS),
    ("hostile", HOSTILE),
    ("python_example", PYTHON_EXAMPLE),
];
