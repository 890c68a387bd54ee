//! VirusTotal API v3 (`https://www.virustotal.com/api/v3`).
//!
//! Served: `GET /api/v3/ip_addresses/{ip}`, `GET /api/v3/domains/{domain}`,
//! `GET /api/v3/urls/{id}`, `POST /api/v3/urls`, `GET /api/v3/files/{hash}`
//! and `GET /api/v3/analyses/{id}`.
//!
//! As VirusTotal does: the key is read from the `x-apikey` header only (a
//! `?apikey=` parameter or a bearer token counts as no key); a missing key is
//! `401 AuthenticationRequiredError`, a wrong one `401 WrongCredentialsError`;
//! errors are `{"error": {"code", "message"}}`. Objects are
//! `{"data": {"type", "id", "links": {"self"}, "attributes": {...}}}` with
//! `last_analysis_stats`, `last_analysis_results` (one entry per engine,
//! consistent with the stats), `reputation`, `total_votes`, `tags` and the
//! type's own attributes.
//!
//! A URL identifier is either the SHA-256 of the URL (the form VirusTotal
//! returns) or the URL in unpadded URL-safe base64 ([`VirusTotal::url_id`]);
//! padded or standard-alphabet base64 is not found, as the documentation
//! warns. Any well-formed IP address has an object (with zero stats when no
//! fixture was given), as on VirusTotal; unknown domains, URLs and files are
//! `404 NotFoundError`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use super::{Clock, Faults, base64_decode, base64_encode, body_form, lock, origin, param};
use crate::{Recorded, Reply, Router};

/// Engines reporting on URLs, domains and IP addresses, in result order.
const URL_ENGINES: &[&str] = &[
    "Acronis",
    "ADMINUSLabs",
    "AlienVault",
    "alphaMountain.ai",
    "Antiy-AVL",
    "Avira",
    "BitDefender",
    "Certego",
    "CRDF",
    "CyRadar",
    "Emsisoft",
    "ESET",
    "Forcepoint ThreatSeeker",
    "Fortinet",
    "G-Data",
    "Google Safebrowsing",
    "Kaspersky",
    "Lionic",
    "Netcraft",
    "OpenPhish",
    "Phishtank",
    "Quttera",
    "Sophos",
    "Spamhaus",
    "Sucuri SiteCheck",
    "Trustwave",
    "URLhaus",
    "Webroot",
    "Yandex Safebrowsing",
    "ZeroCERT",
];

/// Antivirus engines reporting on files, in result order.
const FILE_ENGINES: &[&str] = &[
    "Bkav",
    "Lionic",
    "Elastic",
    "MicroWorld-eScan",
    "ClamAV",
    "CAT-QuickHeal",
    "Skyhigh",
    "ALYac",
    "Cylance",
    "Zillya",
    "Sangfor",
    "K7AntiVirus",
    "Alibaba",
    "K7GW",
    "Arcabit",
    "BitDefenderTheta",
    "Symantec",
    "ESET-NOD32",
    "TrendMicro-HouseCall",
    "Avast",
    "Kaspersky",
    "BitDefender",
    "NANO-Antivirus",
    "Tencent",
    "Emsisoft",
    "F-Secure",
    "DrWeb",
    "VIPRE",
    "TrendMicro",
    "McAfeeD",
    "FireEye",
    "Sophos",
    "Ikarus",
    "Google",
    "Avira",
    "Antiy-AVL",
    "Microsoft",
    "GData",
    "AhnLab-V3",
    "Malwarebytes",
    "Panda",
    "Rising",
    "Fortinet",
    "AVG",
    "CrowdStrike",
    "SentinelOne",
    "Webroot",
    "Cybereason",
];

/// Engines in an IP, domain or URL analysis when the counts given are smaller.
const URL_ENGINE_TOTAL: u32 = 94;
/// Engines in a file analysis when the counts given are smaller.
const FILE_ENGINE_TOTAL: u32 = 76;

