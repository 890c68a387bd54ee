//! VirusTotal v3 (<https://docs.virustotal.com/reference/overview>): reports
//! for IPs, domains, URLs and files, and URL submission. The API key travels
//! as the handle `VT_API_KEY` in the `x-apikey` header; the component never
//! sees it.

use allama_sdk::{Context, Error, JsonSchema, Result, actions, http};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const API: &str = "https://www.virustotal.com/api/v3";

/// `{"ip": "203.0.113.7"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupIp {
    /// An IPv4 or IPv6 address.
    pub ip: String,
}

/// `{"domain": "example.com"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupDomain {
    /// A domain name.
    pub domain: String,
}

/// `{"url": "https://…"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupUrl {
    /// An http or https URL.
    pub url: String,
}

/// `{"hash": "…"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupFile {
    /// MD5, SHA-1 or SHA-256, hexadecimal.
    pub hash: String,
}

/// A normalised reputation report.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Report {
    /// What was looked up, as VirusTotal names it.
    pub id: String,
    /// `ip_address`, `domain`, `url` or `file`.
    pub kind: String,
    /// `malicious`, `suspicious`, `clean` or `unknown`.
    pub verdict: String,
    /// Engines that flagged it malicious.
    pub malicious: u64,
    /// Engines that flagged it suspicious.
    pub suspicious: u64,
    /// Engines that found it harmless.
    pub harmless: u64,
    /// Engines with no opinion.
    pub undetected: u64,
    /// VirusTotal community reputation.
    pub reputation: i64,
    /// Link to the VirusTotal GUI.
    pub link: String,
}

/// A URL submission.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Submission {
    /// The analysis id to poll.
    pub analysis_id: String,
}

fn verdict(malicious: u64, suspicious: u64, harmless: u64, undetected: u64) -> &'static str {
    if malicious > 0 {
        "malicious"
    } else if suspicious > 0 {
        "suspicious"
    } else if harmless + undetected > 0 {
        "clean"
    } else {
        "unknown"
    }
}

fn report(path: &str, gui: String) -> Result<Report> {
    let body: Value = http::get(&format!("{API}/{path}"))
        .auth(http::header("x-apikey", "VT_API_KEY"))
        .send()?
        .error_for_status()
        .map_err(vt_error)?
        .json()?;
    let data = &body["data"];
    let attrs = &data["attributes"];
    let stats = &attrs["last_analysis_stats"];
    let n = |k: &str| stats[k].as_u64().unwrap_or(0);
    let (malicious, suspicious, harmless, undetected) = (
        n("malicious"),
        n("suspicious"),
        n("harmless"),
        n("undetected"),
    );
    Ok(Report {
        id: data["id"].as_str().unwrap_or_default().to_string(),
        kind: data["type"].as_str().unwrap_or_default().to_string(),
        verdict: verdict(malicious, suspicious, harmless, undetected).to_string(),
        malicious,
        suspicious,
        harmless,
        undetected,
        reputation: attrs["reputation"].as_i64().unwrap_or(0),
        link: format!("https://www.virustotal.com/gui/{gui}"),
    })
}

/// VirusTotal's error body (`{"error": {"code", "message"}}`) in the message.
fn vt_error(mut e: Error) -> Error {
    if let Some(v) = e
        .message
        .find("{\"error\"")
        .and_then(|i| serde_json::from_str::<Value>(&e.message[i..]).ok())
    {
        let code = v["error"]["code"].as_str().unwrap_or("?");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        e.message = format!("VirusTotal {code}: {msg}");
    }
    e
}

fn ip_report(input: LookupIp, _ctx: &Context) -> Result<Report> {
    let ip: std::net::IpAddr =
        input.ip.trim().parse().map_err(|_| {
            Error::invalid_input(format!("`{}` is not an IP address", clip(&input.ip)))
        })?;
    report(&format!("ip_addresses/{ip}"), format!("ip-address/{ip}"))
}

