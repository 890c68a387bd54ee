//! AbuseIPDB API v2 (`https://api.abuseipdb.com/api/v2`).
//!
//! Served: `GET /api/v2/check`, `POST /api/v2/report`, `GET /api/v2/blacklist`
//! and `GET /api/v2/reports` (paginated with `page` and `perPage`).
//!
//! As AbuseIPDB does: the key is read from the `Key` header; a missing or
//! wrong one is `401`; errors are
//! `{"errors": [{"detail", "status", "source"?: {"parameter"}}]}`, rendered as
//! an HTML page instead when the request's `Accept` does not ask for JSON
//! (which is why the documentation says to send `Accept: application/json`);
//! parameter problems are `422`; each endpoint has a daily quota (the free
//! tier's by default: check 1000, report 1000, reports 100, blacklist 5)
//! reported in `X-RateLimit-Limit` / `X-RateLimit-Remaining` and answered
//! `429` with `Retry-After`, `X-RateLimit-Reset` once used up (reset at UTC
//! midnight by the peer's clock); reporting the same IP twice within 15
//! minutes is `429` too. Parameters are read from the query and from a
//! urlencoded, multipart or JSON body alike. A wrong method on a known path is
//! `405`, an unknown path `404`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::{Clock, Faults, body_form, iso8601, lock, media_type, next_midnight, origin, param};
use crate::{Recorded, Reply, Router};

const AUTH_FAILED: &str = "Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.";
const INVALID_IP: &str =
    "must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).";
/// The re-report window, in seconds.
const REREPORT_WINDOW: i64 = 15 * 60;
/// The account's reporter id in reports it files.
const OWN_REPORTER_ID: u64 = 1;

/// An AbuseIPDB API v2 peer. Cloning gives another handle on the same peer.
///
/// ```no_run
/// # use allama_test_peer::{Peer, vendors::AbuseIpDb};
/// # async fn demo() {
/// let abuse = AbuseIpDb::new("abuse-key").with_ip("203.0.113.7", 87, 10);
/// let peer = Peer::start(abuse.router()).await;
/// // ... the integration reports 203.0.113.7 ...
/// assert_eq!(abuse.reports()[0].categories, [18, 22]);
/// # }
/// ```
#[derive(Clone)]
pub struct AbuseIpDb {
    shared: Arc<Shared>,
}

/// A report filed through `POST /api/v2/report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiledReport {
    /// The reported address, canonical form.
    pub ip: String,
    /// The category ids, in the order given.
    pub categories: Vec<u8>,
    /// The comment (empty if none).
    pub comment: String,
    /// The `timestamp` parameter as given, if any.
    pub timestamp: Option<String>,
    /// When the peer accepted it, as AbuseIPDB writes times.
    pub reported_at: String,
}

struct Shared {
    state: Mutex<State>,
    faults: Faults,
    clock: Clock,
}

struct State {
    api_key: String,
    ips: BTreeMap<String, IpRecord>,
    filed: Vec<FiledReport>,
    quotas: BTreeMap<&'static str, Quota>,
    /// The UTC day the quotas count for.
    day: i64,
}

#[derive(Clone, Copy)]
struct Quota {
    limit: u32,
    used: u32,
}

struct IpRecord {
    score: u8,
    details: Map<String, Value>,
    reports: Vec<Report>,
}

struct Report {
    reported_at: i64,
    comment: String,
    categories: Vec<u8>,
    reporter_id: u64,
    reporter_country: &'static str,
}

const REPORTER_COUNTRIES: [&str; 4] = ["US", "DE", "NL", "GB"];
const SYNTHETIC_CATEGORIES: [&[u8]; 4] = [&[18, 22], &[14], &[15, 21], &[18]];

fn country_name(code: &str) -> &str {
    match code {
        "US" => "United States of America",
        "DE" => "Germany",
        "NL" => "Netherlands",
        "GB" => "United Kingdom of Great Britain and Northern Ireland",
        "CN" => "China",
        "RU" => "Russian Federation",
        "FR" => "France",
        other => other,
    }
}

