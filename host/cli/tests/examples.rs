//! The playbooks in `examples/`, end to end through the `allama` binary.
//!
//! 1. Every example validates against the real packages and replays its
//!    committed recordings (`examples/<name>.test/<case>/`) with no network:
//!    what `allama playbook test` does in a team's CI.
//! 2. Every case is recorded afresh against local peers that answer as the
//!    vendors' documented APIs do (HTTPS under the vendors' real names,
//!    pinned to loopback), the vendors' side effects are checked, and the
//!    fresh recording replays too. `ALLAMA_BLESS=1` writes the fresh
//!    recordings over the committed ones.
//! 3. A recording that no longer matches the playbook fails `playbook test`
//!    and names the difference.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use allama_test_peer::vendors::{AbuseIpDb, Jira, Slack, VirusTotal};
use allama_test_peer::{Peer, Recorded, Reply, Router};
use serde_json::{Value, json};

const VT_KEY: &str = "vt-example-key";
const ABUSE_KEY: &str = "abuse-example-key";
const SLACK_TOKEN: &str = "xoxb-example";
const JIRA_BASIC: &str = "soc-bot@acme.example:atl-example";
const FIREWALL_TOKEN: &str = "fw-example-token";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn examples() -> PathBuf {
    root().join("examples")
}

fn allama() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_allama"));
    for v in ["ALLAMA_DATA_DIR", "ALLAMA_PACKAGES"] {
        c.env_remove(v);
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The packages the examples use: four first-party ones, signed by a
/// throwaway key as a release would sign them, and the operator's firewall
/// package (the http action under `examples/packages/firewall/allama.toml`).
fn packages(dir: &Path) -> PathBuf {
    let out = dir.join("packages");
    std::fs::create_dir_all(&out).unwrap();
    let key = allama_package::SigningKey::generate().unwrap().0;
    for name in ["virustotal", "abuseipdb", "slack", "jira"] {
        let bytes = allama_first_party::package(allama_first_party::get(name), &key).unwrap();
        std::fs::write(out.join(format!("{name}.allama")), bytes).unwrap();
    }
    let src = dir.join("firewall-src");
    std::fs::create_dir_all(src.join("schemas")).unwrap();
    std::fs::copy(
        examples().join("packages/firewall/allama.toml"),
        src.join("allama.toml"),
    )
    .unwrap();
    let http = allama_first_party::get("http");
    for f in ["request.json", "response.json"] {
        std::fs::copy(
            Path::new(http.dir).join("schemas").join(f),
            src.join("schemas").join(f),
        )
        .unwrap();
    }
    ok(&allama()
        .args(["package", "build"])
        .arg(&src)
        .arg("--component")
        .arg(http.wasm)
        .arg("--out")
        .arg(out.join("firewall.allama"))
        .output()
        .unwrap());
    out
}

/// One recorded case of an example.
struct Case {
    playbook: &'static str,
    name: &'static str,
    event: Value,
    inputs: Option<Value>,
    decide: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            playbook: "ip-reputation",
            name: "malicious",
            event: json!({}),
            inputs: Some(json!({"ip": "185.220.101.45"})),
            decide: None,
        },
        Case {
            playbook: "ip-reputation",
            name: "clean",
            event: json!({}),
            inputs: Some(json!({"ip": "8.8.8.8"})),
            decide: None,
        },
        Case {
            playbook: "indicators",
            name: "phishing-alert",
            event: json!({"alert": {
                "title": "Phishing link clicked",
                "description": "User clicked hxxps://login-micros0ft[.]net/owa from 10.20.30.40; \
                                the page beaconed to 185[.]220[.]101[.]45 and 45.155.205.233, \
                                DNS via 8.8.8.8."
            }}),
            inputs: None,
            decide: None,
        },
        Case {
            playbook: "block-ip",
            name: "approved",
            event: json!({}),
            inputs: Some(json!({"ip": "185.220.101.45"})),
            decide: Some("block=approve"),
        },
        Case {
            playbook: "block-ip",
            name: "rejected",
            event: json!({}),
            inputs: Some(json!({"ip": "185.220.101.45"})),
            decide: Some("block=reject"),
        },
        Case {
            playbook: "triage",
            name: "two-sources",
            event: json!({"alert": {
                "title": "Brute force on vpn-gw-1",
                "source_ips": ["185.220.101.45", "8.8.8.8"]
            }}),
            inputs: None,
            decide: None,
        },
    ]
}

