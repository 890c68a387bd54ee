use std::collections::BTreeMap;

use super::*;

const MANIFEST: &str = r#"[package]
name = "virustotal"
version = "1.2.0"
publisher = "allama"
description = "VirusTotal v3 lookups"

[[actions]]
name = "ip-report"
description = "Reputation of an IP address"
input = "schemas/ip.input.json"
output = { type = "object" }
sensitive = ["/data/attributes/whois"]

[capabilities.limits]
memory_mib = 64
timeout_ms = 10000

[capabilities.http]
allow = ["https://www.virustotal.com"]

[capabilities.secrets.VT_API_KEY]
hosts = ["https://www.virustotal.com"]
"#;

fn files() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([(
        "schemas/ip.input.json".to_string(),
        br#"{"type":"object","required":["ip"]}"#.to_vec(),
    )])
}

fn parse(src: &str) -> Result<Manifest, GrantError> {
    Manifest::parse(src, "allama.toml", &files()).map(|(m, _)| m)
}

fn package_file(component: Vec<u8>) -> PackageFile {
    PackageFile {
        manifest: MANIFEST.as_bytes().to_vec(),
        files: files(),
        component,
        signatures: vec![],
    }
}

#[test]
fn a_full_manifest_parses() {
    let (m, used) = Manifest::parse(MANIFEST, "allama.toml", &files()).unwrap();
    assert_eq!(m.title(), "virustotal 1.2.0 by allama");
    assert_eq!(used, vec!["schemas/ip.input.json".to_string()]);
    let a = m.action("ip-report").unwrap();
    assert_eq!(a.input.as_ref().unwrap()["required"][0], "ip");
    assert_eq!(a.output.as_ref().unwrap()["type"], "object");
    assert_eq!(a.sensitive, vec!["/data/attributes/whois"]);
    assert_eq!(
        m.capabilities.http.allow[0].to_string(),
        "https://www.virustotal.com"
    );
    assert!(m.capabilities.secrets.contains_key("VT_API_KEY"));
}

/// Each bad manifest: (text to substitute, expected line, key, message part).
#[test]
fn manifest_errors_name_line_and_key() {
    let cases: &[(&str, &str, usize, &str, &str)] = &[
        (
            "name = \"virustotal\"",
            "name = \"VirusTotal\"",
            2,
            "package.name",
            "not a valid package name",
        ),
        (
            "version = \"1.2.0\"",
            "version = \"1.2\"",
            3,
            "package.version",
            "not a semantic version",
        ),
        (
            "publisher = \"allama\"",
            "publisher = \"Al lama\"",
            4,
            "package.publisher",
            "not a valid publisher",
        ),
        (
            "description = \"VirusTotal v3 lookups\"",
            "descripton = \"x\"",
            5,
            "package",
            "unknown field `descripton`",
        ),
        (
            "name = \"ip-report\"",
            "name = \"ip report\"",
            8,
            "actions[0].name",
            "not a valid action name",
        ),
        (
            "input = \"schemas/ip.input.json\"",
            "input = \"../../etc/passwd\"",
            10,
            "actions[0].input",
            "relative path inside the package",
        ),
        (
            "input = \"schemas/ip.input.json\"",
            "input = \"/etc/passwd\"",
            10,
            "actions[0].input",
            "relative path inside the package",
        ),
        (
            "input = \"schemas/ip.input.json\"",
            "input = \"schemas/missing.json\"",
            10,
            "actions[0].input",
            "missing.json",
        ),
        (
            "output = { type = \"object\" }",
            "output = 42",
            11,
            "actions[0].output",
            "a JSON Schema file path (a string) or an inline JSON Schema (a table)",
        ),
        (
            "sensitive = [\"/data/attributes/whois\"]",
            "sensitive = [\"data.whois\"]",
            12,
            "actions[0].sensitive[0]",
            "JSON pointer",
        ),
        (
            "allow = [\"https://www.virustotal.com\"]",
            "allow = [\"https://*.\"]",
            19,
            "capabilities.http.allow[0]",
            "not a valid host pattern",
        ),
        (
            "memory_mib = 64",
            "memory_mib = 99999",
            15,
            "capabilities.limits.memory_mib",
            "out of range",
        ),
        (
            "[capabilities.http]",
            "[capabilities.htp]",
            18,
            "capabilities",
            "unknown field `htp`",
        ),
    ];
    for (from, to, line, key, msg) in cases {
        assert!(MANIFEST.contains(from), "{from}");
        let src = MANIFEST.replacen(from, to, 1);
        let e = parse(&src).expect_err(to);
        assert_eq!(e.line, Some(*line), "{to}: {e}");
        assert!(
            e.key.as_deref().unwrap_or("").starts_with(key),
            "{to}: key {:?} in {e}",
            e.key
        );
        assert!(e.to_string().contains(msg), "{to}: {e}");
        assert!(
            e.to_string().starts_with(&format!("allama.toml:{line}:")),
            "{e}"
        );
    }
}