/// The endpoint a path names, if any, with its one method.
fn endpoint(path: &str) -> Option<(&'static str, &'static str)> {
    match path.strip_prefix("/api/v2/")? {
        "check" => Some(("check", "GET")),
        "report" => Some(("report", "POST")),
        "reports" => Some(("reports", "GET")),
        "blacklist" => Some(("blacklist", "GET")),
        _ => None,
    }
}

impl AbuseIpDb {
    /// A peer accepting `api_key` in the `Key` header, with no fixtures.
    pub fn new(api_key: &str) -> AbuseIpDb {
        let quotas = [
            ("check", 1000),
            ("report", 1000),
            ("reports", 100),
            ("blacklist", 5),
        ]
        .into_iter()
        .map(|(name, limit)| (name, Quota { limit, used: 0 }))
        .collect();
        let clock = Clock::default();
        let day = clock.now().div_euclid(86_400);
        AbuseIpDb {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    api_key: api_key.to_owned(),
                    ips: BTreeMap::new(),
                    filed: Vec::new(),
                    quotas,
                    day,
                }),
                faults: Faults::default(),
                clock,
            }),
        }
    }

    /// An address with `abuse_confidence_score` and `total_reports` earlier
    /// reports by other users: the n-th (from 0) was filed `1 + 6n` hours
    /// ago, by reporter `1000 + n/2` (so two reports per user), so
    /// `maxAgeInDays` windows select a predictable part of them.
    ///
    /// # Panics
    /// If `ip` is not an IP address or the score is over 100.
    pub fn with_ip(self, ip: &str, abuse_confidence_score: u8, total_reports: u32) -> AbuseIpDb {
        assert!(abuse_confidence_score <= 100, "scores go up to 100");
        let ip = canonical(ip).unwrap_or_else(|| panic!("with_ip: {ip:?} is not an IP address"));
        let now = self.shared.clock.now();
        let reports = (0..total_reports as usize)
            .map(|n| Report {
                reported_at: now - 3600 - n as i64 * 6 * 3600,
                comment: format!("Report {} against {ip}", n + 1),
                categories: SYNTHETIC_CATEGORIES[n % 4].to_vec(),
                reporter_id: 1000 + n as u64 / 2,
                reporter_country: REPORTER_COUNTRIES[n % 4],
            })
            .collect();
        lock(&self.shared.state).ips.insert(
            ip,
            IpRecord {
                score: abuse_confidence_score,
                details: Map::new(),
                reports,
            },
        );
        self
    }

    /// Overrides fields of the address's `check` data (`countryCode`,
    /// `usageType`, `isp`, `domain`, `hostnames`, `isTor`, `isWhitelisted`,
    /// ...); `countryCode` also applies to the blacklist.
    ///
    /// # Panics
    /// If `ip` has no fixture or `fields` is not a JSON object.
    pub fn with_details(self, ip: &str, fields: Value) -> AbuseIpDb {
        let Value::Object(fields) = fields else {
            panic!("with_details needs a JSON object");
        };
        let ip = canonical(ip).unwrap_or_else(|| panic!("with_details: {ip:?} is not an IP"));
        lock(&self.shared.state)
            .ips
            .get_mut(&ip)
            .unwrap_or_else(|| panic!("with_details: no fixture for {ip}"))
            .details
            .extend(fields);
        self
    }

    /// Sets the daily quota of `endpoint` (`"check"`, `"report"`,
    /// `"reports"` or `"blacklist"`).
    ///
    /// # Panics
    /// On another endpoint name.
    pub fn with_daily_limit(self, endpoint: &str, limit: u32) -> AbuseIpDb {
        lock(&self.shared.state)
            .quotas
            .get_mut(endpoint)
            .unwrap_or_else(|| panic!("with_daily_limit: no endpoint {endpoint:?}"))
            .limit = limit;
        self
    }

    /// Accepts `api_key` from now on instead of the previous key.
    pub fn set_api_key(&self, api_key: &str) {
        lock(&self.shared.state).api_key = api_key.to_owned();
    }

    /// Every report filed so far, in order.
    pub fn reports(&self) -> Vec<FiledReport> {
        lock(&self.shared.state).filed.clone()
    }

    super::common_methods!();

    /// A router serving this peer; every router shares the handle's state.
    pub fn router(&self) -> Router {
        let shared = Arc::clone(&self.shared);
        Router::any(move |req| shared.handle(req))
    }

    /// AbuseIPDB's error shape (JSON): `status` with
    /// `{"errors": [{"detail": detail, "status": status}]}`.
    pub fn error(status: u16, detail: &str) -> Reply {
        Reply::json(
            status,
            json!({ "errors": [{ "detail": detail, "status": status }] }),
        )
    }

    /// `429` as when the daily quota (of 1000) is used up, with
    /// `Retry-After: retry_after_secs` and the `X-RateLimit-*` headers.
    pub fn rate_limited(retry_after_secs: u64) -> Reply {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        AbuseIpDb::error(
            429,
            "Daily rate limit of 1000 requests exceeded for this endpoint. See headers for additional details.",
        )
        .header("retry-after", &retry_after_secs.to_string())
        .header("x-ratelimit-limit", "1000")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", &(now + retry_after_secs).to_string())
    }

    /// A server error `status` in AbuseIPDB's error shape.
    pub fn server_error(status: u16) -> Reply {
        AbuseIpDb::error(status, "Server Error")
    }
}

