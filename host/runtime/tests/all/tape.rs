//! Record and replay: steps recorded against local peers, replayed with the
//! peers gone; mismatches, leftovers, hostile recordings, and no secret value
//! in any recording.

use std::sync::Arc;

use allama_grant::Grant;
use allama_runtime::capability::kv::{KvBackend, MemoryKv};
use allama_runtime::capability::secrets::MemorySecretStore;
use allama_runtime::tape::{self, CassetteError, MAX_EXCHANGES};
use allama_runtime::{
    Cassette, Exchange, Package, PackageSpec, Recorder, StepContext, StepError, StepReport, Tape,
};
use allama_test_peer::{Peer, Reply, Router};
use serde_json::{Value, json};

use crate::support::{Host, event_json, output};

const SECRET: &str = "s3cr3t&v@lue/+=";

fn ctx(step: &str) -> StepContext {
    StepContext {
        run_id: "run-1".into(),
        step_id: step.into(),
        idempotency_key: format!("run-1/{step}"),
        attempt: 1,
    }
}

/// Bind the caps guest with its own kv backend and secret values.
fn bind(host: &Host, grant: &str, secrets: &[(&str, &str)], kv: Arc<MemoryKv>) -> Package {
    let component = host
        .runtime
        .load_file(std::path::Path::new(allama_guests::CAPS))
        .expect("caps loads");
    let mut store = MemorySecretStore::new();
    for (k, v) in secrets {
        store.insert(*k, *v);
    }
    host.runtime
        .bind(
            &component,
            PackageSpec {
                name: "caps".into(),
                grant: Grant::from_toml_str(grant, "tape-grant.toml").expect("grant parses"),
                secrets: Arc::new(store),
                kv,
                kv_namespace: None,
            },
        )
        .expect("grant binds")
}

async fn taped(p: &Package, action: &str, input: &Value, step: &str, tape: &Tape) -> StepReport {
    p.run_taped(action, &input.to_string(), &ctx(step), tape)
        .await
}

/// Record one step; returns its report and its recording as JSON.
async fn record(p: &Package, action: &str, input: &Value) -> (StepReport, String) {
    let recorder = Recorder::new();
    let r = taped(p, action, input, action, &Tape::Record(recorder.clone())).await;
    assert_eq!(recorder.dropped(), 0);
    (r, tape::to_json(&recorder.take()))
}

/// Replay one step from a recording's JSON; returns its report and cassette.
async fn replay(p: &Package, action: &str, input: &Value, json: &str) -> (StepReport, Cassette) {
    let cassette = Cassette::from_json(json).expect("the recording reads back");
    let r = taped(p, action, input, action, &Tape::Replay(cassette.clone())).await;
    (r, cassette)
}

fn secret_grant(peer_ports: &[u16], extra: &str) -> String {
    let origins: Vec<String> = peer_ports
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}\""))
        .collect();
    format!(
        "[http]\nallow_private = [{all}]\n[secrets.VT_KEY]\nhosts = [{first}]\n{extra}",
        all = origins.join(", "),
        first = origins[0],
    )
}