#[test]
fn examples_validate_and_replay_their_committed_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let packages = packages(dir.path());
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    let out = ok(&allama()
        .args(["playbook", "validate"])
        .args(&files)
        .arg("--packages")
        .arg(&packages)
        .output()
        .unwrap());
    assert_eq!(out.matches(": ok (").count(), 4, "{out}");
    for f in &files {
        let o = allama()
            .args(["playbook", "test"])
            .arg(f)
            .arg("--packages")
            .arg(&packages)
            .output()
            .unwrap();
        let out = ok(&o);
        let stem = f.file_stem().unwrap().to_str().unwrap();
        let expected = cases().iter().filter(|c| c.playbook == stem).count();
        assert!(
            out.contains(&format!("{expected} recording(s), 0 failed")),
            "{}: {out}",
            f.display()
        );
    }
}

/// The vendors, each an HTTPS peer under its real name.
struct Vendors {
    vt: Peer,
    abuse: Peer,
    slack_peer: Peer,
    slack: Slack,
    jira_peer: Peer,
    jira: Jira,
    firewall_peer: Peer,
    blocked: Arc<Mutex<Vec<Value>>>,
}

async fn vendors() -> Vendors {
    let vt = VirusTotal::new(VT_KEY)
        .with_ip("185.220.101.45", 14, 50)
        .with_ip("45.155.205.233", 9, 60)
        .with_ip("8.8.8.8", 0, 88)
        .with_domain("login-micros0ft.net", 11, 40);
    let vt = Peer::start_tls(vt.router(), &["www.virustotal.com"]).await;
    let abuse = AbuseIpDb::new(ABUSE_KEY)
        .with_ip("185.220.101.45", 100, 2231)
        .with_ip("8.8.8.8", 0, 12);
    let abuse = Peer::start_tls(abuse.router(), &["api.abuseipdb.com"]).await;
    let slack = Slack::new(SLACK_TOKEN).with_channel("C0SOC", "soc-alerts");
    let slack_peer = Peer::start_tls(slack.router(), &["slack.com"]).await;
    let jira = Jira::new("soc-bot@acme.example", "atl-example").with_project("SEC", "Security");
    let jira_peer = Peer::start_tls(jira.router(), &["acme.atlassian.net"]).await;
    // A firewall API: bearer token, one rule per Idempotency-Key.
    let blocked = Arc::new(Mutex::new(Vec::<Value>::new()));
    let b = blocked.clone();
    let fw = Router::new().route("POST", "/api/v1/blocklist", move |r: &Recorded| {
        if r.header("authorization") != Some(&format!("Bearer {FIREWALL_TOKEN}")) {
            return Reply::json(401, json!({"error": "invalid token"}));
        }
        let Some(body) = r.body_json() else {
            return Reply::json(400, json!({"error": "body must be JSON"}));
        };
        let mut b = b.lock().unwrap();
        let rule = json!({"id": format!("rule-{}", b.len() + 1), "address": body["address"]});
        b.push(json!({"rule": rule, "key": r.header("idempotency-key")}));
        Reply::json(201, rule)
    });
    let firewall_peer = Peer::start_tls(fw, &["firewall.corp.example"]).await;
    Vendors {
        vt,
        abuse,
        slack_peer,
        slack,
        jira_peer,
        jira,
        firewall_peer,
        blocked,
    }
}

