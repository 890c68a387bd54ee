//! An operator's grant may narrow what a package asks for, never widen it.

use allama_grant::{Grant, HostPattern, HostRule};

/// Whether `inner` allows only destinations `outer` also allows.
pub fn rule_covers(outer: &HostRule, inner: &HostRule) -> bool {
    if outer.scheme != inner.scheme || outer.port != inner.port {
        return false;
    }
    match (&outer.host, &inner.host) {
        (HostPattern::Exact(a), HostPattern::Exact(b)) => a.eq_ignore_ascii_case(b),
        (HostPattern::Ip(a), HostPattern::Ip(b)) => a == b,
        (HostPattern::Wildcard(suffix), HostPattern::Exact(name)) => {
            let name = name.to_ascii_lowercase();
            name.len() > suffix.len() + 1
                && name.ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
        }
        (HostPattern::Wildcard(outer), HostPattern::Wildcard(inner)) => {
            let (o, i) = (outer.to_ascii_lowercase(), inner.to_ascii_lowercase());
            i == o || i.ends_with(&format!(".{o}"))
        }
        _ => false,
    }
}

fn covered(outer: &[HostRule], inner: &HostRule) -> bool {
    outer.iter().any(|o| rule_covers(o, inner))
}

fn list(rules: &[HostRule]) -> String {
    if rules.is_empty() {
        "nothing".into()
    } else {
        rules
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every way `grant` asks for more than `request`; empty if it only narrows.
pub fn widenings(request: &Grant, grant: &Grant) -> Vec<String> {
    let mut out = Vec::new();
    let (rl, gl) = (&request.limits, &grant.limits);
    let mut limit = |key: &str, asked: u64, given: u64, unit: &str, scale: u64| {
        if given > asked {
            out.push(format!(
                "{key} = {} {unit} is more than the package asks for ({} {unit})",
                given / scale,
                asked / scale
            ));
        }
    };
    limit(
        "limits.memory_mib",
        rl.memory_bytes,
        gl.memory_bytes,
        "MiB",
        1 << 20,
    );
    limit(
        "limits.timeout_ms",
        rl.timeout.as_millis() as u64,
        gl.timeout.as_millis() as u64,
        "ms",
        1,
    );
    limit(
        "limits.output_kib",
        rl.output_bytes,
        gl.output_bytes,
        "KiB",
        1024,
    );
    limit("limits.log_kib", rl.log_bytes, gl.log_bytes, "KiB", 1024);
    let (rh, gh) = (&request.http, &grant.http);
    limit(
        "http.timeout_ms",
        rh.timeout.as_millis() as u64,
        gh.timeout.as_millis() as u64,
        "ms",
        1,
    );
    limit(
        "http.max_response_kib",
        rh.max_response_bytes,
        gh.max_response_bytes,
        "KiB",
        1024,
    );
    limit(
        "http.max_redirects",
        u64::from(rh.max_redirects),
        u64::from(gh.max_redirects),
        "redirects",
        1,
    );
    limit(
        "http.rate_limit_wait_ms",
        rh.rate_limit_wait.as_millis() as u64,
        gh.rate_limit_wait.as_millis() as u64,
        "ms",
        1,
    );

    for (i, r) in gh.allow.iter().enumerate() {
        if !covered(&rh.allow, r) && !covered(&rh.allow_private, r) {
            out.push(format!(
                "http.allow[{i}] `{r}` is not requested (the package asks for {})",
                list(&rh.allow)
            ));
        }
    }
    for (i, r) in gh.allow_private.iter().enumerate() {
        if !covered(&rh.allow_private, r) {
            out.push(format!(
                "http.allow_private[{i}] `{r}` is not requested (private access the package asks for: {})",
                list(&rh.allow_private)
            ));
        }
    }
    for (name, g) in &grant.secrets {
        let Some(r) = request.secrets.get(name) else {
            out.push(format!("secrets.{name} is not requested"));
            continue;
        };
        for (i, h) in g.hosts.iter().enumerate() {
            if !covered(&r.hosts, h) {
                out.push(format!(
                    "secrets.{name}.hosts[{i}] `{h}` is not requested (the package asks for {})",
                    list(&r.hosts)
                ));
            }
        }
        if g.reveal && !r.reveal {
            out.push(format!("secrets.{name}.reveal = true is not requested"));
        }
        if g.hmac && !r.hmac {
            out.push(format!("secrets.{name}.hmac = true is not requested"));
        }
    }
    match (&request.kv, &grant.kv) {
        (None, Some(_)) => out.push("kv is not requested".into()),
        (Some(r), Some(g)) => {
            let mut q = |key: &str, asked: u64, given: u64| {
                if given > asked {
                    out.push(format!(
                        "{key} = {given} is more than the package asks for ({asked})"
                    ));
                }
            };
            q("kv.max_keys", r.max_keys, g.max_keys);
            q(
                "kv.max_total_kib",
                r.max_total_bytes / 1024,
                g.max_total_bytes / 1024,
            );
            q(
                "kv.max_value_kib",
                r.max_value_bytes / 1024,
                g.max_value_bytes / 1024,
            );
        }
        _ => {}
    }
    out
}
