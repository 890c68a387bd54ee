//! AbuseIPDB API v2 (<https://docs.abuseipdb.com/#introduction>): the abuse
//! reputation of an IP address ([`check`](https://docs.abuseipdb.com/#check-endpoint)),
//! reporting an address ([`report`](https://docs.abuseipdb.com/#report-endpoint))
//! and the blacklist ([`blacklist`](https://docs.abuseipdb.com/#blacklist-endpoint)).
//!
//! The API key travels as the handle `ABUSEIPDB_API_KEY` in the `Key`
//! header; the component never sees it. Every request asks for JSON
//! (`Accept: application/json`): without it AbuseIPDB renders its errors as
//! HTML pages. Its error bodies (`{"errors": [{"detail", "status"}]}`) become
//! the typed error's message; `422` (a parameter AbuseIPDB refused) is
//! `invalid-input`.

use std::net::IpAddr;

use allama_sdk::{Context, Error, JsonSchema, Result, actions, http};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const API: &str = "https://api.abuseipdb.com/api/v2";
/// The secret handle holding the API key.
const KEY: &str = "ABUSEIPDB_API_KEY";
/// At most this many of a verbose check's reports reach the output.
const MAX_REPORTS: usize = 100;

/// `{"ip": "203.0.113.7", "max_age_days": 30, "verbose": true}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// An IPv4 or IPv6 address.
    pub ip: String,
    /// Count reports of the last this many days (1 to 365; 90 if absent).
    #[schemars(range(min = 1, max = 365), extend("default" = 90))]
    pub max_age_days: Option<u32>,
    /// Also return the reports themselves (the newest 100) and the country name.
    #[schemars(extend("default" = false))]
    pub verbose: Option<bool>,
}

/// The normalised abuse reputation of an address.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct CheckResult {
    /// The address, in canonical form.
    pub ip: String,
    /// AbuseIPDB's abuse confidence score, 0 to 100.
    #[schemars(range(max = 100))]
    pub score: u8,
    /// Reports within `max_age_days`.
    pub total_reports: u64,
    /// Distinct users who filed those reports.
    pub distinct_users: u64,
    /// ISO 3166 alpha-2 country code, if known.
    pub country_code: Option<String>,
    /// The country's name, if known (verbose checks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_name: Option<String>,
    /// The network's operator, if known.
    pub isp: Option<String>,
    /// The operator's domain, if known.
    pub domain: Option<String>,
    /// E.g. `Data Center/Web Hosting/Transit`, if known.
    pub usage_type: Option<String>,
    /// Whether AbuseIPDB whitelists the address (unknown reads as `false`).
    pub is_whitelisted: bool,
    /// When it was last reported (ISO 8601), if ever.
    pub last_reported_at: Option<String>,
    /// `malicious` (score at least 75), `suspicious` (at least 25) or `clean`.
    pub verdict: String,
    /// The newest reports, at most 100 (verbose checks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reports: Option<Vec<AbuseReport>>,
}

/// One report about an address, as a verbose check returns it.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct AbuseReport {
    /// When it was filed (ISO 8601).
    pub reported_at: Option<String>,
    /// The reporter's comment.
    pub comment: String,
    /// AbuseIPDB category ids.
    pub categories: Vec<u8>,
    /// The reporter's AbuseIPDB user id.
    pub reporter_id: Option<u64>,
    /// The reporter's country code.
    pub reporter_country_code: Option<String>,
}

/// `{"ip": "203.0.113.7", "categories": [18, 22], "comment": "sshd brute force"}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The IPv4 or IPv6 address to report.
    pub ip: String,
    /// At least one AbuseIPDB category id, 1 to 23
    /// (<https://www.abuseipdb.com/categories>): e.g. 14 port scan,
    /// 18 brute-force, 22 SSH.
    #[schemars(length(min = 1), inner(range(min = 1, max = 23)))]
    pub categories: Vec<u8>,
    /// What was seen, at most 1024 characters. AbuseIPDB publishes it: leave
    /// out personal data.
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