impl Vendors {
    /// `--pin` and `--ca-cert` for every vendor, and the secrets.
    fn args(&self, dir: &Path) -> Vec<String> {
        let mut a = Vec::new();
        for (name, peer) in [
            ("www.virustotal.com", &self.vt),
            ("api.abuseipdb.com", &self.abuse),
            ("slack.com", &self.slack_peer),
            ("acme.atlassian.net", &self.jira_peer),
            ("firewall.corp.example", &self.firewall_peer),
        ] {
            let ca = dir.join(format!("{name}.pem"));
            std::fs::write(&ca, peer.ca_pem().unwrap()).unwrap();
            a.push("--pin".into());
            a.push(format!("{name}={}", peer.addr()));
            a.push("--ca-cert".into());
            a.push(ca.display().to_string());
        }
        for (k, v) in [
            ("VT_API_KEY", VT_KEY),
            ("ABUSEIPDB_API_KEY", ABUSE_KEY),
            ("SLACK_BOT_TOKEN", SLACK_TOKEN),
            ("JIRA_BASIC", JIRA_BASIC),
            ("FIREWALL_TOKEN", FIREWALL_TOKEN),
        ] {
            a.push("--secret".into());
            a.push(format!("{k}={v}"));
        }
        a
    }
}

fn record(case: &Case, packages: &Path, vendor_args: &[String], out: &Path) -> Output {
    let event = out.with_extension("event.json");
    std::fs::write(&event, case.event.to_string()).unwrap();
    let mut c = allama();
    c.args(["playbook", "run"])
        .arg(examples().join(format!("{}.yaml", case.playbook)))
        .arg("--event")
        .arg(&event)
        .arg("--record")
        .arg(out)
        .arg("--packages")
        .arg(packages)
        .arg("--data-dir")
        .arg(out.with_extension("data"))
        .args(vendor_args);
    if let Some(i) = &case.inputs {
        c.arg("--inputs").arg(i.to_string());
    }
    if let Some(d) = case.decide {
        c.arg("--decide").arg(d);
    }
    c.output().unwrap()
}

fn replay(playbook: &str, recording: &Path, packages: &Path) -> Output {
    allama()
        .args(["playbook", "test"])
        .arg(examples().join(format!("{playbook}.yaml")))
        .arg("--recording")
        .arg(recording)
        .arg("--packages")
        .arg(packages)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_record_against_vendor_peers_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let packages = packages(dir.path());
    let v = vendors().await;
    let vendor_args = v.args(dir.path());
    let bless = std::env::var_os("ALLAMA_BLESS").is_some();
    for case in cases() {
        let out = dir.path().join(format!("{}-{}", case.playbook, case.name));
        let label = format!("{}/{}", case.playbook, case.name);
        let slack_before = v.slack.messages().len();
        let blocked_before = v.blocked.lock().unwrap().len();
        let jira_before = v.jira.issues().len();
        let o = tokio::task::block_in_place(|| record(&case, &packages, &vendor_args, &out));
        assert!(o.status.success(), "{label}: {}", text(&o));
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("expected.json")).unwrap())
                .unwrap();
        assert_eq!(expected["status"], "succeeded", "{label}: {expected}");
        let tapes = std::fs::read_to_string(out.join("tapes.json")).unwrap();
        for secret in [
            VT_KEY,
            ABUSE_KEY,
            SLACK_TOKEN,
            FIREWALL_TOKEN,
            "atl-example",
        ] {
            assert!(
                !tapes.contains(secret),
                "{label}: a secret value was recorded"
            );
        }
        let new_messages: Vec<String> = v.slack.messages()[slack_before..]
            .iter()
            .map(|m| m.text.clone().unwrap_or_default())
            .collect();
        let blocked = v.blocked.lock().unwrap()[blocked_before..].to_vec();
        let issues = v.jira.issues().len() - jira_before;
        let outputs = &expected["outputs"];
        eprintln!("{label}: {expected:#}");
        match label.as_str() {
            "ip-reputation/malicious" => {
                assert_eq!(outputs["verdict"], "malicious");
                assert_eq!(expected["steps"]["all_clear"], "skipped");
                assert_eq!(new_messages.len(), 1);
                assert!(
                    new_messages[0].contains("185[.]220[.]101[.]45"),
                    "{new_messages:?}"
                );
            }
            "ip-reputation/clean" => {
                assert_eq!(outputs["verdict"], "clean");
                assert_eq!(expected["steps"]["alert_soc"], "skipped");
                assert!(new_messages[0].contains("looks clean"), "{new_messages:?}");
            }
            "indicators/phishing-alert" => {
                // 10.20.30.40 is private and not looked up; the rest keep the text's order.
                let ips: Vec<&str> = outputs["ips"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["ip"].as_str().unwrap())
                    .collect();
                assert_eq!(ips, ["185.220.101.45", "45.155.205.233", "8.8.8.8"]);
                assert_eq!(
                    outputs["malicious"],
                    json!(["185.220.101.45", "45.155.205.233", "login-micros0ft.net"])
                );
            }
            "block-ip/approved" => {
                assert_eq!(outputs["blocked"], true);
                assert_eq!(blocked.len(), 1, "one rule");
                assert_eq!(blocked[0]["rule"]["address"], "185.220.101.45");
                assert!(
                    blocked[0]["key"]
                        .as_str()
                        .is_some_and(|k| k.ends_with("/block"))
                );
                assert_eq!(expected["steps"]["declined"], "skipped");
            }
            "block-ip/rejected" => {
                assert_eq!(outputs["blocked"], false);
                assert!(
                    blocked.is_empty(),
                    "a rejected block never reaches the firewall"
                );
                assert!(
                    new_messages[0].contains("was not made: rejected by"),
                    "{new_messages:?}"
                );
            }
            "triage/two-sources" => {
                assert_eq!(
                    outputs["verdicts"],
                    json!([{"ip": "185.220.101.45", "verdict": "malicious"},
                           {"ip": "8.8.8.8", "verdict": "clean"}])
                );
                assert_eq!(issues, 1, "one Jira issue");
                assert!(
                    outputs["ticket"]
                        .as_str()
                        .is_some_and(|k| k.starts_with("SEC-"))
                );
                assert_eq!(new_messages.len(), 2, "each child run posted once");
            }
            other => panic!("no checks for {other}"),
        }
        // What was just recorded replays with no network.
        let o = replay(case.playbook, &out, &packages);
        assert!(
            o.status.success() && text(&o).contains("1 recording(s), 0 failed"),
            "{label}: {}",
            text(&o)
        );
        if bless {
            let dest = examples()
                .join(format!("{}.test", case.playbook))
                .join(case.name);
            std::fs::create_dir_all(&dest).unwrap();
            for f in ["event.json", "expected.json", "tapes.json"] {
                std::fs::copy(out.join(f), dest.join(f)).unwrap();
            }
        }
    }
}