/// The canonical text of an IP address, if `text` is one.
fn canonical(text: &str) -> Option<String> {
    text.trim().parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let first = v4.octets()[0];
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || first == 0
                || first >= 240)
        }
        IpAddr::V6(v6) => {
            let top = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || top & 0xfe00 == 0xfc00
                || top & 0xffc0 == 0xfe80)
        }
    }
}

/// An error in AbuseIPDB's shape, as HTML unless the client asked for JSON.
fn error(req: &Recorded, status: u16, detail: &str, parameter: Option<&str>) -> Reply {
    let wants_json = req.header("accept").is_some_and(|a| a.contains("json"));
    if !wants_json {
        return Reply::bytes(
            status,
            format!(
                "<!DOCTYPE html>\n<html lang=\"en\"><head><title>AbuseIPDB - Error {status}</title></head>\
                 <body><h1>Error {status}</h1><p>{detail}</p></body></html>\n"
            )
            .into_bytes(),
        )
        .header("content-type", "text/html; charset=UTF-8");
    }
    let mut entry = json!({ "detail": detail, "status": status });
    if let Some(parameter) = parameter {
        entry["source"] = json!({ "parameter": parameter });
    }
    Reply::json(status, json!({ "errors": [entry] }))
}

/// Every parameter: query, then urlencoded / multipart body, then JSON body.
fn params(req: &Recorded) -> Vec<(String, String)> {
    let mut all = req.query_params();
    all.extend(body_form(req));
    if media_type(req) == "application/json"
        && let Some(Value::Object(body)) = req.body_json()
    {
        for (name, value) in body {
            let text = match value {
                Value::String(s) => s,
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            all.push((name, text));
        }
    }
    all
}

/// A whole-number parameter within `range`, or the reply refusing it.
fn bounded(
    req: &Recorded,
    params: &[(String, String)],
    name: &str,
    label: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, Reply> {
    let Some(text) = param(params, name) else {
        return Ok(default);
    };
    let value: u32 = text.trim().parse().map_err(|_| {
        error(
            req,
            422,
            &format!("The {label} must be an integer."),
            Some(name),
        )
    })?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(error(
            req,
            422,
            &format!(
                "The {label} must be between {} and {}.",
                range.start(),
                range.end()
            ),
            Some(name),
        ))
    }
}

/// The `ipAddress` parameter, canonical, or the reply refusing it.
fn ip_param(req: &Recorded, params: &[(String, String)], name: &str) -> Result<IpAddr, Reply> {
    let label = if name == "ip" { "ip" } else { "ip address" };
    let text = param(params, name).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(error(
            req,
            422,
            &format!("The {label} field is required."),
            Some(name),
        ));
    }
    text.trim()
        .parse()
        .map_err(|_| error(req, 422, &format!("The {label} {INVALID_IP}"), Some(name)))
}