/// A VirusTotal API v3 peer. Cloning gives another handle on the same peer.
///
/// ```no_run
/// # use allama_test_peer::{Peer, vendors::VirusTotal};
/// # async fn demo() {
/// let vt = VirusTotal::new("vt-key")
///     .with_ip("203.0.113.7", 12, 60)
///     .with_domain("evil.example", 30, 40)
///     .with_reputation("evil.example", -55);
/// let peer = Peer::start(vt.router()).await;
/// vt.fail_next(VirusTotal::rate_limited(60));
/// # }
/// ```
#[derive(Clone)]
pub struct VirusTotal {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    faults: Faults,
    clock: Clock,
}

struct State {
    api_key: String,
    objects: Vec<Object>,
    analyses: Vec<Analysis>,
    submitted: Vec<String>,
    queued_polls: u32,
    quota: Option<u64>,
    used: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ip,
    Domain,
    Url,
    File,
}

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            Kind::Ip => "ip_addresses",
            Kind::Domain => "domains",
            Kind::Url => "urls",
            Kind::File => "files",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Kind::Ip => "ip_address",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::File => "file",
        }
    }
}

struct Object {
    kind: Kind,
    id: String,
    /// Lowercase identifiers the object is found by.
    keys: Vec<String>,
    attributes: Map<String, Value>,
}

struct Analysis {
    id: String,
    url: String,
    url_sha256: String,
    date: i64,
    polls_left: u32,
}