fn valid_domain(d: &str) -> bool {
    d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
        })
}

fn domain_report(input: LookupDomain, _ctx: &Context) -> Result<Report> {
    let d = input
        .domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if !valid_domain(&d) {
        return Err(Error::invalid_input(format!(
            "`{}` is not a domain name",
            clip(&input.domain)
        )));
    }
    report(&format!("domains/{d}"), format!("domain/{d}"))
}

fn checked_url(url: &str) -> Result<&str> {
    let u = url.trim();
    if !(u.starts_with("http://") || u.starts_with("https://"))
        || u.len() > 8192
        || u.chars().any(char::is_control)
    {
        return Err(Error::invalid_input(format!(
            "`{}` is not an http(s) URL",
            clip(url)
        )));
    }
    Ok(u)
}

fn url_report(input: LookupUrl, _ctx: &Context) -> Result<Report> {
    let u = checked_url(&input.url)?;
    // VirusTotal identifies a URL by its unpadded URL-safe base64.
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(u);
    report(&format!("urls/{id}"), format!("url/{id}"))
}

fn file_report(input: LookupFile, _ctx: &Context) -> Result<Report> {
    let h = input.hash.trim().to_ascii_lowercase();
    if !matches!(h.len(), 32 | 40 | 64) || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid_input(format!(
            "`{}` is not an MD5, SHA-1 or SHA-256 hash",
            clip(&input.hash)
        )));
    }
    report(&format!("files/{h}"), format!("file/{h}"))
}