impl Shared {
    fn handle(&self, req: &Recorded) -> Reply {
        if let Some(reply) = self.faults.take(req) {
            return reply;
        }
        let Some((name, method)) = endpoint(&req.path) else {
            return error(req, 404, "Not Found", None);
        };
        if !req.method.eq_ignore_ascii_case(method) {
            return error(
                req,
                405,
                &format!(
                    "The {} method is not supported for this route. Supported methods: {method}.",
                    req.method.to_ascii_uppercase()
                ),
                None,
            );
        }
        let now = self.clock.now();
        let mut state = lock(&self.state);
        if req
            .header("key")
            .is_none_or(|k| k.is_empty() || k != state.api_key)
        {
            return error(req, 401, AUTH_FAILED, None);
        }

        let today = now.div_euclid(86_400);
        if state.day != today {
            state.day = today;
            for quota in state.quotas.values_mut() {
                quota.used = 0;
            }
        }
        let quota = state.quotas[name];
        if quota.used >= quota.limit {
            let reset = next_midnight(now);
            return error(
                req,
                429,
                &format!(
                    "Daily rate limit of {} requests exceeded for this endpoint. See headers for additional details.",
                    quota.limit
                ),
                None,
            )
            .header("retry-after", &(reset - now).to_string())
            .header("x-ratelimit-limit", &quota.limit.to_string())
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &reset.to_string());
        }
        let remaining = quota.limit - quota.used - 1;
        state.quotas.get_mut(name).expect("known endpoint").used += 1;

        let params = params(req);
        let result = match name {
            "check" => state.check(req, &params, now),
            "report" => state.report(req, &params, now),
            "reports" => state.list_reports(req, &params, now),
            _ => state.blacklist(req, &params, now),
        };
        result
            .unwrap_or_else(|refusal| refusal)
            .header("x-ratelimit-limit", &quota.limit.to_string())
            .header("x-ratelimit-remaining", &remaining.to_string())
    }
}

impl State {
    /// Reports about `ip` at most `max_age_days` old, newest first.
    fn recent(&self, ip: &str, max_age_days: u32, now: i64) -> Vec<&Report> {
        let since = now - i64::from(max_age_days) * 86_400;
        let mut reports: Vec<&Report> = self
            .ips
            .get(ip)
            .map(|r| {
                r.reports
                    .iter()
                    .filter(|r| r.reported_at >= since)
                    .collect()
            })
            .unwrap_or_default();
        reports.sort_by_key(|r| std::cmp::Reverse(r.reported_at));
        reports
    }

    fn last_reported(&self, ip: &str) -> Option<i64> {
        self.ips
            .get(ip)?
            .reports
            .iter()
            .map(|r| r.reported_at)
            .max()
    }