impl VirusTotal {
    /// A peer accepting `api_key` in `x-apikey`, with no fixtures.
    pub fn new(api_key: &str) -> VirusTotal {
        VirusTotal {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    api_key: api_key.to_owned(),
                    objects: Vec::new(),
                    analyses: Vec::new(),
                    submitted: Vec::new(),
                    queued_polls: 0,
                    quota: None,
                    used: 0,
                }),
                faults: Faults::default(),
                clock: Clock::default(),
            }),
        }
    }

    /// The URL identifier VirusTotal documents for `url`: its unpadded
    /// URL-safe base64.
    pub fn url_id(url: &str) -> String {
        base64_encode(url.as_bytes(), true)
    }

    /// The SHA-256 identifier of `url` (the `id` VirusTotal answers with;
    /// here the hash of the URL exactly as given, see the module docs).
    pub fn url_sha256(url: &str) -> String {
        super::sha256_hex(url.as_bytes())
    }

    /// An IP address object flagged by `malicious` engines and found clean by
    /// `harmless` ones (the rest undetected).
    ///
    /// # Panics
    /// If `ip` is not an IP address.
    pub fn with_ip(self, ip: &str, malicious: u32, harmless: u32) -> VirusTotal {
        let ip: IpAddr = ip
            .parse()
            .unwrap_or_else(|_| panic!("with_ip: {ip:?} is not an IP address"));
        self.add(Kind::Ip, &ip.to_string(), malicious, harmless)
    }

    /// A domain object (see [`with_ip`](Self::with_ip)).
    pub fn with_domain(self, domain: &str, malicious: u32, harmless: u32) -> VirusTotal {
        self.add(
            Kind::Domain,
            &domain.to_ascii_lowercase(),
            malicious,
            harmless,
        )
    }

    /// A URL object, found by its base64 or SHA-256 identifier (see
    /// [`with_ip`](Self::with_ip)).
    pub fn with_url(self, url: &str, malicious: u32, harmless: u32) -> VirusTotal {
        self.add(Kind::Url, url, malicious, harmless)
    }

    /// A file object found by `hash` (MD5, SHA-1 or SHA-256; its attribute of
    /// that name is set). Give the other hashes with
    /// [`with_attributes`](Self::with_attributes) (`{"md5": .., "sha1": ..}`)
    /// to make the file findable by them too; the object's `id` is its SHA-256
    /// once known.
    ///
    /// # Panics
    /// If `hash` is not 32, 40 or 64 hex digits.
    pub fn with_file(self, hash: &str, malicious: u32, harmless: u32) -> VirusTotal {
        assert!(
            matches!(hash.len(), 32 | 40 | 64) && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "with_file: {hash:?} is not an MD5, SHA-1 or SHA-256"
        );
        self.add(Kind::File, &hash.to_ascii_lowercase(), malicious, harmless)
    }

    /// Merges `attributes` (a JSON object) into the attributes of the fixture
    /// found by `key` (an IP, domain, URL, URL identifier or file hash),
    /// replacing attributes of the same name.
    ///
    /// # Panics
    /// If no fixture has that key, or `attributes` is not an object.
    pub fn with_attributes(self, key: &str, attributes: Value) -> VirusTotal {
        let Value::Object(extra) = attributes else {
            panic!("with_attributes needs a JSON object");
        };
        {
            let mut state = lock(&self.shared.state);
            let object = state
                .objects
                .iter_mut()
                .find(|o| o.keys.contains(&key.to_ascii_lowercase()))
                .unwrap_or_else(|| panic!("with_attributes: no fixture {key:?}"));
            for (name, value) in extra {
                if object.kind == Kind::File
                    && matches!(name.as_str(), "md5" | "sha1" | "sha256")
                    && let Some(hash) = value.as_str()
                {
                    let hash = hash.to_ascii_lowercase();
                    if name == "sha256" {
                        object.id = hash.clone();
                    }
                    object.keys.push(hash);
                }
                object.attributes.insert(name, value);
            }
        }
        self
    }

    /// Sets the `reputation` of the fixture found by `key`.
    pub fn with_reputation(self, key: &str, reputation: i64) -> VirusTotal {
        self.with_attributes(key, json!({ "reputation": reputation }))
    }

    /// Answers `429 QuotaExceededError` once `requests` authenticated
    /// requests have been served, as the free tier does (without
    /// `Retry-After`, which VirusTotal does not document).
    pub fn with_quota(self, requests: u64) -> VirusTotal {
        lock(&self.shared.state).quota = Some(requests);
        self
    }

    /// Makes each analysis answer `"status": "queued"` to its first `polls`
    /// reads before `"completed"`.
    pub fn with_queued_polls(self, polls: u32) -> VirusTotal {
        lock(&self.shared.state).queued_polls = polls;
        self
    }

    /// Accepts `api_key` from now on instead of the previous key (to revoke
    /// the key an integration holds mid-test).
    pub fn set_api_key(&self, api_key: &str) {
        lock(&self.shared.state).api_key = api_key.to_owned();
    }

    /// Every URL submitted with `POST /api/v3/urls`, in order.
    pub fn submitted_urls(&self) -> Vec<String> {
        lock(&self.shared.state).submitted.clone()
    }

    super::common_methods!();

    /// A router serving this peer; every router shares the handle's state.
    pub fn router(&self) -> Router {
        let shared = Arc::clone(&self.shared);
        Router::any(move |req| shared.handle(req))
    }

    /// VirusTotal's error shape: `status` with
    /// `{"error": {"code": code, "message": message}}`.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(
            status,
            json!({ "error": { "code": code, "message": message } }),
        )
    }

    /// `429 QuotaExceededError` with `Retry-After: retry_after_secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Reply {
        VirusTotal::error(429, "QuotaExceededError", "Quota exceeded")
            .header("retry-after", &retry_after_secs.to_string())
    }

    /// `403 ForbiddenError`.
    pub fn forbidden() -> Reply {
        VirusTotal::error(
            403,
            "ForbiddenError",
            "You are not allowed to perform the requested operation",
        )
    }

    /// `503 TransientError` ("retry might work").
    pub fn transient_error() -> Reply {
        VirusTotal::error(
            503,
            "TransientError",
            "Transient server error. Retry might work.",
        )
    }

    /// `504 DeadlineExceededError`.
    pub fn deadline_exceeded() -> Reply {
        VirusTotal::error(
            504,
            "DeadlineExceededError",
            "The operation took too long to complete",
        )
    }

    fn add(self, kind: Kind, id: &str, malicious: u32, harmless: u32) -> VirusTotal {
        let now = self.shared.clock.now();
        {
            let mut state = lock(&self.shared.state);
            let key = id.to_ascii_lowercase();
            state
                .objects
                .retain(|o| !(o.kind == kind && o.keys[0] == key));
            state
                .objects
                .push(Object::new(kind, id, malicious, harmless, now));
        }
        self
    }
}