fn url_submit(input: LookupUrl, _ctx: &Context) -> Result<Submission> {
    let u = checked_url(&input.url)?;
    let body: Value = http::post(&format!("{API}/urls"))
        .auth(http::header("x-apikey", "VT_API_KEY"))
        .form(&[("url", u)])
        .send()?
        .error_for_status()
        .map_err(vt_error)?
        .json()?;
    let id = body["data"]["id"].as_str().ok_or_else(|| {
        Error::upstream(None, "VirusTotal answered without an analysis id").retryable(false)
    })?;
    Ok(Submission {
        analysis_id: id.to_string(),
    })
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

actions! {
    "ip-report" => ip_report,
    "domain-report" => domain_report,
    "url-report" => url_report,
    "file-report" => file_report,
    "url-submit" => url_submit,
}

#[cfg(test)]
mod tests {
    use super::*;
    use allama_sdk::ErrorKind;
    use allama_sdk::testing::{MockHost, Reply};
    use serde_json::json;

    fn ip_body(m: u64, s: u64) -> Value {
        json!({"data": {"type": "ip_address", "id": "203.0.113.7", "attributes": {
            "reputation": -5, "last_analysis_stats": {"malicious": m, "suspicious": s, "harmless": 60, "undetected": 10, "timeout": 0}}}})
    }

    #[test]
    fn ip_report_sends_the_key_by_handle_and_normalises() {
        let host = MockHost::new().secret("VT_API_KEY", "k").on(
            "GET",
            "https://www.virustotal.com/api/v3/ip_addresses/203.0.113.7",
            Reply::json(200, ip_body(3, 1)),
        );
        let out = host
            .run(
                Actions::dispatch,
                "ip-report",
                json!({"ip": " 203.0.113.7 "}),
            )
            .unwrap();
        assert_eq!(out["verdict"], "malicious");
        assert_eq!(out["malicious"], 3);
        assert_eq!(out["reputation"], -5);
        assert_eq!(
            out["link"],
            "https://www.virustotal.com/gui/ip-address/203.0.113.7"
        );
        assert_eq!(host.requests()[0].header("x-apikey"), Some("k"));
    }

    #[test]
    fn bad_input_is_refused_before_any_request() {
        let host = MockHost::new().secret("VT_API_KEY", "k");
        for (action, input) in [
            ("ip-report", json!({"ip": "999.1.1.1"})),
            ("ip-report", json!({"ip": 7})),
            ("ip-report", json!({"address": "1.1.1.1"})),
            ("domain-report", json!({"domain": "not a domain"})),
            ("domain-report", json!({"domain": "x/../../admin"})),
            ("url-report", json!({"url": "javascript:alert(1)"})),
            ("file-report", json!({"hash": "abc"})),
            ("file-report", json!({"hash": "g".repeat(64)})),
        ] {
            let e = host
                .run(Actions::dispatch, action, input.clone())
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{action} {input}: {e}");
        }
        assert!(host.requests().is_empty());
    }

    #[test]
    fn vendor_errors_become_typed_errors() {
        let url = "https://www.virustotal.com/api/v3/domains/example.com";
        let cases = [
            (
                Reply::json(
                    404,
                    json!({"error": {"code": "NotFoundError", "message": "Domain not found"}}),
                ),
                ErrorKind::NotFound,
            ),
            (
                Reply::json(
                    401,
                    json!({"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}}),
                ),
                ErrorKind::Unauthorized,
            ),
            (
                Reply::json(
                    429,
                    json!({"error": {"code": "QuotaExceededError", "message": "Quota"}}),
                )
                .header("retry-after", "60"),
                ErrorKind::RateLimited(Some(60_000)),
            ),
            (
                Reply::json(
                    503,
                    json!({"error": {"code": "TransientError", "message": "try later"}}),
                ),
                ErrorKind::Upstream(Some(503)),
            ),
        ];
        for (reply, kind) in cases {
            let host = MockHost::new()
                .secret("VT_API_KEY", "k")
                .on("GET", url, reply);
            let e = host
                .run(
                    Actions::dispatch,
                    "domain-report",
                    json!({"domain": "Example.COM."}),
                )
                .unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
            assert!(e.message.starts_with("VirusTotal "), "{e}");
        }
    }

    #[test]
    fn url_ids_are_unpadded_url_safe_base64() {
        let url = "https://example.com/a?b=c";
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url);
        let host = MockHost::new().secret("VT_API_KEY", "k").on(
            "GET",
            &format!("https://www.virustotal.com/api/v3/urls/{id}"),
            Reply::json(
                200,
                json!({"data": {"type": "url", "id": id, "attributes": {}}}),
            ),
        );
        let out = host
            .run(Actions::dispatch, "url-report", json!({"url": url}))
            .unwrap();
        assert_eq!(out["verdict"], "unknown");
        assert!(!id.contains('='));
    }

    #[test]
    fn url_submit_posts_a_form() {
        let host = MockHost::new().secret("VT_API_KEY", "k").on(
            "POST",
            "https://www.virustotal.com/api/v3/urls",
            Reply::json(
                200,
                json!({"data": {"type": "analysis", "id": "u-abc-123"}}),
            ),
        );
        let out = host
            .run(
                Actions::dispatch,
                "url-submit",
                json!({"url": "https://example.com/x y"}),
            )
            .unwrap();
        assert_eq!(out["analysis_id"], "u-abc-123");
        assert_eq!(
            host.requests()[0].body_text(),
            "url=https%3A%2F%2Fexample.com%2Fx%20y"
        );
    }

    #[test]
    fn schemas_are_derived_from_the_types() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
        allama_sdk::schema::check_file::<LookupIp>(&format!("{dir}/lookup-ip.json")).unwrap();
        allama_sdk::schema::check_file::<LookupDomain>(&format!("{dir}/lookup-domain.json"))
            .unwrap();
        allama_sdk::schema::check_file::<LookupUrl>(&format!("{dir}/lookup-url.json")).unwrap();
        allama_sdk::schema::check_file::<LookupFile>(&format!("{dir}/lookup-file.json")).unwrap();
        allama_sdk::schema::check_file::<Report>(&format!("{dir}/report.json")).unwrap();
        allama_sdk::schema::check_file::<Submission>(&format!("{dir}/submission.json")).unwrap();
    }
}