    fn check(&self, req: &Recorded, params: &[(String, String)], now: i64) -> Result<Reply, Reply> {
        let ip = ip_param(req, params, "ipAddress")?;
        let max_age = bounded(req, params, "maxAgeInDays", "max age in days", 30, 1..=365)?;
        let verbose = param(params, "verbose").is_some();
        let key = ip.to_string();
        let public = is_public(&ip);
        let record = self.ips.get(&key);
        let recent = self.recent(&key, max_age, now);
        let distinct: BTreeSet<u64> = recent.iter().map(|r| r.reporter_id).collect();

        let mut data = json!({
            "ipAddress": key,
            "isPublic": public,
            "ipVersion": if ip.is_ipv4() { 4 } else { 6 },
            "isWhitelisted": false,
            "abuseConfidenceScore": record.map_or(0, |r| r.score),
            "countryCode": if public { json!("US") } else { Value::Null },
            "usageType": if public { "Data Center/Web Hosting/Transit" } else { "Reserved" },
            "isp": if public { "Example Hosting LLC" } else { "Private IP Address LAN" },
            "domain": if public { json!("example.net") } else { Value::Null },
            "hostnames": [],
            "isTor": false,
            "totalReports": recent.len(),
            "numDistinctUsers": distinct.len(),
            "lastReportedAt": self.last_reported(&key).map(iso8601),
        });
        if let Some(record) = record {
            for (name, value) in &record.details {
                data[name] = value.clone();
            }
        }
        if verbose {
            let code = data["countryCode"].as_str().map(str::to_owned);
            if data.get("countryName").is_none() {
                data["countryName"] = code.as_deref().map(country_name).into();
            }
            data["reports"] = recent.iter().map(|r| report_json(r)).collect();
        }
        Ok(Reply::json(200, json!({ "data": data })))
    }