#[test]
fn invalid_json_schema_file_and_missing_pieces() {
    let mut bad = files();
    bad.insert("schemas/ip.input.json".into(), b"{not json".to_vec());
    let e = Manifest::parse(MANIFEST, "allama.toml", &bad).unwrap_err();
    assert!(e.to_string().contains("is not valid JSON"), "{e}");
    let no_actions = MANIFEST.split("[[actions]]").next().unwrap().to_string();
    assert!(
        parse(&no_actions)
            .unwrap_err()
            .to_string()
            .contains("declares no action")
    );
    let dup = MANIFEST.replace(
        "[capabilities.limits]",
        "[[actions]]\nname = \"ip-report\"\n\n[capabilities.limits]",
    );
    assert!(
        parse(&dup)
            .unwrap_err()
            .to_string()
            .contains("declared twice")
    );
    assert!(
        parse("[package]\nname = \"x\"")
            .unwrap_err()
            .to_string()
            .contains("missing field")
    );
    assert!(parse("not toml at all [").is_err());
    assert!(
        parse("")
            .unwrap_err()
            .to_string()
            .contains("missing field `package`")
    );
}

#[test]
fn a_package_round_trips_and_opens() {
    let mut f = package_file(b"\0asm-component-bytes".to_vec());
    let (key, _) = SigningKey::generate().unwrap();
    add_signature(&mut f, &key);
    let bytes = f.to_bytes();
    let p = Package::open(&bytes, "vt.allama", &TrustPolicy::permissive()).unwrap();
    assert_eq!(p.component(), b"\0asm-component-bytes");
    assert_eq!(
        p.signers,
        vec![Signer {
            key: key.public_key(),
            trusted: false
        }]
    );
    assert_eq!(PackageFile::parse(&bytes).unwrap().0, f);
}

#[test]
fn tampering_with_any_byte_of_a_signed_package_is_detected() {
    let mut f = package_file((0..3000u32).map(|i| (i % 251) as u8).collect());
    let (key, _) = SigningKey::generate().unwrap();
    add_signature(&mut f, &key);
    let bytes = f.to_bytes();
    let mut policy = TrustPolicy {
        require_signatures: true,
        ..Default::default()
    };
    policy
        .publishers
        .insert("allama".into(), vec![key.public_key()]);
    assert!(Package::open(&bytes, "p", &policy).is_ok());
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut t = bytes.clone();
            t[i] ^= flip;
            assert!(
                Package::open(&t, "p", &policy).is_err(),
                "flipping bit {flip:#x} of byte {i} of {} went unnoticed",
                bytes.len()
            );
        }
    }
    // Truncation at every length, and any trailing byte.
    for n in 0..bytes.len() {
        assert!(
            Package::open(&bytes[..n], "p", &policy).is_err(),
            "truncated to {n}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(
        matches!(Package::open(&longer, "p", &policy), Err(PackageError::Malformed(m)) if m.contains("after the signatures"))
    );
}

#[test]
fn trust_policy_decides_unsigned_and_untrusted_packages() {
    let unsigned = package_file(b"c".to_vec()).to_bytes();
    let strict = TrustPolicy {
        require_signatures: true,
        ..Default::default()
    };
    let e = Package::open(&unsigned, "p", &strict).unwrap_err();
    assert!(matches!(e, PackageError::Unsigned { .. }), "{e}");
    assert!(
        e.to_string().contains("virustotal 1.2.0 is unsigned")
            && e.to_string().contains("`allama`")
    );
    assert!(Package::open(&unsigned, "p", &TrustPolicy::permissive()).is_ok());

    let (stranger, _) = SigningKey::generate().unwrap();
    let mut f = package_file(b"c".to_vec());
    add_signature(&mut f, &stranger);
    let e = Package::open(&f.to_bytes(), "p", &strict).unwrap_err();
    assert!(matches!(e, PackageError::Untrusted { .. }), "{e}");
    assert!(e.to_string().contains(&stranger.public_key().to_string()));

    // A key trusted for another publisher does not count.
    let mut other = strict.clone();
    other
        .publishers
        .insert("someone-else".into(), vec![stranger.public_key()]);
    assert!(matches!(
        Package::open(&f.to_bytes(), "p", &other),
        Err(PackageError::Untrusted { .. })
    ));
}

