//! A hostile component: every action tries to escape the sandbox or exhaust
//! the host. Host tests prove each attempt is contained. Actions that fail
//! inside the guest report what happened as `{"escaped": bool, "detail": ...}`.
wit_bindgen::generate!({ path: "../../../../wit", world: "action" });

use allama::action::types::ErrorKind;
use allama::action::{kv, log};
use serde_json::{Value, json};
use std::hint::black_box;

struct Hostile;

fn report<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> Value {
    match r {
        Ok(v) => json!({ "escaped": true, "detail": format!("{v:?}") }),
        Err(e) => json!({ "escaped": false, "detail": e.to_string() }),
    }
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    if black_box(n) == u64::MAX {
        0
    } else {
        recurse(black_box(n + 1)).wrapping_add(1)
    }
}

impl Guest for Hostile {
    fn run(action: String, input: String, _ctx: Context) -> Result<String, ActionError> {
        let input: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
        let out = match action.as_str() {
            "read-file" => report(std::fs::read_to_string("/etc/passwd")),
            "list-root" => report(std::fs::read_dir("/").map(|d| d.count())),
            "write-file" => report(std::fs::write("/tmp/allama-escape", b"x")),
            "env" => {
                let vars: Vec<(String, String)> = std::env::vars().collect();
                json!({ "escaped": !vars.is_empty(), "detail": vars.len() })
            }
            "tcp" => report(std::net::TcpStream::connect("93.184.216.34:80")),
            "tcp-loopback" => report(std::net::TcpStream::connect("127.0.0.1:1")),
            "dns" => {
                use std::net::ToSocketAddrs;
                report(("example.com", 80).to_socket_addrs().map(|a| a.count()))
            }
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            // Blocks inside a host call (wasi:io/poll), where epoch
            // interruption cannot reach: only the outer timeout can.
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                json!({ "slept": true })
            }
            "memory-bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recursion" => json!({ "depth": recurse(0) }),
            "big-output" => {
                let n = input
                    .get("bytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(1 << 30) as usize;
                return Ok(format!("\"{}\"", "x".repeat(n)));
            }
            "log-flood" => {
                let n = input
                    .get("lines")
                    .and_then(Value::as_u64)
                    .unwrap_or(1_000_000);
                for i in 0..n {
                    log::write(
                        log::Level::Info,
                        "flood line with some padding to make it longer",
                        &[("i".into(), i.to_string())],
                    );
                }
                json!({ "lines": n })
            }
            "stdout-flood" => {
                let n = input
                    .get("lines")
                    .and_then(Value::as_u64)
                    .unwrap_or(1_000_000);
                for i in 0..n {
                    println!("stdout flood line {i}");
                }
                json!({ "lines": n })
            }
            "kv-flood" => {
                let mut stored = 0u64;
                let mut last_error = Value::Null;
                for i in 0..1_000_000u64 {
                    match kv::set(&format!("flood/{i}"), &[0u8; 512], None) {
                        Ok(()) => stored += 1,
                        Err(e) => {
                            last_error = json!(format!("{e:?}"));
                            break;
                        }
                    }
                }
                json!({ "stored": stored, "error": last_error })
            }
            "trap" => std::process::abort(),
            "panic" => panic!("hostile panic with a message"),
            "bad-json" => return Ok("{not json".to_string()),
            "divide" => {
                let d = input.get("d").and_then(Value::as_i64).unwrap_or(0) as i32;
                json!(black_box(1i32) / black_box(d))
            }
            other => {
                return Err(ActionError {
                    kind: ErrorKind::InvalidInput,
                    message: format!("unknown action `{other}`"),
                    retryable: false,
                });
            }
        };
        Ok(out.to_string())
    }
}

export!(Hostile);