impl Object {
    fn new(kind: Kind, key: &str, malicious: u32, harmless: u32, now: i64) -> Object {
        let (id, keys) = match kind {
            Kind::Url => {
                let sha = VirusTotal::url_sha256(key);
                let keys = vec![
                    key.to_ascii_lowercase(),
                    sha.clone(),
                    VirusTotal::url_id(key).to_ascii_lowercase(),
                ];
                (sha, keys)
            }
            _ => (key.to_owned(), vec![key.to_ascii_lowercase()]),
        };
        let mut attributes = Map::new();
        let (stats, results) = analysis(kind, malicious, harmless);
        let analysed = now - 3600;
        attributes.insert("last_analysis_stats".into(), stats);
        attributes.insert("last_analysis_results".into(), results);
        attributes.insert("last_analysis_date".into(), json!(analysed));
        attributes.insert("last_modification_date".into(), json!(analysed));
        attributes.insert("reputation".into(), json!(0));
        attributes.insert(
            "total_votes".into(),
            json!({ "harmless": 0, "malicious": 0 }),
        );
        attributes.insert("tags".into(), json!([]));
        let specific = match kind {
            Kind::Ip => {
                let network = match key.parse::<IpAddr>() {
                    Ok(IpAddr::V4(v4)) => {
                        let [a, b, c, _] = v4.octets();
                        format!("{a}.{b}.{c}.0/24")
                    }
                    _ => format!("{key}/128"),
                };
                json!({
                    "as_owner": "Example Networks",
                    "asn": 64500,
                    "continent": "NA",
                    "country": "US",
                    "network": network,
                    "regional_internet_registry": "ARIN",
                    "whois": format!("NetRange: {network}\nOrgName: Example Networks\n"),
                    "whois_date": now - 86_400,
                })
            }
            Kind::Domain => json!({
                "categories": {},
                "creation_date": now - 5 * 365 * 86_400,
                "last_update_date": now - 30 * 86_400,
                "registrar": "Example Registrar, Inc.",
                "tld": key.rsplit('.').next().unwrap_or(key),
                "last_dns_records": [],
                "last_dns_records_date": analysed,
                "popularity_ranks": {},
                "whois": format!("Domain Name: {}\n", key.to_ascii_uppercase()),
            }),
            Kind::Url => {
                let host = key
                    .split_once("://")
                    .map_or(key, |(_, rest)| rest)
                    .split(['/', '?', '#', ':'])
                    .next()
                    .unwrap_or("");
                json!({
                    "url": key,
                    "last_final_url": key,
                    "title": "",
                    "tld": host.rsplit('.').next().unwrap_or(host),
                    "last_http_response_code": 200,
                    "last_http_response_content_length": 1256,
                    "times_submitted": 1,
                    "first_submission_date": analysed,
                    "last_submission_date": analysed,
                    "categories": {},
                    "threat_names": [],
                    "redirection_chain": [key],
                    "has_content": false,
                })
            }
            Kind::File => {
                let hash_name = match key.len() {
                    32 => "md5",
                    40 => "sha1",
                    _ => "sha256",
                };
                let mut file = json!({
                    hash_name: key,
                    "size": 73_802,
                    "type_description": "Win32 EXE",
                    "type_tag": "peexe",
                    "type_extension": "exe",
                    "magic": "PE32 executable (GUI) Intel 80386, for MS Windows",
                    "meaningful_name": "invoice.exe",
                    "names": ["invoice.exe"],
                    "first_submission_date": analysed - 86_400,
                    "last_submission_date": analysed,
                    "times_submitted": 1,
                    "unique_sources": 1,
                    "tags": ["peexe"],
                });
                if malicious > 0 {
                    file["popular_threat_classification"] = json!({
                        "suggested_threat_label": "trojan.generic",
                        "popular_threat_category": [{ "count": malicious, "value": "trojan" }],
                        "popular_threat_name": [{ "count": malicious, "value": "generic" }],
                    });
                }
                file
            }
        };
        if let Value::Object(specific) = specific {
            attributes.extend(specific);
        }
        Object {
            kind,
            id,
            keys,
            attributes,
        }
    }