#[test]
fn trust_policy_files_parse_with_located_errors() {
    let (k, _) = SigningKey::generate().unwrap();
    let src = format!(
        "require_signatures = true\n[publishers.allama]\nkeys = [\"{}\"]\n",
        k.public_key()
    );
    let p = TrustPolicy::parse(&src, "trust.toml").unwrap();
    assert!(p.require_signatures && p.trusts("allama", &k.public_key()));
    let e = TrustPolicy::parse(
        "[publishers.allama]\nkeys = [\"ed25519:abcd\"]\n",
        "trust.toml",
    )
    .unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.to_string().contains("32 bytes"), "{e}");
    assert!(
        TrustPolicy::parse("require_signature = true", "trust.toml")
            .unwrap_err()
            .to_string()
            .contains("unknown field")
    );
}

#[test]
fn keys_round_trip_through_their_files() {
    let (k, text) = SigningKey::generate().unwrap();
    let again = SigningKey::from_file_text(&text).unwrap();
    assert_eq!(k.public_key(), again.public_key());
    assert_eq!(
        k.public_key().to_string().parse::<PublicKey>().unwrap(),
        k.public_key()
    );
    for bad in [
        "",
        "hello",
        "allama-ed25519-private-key:zz",
        "allama-ed25519-private-key:00ff",
    ] {
        assert!(SigningKey::from_file_text(bad).is_err(), "{bad}");
    }
    for bad in [
        "",
        "ed25519:",
        "rsa:00",
        "ed25519:xyz",
        &format!("ed25519:{}", "00".repeat(31)),
    ] {
        assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
    }
}

fn grant(src: &str) -> Grant {
    Grant::from_toml_str(src, "grant.toml").unwrap()
}

#[test]
fn grants_may_narrow_but_never_widen() {
    let request = grant(
        "[limits]\nmemory_mib = 64\n[http]\nallow = [\"https://*.example.com\", \"https://api.vendor.com\"]\n\
         [secrets.K]\nhosts = [\"https://api.vendor.com\"]\n[kv]\nmax_keys = 100\n",
    );
    let narrowing = [
        "",
        "[limits]\nmemory_mib = 32",
        "[http]\nallow = [\"https://a.example.com\", \"https://*.b.example.com\"]",
        "[secrets.K]\nhosts = []",
        "[kv]\nmax_keys = 10",
    ];
    for g in narrowing {
        assert_eq!(
            narrow::widenings(&request, &grant(g)),
            Vec::<String>::new(),
            "{g}"
        );
    }
    let widening: &[(&str, &str)] = &[
        (
            "[limits]\nmemory_mib = 128",
            "limits.memory_mib = 128 MiB is more than the package asks for (64 MiB)",
        ),
        (
            "[http]\nallow = [\"https://evil.com\"]",
            "http.allow[0] `https://evil.com` is not requested",
        ),
        ("[http]\nallow = [\"https://example.com\"]", "http.allow[0]"),
        (
            "[http]\nallow = [\"https://a.example.com:8443\"]",
            "http.allow[0]",
        ),
        (
            "[http]\nallow = [\"http://api.vendor.com\"]",
            "http.allow[0]",
        ),
        (
            "[http]\nallow_private = [\"http://127.0.0.1:8080\"]",
            "http.allow_private[0]",
        ),
        (
            "[secrets.OTHER]\nhosts = []",
            "secrets.OTHER is not requested",
        ),
        (
            "[secrets.K]\nhosts = [\"https://a.example.com\"]",
            "secrets.K.hosts[0]",
        ),
        (
            "[secrets.K]\nhosts = []\nreveal = true",
            "secrets.K.reveal = true is not requested",
        ),
        (
            "[secrets.K]\nhosts = []\nhmac = true",
            "secrets.K.hmac = true is not requested",
        ),
        ("[kv]\nmax_keys = 1000", "kv.max_keys = 1000"),
        (
            "[http]\nrate_limit_wait_ms = 60000",
            "http.rate_limit_wait_ms = 60000 ms",
        ),
    ];
    for (g, msg) in widening {
        let w = narrow::widenings(&request, &grant(g));
        assert!(w.iter().any(|p| p.contains(msg)), "{g}: {w:?}");
    }
    assert_eq!(
        narrow::widenings(&grant(""), &grant("[kv]")),
        vec!["kv is not requested".to_string()]
    );
}