    fn report(
        &mut self,
        req: &Recorded,
        params: &[(String, String)],
        now: i64,
    ) -> Result<Reply, Reply> {
        let ip = ip_param(req, params, "ip")?.to_string();
        let categories = param(params, "categories").unwrap_or_default();
        if categories.trim().is_empty() {
            return Err(error(
                req,
                422,
                "The categories field is required.",
                Some("categories"),
            ));
        }
        let categories: Vec<u8> = categories
            .split(',')
            .map(|c| c.trim().parse::<u8>().ok().filter(|c| (1..=23).contains(c)))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                error(
                    req,
                    422,
                    "The categories must be a comma-separated list of valid category IDs (1-23).",
                    Some("categories"),
                )
            })?;
        let comment = param(params, "comment").unwrap_or_default();
        if comment.chars().count() > 1024 {
            return Err(error(
                req,
                422,
                "The comment may not be greater than 1024 characters.",
                Some("comment"),
            ));
        }
        let record = self.ips.entry(ip.clone()).or_insert_with(|| IpRecord {
            score: 0,
            details: Map::new(),
            reports: Vec::new(),
        });
        let repeated = record
            .reports
            .iter()
            .any(|r| r.reporter_id == OWN_REPORTER_ID && now - r.reported_at < REREPORT_WINDOW);
        if repeated {
            return Err(error(
                req,
                429,
                &format!("You can only report the same IP address (`{ip}`) once in 15 minutes."),
                Some("ip"),
            ));
        }
        record.reports.push(Report {
            reported_at: now,
            comment: comment.clone(),
            categories: categories.clone(),
            reporter_id: OWN_REPORTER_ID,
            reporter_country: "US",
        });
        let score = record.score;
        self.filed.push(FiledReport {
            ip: ip.clone(),
            categories,
            comment,
            timestamp: param(params, "timestamp"),
            reported_at: iso8601(now),
        });
        Ok(Reply::json(
            200,
            json!({ "data": { "ipAddress": ip, "abuseConfidenceScore": score } }),
        ))
    }

    fn list_reports(
        &self,
        req: &Recorded,
        params: &[(String, String)],
        now: i64,
    ) -> Result<Reply, Reply> {
        let ip = ip_param(req, params, "ipAddress")?.to_string();
        let max_age = bounded(req, params, "maxAgeInDays", "max age in days", 30, 1..=365)?;
        let page = bounded(req, params, "page", "page", 1, 1..=u32::MAX)?;
        let per_page = bounded(req, params, "perPage", "per page", 25, 1..=100)?;
        let recent = self.recent(&ip, max_age, now);
        let total = recent.len();
        let last_page = total.div_ceil(per_page as usize).max(1);
        let start = (page as usize - 1).saturating_mul(per_page as usize);
        let results: Vec<Value> = recent
            .iter()
            .skip(start)
            .take(per_page as usize)
            .map(|r| report_json(r))
            .collect();
        let link = |p: usize| {
            format!(
                "{}/api/v2/reports?ipAddress={}&maxAgeInDays={max_age}&perPage={per_page}&page={p}",
                origin(req),
                ip.replace(':', "%3A")
            )
        };
        let page = page as usize;
        Ok(Reply::json(
            200,
            json!({
                "data": {
                    "total": total,
                    "page": page,
                    "count": results.len(),
                    "perPage": per_page,
                    "lastPage": last_page,
                    "nextPageUrl": (page < last_page).then(|| link(page + 1)),
                    "previousPageUrl": (page > 1).then(|| link((page - 1).min(last_page))),
                    "results": results,
                }
            }),
        ))
    }

    fn blacklist(
        &self,
        req: &Recorded,
        params: &[(String, String)],
        now: i64,
    ) -> Result<Reply, Reply> {
        let minimum = bounded(
            req,
            params,
            "confidenceMinimum",
            "confidence minimum",
            100,
            25..=100,
        )?;
        let limit = bounded(req, params, "limit", "limit", 10_000, 1..=u32::MAX)?;
        let version = match param(params, "ipVersion").as_deref().map(str::trim) {
            None | Some("") => None,
            Some("4") => Some(4),
            Some("6") => Some(6),
            Some(_) => {
                return Err(error(
                    req,
                    422,
                    "The selected ip version is invalid.",
                    Some("ipVersion"),
                ));
            }
        };
        let countries = |name: &str| -> Option<Vec<String>> {
            param(params, name).map(|list| {
                list.split(',')
                    .map(|c| c.trim().to_ascii_uppercase())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
        };
        let only = countries("onlyCountries");
        let except = countries("exceptCountries").unwrap_or_default();

        let mut listed: Vec<(u8, i64, String, Option<String>)> = self
            .ips
            .iter()
            .filter(|(_, r)| r.score >= minimum as u8 && r.score > 0)
            .filter_map(|(ip, r)| {
                let parsed: IpAddr = ip.parse().ok()?;
                if version.is_some_and(|v| (v == 4) != parsed.is_ipv4()) {
                    return None;
                }
                let country = r
                    .details
                    .get("countryCode")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| is_public(&parsed).then(|| "US".to_owned()));
                let code = country.clone().unwrap_or_default();
                if only.as_ref().is_some_and(|only| !only.contains(&code)) || except.contains(&code)
                {
                    return None;
                }
                let last = self.last_reported(ip).unwrap_or(0);
                Some((r.score, last, ip.clone(), country))
            })
            .collect();
        listed.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
        listed.truncate(limit as usize);

        if param(params, "plaintext").is_some() {
            let lines: Vec<&str> = listed.iter().map(|(_, _, ip, _)| ip.as_str()).collect();
            return Ok(Reply::text(200, lines.join("\n")));
        }
        let data: Vec<Value> = listed
            .iter()
            .map(|(score, last, ip, country)| {
                json!({
                    "ipAddress": ip,
                    "countryCode": country,
                    "abuseConfidenceScore": score,
                    "lastReportedAt": iso8601(*last),
                })
            })
            .collect();
        Ok(Reply::json(
            200,
            json!({ "meta": { "generatedAt": iso8601(now) }, "data": data }),
        ))
    }
}

fn report_json(report: &Report) -> Value {
    json!({
        "reportedAt": iso8601(report.reported_at),
        "comment": report.comment,
        "categories": report.categories,
        "reporterId": report.reporter_id,
        "reporterCountryCode": report.reporter_country,
        "reporterCountryName": country_name(report.reporter_country),
    })
}