/// A filed report.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct Reported {
    /// The address reported, as AbuseIPDB names it.
    pub ip: String,
    /// Its abuse confidence score after the report.
    #[schemars(range(max = 100))]
    pub score: u8,
}

/// `{"confidence_minimum": 90, "limit": 1000}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Blacklist {
    /// Only addresses scoring at least this (25 to 100; 90 if absent).
    #[schemars(range(min = 25, max = 100), extend("default" = 90))]
    pub confidence_minimum: Option<u8>,
    /// At most this many addresses (1 to 10000; 1000 if absent).
    #[schemars(range(min = 1, max = 10000), extend("default" = 1000))]
    pub limit: Option<u32>,
}

/// The blacklist, highest scores first.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct BlacklistResult {
    /// When AbuseIPDB generated it (ISO 8601).
    pub generated_at: Option<String>,
    /// The listed addresses.
    pub entries: Vec<BlacklistEntry>,
}

/// One blacklisted address.
#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct BlacklistEntry {
    /// The address.
    pub ip: String,
    /// Its abuse confidence score.
    #[schemars(range(max = 100))]
    pub score: u8,
    /// When it was last reported (ISO 8601).
    pub last_reported_at: Option<String>,
}

/// `malicious`, `suspicious` or `clean` for an abuse confidence score.
fn verdict(score: u8) -> &'static str {
    match score {
        75.. => "malicious",
        25.. => "suspicious",
        _ => "clean",
    }
}

/// Send with the key by handle and `Accept: application/json`; error
/// statuses become typed errors carrying AbuseIPDB's own words.
fn send(request: http::Request) -> Result<http::Response> {
    let response = request
        .auth(http::header("Key", KEY))
        .header("Accept", "application/json")
        .send()?;
    if response.status < 400 {
        return Ok(response);
    }
    let status = response.status;
    let detail = error_detail(&response.body);
    let mut e = if status == 422 {
        let text: String = response.text().chars().take(300).collect();
        Error::invalid_input(format!("AbuseIPDB 422: {text}"))
    } else {
        match response.error_for_status() {
            Err(e) => e,
            Ok(_) => Error::upstream(Some(status), format!("AbuseIPDB answered {status}")),
        }
    };
    if let Some(detail) = detail {
        e.message = format!("AbuseIPDB {status}: {detail}");
    }
    Err(e)
}

/// The details of AbuseIPDB's error body
/// (`{"errors": [{"detail", "status", "source"?: {"parameter"}}]}`), joined.
fn error_detail(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let details: Vec<String> = v["errors"]
        .as_array()?
        .iter()
        .filter_map(|e| {
            let detail = e["detail"].as_str()?;
            let detail: String = detail.chars().take(300).collect();
            Some(match e["source"]["parameter"].as_str() {
                Some(p) => format!("{detail} (parameter `{}`)", clip(p)),
                None => detail,
            })
        })
        .collect();
    (!details.is_empty()).then(|| details.join("; "))
}

/// An IP address, surrounding spaces allowed; control characters never.
fn parse_ip(text: &str) -> Result<IpAddr> {
    let bad = || Error::invalid_input(format!("`{}` is not an IP address", clip(text)));
    if text.chars().any(char::is_control) {
        return Err(bad());
    }
    text.trim().parse().map_err(|_| bad())
}

