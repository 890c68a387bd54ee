//! What a package may do, in plain words, for the operator deciding to grant it.

use allama_grant::{Grant, HostRule};

use crate::Package;

fn hosts(rules: &[HostRule]) -> String {
    let names: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
    match names.len() {
        0 => "nowhere".into(),
        1 => format!("{} only", names[0]),
        _ => format!("{} only", names.join(", ")),
    }
}

/// One sentence per capability, e.g. "may send secret VT_API_KEY to
/// https://www.virustotal.com only; may not reveal it".
pub fn capabilities(grant: &Grant) -> Vec<String> {
    let mut out = Vec::new();
    let h = &grant.http;
    if h.allow.is_empty() && h.allow_private.is_empty() {
        out.push("may not make HTTP requests".into());
    } else {
        if !h.allow.is_empty() {
            out.push(format!("may send HTTP requests to {}", hosts(&h.allow)));
        }
        if !h.allow_private.is_empty() {
            out.push(format!(
                "may reach private or loopback addresses at {}",
                hosts(&h.allow_private)
            ));
        }
        out.push(format!(
            "each request: at most {} s, {} KiB of response, {} redirects",
            h.timeout.as_secs_f64(),
            h.max_response_bytes / 1024,
            h.max_redirects
        ));
    }
    if grant.secrets.is_empty() {
        out.push("may use no secret".into());
    }
    for (name, s) in &grant.secrets {
        let mut line = format!("may send secret {name} to {}", hosts(&s.hosts));
        line.push_str(if s.reveal {
            "; MAY READ ITS PLAINTEXT"
        } else {
            "; may not reveal it"
        });
        if s.hmac {
            line.push_str("; may compute HMAC-SHA256 with it");
        }
        out.push(line);
    }
    match &grant.kv {
        None => out.push("may not use key-value storage".into()),
        Some(kv) => out.push(format!(
            "may store up to {} keys, {} KiB in total, {} KiB per value, in its own namespace",
            kv.max_keys,
            kv.max_total_bytes / 1024,
            kv.max_value_bytes / 1024
        )),
    }
    let l = &grant.limits;
    out.push(format!(
        "each step: {} MiB memory; {} s; {} KiB output; {} KiB of logs",
        l.memory_bytes >> 20,
        l.timeout.as_secs_f64(),
        l.output_bytes / 1024,
        l.log_bytes / 1024
    ));
    out
}

/// The whole description of a verified package.
pub fn describe(pkg: &Package) -> String {
    let m = &pkg.manifest;
    let mut s = format!("{}\n", m.title());
    if !m.description.is_empty() {
        s.push_str(&format!("  {}\n", m.description));
    }
    s.push_str(&format!(
        "component: sha256:{} ({} bytes)\n",
        pkg.component_digest(),
        pkg.component().len()
    ));
    if pkg.signers.is_empty() {
        s.push_str("signatures: none (unsigned)\n");
    }
    for signer in &pkg.signers {
        let trust = if signer.trusted {
            format!("trusted for publisher {}", m.publisher)
        } else {
            "NOT in the trust policy".into()
        };
        s.push_str(&format!("signature: valid, by {} ({trust})\n", signer.key));
    }
    s.push_str("actions:\n");
    for a in &m.actions {
        let mut extra = Vec::new();
        if a.input.is_some() {
            extra.push("input schema".to_string());
        }
        if a.output.is_some() {
            extra.push("output schema".to_string());
        }
        if !a.sensitive.is_empty() {
            extra.push(format!("masks {}", a.sensitive.join(", ")));
        }
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" [{}]", extra.join("; "))
        };
        s.push_str(&format!(
            "  {} — {}{extra}\n",
            a.name,
            if a.description.is_empty() {
                "(no description)"
            } else {
                &a.description
            }
        ));
    }
    s.push_str("what it asks for (an operator may grant less):\n");
    for line in capabilities(&m.capabilities) {
        s.push_str(&format!("  - {line}\n"));
    }
    s.push_str(
        "no package may read files, read environment variables, open sockets or resolve names\n",
    );
    s
}