#[test]
fn a_recording_that_no_longer_matches_fails_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let packages = packages(dir.path());
    let committed = examples().join("ip-reputation.test/malicious");
    let copy = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["event.json", "expected.json", "tapes.json"] {
            std::fs::copy(committed.join(f), d.join(f)).unwrap();
        }
        d
    };

    // A different expected output.
    let d = copy("changed-output");
    let p = d.join("expected.json");
    let mut e: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    e["outputs"]["verdict"] = json!("clean");
    std::fs::write(&p, e.to_string()).unwrap();
    let o = replay("ip-reputation", &d, &packages);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("verdict"), "{}", text(&o));

    // A vendor that answered differently: the verdict flips, and so do the steps.
    let d = copy("changed-answer");
    let p = d.join("tapes.json");
    let tapes = std::fs::read_to_string(&p).unwrap();
    let changed = tapes.replace("\\\"malicious\\\":14", "\\\"malicious\\\":0");
    assert_ne!(changed, tapes, "the recording holds VirusTotal's count");
    let changed = changed.replace(
        "\\\"abuseConfidenceScore\\\":100",
        "\\\"abuseConfidenceScore\\\":0",
    );
    std::fs::write(&p, changed).unwrap();
    let o = replay("ip-reputation", &d, &packages);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("FAIL"), "{}", text(&o));

    // A recording of another request: the replay names the mismatch.
    let d = copy("changed-request");
    let p = d.join("tapes.json");
    let tapes = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, tapes.replace("185.220.101.45", "185.220.101.46")).unwrap();
    let o = replay("ip-reputation", &d, &packages);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("185.220.101.46"), "{}", text(&o));

    // Garbage where a recording should be: a clear error, not a panic.
    let d = copy("garbage");
    std::fs::write(d.join("tapes.json"), "{\"vt#1\": [{\"kind\": \"ftp\"}]}").unwrap();
    let o = replay("ip-reputation", &d, &packages);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("tapes.json"), "{}", text(&o));
}