fn in_range<T: PartialOrd + Copy + std::fmt::Display>(
    name: &str,
    value: Option<T>,
    min: T,
    max: T,
    default: T,
) -> Result<T> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(Error::invalid_input(format!(
            "`{name}` must be between {min} and {max}, not {v}"
        )));
    }
    Ok(v)
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckData {
    ip_address: String,
    #[serde(default)]
    abuse_confidence_score: Option<u8>,
    #[serde(default)]
    total_reports: Option<u64>,
    #[serde(default)]
    num_distinct_users: Option<u64>,
    #[serde(default)]
    country_code: Option<String>,
    #[serde(default)]
    country_name: Option<String>,
    #[serde(default)]
    isp: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    usage_type: Option<String>,
    #[serde(default)]
    is_whitelisted: Option<bool>,
    #[serde(default)]
    last_reported_at: Option<String>,
    #[serde(default)]
    reports: Option<Vec<CheckReport>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckReport {
    #[serde(default)]
    reported_at: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    categories: Vec<u8>,
    #[serde(default)]
    reporter_id: Option<u64>,
    #[serde(default)]
    reporter_country_code: Option<String>,
}

fn check(input: Check, _ctx: &Context) -> Result<CheckResult> {
    let ip = parse_ip(&input.ip)?;
    let max_age = in_range("max_age_days", input.max_age_days, 1, 365, 90)?;
    let verbose = input.verbose.unwrap_or(false);
    let mut request = http::get(&format!("{API}/check"))
        .query("ipAddress", ip)
        .query("maxAgeInDays", max_age);
    if verbose {
        request = request.query("verbose", "true");
    }
    let d = send(request)?.json::<Envelope<CheckData>>()?.data;
    let score = d.abuse_confidence_score.unwrap_or(0);
    Ok(CheckResult {
        ip: d.ip_address,
        score,
        total_reports: d.total_reports.unwrap_or(0),
        distinct_users: d.num_distinct_users.unwrap_or(0),
        country_code: d.country_code,
        country_name: if verbose { d.country_name } else { None },
        isp: d.isp,
        domain: d.domain,
        usage_type: d.usage_type,
        is_whitelisted: d.is_whitelisted.unwrap_or(false),
        last_reported_at: d.last_reported_at,
        verdict: verdict(score).to_string(),
        reports: verbose.then(|| {
            d.reports
                .unwrap_or_default()
                .into_iter()
                .take(MAX_REPORTS)
                .map(|r| AbuseReport {
                    reported_at: r.reported_at,
                    comment: r.comment.unwrap_or_default(),
                    categories: r.categories,
                    reporter_id: r.reporter_id,
                    reporter_country_code: r.reporter_country_code,
                })
                .collect()
        }),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportData {
    ip_address: String,
    #[serde(default)]
    abuse_confidence_score: Option<u8>,
}

fn report(input: Report, _ctx: &Context) -> Result<Reported> {
    let ip = parse_ip(&input.ip)?;
    if input.categories.is_empty() {
        return Err(Error::invalid_input(
            "`categories` needs at least one AbuseIPDB category id (1 to 23)",
        ));
    }
    let mut categories: Vec<u8> = Vec::new();
    for &c in &input.categories {
        if !(1..=23).contains(&c) {
            return Err(Error::invalid_input(format!(
                "`categories`: {c} is not an AbuseIPDB category id (1 to 23)"
            )));
        }
        if !categories.contains(&c) {
            categories.push(c);
        }
    }
    let comment = input.comment.as_deref().unwrap_or("").trim();
    if comment.chars().count() > 1024 {
        return Err(Error::invalid_input(
            "`comment` is longer than 1024 characters",
        ));
    }
    if comment
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::invalid_input(
            "`comment` holds control characters (other than line breaks and tabs)",
        ));
    }
    let ip = ip.to_string();
    let categories = categories
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut form = vec![("ip", ip.as_str()), ("categories", categories.as_str())];
    if !comment.is_empty() {
        form.push(("comment", comment));
    }
    let d = send(http::post(&format!("{API}/report")).form(&form))?
        .json::<Envelope<ReportData>>()?
        .data;
    Ok(Reported {
        ip: d.ip_address,
        score: d.abuse_confidence_score.unwrap_or(0),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlacklistBody {
    #[serde(default)]
    meta: Option<BlacklistMeta>,
    data: Vec<ListedAddress>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListedAddress {
    ip_address: String,
    #[serde(default)]
    abuse_confidence_score: Option<u8>,
    #[serde(default)]
    last_reported_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlacklistMeta {
    #[serde(default)]
    generated_at: Option<String>,
}

fn blacklist(input: Blacklist, _ctx: &Context) -> Result<BlacklistResult> {
    let minimum = in_range("confidence_minimum", input.confidence_minimum, 25, 100, 90)?;
    let limit = in_range("limit", input.limit, 1, 10_000, 1000)?;
    let body: BlacklistBody = send(
        http::get(&format!("{API}/blacklist"))
            .query("confidenceMinimum", minimum)
            .query("limit", limit),
    )?
    .json()?;
    Ok(BlacklistResult {
        generated_at: body.meta.and_then(|m| m.generated_at),
        entries: body
            .data
            .into_iter()
            .map(|a| BlacklistEntry {
                ip: a.ip_address,
                score: a.abuse_confidence_score.unwrap_or(0),
                last_reported_at: a.last_reported_at,
            })
            .collect(),
    })
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

actions! {
    "check" => check,
    "report" => report,
    "blacklist" => blacklist,
}

#[cfg(test)]
mod tests {
    use super::*;
    use allama_sdk::ErrorKind;
    use allama_sdk::testing::{MockHost, Reply};
    use serde_json::json;

    const CHECK: &str = "https://api.abuseipdb.com/api/v2/check";
    const REPORT: &str = "https://api.abuseipdb.com/api/v2/report";
    const BLACKLIST: &str = "https://api.abuseipdb.com/api/v2/blacklist";

    fn check_body(ip: &str, score: u8) -> Value {
        json!({"data": {
            "ipAddress": ip, "isPublic": true, "ipVersion": 4, "isWhitelisted": false,
            "abuseConfidenceScore": score, "countryCode": "NL", "usageType": "Data Center/Web Hosting/Transit",
            "isp": "Example Hosting LLC", "domain": "example.net", "hostnames": [], "isTor": false,
            "totalReports": 12, "numDistinctUsers": 6, "lastReportedAt": "2024-05-01T12:00:00+00:00"}})
    }

    fn host() -> MockHost {
        MockHost::new().secret(KEY, "abuse-key")
    }

    #[test]
    fn check_sends_the_key_by_handle_asks_for_json_and_normalises() {
        let host = host().on(
            "GET",
            CHECK,
            Reply::json(200, check_body("203.0.113.7", 87)),
        );
        let out = host
            .run(Actions::dispatch, "check", json!({"ip": " 203.0.113.7 "}))
            .unwrap();
        assert_eq!(
            out,
            json!({
                "ip": "203.0.113.7", "score": 87, "total_reports": 12, "distinct_users": 6,
                "country_code": "NL", "isp": "Example Hosting LLC", "domain": "example.net",
                "usage_type": "Data Center/Web Hosting/Transit", "is_whitelisted": false,
                "last_reported_at": "2024-05-01T12:00:00+00:00", "verdict": "malicious",
            })
        );
        let sent = host.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, "GET");
        assert_eq!(
            sent[0].url,
            "https://api.abuseipdb.com/api/v2/check?ipAddress=203.0.113.7&maxAgeInDays=90"
        );
        assert_eq!(sent[0].header("Key"), Some("abuse-key"));
        assert_eq!(sent[0].header("accept"), Some("application/json"));
        assert_eq!(sent[0].body, None);
    }

    #[test]
    fn verbose_check_of_an_ipv6_address_is_canonical_and_encoded() {
        let mut body = check_body("2001:db8::1", 30);
        body["data"]["countryName"] = json!("Netherlands");
        body["data"]["isWhitelisted"] = Value::Null;
        body["data"]["domain"] = Value::Null;
        body["data"]["reports"] = json!([
            {"reportedAt": "2024-05-01T12:00:00+00:00", "comment": "ssh", "categories": [18, 22],
             "reporterId": 1000, "reporterCountryCode": "US", "reporterCountryName": "United States of America"}
        ]);
        let host = host().on("GET", CHECK, Reply::json(200, body));
        let out = host
            .run(
                Actions::dispatch,
                "check",
                json!({"ip": "2001:DB8:0::0001", "max_age_days": 30, "verbose": true}),
            )
            .unwrap();
        assert_eq!(
            host.requests()[0].url,
            "https://api.abuseipdb.com/api/v2/check?ipAddress=2001%3Adb8%3A%3A1&maxAgeInDays=30&verbose=true"
        );
        assert_eq!(out["verdict"], "suspicious");
        assert_eq!(out["is_whitelisted"], false);
        assert_eq!(out["domain"], Value::Null);
        assert_eq!(out["country_name"], "Netherlands");
        assert_eq!(
            out["reports"],
            json!([{"reported_at": "2024-05-01T12:00:00+00:00", "comment": "ssh", "categories": [18, 22],
                    "reporter_id": 1000, "reporter_country_code": "US"}])
        );
    }

    #[test]
    fn verbose_reports_are_capped() {
        let mut body = check_body("203.0.113.7", 100);
        body["data"]["reports"] = (0..250)
            .map(|n| json!({"comment": format!("r{n}"), "categories": [14]}))
            .collect();
        let host = host().on("GET", CHECK, Reply::json(200, body));
        let out = host
            .run(
                Actions::dispatch,
                "check",
                json!({"ip": "203.0.113.7", "verbose": true}),
            )
            .unwrap();
        assert_eq!(out["reports"].as_array().unwrap().len(), MAX_REPORTS);
        assert_eq!(out["reports"][0]["comment"], "r0");
    }

    #[test]
    fn verdict_thresholds() {
        for (score, v) in [
            (0, "clean"),
            (24, "clean"),
            (25, "suspicious"),
            (74, "suspicious"),
            (75, "malicious"),
            (100, "malicious"),
        ] {
            assert_eq!(verdict(score), v, "{score}");
        }
    }

    #[test]
    fn report_posts_a_form() {
        let host = host().on(
            "POST",
            REPORT,
            Reply::json(
                200,
                json!({"data": {"ipAddress": "203.0.113.7", "abuseConfidenceScore": 52}}),
            ),
        );
        let out = host
            .run(
                Actions::dispatch,
                "report",
                json!({"ip": "203.0.113.7", "categories": [18, 22, 18], "comment": "sshd: 40 failures & `../etc`\nfrom 203.0.113.7"}),
            )
            .unwrap();
        assert_eq!(out, json!({"ip": "203.0.113.7", "score": 52}));
        let sent = &host.requests()[0];
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.url, REPORT);
        assert_eq!(sent.header("key"), Some("abuse-key"));
        assert_eq!(sent.header("accept"), Some("application/json"));
        assert_eq!(
            sent.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            sent.body_text(),
            "ip=203.0.113.7&categories=18%2C22&comment=sshd%3A%2040%20failures%20%26%20%60..%2Fetc%60%0Afrom%20203.0.113.7"
        );
    }

    #[test]
    fn report_without_a_comment_sends_none() {
        let host = host().on(
            "POST",
            REPORT,
            Reply::json(
                200,
                json!({"data": {"ipAddress": "198.51.100.4", "abuseConfidenceScore": 0}}),
            ),
        );
        host.run(
            Actions::dispatch,
            "report",
            json!({"ip": "198.51.100.4", "categories": [14], "comment": "  "}),
        )
        .unwrap();
        assert_eq!(
            host.requests()[0].body_text(),
            "ip=198.51.100.4&categories=14"
        );
    }

    #[test]
    fn blacklist_defaults_and_normalises() {
        let host = host().on(
            "GET",
            BLACKLIST,
            Reply::json(
                200,
                json!({"meta": {"generatedAt": "2024-05-02T00:00:00+00:00"}, "data": [
                    {"ipAddress": "203.0.113.7", "countryCode": "NL", "abuseConfidenceScore": 100, "lastReportedAt": "2024-05-01T12:00:00+00:00"},
                    {"ipAddress": "2001:db8::1", "countryCode": null, "abuseConfidenceScore": 91, "lastReportedAt": null},
                ]}),
            ),
        );
        let out = host.run(Actions::dispatch, "blacklist", json!({})).unwrap();
        assert_eq!(
            out,
            json!({"generated_at": "2024-05-02T00:00:00+00:00", "entries": [
                {"ip": "203.0.113.7", "score": 100, "last_reported_at": "2024-05-01T12:00:00+00:00"},
                {"ip": "2001:db8::1", "score": 91, "last_reported_at": null},
            ]})
        );
        let sent = &host.requests()[0];
        assert_eq!(sent.method, "GET");
        assert_eq!(
            sent.url,
            "https://api.abuseipdb.com/api/v2/blacklist?confidenceMinimum=90&limit=1000"
        );
        assert_eq!(sent.header("key"), Some("abuse-key"));
        assert_eq!(sent.header("accept"), Some("application/json"));
    }

    #[test]
    fn blacklist_passes_its_bounds() {
        let host = host().on(
            "GET",
            BLACKLIST,
            Reply::json(200, json!({"meta": {}, "data": []})),
        );
        let out = host
            .run(
                Actions::dispatch,
                "blacklist",
                json!({"confidence_minimum": 25, "limit": 10000}),
            )
            .unwrap();
        assert_eq!(out, json!({"generated_at": null, "entries": []}));
        assert_eq!(
            host.requests()[0].url,
            "https://api.abuseipdb.com/api/v2/blacklist?confidenceMinimum=25&limit=10000"
        );
    }

    #[test]
    fn bad_input_is_refused_before_any_request() {
        let host = host();
        let long = "x".repeat(1025);
        for (action, input) in [
            ("check", json!({})),
            ("check", json!({"ip": "999.1.1.1"})),
            ("check", json!({"ip": 7})),
            ("check", json!({"ip": ["1.1.1.1"]})),
            ("check", json!({"ip": "1.1.1.1&verbose=true"})),
            ("check", json!({"ip": "../../admin"})),
            ("check", json!({"ip": "1.1.1.1\n"})),
            ("check", json!({"ip": "1.1.1.1\u{0}"})),
            ("check", json!({"ip": "1".repeat(100_000)})),
            ("check", json!({"address": "1.1.1.1"})),
            ("check", json!({"ip": "1.1.1.1", "key": "x"})),
            ("check", json!({"ip": "1.1.1.1", "max_age_days": 0})),
            ("check", json!({"ip": "1.1.1.1", "max_age_days": 366})),
            ("check", json!({"ip": "1.1.1.1", "max_age_days": -1})),
            ("check", json!({"ip": "1.1.1.1", "max_age_days": "90"})),
            ("check", json!({"ip": "1.1.1.1", "max_age_days": 1e12})),
            ("check", json!({"ip": "1.1.1.1", "verbose": "yes"})),
            ("report", json!({"ip": "1.1.1.1"})),
            ("report", json!({"ip": "1.1.1.1", "categories": []})),
            ("report", json!({"ip": "1.1.1.1", "categories": [0]})),
            ("report", json!({"ip": "1.1.1.1", "categories": [24]})),
            ("report", json!({"ip": "1.1.1.1", "categories": [300]})),
            ("report", json!({"ip": "1.1.1.1", "categories": [-1]})),
            ("report", json!({"ip": "1.1.1.1", "categories": "18,22"})),
            ("report", json!({"ip": "1.1.1.1", "categories": ["18"]})),
            ("report", json!({"ip": "not-an-ip", "categories": [18]})),
            (
                "report",
                json!({"ip": "1.1.1.1", "categories": [18], "comment": long}),
            ),
            (
                "report",
                json!({"ip": "1.1.1.1", "categories": [18], "comment": "a\u{7}b"}),
            ),
            (
                "report",
                json!({"ip": "1.1.1.1", "categories": [18], "comment": 5}),
            ),
            (
                "report",
                json!({"ip": "1.1.1.1", "categories": [18], "timestamp": "now"}),
            ),
            ("blacklist", json!({"confidence_minimum": 24})),
            ("blacklist", json!({"confidence_minimum": 101})),
            ("blacklist", json!({"limit": 0})),
            ("blacklist", json!({"limit": 10001})),
            ("blacklist", json!({"limit": "1000"})),
            ("blacklist", json!({"plaintext": true})),
            ("blacklist", json!([])),
            ("lookup", json!({"ip": "1.1.1.1"})),
        ] {
            let e = host
                .run(Actions::dispatch, action, input.clone())
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{action} {input}: {e}");
            assert!(!e.retryable);
            assert!(
                e.message.len() < 600,
                "{action}: the message echoes too much"
            );
        }
        assert!(host.requests().is_empty());
    }

    #[test]
    fn a_comment_of_exactly_1024_characters_is_sent() {
        let host = host().on(
            "POST",
            REPORT,
            Reply::json(
                200,
                json!({"data": {"ipAddress": "203.0.113.7", "abuseConfidenceScore": 1}}),
            ),
        );
        let comment = "é".repeat(1024);
        host.run(
            Actions::dispatch,
            "report",
            json!({"ip": "203.0.113.7", "categories": [15], "comment": comment}),
        )
        .unwrap();
        assert_eq!(host.requests().len(), 1);
    }

    fn abuse_error(status: u16, detail: &str) -> Reply {
        Reply::json(
            status,
            json!({"errors": [{"detail": detail, "status": status}]}),
        )
    }

    #[test]
    fn vendor_errors_become_typed_errors() {
        let cases = [
            (
                abuse_error(
                    401,
                    "Authentication failed. Your API key is either missing, incorrect, or revoked.",
                ),
                ErrorKind::Unauthorized,
                false,
                "AbuseIPDB 401: Authentication failed.",
            ),
            (
                abuse_error(403, "Forbidden"),
                ErrorKind::Unauthorized,
                false,
                "AbuseIPDB 403: Forbidden",
            ),
            (
                Reply::json(
                    422,
                    json!({"errors": [{"detail": "The max age in days must be between 1 and 365.", "status": 422, "source": {"parameter": "maxAgeInDays"}}]}),
                ),
                ErrorKind::InvalidInput,
                false,
                "AbuseIPDB 422: The max age in days must be between 1 and 365. (parameter `maxAgeInDays`)",
            ),
            (
                abuse_error(
                    429,
                    "Daily rate limit of 1000 requests exceeded for this endpoint.",
                )
                .header("retry-after", "3600")
                .header("x-ratelimit-remaining", "0"),
                ErrorKind::RateLimited(Some(3_600_000)),
                true,
                "AbuseIPDB 429: Daily rate limit of 1000 requests exceeded",
            ),
            (
                abuse_error(404, "Not Found"),
                ErrorKind::NotFound,
                false,
                "AbuseIPDB 404: Not Found",
            ),
            (
                abuse_error(500, "Server Error"),
                ErrorKind::Upstream(Some(500)),
                true,
                "AbuseIPDB 500: Server Error",
            ),
            (
                abuse_error(503, "Server Error"),
                ErrorKind::Upstream(Some(503)),
                true,
                "AbuseIPDB 503: Server Error",
            ),
            (
                abuse_error(405, "The POST method is not supported for this route."),
                ErrorKind::Upstream(Some(405)),
                false,
                "AbuseIPDB 405: The POST method",
            ),
        ];
        for (reply, kind, retryable, message) in cases {
            let host = host().on("GET", CHECK, reply);
            let e = host
                .run(Actions::dispatch, "check", json!({"ip": "203.0.113.7"}))
                .unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
            assert_eq!(e.retryable, retryable, "{e}");
            assert!(e.message.starts_with(message), "{e}");
        }
    }

    #[test]
    fn report_errors_are_typed_too() {
        // Reporting the same address twice within 15 minutes: 429 without Retry-After.
        let host = host().on(
            "POST",
            REPORT,
            Reply::json(429, json!({"errors": [{"detail": "You can only report the same IP address (`203.0.113.7`) once in 15 minutes.", "status": 429, "source": {"parameter": "ip"}}]})),
        );
        let e = host
            .run(
                Actions::dispatch,
                "report",
                json!({"ip": "203.0.113.7", "categories": [18]}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::RateLimited(None), "{e}");
        assert!(e.message.contains("once in 15 minutes"), "{e}");

        let host = self::host().on(
            "POST",
            REPORT,
            Reply::json(422, json!({"errors": [
                {"detail": "The categories must be a comma-separated list of valid category IDs (1-23).", "status": 422, "source": {"parameter": "categories"}},
                {"detail": "The comment may not be greater than 1024 characters.", "status": 422, "source": {"parameter": "comment"}},
            ]})),
        );
        let e = host
            .run(
                Actions::dispatch,
                "report",
                json!({"ip": "203.0.113.7", "categories": [18]}),
            )
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(
            e.message,
            "AbuseIPDB 422: The categories must be a comma-separated list of valid category IDs (1-23). (parameter `categories`); The comment may not be greater than 1024 characters. (parameter `comment`)"
        );
    }

    #[test]
    fn unexpected_bodies_are_upstream_errors() {
        // An HTML error page (as AbuseIPDB sends without `Accept: application/json`).
        let host = host().on(
            "GET",
            BLACKLIST,
            Reply::text(502, "<html><body><h1>Error 502</h1></body></html>"),
        );
        let e = host
            .run(Actions::dispatch, "blacklist", json!({}))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream(Some(502)));
        assert!(e.message.contains("answered 502"), "{e}");
        // A 422 without AbuseIPDB's error shape is still invalid input.
        let host = self::host().on("GET", BLACKLIST, Reply::text(422, "nope"));
        let e = host
            .run(Actions::dispatch, "blacklist", json!({}))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.starts_with("AbuseIPDB 422"), "{e}");
        // A success that is not the expected JSON.
        let host = self::host().on("GET", CHECK, Reply::json(200, json!({"data": []})));
        let e = host
            .run(Actions::dispatch, "check", json!({"ip": "203.0.113.7"}))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Upstream(Some(200)));
        assert!(!e.retryable);
    }

    #[test]
    fn the_key_goes_only_in_its_header() {
        let host = host().on("GET", CHECK, Reply::json(200, check_body("203.0.113.7", 0)));
        host.run(Actions::dispatch, "check", json!({"ip": "203.0.113.7"}))
            .unwrap();
        let sent = &host.requests()[0];
        assert!(!sent.url.contains("abuse-key"));
        let carrying: Vec<&str> = sent
            .headers
            .iter()
            .filter(|(_, v)| v.contains("abuse-key"))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(carrying, ["Key"]);
    }

    #[test]
    fn schemas_are_derived_from_the_types() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
        allama_sdk::schema::check_file::<Check>(&format!("{dir}/check.input.json")).unwrap();
        allama_sdk::schema::check_file::<CheckResult>(&format!("{dir}/check.output.json")).unwrap();
        allama_sdk::schema::check_file::<Report>(&format!("{dir}/report.input.json")).unwrap();
        allama_sdk::schema::check_file::<Reported>(&format!("{dir}/report.output.json")).unwrap();
        allama_sdk::schema::check_file::<Blacklist>(&format!("{dir}/blacklist.input.json"))
            .unwrap();
        allama_sdk::schema::check_file::<BlacklistResult>(&format!("{dir}/blacklist.output.json"))
            .unwrap();
    }
}