fn mismatch(r: &StepReport) -> &allama_runtime::ReplayMismatch {
    match &r.outcome {
        Err(StepError::ReplayMismatch(m)) => m,
        other => panic!("expected a replay mismatch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_step_replays_with_its_peer_shut_down() {
    let peer = Peer::start(Router::any(Reply::echo)).await;
    let port = peer.addr().port();
    let host = Host::new();
    let p = bind(
        &host,
        &secret_grant(&[port], ""),
        &[("VT_KEY", SECRET)],
        Arc::new(MemoryKv::new()),
    );
    let input = json!({
        "method": "POST",
        "url": peer.url("/api/v3/ip?apikey={{secret:VT_KEY}}&q=1.2.3.4"),
        "headers": [["x-apikey", "{{secret:VT_KEY}}"], ["content-type", "application/json"]],
        "body": "{\"key\":\"{{secret:VT_KEY}}\",\"ip\":\"1.2.3.4\"}"
    });
    let (recorded, json) = record(&p, "http", &input).await;
    let out = output(&recorded).clone();
    assert_eq!(out["status"], 200);
    assert_eq!(peer.request_count(), 1);
    // The request is kept as written: placeholders, never the value.
    assert!(json.contains("apikey={{secret:VT_KEY}}"), "{json}");
    assert!(json.contains("\"kind\": \"http\""), "{json}");

    // Replay while the peer still listens: it is never contacted.
    let (again, cassette) = replay(&p, "http", &input, &json).await;
    assert_eq!(output(&again), &out);
    assert_eq!(peer.request_count(), 1, "replay must not reach the peer");
    assert!(cassette.unused().is_empty());
    assert_eq!(cassette.finish(), Ok(()));

    // And with the peer gone, with no secret values configured at all.
    drop(peer);
    let offline = bind(
        &host,
        &secret_grant(&[port], ""),
        &[],
        Arc::new(MemoryKv::new()),
    );
    let (again, _) = replay(&offline, "http", &input, &json).await;
    assert_eq!(output(&again), &out);
    // Audited like a live request, naming the secret, never sending it.
    let events: Vec<Value> = again.audit.iter().map(|a| event_json(&a.event)).collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "request" && e["secrets"] == json!(["VT_KEY"])),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| e["event"] == "sent"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_request_is_a_replay_mismatch_naming_step_and_position() {
    let peer = Peer::start(Router::any(Reply::echo)).await;
    let host = Host::new();
    let p = host.package("caps", &crate::support::peer_grant(&peer, ""), &[]);
    let input = json!({ "method": "POST", "url": peer.url("/a"), "body": "one" });
    let (_, json) = record(&p, "http", &input).await;

    // Another URL.
    let changed = json!({ "method": "POST", "url": peer.url("/b"), "body": "one" });
    let (r, cassette) = replay(&p, "http", &changed, &json).await;
    let m = mismatch(&r);
    assert_eq!((m.step.as_str(), m.position), ("http", 1));
    assert!(m.expected.contains(&peer.url("/a")), "{m}");
    assert!(m.got.contains(&peer.url("/b")), "{m}");
    let text = r.error_message().unwrap();
    assert!(
        text.contains("replay of step `http` diverged at exchange #1"),
        "{text}"
    );
    assert_eq!(
        cassette.unused().len(),
        1,
        "the recorded exchange was not used"
    );
    assert!(StepError::ReplayMismatch(m.clone()).is_infrastructure());

    // Same URL, another body; another method.
    let body = json!({ "method": "POST", "url": peer.url("/a"), "body": "two" });
    let m = mismatch(&replay(&p, "http", &body, &json).await.0).clone();
    assert!(
        m.expected.contains("\"one\"") && m.got.contains("\"two\""),
        "{m}"
    );
    let method = json!({ "method": "PUT", "url": peer.url("/a"), "body": "one" });
    let m = mismatch(&replay(&p, "http", &method, &json).await.0).clone();
    assert!(m.got.starts_with("http PUT"), "{m}");

    // A different capability altogether.
    let (r, _) = replay(&p, "kv-get", &json!({"key": "k"}), &json).await;
    // kv is not granted here: the grant refuses before the tape is consulted.
    assert_eq!(output(&r)["error"], "denied");
    assert_eq!(peer.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_more_than_recorded_is_a_mismatch_and_leftovers_are_reported() {
    let peer = Peer::start(Router::any(|_| Reply::text(200, "ok"))).await;
    let host = Host::new();
    let p = host.package("caps", &crate::support::peer_grant(&peer, ""), &[]);
    let first = json!({ "url": peer.url("/first") });
    let second = json!({ "url": peer.url("/second") });

    // Nothing recorded, one call made.
    let (r, _) = replay(&p, "http", &first, "[]").await;
    let m = mismatch(&r);
    assert_eq!(m.position, 1);
    assert!(m.expected.contains("nothing more"), "{m}");
    assert!(m.got.contains("/first"), "{m}");

    // Two recorded (one recorder across two steps), one made.
    let recorder = Recorder::new();
    for input in [&first, &second] {
        let r = taped(&p, "http", input, "fetch", &Tape::Record(recorder.clone())).await;
        assert_eq!(output(&r)["status"], 200);
    }
    let json = tape::to_json(&recorder.take());
    assert!(recorder.take().is_empty(), "take empties the recorder");
    let (r, cassette) = replay(&p, "http", &first, &json).await;
    assert_eq!(output(&r)["body"], "ok");
    let unused = cassette.unused();
    assert_eq!(unused.len(), 1);
    assert!(unused[0].to_string().contains("/second"), "{}", unused[0]);
    let left = cassette.finish().unwrap_err();
    assert_eq!((left.step.as_str(), left.position), ("http", 2));
    assert!(left.got.contains("the step ended"), "{left}");
    assert_eq!(peer.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grant_still_applies_in_replay_and_denials_are_not_recorded() {
    let peer = Peer::start(Router::any(|_| Reply::text(200, "ok"))).await;
    let host = Host::new();
    let granted = host.package("caps", &crate::support::peer_grant(&peer, ""), &[]);
    let input = json!({ "url": peer.url("/x") });
    let (_, json) = record(&granted, "http", &input).await;

    // The same recording, replayed under a grant that does not allow the peer.
    let narrowed = host.package("caps", "", &[]);
    let (r, cassette) = replay(&narrowed, "http", &input, &json).await;
    assert_eq!(output(&r)["error"], "denied");
    assert_eq!(
        cassette.unused().len(),
        1,
        "a denied request consumes nothing"
    );

    // A denied request is not a capability use: nothing is recorded.
    let (r, json) = record(&narrowed, "http", &input).await;
    assert_eq!(output(&r)["error"], "denied");
    assert_eq!(json.trim(), "[]");
    // Nor is a malformed one.
    let (_, json) = record(&granted, "http", &json!({ "url": "not a url" })).await;
    assert_eq!(json.trim(), "[]");
    assert_eq!(peer.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_and_binary_bodies_replay_exactly() {
    let binary = vec![0u8, 0xff, 0xfe, b'a', 0x80];
    let body = binary.clone();
    let peer = Peer::start(Router::any(move |_| Reply::bytes(200, body.clone()))).await;
    let host = Host::new();
    let port = peer.addr().port();
    let p = host.package("caps", &crate::support::peer_grant(&peer, ""), &[]);
    let input = json!({ "url": peer.url("/bin") });
    let (live, json) = record(&p, "http", &input).await;
    assert_eq!(output(&live)["body_len"], binary.len());
    assert!(json.contains("\"base64\": \"AP/+YYA=\""), "{json}");
    drop(peer);
    let (again, _) = replay(&p, "http", &input, &json).await;
    assert_eq!(output(&again), output(&live));

    // The peer is gone: the connection error is recorded and replayed as is.
    let input = json!({ "url": format!("http://127.0.0.1:{port}/gone") });
    let (live, json) = record(&p, "http", &input).await;
    assert_eq!(output(&live)["error"], "connection", "{:?}", live.outcome);
    assert!(json.contains("\"connection\""), "{json}");
    let (again, _) = replay(&p, "http", &input, &json).await;
    assert_eq!(output(&again), output(&live));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_is_recorded_and_replayed_from_the_tape_not_the_store() {
    let host = Host::new();
    let live_store = Arc::new(MemoryKv::new());
    let live = bind(&host, "[kv]", &[], live_store.clone());
    let steps = [
        (
            "kv-set",
            json!({"key": "ioc/1.2.3.4", "value": "bad", "ttl": 60}),
        ),
        ("kv-set", json!({"key": "ioc/5.6.7.8", "value": "good"})),
        ("kv-get", json!({"key": "ioc/1.2.3.4"})),
        ("kv-list", json!({"prefix": "ioc/", "limit": 10})),
        ("kv-delete", json!({"key": "ioc/1.2.3.4"})),
        ("kv-get", json!({"key": "ioc/1.2.3.4"})),
    ];
    let mut recordings = Vec::new();
    for (action, input) in &steps {
        let (r, json) = record(&live, action, input).await;
        recordings.push((output(&r).clone(), json));
    }
    assert!(recordings[0].1.contains("\"op\": \"set\""));
    assert!(recordings[0].1.contains("\"ttl_seconds\": 60"));
    assert!(recordings[3].1.contains("\"keys\""));

    // Replayed against an empty store, which stays empty.
    let empty = Arc::new(MemoryKv::new());
    let replayed = bind(&host, "[kv]", &[], empty.clone());
    for ((action, input), (out, json)) in steps.iter().zip(&recordings) {
        let (r, cassette) = replay(&replayed, action, input, json).await;
        assert_eq!(output(&r), out, "{action} {input}");
        assert_eq!(cassette.finish(), Ok(()));
    }
    let now = std::time::SystemTime::now();
    assert_eq!(empty.list_prefix("caps", "", 10, now).unwrap().len(), 0);
    assert_eq!(
        live_store.list_prefix("caps", "", 10, now).unwrap().len(),
        1
    );

    // Matched by operation and key.
    let (r, _) = replay(
        &replayed,
        "kv-get",
        &json!({"key": "ioc/9.9.9.9"}),
        &recordings[2].1,
    )
    .await;
    let m = mismatch(&r);
    assert!(
        m.expected == "kv get `ioc/1.2.3.4`" && m.got == "kv get `ioc/9.9.9.9`",
        "{m}"
    );
    let (r, _) = replay(
        &replayed,
        "kv-delete",
        &json!({"key": "ioc/1.2.3.4"}),
        &recordings[2].1,
    )
    .await;
    assert_eq!(mismatch(&r).got, "kv delete `ioc/1.2.3.4`");

    // A quota failure from the store is recorded and replayed.
    let tight = bind(&host, "[kv]\nmax_keys = 1", &[], Arc::new(MemoryKv::new()));
    assert_eq!(
        output(
            &record(&tight, "kv-set", &json!({"key": "a", "value": "1"}))
                .await
                .0
        )["ok"],
        true
    );
    let over = json!({"key": "b", "value": "2"});
    let (r, json) = record(&tight, "kv-set", &over).await;
    assert_eq!(output(&r)["error"], "quota-exceeded");
    assert!(json.contains("quota_exceeded"), "{json}");
    let (again, _) = replay(&replayed, "kv-set", &over, &json).await;
    assert_eq!(output(&again), output(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reveal_replays_a_stand_in_and_hmac_replays_exactly() {
    let host = Host::new();
    let grant = "[secrets.SIGNING]\nhosts = []\nreveal = true\nhmac = true";
    let p = bind(
        &host,
        grant,
        &[("SIGNING", SECRET)],
        Arc::new(MemoryKv::new()),
    );
    let reveal = json!({ "name": "SIGNING" });
    let (r, reveal_json) = record(&p, "reveal", &reveal).await;
    assert_eq!(output(&r)["ok"], SECRET);
    assert!(!reveal_json.contains(SECRET), "{reveal_json}");
    let hmac = json!({ "name": "SIGNING", "data": "payload ✓" });
    let (live_mac, hmac_json) = record(&p, "hmac", &hmac).await;
    assert!(hmac_json.contains("\"data\": \"payload ✓\""), "{hmac_json}");

    // Replayed with no secret values at all.
    let empty = bind(&host, grant, &[], Arc::new(MemoryKv::new()));
    let (r, _) = replay(&empty, "reveal", &reveal, &reveal_json).await;
    assert_eq!(output(&r)["ok"], "replayed-secret:SIGNING");
    assert_eq!(tape::stand_in("SIGNING"), "replayed-secret:SIGNING");
    let (r, _) = replay(&empty, "hmac", &hmac, &hmac_json).await;
    assert_eq!(output(&r), output(&live_mac));
    let expected = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes()),
        "payload ✓".as_bytes(),
    );
    assert_eq!(output(&r)["ok"], hex::encode(expected.as_ref()));

    // Another message is another call.
    let other = json!({ "name": "SIGNING", "data": "payload 2" });
    let (r, _) = replay(&empty, "hmac", &other, &hmac_json).await;
    assert!(mismatch(&r).got.contains("payload 2"));

    // Without the reveal grant, replay refuses as the live path does.
    let no_reveal = bind(
        &host,
        "[secrets.SIGNING]\nhosts = []",
        &[],
        Arc::new(MemoryKv::new()),
    );
    let (r, cassette) = replay(&no_reveal, "reveal", &reveal, &reveal_json).await;
    assert_eq!(output(&r)["error"], "denied");
    assert_eq!(cassette.unused().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_appears_in_a_recording() {
    // A peer echoing the request; a same-origin redirect whose Location
    // carries the query (secret included); a cross-origin one carrying it
    // toward a host the secret is not granted to.
    let other = Peer::start(Router::any(Reply::echo)).await;
    let other_base = other.base_url();
    let vendor = Peer::start(Router::any(move |req| {
        let query = req.query.clone().unwrap_or_default();
        match req.path.as_str() {
            "/hop" => Reply::redirect(302, &format!("/echo?{query}")),
            "/away" => Reply::redirect(302, &format!("{other_base}/steal?{query}")),
            "/error" => Reply::text(500, format!("bad key: {query}")),
            _ => Reply::echo(req),
        }
    }))
    .await;
    let port = vendor.addr().port();
    // A port that was just closed: the request fails to connect.
    let gone = Peer::start(Router::any(|_| Reply::status(200))).await;
    let gone_port = gone.addr().port();
    drop(gone);
    let [vendor_o, other_o, gone_o] =
        [port, other.addr().port(), gone_port].map(|p| format!("\"http://127.0.0.1:{p}\""));
    let grant = format!(
        "[http]\nallow_private = [{vendor_o}, {other_o}, {gone_o}]\n\
         [secrets.VT_KEY]\nhosts = [{vendor_o}, {gone_o}]\nreveal = true\nhmac = true\n[kv]\n"
    );
    let host = Host::new();
    let p = bind(
        &host,
        &grant,
        &[("VT_KEY", SECRET)],
        Arc::new(MemoryKv::new()),
    );
    let recorder = Recorder::new();
    let tape = Tape::Record(recorder.clone());
    let vendor_base = vendor.base_url();
    let secret_request = |path: &str| {
        let base = if path == "/gone" {
            format!("http://127.0.0.1:{gone_port}")
        } else {
            vendor_base.clone()
        };
        json!({
            "method": "POST",
            "url": format!("{base}{path}?apikey={{{{secret:VT_KEY}}}}"),
            "headers": [["authorization", "Bearer {{secret:VT_KEY}}"]],
            "body": "key={{secret:VT_KEY}}",
        })
    };
    let paths = ["/echo", "/hop", "/away", "/error", "/gone"];
    let mut outputs = Vec::new();
    for path in paths {
        let r = taped(&p, "http", &secret_request(path), "leak", &tape).await;
        outputs.push(output(&r).clone());
    }
    assert!(
        outputs[0]["body"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:VT_KEY]")
    );
    assert_eq!(outputs[1]["status"], 200);
    assert_eq!(outputs[2]["error"], "denied", "{}", outputs[2]);
    assert_eq!(outputs[3]["status"], 500);
    assert_eq!(outputs[4]["error"], "connection", "{}", outputs[4]);
    for (action, input) in [
        ("reveal", json!({ "name": "VT_KEY" })),
        ("hmac", json!({ "name": "VT_KEY", "data": "sign me" })),
        // A value the component holds in the clear (e.g. revealed earlier).
        (
            "kv-set",
            json!({ "key": "cache", "value": format!("token={SECRET}") }),
        ),
        ("kv-get", json!({ "key": "cache" })),
    ] {
        let r = taped(&p, action, &input, "leak", &tape).await;
        assert!(r.outcome.is_ok(), "{action}: {:?}", r.outcome);
    }
    let exchanges = recorder.take();
    assert_eq!(exchanges.len(), 9, "{exchanges:#?}");
    let json = tape::to_json(&exchanges);
    let encoded: String = url::form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    for form in [SECRET, encoded.as_str(), b64.as_str(), "s3cr3t"] {
        assert!(!json.contains(form), "`{form}` leaked into:\n{json}");
    }
    // The redirect refusal names origins only, and is recorded as it was.
    assert!(json.contains("\"denied\""), "{json}");
    assert!(json.contains("[REDACTED:VT_KEY]"), "{json}");
    // Everything reads back and replays without the vendor.
    let cassette = Cassette::from_json(&json).expect("reads back");
    drop(vendor);
    drop(other);
    let replay_tape = Tape::Replay(cassette.clone());
    for (path, out) in paths.iter().zip(&outputs) {
        let r = taped(&p, "http", &secret_request(path), "leak", &replay_tape).await;
        assert_eq!(output(&r), out, "{path}");
    }
    assert_eq!(cassette.unused().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_stable_pretty_json() {
    let host = Host::new();
    let p = bind(&host, "[kv]", &[], Arc::new(MemoryKv::new()));
    let (_, json) = record(&p, "kv-set", &json!({"key": "k", "value": "v"})).await;
    assert_eq!(
        json,
        "[\n  {\n    \"kind\": \"kv\",\n    \"request\": {\n      \"op\": \"set\",\n      \"key\": \"k\",\n      \"value\": \"v\"\n    },\n    \"response\": {\n      \"ok\": \"stored\"\n    }\n  }\n]"
    );
    let again = tape::to_json(&tape::from_json(&json).unwrap());
    assert_eq!(again, json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_recorder_counts_what_it_drops_and_the_step_says_so() {
    let host = Host::new();
    let p = bind(&host, "[kv]", &[], Arc::new(MemoryKv::new()));
    let recorder = Recorder::new();
    let tape = Tape::Record(recorder.clone());
    for _ in 0..MAX_EXCHANGES {
        let r = taped(&p, "kv-get", &json!({"key": "k"}), "many", &tape).await;
        assert!(r.outcome.is_ok());
    }
    assert_eq!(recorder.dropped(), 0);
    let r = taped(&p, "kv-get", &json!({"key": "k"}), "many", &tape).await;
    assert!(r.outcome.is_ok(), "the step itself is unaffected");
    assert_eq!(recorder.dropped(), 1);
    let limit = r
        .audit
        .iter()
        .map(|a| event_json(&a.event))
        .find(|e| e["capability"] == "limit")
        .expect("a limit record");
    assert_eq!(
        limit,
        json!({"capability": "limit", "limit": "recording", "dropped": 1})
    );
    assert_eq!(recorder.take().len(), MAX_EXCHANGES);
    assert_eq!(recorder.dropped(), 0, "take starts afresh");
}

#[test]
fn hostile_recordings_are_typed_errors() {
    let http = |response: &str| {
        format!(
            r#"[{{"kind":"http","request":{{"method":"GET","url":"http://a/"}},"response":{response}}}]"#
        )
    };
    let deep = format!(
        r#"[{{"kind":"http","request":{}{}}}]"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let many = format!(
        "[{}]",
        vec![
            r#"{"kind":"kv","request":{"op":"get","key":"k"},"response":{"ok":{"value":null}}}"#;
            MAX_EXCHANGES + 1
        ]
        .join(",")
    );
    let cases: Vec<(&str, String)> = vec![
        ("not json", "[{".into()),
        ("empty", "".into()),
        ("not a list", r#"{"kind":"http"}"#.into()),
        ("unknown kind", r#"[{"kind":"ftp","request":{}}]"#.into()),
        ("no kind", r#"[{"request":{}}]"#.into()),
        ("wrong type", r#"[{"kind":"kv","request":{"op":"get","key":7},"response":{"ok":"stored"}}]"#.into()),
        ("unknown op", r#"[{"kind":"kv","request":{"op":"drop","key":"k"},"response":{"ok":"stored"}}]"#.into()),
        ("unknown field", r#"[{"kind":"kv","request":{"op":"get","key":"k","x":1},"response":{"ok":{"value":null}}}]"#.into()),
        ("extra field", r#"[{"kind":"kv","request":{"op":"get","key":"k"},"response":{"ok":{"value":null}},"x":1}]"#.into()),
        ("get answered stored", r#"[{"kind":"kv","request":{"op":"get","key":"k"},"response":{"ok":"stored"}}]"#.into()),
        ("bad mac", r#"[{"kind":"secret","request":{"op":"hmac","name":"K","data":"m"},"response":{"mac":"zz"}}]"#.into()),
        ("reveal with mac", r#"[{"kind":"secret","request":{"op":"reveal","name":"K"},"response":{"mac":"00"}}]"#.into()),
        ("status overflow", http(r#"{"ok":{"status":70000}}"#)),
        ("status zero", http(r#"{"ok":{"status":0}}"#)),
        ("bad base64", http(r#"{"ok":{"status":200,"body":{"base64":"%%%"}}}"#)),
        ("base64 and more", http(r#"{"ok":{"status":200,"body":{"base64":"","text":"x"}}}"#)),
        ("body as number", http(r#"{"ok":{"status":200,"body":12}}"#)),
        ("unknown error", http(r#"{"error":{"teapot":"x"}}"#)),
        ("ok and error", http(r#"{"ok":{"status":200},"error":{"timeout":"x"}}"#)),
        ("negative limit", r#"[{"kind":"kv","request":{"op":"list_prefix","prefix":"","limit":-1},"response":{"ok":{"keys":[]}}}]"#.into()),
        ("bad method", r#"[{"kind":"http","request":{"method":"GET\r\nX: y","url":"u"},"response":{"ok":{"status":200}}}]"#.into()),
        ("deep nesting", deep),
        ("too many", many),
        ("too large", format!("[\"{}\"]", "x".repeat(tape::MAX_CASSETTE_JSON_BYTES))),
        ("nul and unicode", "[\"\u{0}\u{202e}☃\"]".into()),
        ("injection-looking", r#"[{"kind":"http","request":{"method":"GET","url":"{{secret:X}}'; DROP TABLE"},"response":{"ok":{"status":200},"x":"<script>"}}]"#.into()),
    ];
    for (name, text) in &cases {
        let err: CassetteError = match Cassette::from_json(text) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e,
        };
        assert!(!err.to_string().is_empty(), "{name}");
        if *name == "too large" {
            assert!(
                matches!(err, CassetteError::TooLarge { .. }),
                "{name}: {err}"
            );
        }
        if *name == "too many" {
            assert!(
                matches!(err, CassetteError::TooManyExchanges { .. }),
                "{name}: {err}"
            );
        }
        if *name == "deep nesting" {
            assert!(err.to_string().contains("recursion limit"), "{err}");
        }
        if *name == "bad method" {
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
        if *name == "get answered stored" {
            assert_eq!(
                err.to_string(),
                "exchange #1 (kv get `k`): a kv get is answered with `value`"
            );
        }
    }
    // Unicode and injection-looking text that is well formed is just data.
    let ok = r#"[{"kind":"http","request":{"method":"GET","url":"http://a/☃?q={{secret:X}}'; DROP TABLE","body":"<script>\u0000"},"response":{"error":{"timeout":"x"}}}]"#;
    let exchanges = tape::from_json(ok).expect("well formed");
    assert!(exchanges[0].to_string().contains("☃"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_exchange_given_directly_is_a_mismatch_not_a_panic() {
    let host = Host::new();
    let p = bind(&host, "[kv]", &[], Arc::new(MemoryKv::new()));
    let bad: Vec<Exchange> = serde_json::from_str(
        r#"[{"kind":"kv","request":{"op":"get","key":"k"},"response":{"ok":{"keys":["x"]}}}]"#,
    )
    .expect("well-typed");
    assert!(tape::validate(&bad).is_err());
    let cassette = Cassette::new(bad);
    let r = taped(
        &p,
        "kv-get",
        &json!({"key": "k"}),
        "bad",
        &Tape::Replay(cassette),
    )
    .await;
    assert!(
        mismatch(&r).expected.contains("malformed"),
        "{:?}",
        r.outcome
    );
}