    fn to_json(&self, origin: &str) -> Value {
        json!({
            "data": {
                "type": self.kind.type_name(),
                "id": self.id,
                "links": { "self": format!("{origin}/api/v3/{}/{}", self.kind.collection(), self.id) },
                "attributes": self.attributes,
            }
        })
    }
}

/// `last_analysis_stats` and `last_analysis_results` for the counts.
fn analysis(kind: Kind, malicious: u32, harmless: u32) -> (Value, Value) {
    let (names, default_total) = match kind {
        Kind::File => (FILE_ENGINES, FILE_ENGINE_TOTAL),
        _ => (URL_ENGINES, URL_ENGINE_TOTAL),
    };
    let total = default_total.max(malicious + harmless);
    let undetected = total - malicious - harmless;
    let mut results = Map::new();
    for i in 0..total {
        let name = names
            .get(i as usize)
            .map_or_else(|| format!("Engine-{}", i + 1), |n| (*n).to_owned());
        let category = if i < malicious {
            "malicious"
        } else if i < malicious + harmless {
            "harmless"
        } else {
            "undetected"
        };
        let entry = if kind == Kind::File {
            json!({
                "category": category,
                "engine_name": name,
                "engine_version": "1.0.0",
                "engine_update": "20240101",
                "method": "blacklist",
                "result": (category == "malicious").then_some("Trojan.Generic"),
            })
        } else {
            let result = match category {
                "malicious" => "malicious",
                "harmless" => "clean",
                _ => "unrated",
            };
            json!({
                "category": category,
                "engine_name": name,
                "method": "blacklist",
                "result": result,
            })
        };
        results.insert(name, entry);
    }
    let mut stats = json!({
        "malicious": malicious,
        "suspicious": 0,
        "undetected": undetected,
        "harmless": harmless,
        "timeout": 0,
    });
    if kind == Kind::File {
        stats["confirmed-timeout"] = json!(0);
        stats["failure"] = json!(0);
        stats["type-unsupported"] = json!(0);
    }
    (stats, Value::Object(results))
}

impl Shared {
    fn handle(&self, req: &Recorded) -> Reply {
        if let Some(reply) = self.faults.take(req) {
            return reply;
        }
        let now = self.clock.now();
        let mut state = lock(&self.state);
        match req.header("x-apikey").filter(|k| !k.is_empty()) {
            None => {
                return VirusTotal::error(
                    401,
                    "AuthenticationRequiredError",
                    "X-Apikey header is missing",
                );
            }
            Some(key) if key != state.api_key => {
                return VirusTotal::error(401, "WrongCredentialsError", "Wrong API key");
            }
            Some(_) => {}
        }
        if state.quota.is_some_and(|quota| state.used >= quota) {
            return VirusTotal::error(429, "QuotaExceededError", "Quota exceeded");
        }
        state.used += 1;

        let origin = origin(req);
        let segments: Vec<&str> = req
            .path
            .strip_prefix("/api/v3/")
            .map(|rest| rest.split('/').collect())
            .unwrap_or_default();
        let get = req.method.eq_ignore_ascii_case("GET");
        let post = req.method.eq_ignore_ascii_case("POST");
        match segments.as_slice() {
            ["ip_addresses", ip] if get => state.ip(ip, &origin, now),
            ["domains", domain] if get => {
                state.lookup(Kind::Domain, domain, &origin, "Domain", domain)
            }
            ["urls", id] if get => {
                let key = if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some((*id).to_owned())
                } else {
                    base64_decode(id, true).and_then(|url| String::from_utf8(url).ok())
                };
                match key {
                    Some(key) => state.lookup(Kind::Url, &key, &origin, "URL", id),
                    None => not_found("URL", id),
                }
            }
            ["urls"] if post => state.submit(req, &origin, now),
            ["files", hash] if get => state.lookup(Kind::File, hash, &origin, "File", hash),
            ["analyses", id] if get => state.analysis(id, &origin),
            _ => VirusTotal::error(
                404,
                "NotFoundError",
                &format!("Resource {} not found", req.path),
            ),
        }
    }
}

fn not_found(what: &str, id: &str) -> Reply {
    VirusTotal::error(404, "NotFoundError", &format!("{what} \"{id}\" not found"))
}