#[test]
fn effective_grant_is_the_request_or_a_checked_narrowing() {
    let p = Package::open(
        &package_file(b"c".to_vec()).to_bytes(),
        "p",
        &TrustPolicy::permissive(),
    )
    .unwrap();
    assert_eq!(p.effective_grant(None).unwrap(), p.manifest.capabilities);
    let e = p
        .effective_grant(Some(&grant("[http]\nallow = [\"https://evil.com\"]")))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("virustotal 1.2.0 asks for more than the package requests"),
        "{e}"
    );
}

#[test]
fn inspect_says_what_the_package_may_do_in_plain_words() {
    let p = Package::open(
        &package_file(b"c".to_vec()).to_bytes(),
        "p",
        &TrustPolicy::permissive(),
    )
    .unwrap();
    let text = inspect::describe(&p);
    for phrase in [
        "virustotal 1.2.0 by allama",
        "may send HTTP requests to https://www.virustotal.com only",
        "may send secret VT_API_KEY to https://www.virustotal.com only; may not reveal it",
        "may not use key-value storage",
        "each step: 64 MiB memory; 10 s;",
        "signatures: none (unsigned)",
        "ip-report — Reputation of an IP address [input schema; output schema; masks /data/attributes/whois]",
    ] {
        assert!(text.contains(phrase), "missing `{phrase}` in:\n{text}");
    }
}

/// The committed JSON Schemas match the code (regenerate with ALLAMA_BLESS=1).
#[test]
fn committed_json_schemas_are_current() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas");
    for (name, schema) in [
        ("manifest", manifest::json_schema()),
        ("grant", allama_grant::json_schema()),
    ] {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(format!("{name}.schema.json"));
        if std::env::var_os("ALLAMA_BLESS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is stale: run `ALLAMA_BLESS=1 cargo test -p allama-package committed_json_schemas` and commit it",
            path.display()
        );
    }
}

#[test]
fn the_manifest_schema_documents_every_section() {
    let s = serde_json::to_value(manifest::json_schema()).unwrap();
    let props = &s["properties"];
    for key in ["package", "actions", "capabilities"] {
        assert!(props.get(key).is_some(), "no {key} in {s}");
    }
    let text = s.to_string();
    for needle in [
        "allow_private",
        "memory_mib",
        "sensitive",
        "publisher",
        "reveal",
    ] {
        assert!(text.contains(needle), "schema lacks {needle}");
    }
}

#[test]
fn sensitive_values_are_masked_by_pointer() {
    let mut v = serde_json::json!({"data": {"attributes": {"whois": "Registrant: Alice", "score": 3}}, "list": [1, {"k": "s"}]});
    let n = manifest::mask_sensitive(
        &mut v,
        &[
            "/data/attributes/whois".into(),
            "/list/1/k".into(),
            "/absent".into(),
        ],
    );
    assert_eq!(n, 2);
    assert_eq!(v["data"]["attributes"]["whois"], manifest::MASK);
    assert_eq!(v["data"]["attributes"]["score"], 3);
    assert_eq!(v["list"][1]["k"], manifest::MASK);
    let mut whole = serde_json::json!({"token": "x"});
    assert_eq!(manifest::mask_sensitive(&mut whole, &["".into()]), 1);
    assert_eq!(whole, serde_json::json!(manifest::MASK));
}

#[test]
fn text_an_operator_reads_cannot_carry_control_characters() {
    let forged = MANIFEST.replace(
        "description = \"VirusTotal v3 lookups\"",
        "description = \"ok\\nsignature: valid, by ed25519:00 (trusted for publisher allama)\\u001b[2K\"",
    );
    let e = parse(&forged).unwrap_err();
    assert!(
        e.to_string().contains("package.description")
            && e.to_string().contains("control characters"),
        "{e}"
    );
    let forged_action = MANIFEST.replace(
        "description = \"Reputation of an IP address\"",
        "description = \"x\\r\"",
    );
    assert!(
        parse(&forged_action)
            .unwrap_err()
            .to_string()
            .contains("actions[0].description")
    );
}