impl State {
    fn find(&self, kind: Kind, key: &str) -> Option<&Object> {
        let key = key.to_ascii_lowercase();
        self.objects
            .iter()
            .find(|o| o.kind == kind && o.keys.contains(&key))
    }

    fn lookup(&self, kind: Kind, key: &str, origin: &str, what: &str, shown: &str) -> Reply {
        match self.find(kind, key) {
            Some(object) => Reply::json(200, object.to_json(origin)),
            None => not_found(what, shown),
        }
    }

    fn ip(&self, ip: &str, origin: &str, now: i64) -> Reply {
        let Ok(parsed) = ip.parse::<IpAddr>() else {
            return VirusTotal::error(
                400,
                "InvalidArgumentError",
                &format!("Invalid IP address: \"{ip}\""),
            );
        };
        let canonical = parsed.to_string();
        match self.find(Kind::Ip, &canonical) {
            Some(object) => Reply::json(200, object.to_json(origin)),
            None => {
                let mut object = Object::new(Kind::Ip, &canonical, 0, 0, now);
                // Never analysed: no engine results yet.
                object
                    .attributes
                    .insert("last_analysis_results".into(), json!({}));
                object.attributes.insert(
                    "last_analysis_stats".into(),
                    json!({"malicious": 0, "suspicious": 0, "undetected": 0, "harmless": 0, "timeout": 0}),
                );
                object.attributes.remove("last_analysis_date");
                Reply::json(200, object.to_json(origin))
            }
        }
    }

    fn submit(&mut self, req: &Recorded, origin: &str, now: i64) -> Reply {
        let url = param(&body_form(req), "url").unwrap_or_default();
        let url = url.trim();
        if url.is_empty() {
            return VirusTotal::error(400, "BadRequestError", "The \"url\" parameter is missing");
        }
        let host = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest)
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("");
        if host.is_empty() || url.contains(char::is_whitespace) {
            return VirusTotal::error(
                400,
                "InvalidArgumentError",
                &format!("Unable to canonicalize url \"{url}\""),
            );
        }
        let sha = VirusTotal::url_sha256(url);
        let id = format!("u-{sha}-{now}");
        self.submitted.push(url.to_owned());
        if self.find(Kind::Url, url).is_none() {
            // Scanned now: clean unless a fixture says otherwise.
            self.objects.push(Object::new(
                Kind::Url,
                url,
                0,
                URL_ENGINES.len() as u32,
                now,
            ));
        }
        self.analyses.push(Analysis {
            id: id.clone(),
            url: url.to_owned(),
            url_sha256: sha,
            date: now,
            polls_left: self.queued_polls,
        });
        Reply::json(
            200,
            json!({
                "data": {
                    "type": "analysis",
                    "id": id,
                    "links": { "self": format!("{origin}/api/v3/analyses/{id}") },
                }
            }),
        )
    }

    fn analysis(&mut self, id: &str, origin: &str) -> Reply {
        let Some(i) = self.analyses.iter().position(|a| a.id == id) else {
            return not_found("Analysis", id);
        };
        let queued = self.analyses[i].polls_left > 0;
        if queued {
            self.analyses[i].polls_left -= 1;
        }
        let analysis = &self.analyses[i];
        let (stats, results) = match (queued, self.find(Kind::Url, &analysis.url)) {
            (false, Some(object)) => (
                object.attributes["last_analysis_stats"].clone(),
                object.attributes["last_analysis_results"].clone(),
            ),
            _ => (
                json!({"malicious": 0, "suspicious": 0, "undetected": 0, "harmless": 0, "timeout": 0}),
                json!({}),
            ),
        };
        Reply::json(
            200,
            json!({
                "data": {
                    "type": "analysis",
                    "id": analysis.id,
                    "links": {
                        "self": format!("{origin}/api/v3/analyses/{}", analysis.id),
                        "item": format!("{origin}/api/v3/urls/{}", analysis.url_sha256),
                    },
                    "attributes": {
                        "date": analysis.date,
                        "status": if queued { "queued" } else { "completed" },
                        "stats": stats,
                        "results": results,
                    },
                },
                "meta": { "url_info": { "id": analysis.url_sha256, "url": analysis.url } },
            }),
        )
    }
}
