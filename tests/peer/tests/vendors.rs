//! The vendor peers over real sockets: documented success shapes, credential
//! and not-found errors, forced 429 / 5xx, pagination, and the state handles
//! reflecting what was written.

use std::time::Duration;

use allama_test_peer::Peer;
use allama_test_peer::vendors::abuseipdb::FiledReport;
use allama_test_peer::vendors::{AbuseIpDb, Jira, Slack, VirusTotal, slack};
use serde_json::{Value, json};

mod common;
use common::{Response, basic, form, request};

async fn send(
    peer: &Peer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request(peer.addr(), method, target, headers, body).await
}

/// The path and query of `url` if it points at `peer`.
fn target_of<'a>(peer: &Peer, url: &'a str) -> &'a str {
    url.strip_prefix(&peer.base_url())
        .unwrap_or_else(|| panic!("{url} does not point at the peer"))
}

// ---------------------------------------------------------------- VirusTotal

const VT_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const EICAR_SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
const EICAR_MD5: &str = "44d88612fea8a8f36de82e1278abb02f";

async fn vt_get(peer: &Peer, path: &str) -> Response {
    send(peer, "GET", path, &[("x-apikey", VT_KEY)], b"").await
}

fn vt_fixture() -> VirusTotal {
    VirusTotal::new(VT_KEY)
        .with_ip("203.0.113.7", 12, 60)
        .with_reputation("203.0.113.7", -17)
        .with_domain("evil.example", 30, 40)
        .with_url("http://malware.example/payload.exe", 5, 50)
        .with_file(EICAR_SHA256, 60, 0)
        .with_attributes(
            EICAR_SHA256,
            json!({ "md5": EICAR_MD5, "meaningful_name": "eicar.com" }),
        )
}

#[tokio::test]
async fn virustotal_objects_have_the_documented_shape() {
    let vt = vt_fixture();
    let peer = Peer::start(vt.router()).await;

    let ip = vt_get(&peer, "/api/v3/ip_addresses/203.0.113.7").await;
    assert_eq!(ip.status, 200);
    assert_eq!(ip.header("content-type"), Some("application/json"));
    let data = &ip.json()["data"];
    assert_eq!(data["type"], "ip_address");
    assert_eq!(data["id"], "203.0.113.7");
    assert_eq!(
        data["links"]["self"],
        peer.url("/api/v3/ip_addresses/203.0.113.7")
    );
    let attributes = &data["attributes"];
    assert_eq!(
        attributes["last_analysis_stats"],
        json!({"malicious": 12, "suspicious": 0, "undetected": 22, "harmless": 60, "timeout": 0})
    );
    assert_eq!(attributes["reputation"], -17);
    assert_eq!(attributes["country"], "US");
    assert_eq!(attributes["network"], "203.0.113.0/24");
    let results = attributes["last_analysis_results"].as_object().unwrap();
    assert_eq!(results.len(), 94);
    let flagged = results
        .values()
        .filter(|r| r["category"] == "malicious")
        .count();
    assert_eq!(flagged, 12);
    assert_eq!(
        results["Acronis"],
        json!({"category": "malicious", "engine_name": "Acronis", "method": "blacklist", "result": "malicious"})
    );
    assert_eq!(results["Forcepoint ThreatSeeker"]["result"], "clean");

    let domain = vt_get(&peer, "/api/v3/domains/EVIL.example").await.json();
    assert_eq!(domain["data"]["type"], "domain");
    assert_eq!(domain["data"]["id"], "evil.example");
    assert_eq!(
        domain["data"]["attributes"]["last_analysis_stats"]["harmless"],
        40
    );
    assert_eq!(domain["data"]["attributes"]["tld"], "example");

    // A URL by its unpadded URL-safe base64 and by its SHA-256.
    let url = "http://malware.example/payload.exe";
    let id = VirusTotal::url_id(url);
    assert!(!id.contains('=') && !id.contains('+') && !id.contains('/'));
    let by_b64 = vt_get(&peer, &format!("/api/v3/urls/{id}")).await.json();
    assert_eq!(by_b64["data"]["type"], "url");
    assert_eq!(by_b64["data"]["id"], VirusTotal::url_sha256(url));
    assert_eq!(by_b64["data"]["attributes"]["url"], url);
    assert_eq!(
        by_b64["data"]["attributes"]["last_analysis_stats"]["malicious"],
        5
    );
    let sha_path = format!("/api/v3/urls/{}", VirusTotal::url_sha256(url));
    assert_eq!(vt_get(&peer, &sha_path).await.json(), by_b64);

    // A file by its MD5 answers with its SHA-256 id and file-only stats.
    let file = vt_get(
        &peer,
        &format!("/api/v3/files/{}", EICAR_MD5.to_uppercase()),
    )
    .await;
    assert_eq!(file.status, 200);
    let file = file.json();
    assert_eq!(file["data"]["type"], "file");
    assert_eq!(file["data"]["id"], EICAR_SHA256);
    let attributes = &file["data"]["attributes"];
    assert_eq!(attributes["md5"], EICAR_MD5);
    assert_eq!(attributes["sha256"], EICAR_SHA256);
    assert_eq!(attributes["meaningful_name"], "eicar.com");
    assert_eq!(
        attributes["last_analysis_stats"],
        json!({"malicious": 60, "suspicious": 0, "undetected": 16, "harmless": 0, "timeout": 0,
               "confirmed-timeout": 0, "failure": 0, "type-unsupported": 0})
    );
    assert_eq!(
        attributes["popular_threat_classification"]["suggested_threat_label"],
        "trojan.generic"
    );
}

#[tokio::test]
async fn virustotal_credentials_are_checked_like_virustotal() {
    let vt = vt_fixture();
    let peer = Peer::start(vt.router()).await;
    let path = "/api/v3/ip_addresses/203.0.113.7";

    let missing = send(&peer, "GET", path, &[], b"").await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.json(),
        json!({"error": {"code": "AuthenticationRequiredError", "message": "X-Apikey header is missing"}})
    );
    // Only the x-apikey header counts.
    let bearer = send(
        &peer,
        "GET",
        &format!("{path}?apikey={VT_KEY}"),
        &[("Authorization", &format!("Bearer {VT_KEY}"))],
        b"",
    )
    .await;
    assert_eq!(
        bearer.json()["error"]["code"],
        "AuthenticationRequiredError"
    );

    let wrong = send(&peer, "GET", path, &[("x-apikey", "nope")], b"").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.json(),
        json!({"error": {"code": "WrongCredentialsError", "message": "Wrong API key"}})
    );

    assert_eq!(vt_get(&peer, path).await.status, 200);
    vt.set_api_key("rotated");
    assert_eq!(vt_get(&peer, path).await.status, 401);
}

#[tokio::test]
async fn virustotal_unknown_objects() {
    let vt = vt_fixture();
    let peer = Peer::start(vt.router()).await;

    let domain = vt_get(&peer, "/api/v3/domains/nope.example").await;
    assert_eq!(domain.status, 404);
    assert_eq!(
        domain.json(),
        json!({"error": {"code": "NotFoundError", "message": "Domain \"nope.example\" not found"}})
    );
    let file = vt_get(&peer, &format!("/api/v3/files/{}", "0".repeat(64))).await;
    assert_eq!(file.status, 404);
    assert_eq!(file.json()["error"]["code"], "NotFoundError");

    // Padded base64 is not a URL identifier.
    let padded = format!(
        "{}==",
        VirusTotal::url_id("http://malware.example/payload.exe")
    );
    let url = vt_get(&peer, &format!("/api/v3/urls/{padded}")).await;
    assert_eq!(url.status, 404);
    assert_eq!(
        url.json()["error"]["message"],
        format!("URL \"{padded}\" not found")
    );

    // Any well-formed IP has an object; a malformed one is an argument error.
    let unseen = vt_get(&peer, "/api/v3/ip_addresses/198.51.100.200").await;
    assert_eq!(unseen.status, 200);
    let attributes = &unseen.json()["data"]["attributes"];
    assert_eq!(attributes["last_analysis_stats"]["malicious"], 0);
    assert_eq!(attributes["last_analysis_results"], json!({}));
    let bad = vt_get(&peer, "/api/v3/ip_addresses/999.1.1.1").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "InvalidArgumentError");

    let unknown = vt_get(&peer, "/api/v3/nothing/here").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["code"], "NotFoundError");
}

#[tokio::test]
async fn virustotal_url_submission_and_analysis() {
    let vt = VirusTotal::new(VT_KEY).with_queued_polls(1);
    let peer = Peer::start(vt.router()).await;
    let url = "https://new.example/login";

    let submitted = send(
        &peer,
        "POST",
        "/api/v3/urls",
        &[
            ("x-apikey", VT_KEY),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form(&[("url", url)]).as_bytes(),
    )
    .await;
    assert_eq!(submitted.status, 200);
    let data = submitted.json()["data"].clone();
    assert_eq!(data["type"], "analysis");
    let id = data["id"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with(&format!("u-{}-", VirusTotal::url_sha256(url))),
        "{id}"
    );
    let link = data["links"]["self"].as_str().unwrap();
    assert_eq!(link, peer.url(&format!("/api/v3/analyses/{id}")));
    assert_eq!(vt.submitted_urls(), [url]);

    let first = vt_get(&peer, target_of(&peer, link)).await.json();
    assert_eq!(first["data"]["attributes"]["status"], "queued");
    assert_eq!(first["data"]["attributes"]["stats"]["harmless"], 0);
    let second = vt_get(&peer, target_of(&peer, link)).await.json();
    assert_eq!(second["data"]["attributes"]["status"], "completed");
    assert_eq!(second["data"]["attributes"]["stats"]["harmless"], 30);
    assert_eq!(
        second["meta"]["url_info"],
        json!({"id": VirusTotal::url_sha256(url), "url": url})
    );
    let object = vt_get(&peer, &format!("/api/v3/urls/{}", VirusTotal::url_id(url))).await;
    assert_eq!(object.status, 200);

    // multipart/form-data, as `curl --form url=...` sends it.
    let body = "--b0undary\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\nhttp://other.example/\r\n--b0undary--\r\n";
    let multipart = send(
        &peer,
        "POST",
        "/api/v3/urls",
        &[
            ("x-apikey", VT_KEY),
            ("Content-Type", "multipart/form-data; boundary=b0undary"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(multipart.status, 200);
    assert_eq!(vt.submitted_urls(), [url, "http://other.example/"]);

    let missing = send(
        &peer,
        "POST",
        "/api/v3/urls",
        &[("x-apikey", VT_KEY), ("Content-Type", "application/json")],
        br#"{"url": "https://ignored.example/"}"#,
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"]["code"], "BadRequestError");
    assert_eq!(vt.submitted_urls().len(), 2);
}

#[tokio::test]
async fn virustotal_forced_failures_and_quota() {
    let vt = vt_fixture().with_quota(6);
    let peer = Peer::start(vt.router()).await;
    let path = "/api/v3/domains/evil.example";

    vt.fail_next(VirusTotal::rate_limited(30));
    let limited = vt_get(&peer, path).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("30"));
    assert_eq!(limited.json()["error"]["code"], "QuotaExceededError");

    vt.fail_next(VirusTotal::forbidden());
    let forbidden = vt_get(&peer, path).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.json()["error"]["code"], "ForbiddenError");

    vt.fail_next(VirusTotal::transient_error());
    let transient = vt_get(&peer, path).await;
    assert_eq!(transient.status, 503);
    assert_eq!(transient.json()["error"]["code"], "TransientError");

    // Only the matching request fails.
    vt.fail_next_on("POST", "/api/v3/urls", VirusTotal::deadline_exceeded());
    assert_eq!(vt_get(&peer, path).await.status, 200);
    let post = send(
        &peer,
        "POST",
        "/api/v3/urls",
        &[
            ("x-apikey", VT_KEY),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"url=http%3A%2F%2Fx.example%2F",
    )
    .await;
    assert_eq!(post.status, 504);
    assert!(
        vt.submitted_urls().is_empty(),
        "a failed request writes nothing"
    );

    vt.fail_always(VirusTotal::transient_error());
    assert_eq!(vt_get(&peer, path).await.status, 503);
    assert_eq!(vt_get(&peer, path).await.status, 503);
    vt.stop_failing();

    // Forced failures do not use quota; 6 served requests do.
    for _ in 0..5 {
        assert_eq!(vt_get(&peer, path).await.status, 200);
    }
    let exhausted = vt_get(&peer, path).await;
    assert_eq!(exhausted.status, 429);
    assert_eq!(
        exhausted.json(),
        json!({"error": {"code": "QuotaExceededError", "message": "Quota exceeded"}})
    );
}

// ----------------------------------------------------------------- AbuseIPDB

const ABUSE_KEY: &str =
    "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4";
const AUTH_FAILED: &str = "Authentication failed. Your API key is either missing, incorrect, or revoked. Note: The APIv2 key differs from the APIv1 key.";

async fn abuse(peer: &Peer, method: &str, target: &str, body: &[u8]) -> Response {
    let mut headers = vec![("Key", ABUSE_KEY), ("Accept", "application/json")];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/x-www-form-urlencoded"));
    }
    send(peer, method, target, &headers, body).await
}

fn abuse_fixture() -> AbuseIpDb {
    AbuseIpDb::new(ABUSE_KEY).with_ip("203.0.113.7", 87, 10).with_details(
        "203.0.113.7",
        json!({"countryCode": "NL", "isp": "Bad Hosting BV", "domain": "bad.example", "isTor": true}),
    )
}

#[tokio::test]
async fn abuseipdb_check_has_the_documented_shape() {
    let abuse_db = abuse_fixture();
    let peer = Peer::start(abuse_db.router()).await;

    let day = abuse(
        &peer,
        "GET",
        "/api/v2/check?ipAddress=203.0.113.7&maxAgeInDays=1",
        b"",
    )
    .await;
    assert_eq!(day.status, 200);
    assert_eq!(day.header("x-ratelimit-limit"), Some("1000"));
    assert_eq!(day.header("x-ratelimit-remaining"), Some("999"));
    let data = day.json()["data"].clone();
    assert_eq!(data["ipAddress"], "203.0.113.7");
    assert_eq!(data["isPublic"], true);
    assert_eq!(data["ipVersion"], 4);
    assert_eq!(data["isWhitelisted"], false);
    assert_eq!(data["abuseConfidenceScore"], 87);
    assert_eq!(data["countryCode"], "NL");
    assert_eq!(data["usageType"], "Data Center/Web Hosting/Transit");
    assert_eq!(data["isp"], "Bad Hosting BV");
    assert_eq!(data["domain"], "bad.example");
    assert_eq!(data["isTor"], true);
    // Reports 1, 7, 13 and 19 hours old, by two reporters.
    assert_eq!(data["totalReports"], 4);
    assert_eq!(data["numDistinctUsers"], 2);
    let last = data["lastReportedAt"].as_str().unwrap();
    assert!(last.ends_with("+00:00") && last.len() == 25, "{last}");
    assert!(data.get("reports").is_none());

    let month = abuse(&peer, "GET", "/api/v2/check?ipAddress=203.0.113.7", b"").await;
    assert_eq!(month.header("x-ratelimit-remaining"), Some("998"));
    let data = month.json()["data"].clone();
    assert_eq!(data["totalReports"], 10);
    assert_eq!(data["numDistinctUsers"], 5);

    let verbose = abuse(
        &peer,
        "GET",
        "/api/v2/check?ipAddress=203.0.113.7&maxAgeInDays=1&verbose",
        b"",
    )
    .await
    .json();
    let data = &verbose["data"];
    assert_eq!(data["countryName"], "Netherlands");
    let reports = data["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 4);
    assert_eq!(reports[0]["reportedAt"], last);
    assert_eq!(reports[0]["categories"], json!([18, 22]));
    assert_eq!(reports[0]["reporterId"], 1000);
    assert_eq!(reports[0]["reporterCountryCode"], "US");
    assert_eq!(
        reports[0]["reporterCountryName"],
        "United States of America"
    );

    let private = abuse(&peer, "GET", "/api/v2/check?ipAddress=10.0.0.5", b"")
        .await
        .json();
    assert_eq!(
        private["data"],
        json!({
            "ipAddress": "10.0.0.5", "isPublic": false, "ipVersion": 4, "isWhitelisted": false,
            "abuseConfidenceScore": 0, "countryCode": null, "usageType": "Reserved",
            "isp": "Private IP Address LAN", "domain": null, "hostnames": [], "isTor": false,
            "totalReports": 0, "numDistinctUsers": 0, "lastReportedAt": null,
        })
    );
    let v6 = abuse(
        &peer,
        "GET",
        "/api/v2/check?ipAddress=2001%3Adb8%3A%3A1",
        b"",
    )
    .await
    .json();
    assert_eq!(v6["data"]["ipVersion"], 6);
    assert_eq!(v6["data"]["ipAddress"], "2001:db8::1");
}

#[tokio::test]
async fn abuseipdb_errors_have_the_documented_shape() {
    let abuse_db = abuse_fixture();
    let peer = Peer::start(abuse_db.router()).await;
    let check = "/api/v2/check?ipAddress=203.0.113.7";

    let missing = send(&peer, "GET", check, &[("Accept", "application/json")], b"").await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.json(),
        json!({"errors": [{"detail": AUTH_FAILED, "status": 401}]})
    );
    let wrong = send(
        &peer,
        "GET",
        check,
        &[("Key", "wrong"), ("Accept", "application/json")],
        b"",
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["errors"][0]["detail"], AUTH_FAILED);
    // Without `Accept: application/json` errors are an HTML page.
    let html = send(&peer, "GET", check, &[("Key", "wrong")], b"").await;
    assert_eq!(html.status, 401);
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=UTF-8")
    );
    assert!(html.text().contains("Authentication failed"));

    let invalid = abuse(&peer, "GET", "/api/v2/check?ipAddress=not-an-ip", b"").await;
    assert_eq!(invalid.status, 422);
    assert_eq!(
        invalid.json(),
        json!({"errors": [{
            "detail": "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).",
            "status": 422,
            "source": {"parameter": "ipAddress"},
        }]})
    );
    let age = abuse(&peer, "GET", &format!("{check}&maxAgeInDays=400"), b"").await;
    assert_eq!(age.status, 422);
    assert_eq!(
        age.json()["errors"][0]["detail"],
        "The max age in days must be between 1 and 365."
    );
    assert_eq!(
        age.json()["errors"][0]["source"]["parameter"],
        "maxAgeInDays"
    );

    let unknown = abuse(&peer, "GET", "/api/v2/nothing", b"").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["errors"][0]["status"], 404);
    let wrong_method = abuse(&peer, "GET", "/api/v2/report", b"").await;
    assert_eq!(wrong_method.status, 405);
}

#[tokio::test]
async fn abuseipdb_reports_are_filed_once_per_15_minutes() {
    let abuse_db = abuse_fixture();
    let peer = Peer::start(abuse_db.router()).await;
    let body = form(&[
        ("ip", "203.0.113.7"),
        ("categories", "18,22"),
        ("comment", "SSH brute force from the honeypot"),
    ]);

    let filed = abuse(&peer, "POST", "/api/v2/report", body.as_bytes()).await;
    assert_eq!(filed.status, 200);
    assert_eq!(
        filed.json(),
        json!({"data": {"ipAddress": "203.0.113.7", "abuseConfidenceScore": 87}})
    );
    let reports = abuse_db.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0],
        FiledReport {
            ip: "203.0.113.7".into(),
            categories: vec![18, 22],
            comment: "SSH brute force from the honeypot".into(),
            timestamp: None,
            reported_at: reports[0].reported_at.clone(),
        }
    );

    // The report shows up in checks.
    let check = abuse(
        &peer,
        "GET",
        "/api/v2/check?ipAddress=203.0.113.7&maxAgeInDays=1&verbose",
        b"",
    )
    .await
    .json();
    assert_eq!(check["data"]["totalReports"], 5);
    assert_eq!(check["data"]["numDistinctUsers"], 3);
    assert_eq!(check["data"]["lastReportedAt"], reports[0].reported_at);
    assert_eq!(
        check["data"]["reports"][0]["comment"],
        "SSH brute force from the honeypot"
    );

    let again = abuse(&peer, "POST", "/api/v2/report", body.as_bytes()).await;
    assert_eq!(again.status, 429);
    assert_eq!(
        again.json(),
        json!({"errors": [{
            "detail": "You can only report the same IP address (`203.0.113.7`) once in 15 minutes.",
            "status": 429,
            "source": {"parameter": "ip"},
        }]})
    );
    assert_eq!(abuse_db.reports().len(), 1);
    abuse_db.advance_clock(Duration::from_secs(16 * 60));
    let later = abuse(&peer, "POST", "/api/v2/report", body.as_bytes()).await;
    assert_eq!(later.status, 200);
    assert_eq!(abuse_db.reports().len(), 2);

    // Parameters in the query, and a JSON body, work too.
    let query = abuse(
        &peer,
        "POST",
        "/api/v2/report?ip=198.51.100.9&categories=14",
        b"",
    )
    .await;
    assert_eq!(
        query.json(),
        json!({"data": {"ipAddress": "198.51.100.9", "abuseConfidenceScore": 0}})
    );
    let json_body = send(
        &peer,
        "POST",
        "/api/v2/report",
        &[
            ("Key", ABUSE_KEY),
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ],
        br#"{"ip": "198.51.100.10", "categories": [18, 21], "comment": "web attack"}"#,
    )
    .await;
    assert_eq!(json_body.status, 200);
    assert_eq!(abuse_db.reports()[3].categories, [18, 21]);

    let bad_category = abuse(
        &peer,
        "POST",
        "/api/v2/report",
        b"ip=198.51.100.11&categories=18,99",
    )
    .await;
    assert_eq!(bad_category.status, 422);
    assert_eq!(
        bad_category.json()["errors"][0]["source"]["parameter"],
        "categories"
    );
    let no_ip = abuse(&peer, "POST", "/api/v2/report", b"categories=18").await;
    assert_eq!(no_ip.status, 422);
    assert_eq!(
        no_ip.json()["errors"][0]["detail"],
        "The ip field is required."
    );
    assert_eq!(abuse_db.reports().len(), 4);
}

#[tokio::test]
async fn abuseipdb_blacklist() {
    let abuse_db = AbuseIpDb::new(ABUSE_KEY)
        .with_daily_limit("blacklist", 100)
        .with_ip("203.0.113.1", 100, 5)
        .with_ip("203.0.113.2", 90, 3)
        .with_ip("203.0.113.3", 40, 2)
        .with_ip("203.0.113.4", 100, 1)
        .with_details("203.0.113.4", json!({"countryCode": "DE"}))
        .with_ip("203.0.113.5", 0, 0);
    let peer = Peer::start(abuse_db.router()).await;
    let ips = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ipAddress"].as_str().unwrap().to_owned())
            .collect()
    };

    let default = abuse(&peer, "GET", "/api/v2/blacklist", b"").await.json();
    let generated = default["meta"]["generatedAt"].as_str().unwrap();
    assert!(generated.ends_with("+00:00"));
    let mut top = ips(&default);
    top.sort();
    assert_eq!(top, ["203.0.113.1", "203.0.113.4"]);
    let entry = &default["data"][0];
    assert_eq!(entry["abuseConfidenceScore"], 100);
    assert!(
        entry["lastReportedAt"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );

    let fifty = abuse(&peer, "GET", "/api/v2/blacklist?confidenceMinimum=50", b"")
        .await
        .json();
    assert_eq!(ips(&fifty).len(), 3);
    assert_eq!(ips(&fifty)[2], "203.0.113.2", "highest scores first");
    let limited = abuse(
        &peer,
        "GET",
        "/api/v2/blacklist?confidenceMinimum=25&limit=2",
        b"",
    )
    .await
    .json();
    assert_eq!(ips(&limited).len(), 2);
    let germany = abuse(
        &peer,
        "GET",
        "/api/v2/blacklist?onlyCountries=DE&confidenceMinimum=25",
        b"",
    )
    .await
    .json();
    assert_eq!(ips(&germany), ["203.0.113.4"]);
    assert_eq!(germany["data"][0]["countryCode"], "DE");
    let not_germany = abuse(
        &peer,
        "GET",
        "/api/v2/blacklist?exceptCountries=DE&confidenceMinimum=25",
        b"",
    )
    .await
    .json();
    assert_eq!(ips(&not_germany).len(), 3);

    let plain = abuse(&peer, "GET", "/api/v2/blacklist?plaintext", b"").await;
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let mut lines: Vec<String> = plain.text().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["203.0.113.1", "203.0.113.4"]);

    let low = abuse(&peer, "GET", "/api/v2/blacklist?confidenceMinimum=10", b"").await;
    assert_eq!(low.status, 422);
    assert_eq!(
        low.json()["errors"][0]["source"]["parameter"],
        "confidenceMinimum"
    );
}

#[tokio::test]
async fn abuseipdb_reports_paginate() {
    let abuse_db = AbuseIpDb::new(ABUSE_KEY).with_ip("192.0.2.44", 50, 7);
    let peer = Peer::start(abuse_db.router()).await;

    let mut target = "/api/v2/reports?ipAddress=192.0.2.44&perPage=3".to_owned();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = abuse(&peer, "GET", &target, b"").await.json()["data"].clone();
        pages += 1;
        assert_eq!(page["total"], 7);
        assert_eq!(page["perPage"], 3);
        assert_eq!(page["lastPage"], 3);
        assert_eq!(page["page"], pages);
        if pages == 1 {
            assert_eq!(page["previousPageUrl"], Value::Null);
        } else {
            assert!(page["previousPageUrl"].is_string());
        }
        let results = page["results"].as_array().unwrap();
        assert_eq!(page["count"], results.len());
        seen.extend(results.iter().cloned());
        match page["nextPageUrl"].as_str() {
            Some(next) => target = target_of(&peer, next).to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let comments: Vec<&str> = seen
        .iter()
        .map(|r| r["comment"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (1..=7)
        .map(|n| format!("Report {n} against 192.0.2.44"))
        .collect();
    assert_eq!(comments, expected, "newest first, each once");
    let times: Vec<&str> = seen
        .iter()
        .map(|r| r["reportedAt"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]));

    let beyond = abuse(
        &peer,
        "GET",
        "/api/v2/reports?ipAddress=192.0.2.44&perPage=3&page=4",
        b"",
    )
    .await
    .json();
    assert_eq!(beyond["data"]["results"], json!([]));
    assert_eq!(beyond["data"]["count"], 0);
    assert_eq!(beyond["data"]["nextPageUrl"], Value::Null);
}

#[tokio::test]
async fn abuseipdb_daily_quota_and_forced_failures() {
    let abuse_db = abuse_fixture();
    let peer = Peer::start(abuse_db.router()).await;

    // The free tier's blacklist quota is 5 a day.
    for remaining in (0..5).rev() {
        let ok = abuse(&peer, "GET", "/api/v2/blacklist", b"").await;
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.header("x-ratelimit-remaining"),
            Some(remaining.to_string().as_str())
        );
    }
    let over = abuse(&peer, "GET", "/api/v2/blacklist", b"").await;
    assert_eq!(over.status, 429);
    assert_eq!(
        over.json(),
        json!({"errors": [{
            "detail": "Daily rate limit of 5 requests exceeded for this endpoint. See headers for additional details.",
            "status": 429,
        }]})
    );
    let retry: i64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let reset: i64 = over.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert_eq!(reset % 86_400, 0, "resets at UTC midnight");
    assert_eq!(over.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(over.header("x-ratelimit-remaining"), Some("0"));
    // Other endpoints have their own quota; the next day starts afresh.
    let check = "/api/v2/check?ipAddress=203.0.113.7";
    assert_eq!(abuse(&peer, "GET", check, b"").await.status, 200);
    abuse_db.advance_clock(Duration::from_secs(86_400));
    assert_eq!(
        abuse(&peer, "GET", "/api/v2/blacklist", b"").await.status,
        200
    );

    abuse_db.fail_next(AbuseIpDb::rate_limited(60));
    let limited = abuse(&peer, "GET", check, b"").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("60"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(limited.json()["errors"][0]["status"], 429);

    abuse_db.fail_next(AbuseIpDb::server_error(503));
    let down = abuse(&peer, "GET", check, b"").await;
    assert_eq!(down.status, 503);
    assert_eq!(
        down.json(),
        json!({"errors": [{"detail": "Server Error", "status": 503}]})
    );

    abuse_db.fail_next(AbuseIpDb::error(403, "You are not allowed."));
    assert_eq!(abuse(&peer, "GET", check, b"").await.status, 403);

    abuse_db.fail_next_on("POST", "/api/v2/report", AbuseIpDb::server_error(500));
    assert_eq!(abuse(&peer, "GET", check, b"").await.status, 200);
    let body = b"ip=203.0.113.7&categories=18";
    let failed = abuse(&peer, "POST", "/api/v2/report", body).await;
    assert_eq!(failed.status, 500);
    assert!(abuse_db.reports().is_empty());
    let retried = abuse(&peer, "POST", "/api/v2/report", body).await;
    assert_eq!(retried.status, 200);
    assert_eq!(abuse_db.reports().len(), 1);
}

// --------------------------------------------------------------------- Slack

const SLACK_TOKEN: &str = "xoxb-1111-2222-abcdefABCDEF";

fn slack_fixture() -> Slack {
    Slack::new(SLACK_TOKEN)
        .with_channel("C0SOC00001", "soc-alerts")
        .with_channel_not_joined("C0RANDOM01", "random")
        .with_archived_channel("C0OLD00001", "old-alerts")
        .with_private_channel("G0IR000001", "incident-response")
        .with_user("U0ANALYST1", "ana", "Ana Analyst", "ana@example.com")
}

async fn slack_post(peer: &Peer, body: Value) -> Response {
    let auth = format!("Bearer {SLACK_TOKEN}");
    send(
        peer,
        "POST",
        "/api/chat.postMessage",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

fn is_slack_ts(ts: &str) -> bool {
    let Some((secs, micros)) = ts.split_once('.') else {
        return false;
    };
    secs.len() == 10
        && micros.len() == 6
        && secs
            .bytes()
            .chain(micros.bytes())
            .all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn slack_posts_messages() {
    let slack_peer = slack_fixture();
    let peer = Peer::start(slack_peer.router()).await;
    let blocks =
        json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*Alert* 203.0.113.7"}}]);

    let posted = slack_post(
        &peer,
        json!({"channel": "#soc-alerts", "text": "Alert: 203.0.113.7", "blocks": blocks}),
    )
    .await;
    assert_eq!(posted.status, 200);
    assert_eq!(
        posted.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = posted.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["channel"], "C0SOC00001");
    let ts = body["ts"].as_str().unwrap().to_owned();
    assert!(is_slack_ts(&ts), "{ts}");
    assert!(body.get("warning").is_none());
    let message = &body["message"];
    assert_eq!(message["type"], "message");
    assert_eq!(message["text"], "Alert: 203.0.113.7");
    assert_eq!(message["ts"], ts);
    assert_eq!(message["user"], slack::BOT_USER_ID);
    assert_eq!(message["bot_id"], slack::BOT_ID);
    assert_eq!(message["team"], slack::TEAM_ID);
    assert_eq!(message["blocks"], blocks);

    let messages = slack_peer.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].channel, "C0SOC00001");
    assert_eq!(messages[0].text.as_deref(), Some("Alert: 203.0.113.7"));
    assert_eq!(messages[0].blocks.as_ref(), Some(&blocks));
    assert_eq!(messages[0].ts, ts);

    // A urlencoded body with the token in it, replying in the thread.
    let form_body = form(&[
        ("token", SLACK_TOKEN),
        ("channel", "C0SOC00001"),
        ("text", "Blocked."),
        ("thread_ts", &ts),
    ]);
    let reply = send(
        &peer,
        "POST",
        "/api/chat.postMessage",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form_body.as_bytes(),
    )
    .await
    .json();
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["message"]["thread_ts"], ts);
    assert_ne!(reply["ts"], ts);
    assert_eq!(
        slack_peer.messages()[1].thread_ts.as_deref(),
        Some(ts.as_str())
    );

    // A user id as channel is a direct message; private channels the bot is in work.
    let dm = slack_post(
        &peer,
        json!({"channel": "U0ANALYST1", "text": "Please look"}),
    )
    .await
    .json();
    assert_eq!(dm["channel"], "D0ANALYST1");
    let private = slack_post(&peer, json!({"channel": "incident-response", "text": "IR"}))
        .await
        .json();
    assert_eq!(private["channel"], "G0IR000001");

    // JSON without a charset still posts, with Slack's warning.
    let auth = format!("Bearer {SLACK_TOKEN}");
    let no_charset = send(
        &peer,
        "POST",
        "/api/chat.postMessage",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"channel": "C0SOC00001", "text": "x"}"#,
    )
    .await
    .json();
    assert_eq!(no_charset["ok"], true);
    assert_eq!(no_charset["warning"], "missing_charset");
    assert_eq!(
        no_charset["response_metadata"]["warnings"],
        json!(["missing_charset"])
    );
    assert_eq!(slack_peer.messages().len(), 5);
}

#[tokio::test]
async fn slack_auth_errors_are_http_200() {
    let slack_peer = slack_fixture();
    let peer = Peer::start(slack_peer.router()).await;
    let body = br#"{"channel": "C0SOC00001", "text": "x"}"#;
    let post = |headers: Vec<(&'static str, String)>, target: String| {
        let peer = &peer;
        async move {
            let mut all: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            all.push(("Content-Type", "application/json; charset=utf-8"));
            send(peer, "POST", &target, &all, body).await
        }
    };
    let post_message = || "/api/chat.postMessage".to_owned();

    let none = post(vec![], post_message()).await;
    assert_eq!(none.status, 200);
    assert_eq!(none.json(), json!({"ok": false, "error": "not_authed"}));
    let query = post(vec![], format!("/api/chat.postMessage?token={SLACK_TOKEN}")).await;
    assert_eq!(
        query.json()["error"],
        "not_authed",
        "query tokens are not read"
    );
    let wrong = post(
        vec![("Authorization", "Bearer xoxb-wrong".to_owned())],
        post_message(),
    )
    .await;
    assert_eq!(wrong.status, 200);
    assert_eq!(wrong.json(), json!({"ok": false, "error": "invalid_auth"}));

    let good = || vec![("Authorization", format!("Bearer {SLACK_TOKEN}"))];
    slack_peer.revoke_token();
    let revoked = post(good(), post_message()).await;
    assert_eq!(
        revoked.json(),
        json!({"ok": false, "error": "token_revoked"})
    );
    slack_peer.set_token(SLACK_TOKEN);
    assert_eq!(post(good(), post_message()).await.json()["ok"], true);
    assert_eq!(slack_peer.messages().len(), 1);

    // Slack's equivalent of 403: a token without the method's scope.
    let narrow = Slack::new(SLACK_TOKEN)
        .with_scopes(&["users:read"])
        .with_channel("C0SOC00001", "soc-alerts");
    let narrow_peer = Peer::start(narrow.router()).await;
    let scoped = send(
        &narrow_peer,
        "POST",
        "/api/chat.postMessage",
        &[
            ("Authorization", &format!("Bearer {SLACK_TOKEN}")),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        body,
    )
    .await;
    assert_eq!(scoped.status, 200);
    assert_eq!(
        scoped.json(),
        json!({"ok": false, "error": "missing_scope", "needed": "chat:write", "provided": "users:read"})
    );
    assert!(narrow.messages().is_empty());
}

#[tokio::test]
async fn slack_post_errors() {
    let slack_peer = slack_fixture();
    let peer = Peer::start(slack_peer.router()).await;
    let error = |body: &Value| body["error"].as_str().unwrap().to_owned();

    let missing = slack_post(&peer, json!({"text": "x"})).await.json();
    assert_eq!(
        missing,
        json!({"ok": false, "error": "invalid_arguments",
               "response_metadata": {"messages": ["[ERROR] missing required field: channel"]}})
    );
    for (channel, expected) in [
        ("C0NOPE0001", "channel_not_found"),
        ("#nope", "channel_not_found"),
        ("random", "not_in_channel"),
        ("C0OLD00001", "is_archived"),
    ] {
        let body = slack_post(&peer, json!({"channel": channel, "text": "x"}))
            .await
            .json();
        assert_eq!(body["ok"], false);
        assert_eq!(error(&body), expected, "{channel}");
    }
    let empty = slack_post(&peer, json!({"channel": "C0SOC00001"}))
        .await
        .json();
    assert_eq!(empty, json!({"ok": false, "error": "no_text"}));
    let blocks = slack_post(
        &peer,
        json!({"channel": "C0SOC00001", "blocks": [{"text": "no type"}]}),
    )
    .await
    .json();
    assert_eq!(error(&blocks), "invalid_blocks");
    assert_eq!(
        blocks["response_metadata"]["messages"],
        json!(["[ERROR] missing required field: type [json-pointer:/blocks/0]"])
    );
    let long = slack_post(
        &peer,
        json!({"channel": "C0SOC00001", "text": "x".repeat(40_001)}),
    )
    .await
    .json();
    assert_eq!(error(&long), "msg_too_long");

    let unknown = send(
        &peer,
        "POST",
        "/api/chat.postMessagee",
        &[("Authorization", &format!("Bearer {SLACK_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(
        unknown.json(),
        json!({"ok": false, "error": "unknown_method", "req_method": "chat.postMessagee"})
    );
    assert!(slack_peer.messages().is_empty(), "nothing was posted");

    // With chat:write.public the bot posts to public channels it is not in.
    let public = Slack::new(SLACK_TOKEN)
        .with_scopes(&["chat:write", "chat:write.public"])
        .with_channel_not_joined("C0RANDOM01", "random");
    let public_peer = Peer::start(public.router()).await;
    let posted = slack_post(&public_peer, json!({"channel": "random", "text": "x"}))
        .await
        .json();
    assert_eq!(posted["ok"], true);
    assert_eq!(posted["channel"], "C0RANDOM01");
}

#[tokio::test]
async fn slack_looks_users_up_by_email() {
    let slack_peer = slack_fixture();
    let peer = Peer::start(slack_peer.router()).await;
    let auth = format!("Bearer {SLACK_TOKEN}");

    let found = send(
        &peer,
        "GET",
        "/api/users.lookupByEmail?email=ANA%40example.com",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(found.status, 200);
    let body = found.json();
    assert_eq!(body["ok"], true);
    let user = &body["user"];
    assert_eq!(user["id"], "U0ANALYST1");
    assert_eq!(user["team_id"], slack::TEAM_ID);
    assert_eq!(user["name"], "ana");
    assert_eq!(user["real_name"], "Ana Analyst");
    assert_eq!(user["deleted"], false);
    assert_eq!(user["is_bot"], false);
    assert_eq!(user["profile"]["email"], "ana@example.com");
    assert_eq!(user["profile"]["real_name"], "Ana Analyst");

    let form_lookup = send(
        &peer,
        "POST",
        "/api/users.lookupByEmail",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"email=ana%40example.com",
    )
    .await
    .json();
    assert_eq!(form_lookup["user"]["id"], "U0ANALYST1");

    let missing = send(
        &peer,
        "GET",
        "/api/users.lookupByEmail?email=nobody%40example.com",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(missing.status, 200);
    assert_eq!(
        missing.json(),
        json!({"ok": false, "error": "users_not_found"})
    );

    // users.lookupByEmail does not read JSON bodies.
    let json_body = send(
        &peer,
        "POST",
        "/api/users.lookupByEmail",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        br#"{"email": "ana@example.com"}"#,
    )
    .await
    .json();
    assert_eq!(json_body["error"], "invalid_arguments");
    assert_eq!(
        json_body["response_metadata"]["messages"],
        json!(["[ERROR] missing required field: email"])
    );

    let narrow = Slack::new(SLACK_TOKEN).with_scopes(&["chat:write", "users:read"]);
    let narrow_peer = Peer::start(narrow.router()).await;
    let scoped = send(
        &narrow_peer,
        "GET",
        "/api/users.lookupByEmail?email=ana%40example.com",
        &[("Authorization", &auth)],
        b"",
    )
    .await
    .json();
    assert_eq!(scoped["error"], "missing_scope");
    assert_eq!(scoped["needed"], "users:read.email");
}

#[tokio::test]
async fn slack_conversations_list_paginates_with_cursors() {
    let mut slack_peer = Slack::new(SLACK_TOKEN);
    for i in 1..=5 {
        slack_peer = slack_peer.with_channel(&format!("C0CHAN000{i}"), &format!("chan-{i}"));
    }
    let slack_peer = slack_peer
        .with_private_channel("G0PRIV0001", "private")
        .with_archived_channel("C0ARCH0001", "archived");
    let peer = Peer::start(slack_peer.router()).await;
    let auth = format!("Bearer {SLACK_TOKEN}");
    let list = |query: String| {
        let peer = &peer;
        let auth = auth.clone();
        async move {
            send(
                peer,
                "GET",
                &format!("/api/conversations.list?{query}"),
                &[("Authorization", &auth)],
                b"",
            )
            .await
            .json()
        }
    };

    let mut names = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = list(format!("limit=2&exclude_archived=true&cursor={cursor}")).await;
        assert_eq!(page["ok"], true);
        pages += 1;
        for channel in page["channels"].as_array().unwrap() {
            assert_eq!(channel["is_channel"], true);
            assert_eq!(channel["is_private"], false);
            assert_eq!(channel["is_member"], true);
            names.push(channel["name"].as_str().unwrap().to_owned());
        }
        let next = page["response_metadata"]["next_cursor"].as_str().unwrap();
        if next.is_empty() {
            break;
        }
        cursor = form(&[("c", next)])[2..].to_owned();
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["chan-1", "chan-2", "chan-3", "chan-4", "chan-5"]);

    let everything = list("types=public_channel,private_channel".to_owned()).await;
    assert_eq!(everything["channels"].as_array().unwrap().len(), 7);
    assert_eq!(everything["response_metadata"]["next_cursor"], "");
    let bogus = list("cursor=bogus".to_owned()).await;
    assert_eq!(bogus, json!({"ok": false, "error": "invalid_cursor"}));
}

#[tokio::test]
async fn slack_forced_failures() {
    let slack_peer = slack_fixture();
    let peer = Peer::start(slack_peer.router()).await;
    let message = json!({"channel": "C0SOC00001", "text": "x"});

    slack_peer.fail_next(Slack::rate_limited(7));
    let limited = slack_post(&peer, message.clone()).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert_eq!(limited.json(), json!({"ok": false, "error": "ratelimited"}));
    assert!(slack_peer.messages().is_empty());

    slack_peer.fail_next(Slack::server_error(503));
    let down = slack_post(&peer, message.clone()).await;
    assert_eq!(down.status, 503);
    assert_eq!(
        down.json(),
        json!({"ok": false, "error": "service_unavailable"})
    );

    slack_peer.fail_next_on("*", "/api/chat.postMessage", Slack::error("fatal_error"));
    let auth = format!("Bearer {SLACK_TOKEN}");
    let lookup = send(
        &peer,
        "GET",
        "/api/users.lookupByEmail?email=ana%40example.com",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(lookup.json()["ok"], true, "other methods are unaffected");
    let fatal = slack_post(&peer, message.clone()).await;
    assert_eq!(fatal.status, 200);
    assert_eq!(fatal.json(), json!({"ok": false, "error": "fatal_error"}));

    let ok = slack_post(&peer, message).await;
    assert_eq!(ok.json()["ok"], true);
    assert_eq!(slack_peer.messages().len(), 1);
}

// ---------------------------------------------------------------------- Jira

const JIRA_EMAIL: &str = "allama-bot@example.com";
const JIRA_TOKEN: &str = "ATATT3xFfGF0-token";

fn jira_fixture() -> Jira {
    Jira::new(JIRA_EMAIL, JIRA_TOKEN).with_project("SEC", "Security")
}

async fn jira(peer: &Peer, method: &str, target: &str, body: Option<Value>) -> Response {
    let auth = basic(JIRA_EMAIL, JIRA_TOKEN);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Accept", "application/json"),
    ];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    send(peer, method, target, &headers, body.as_bytes()).await
}

fn new_issue(summary: &str) -> Value {
    json!({"fields": {
        "project": {"key": "SEC"},
        "summary": summary,
        "description": "Seen in the proxy logs.",
        "issuetype": {"name": "Task"},
        "labels": ["allama"],
    }})
}

#[tokio::test]
async fn jira_creates_issues() {
    let jira_peer = jira_fixture();
    let peer = Peer::start(jira_peer.router()).await;

    let created = jira(
        &peer,
        "POST",
        "/rest/api/2/issue",
        Some(new_issue("Malicious IP 203.0.113.7")),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.json(),
        json!({"id": "10001", "key": "SEC-1", "self": peer.url("/rest/api/2/issue/10001")})
    );
    let second = jira(
        &peer,
        "POST",
        "/rest/api/2/issue",
        Some(new_issue("Another")),
    )
    .await
    .json();
    assert_eq!(second["key"], "SEC-2");
    assert_eq!(second["id"], "10002");

    let issue = jira_peer.issue("SEC-1").unwrap();
    assert_eq!(issue.id, "10001");
    assert_eq!(issue.project, "SEC");
    assert_eq!(issue.issue_type, "Task");
    assert_eq!(issue.summary, "Malicious IP 203.0.113.7");
    assert_eq!(issue.description, Some(json!("Seen in the proxy logs.")));
    assert_eq!(issue.status, "To Do");
    assert_eq!(issue.fields["labels"], json!(["allama"]));
    assert_eq!(jira_peer.issues().len(), 2);

    let fetched = jira(&peer, "GET", "/rest/api/2/issue/sec-1", None).await;
    assert_eq!(fetched.status, 200);
    let fetched = fetched.json();
    assert_eq!(fetched["key"], "SEC-1");
    assert_eq!(fetched["self"], peer.url("/rest/api/2/issue/10001"));
    let fields = &fetched["fields"];
    assert_eq!(fields["summary"], "Malicious IP 203.0.113.7");
    assert_eq!(fields["description"], "Seen in the proxy logs.");
    assert_eq!(fields["status"]["name"], "To Do");
    assert_eq!(fields["status"]["statusCategory"]["key"], "new");
    assert_eq!(fields["project"]["key"], "SEC");
    assert_eq!(fields["project"]["name"], "Security");
    assert_eq!(fields["issuetype"]["name"], "Task");
    assert_eq!(fields["labels"], json!(["allama"]));
    assert!(fields["created"].as_str().unwrap().ends_with(".000+0000"));
    assert_eq!(
        jira(&peer, "GET", "/rest/api/2/issue/10002", None)
            .await
            .json()["key"],
        "SEC-2"
    );

    // v3 wants Atlassian Document Format for rich text.
    let plain = jira(
        &peer,
        "POST",
        "/rest/api/3/issue",
        Some(new_issue("v3 with a string")),
    )
    .await;
    assert_eq!(plain.status, 400);
    assert_eq!(
        plain.json(),
        json!({"errorMessages": [], "errors": {"description": "Operation value must be an Atlassian Document (see the Atlassian Document Format)"}})
    );
    let mut adf = new_issue("v3 with ADF");
    adf["fields"]["description"] = json!({"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "Seen in the proxy logs."}]}
    ]});
    let v3 = jira(&peer, "POST", "/rest/api/3/issue", Some(adf.clone())).await;
    assert_eq!(v3.status, 201);
    assert_eq!(v3.json()["self"], peer.url("/rest/api/3/issue/10003"));
    assert_eq!(
        jira_peer.issue("SEC-3").unwrap().description,
        Some(adf["fields"]["description"].clone())
    );
}

#[tokio::test]
async fn jira_refuses_bad_requests() {
    let jira_peer = jira_fixture();
    let peer = Peer::start(jira_peer.router()).await;

    let missing = jira(
        &peer,
        "POST",
        "/rest/api/2/issue",
        Some(json!({"fields": {"project": {"key": "NOPE"}, "issuetype": {"name": "Task"}}})),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.json(),
        json!({"errorMessages": [], "errors": {
            "project": "Specify a valid project ID or key",
            "summary": "You must specify a summary of the issue.",
        }})
    );
    let bad_type = jira(
        &peer,
        "POST",
        "/rest/api/2/issue",
        Some(json!({"fields": {"project": {"key": "SEC"}, "summary": "x", "issuetype": {"name": "Incident"}}})),
    )
    .await;
    assert_eq!(
        bad_type.json()["errors"],
        json!({"issuetype": "The issue type selected is invalid."})
    );

    let auth = basic(JIRA_EMAIL, JIRA_TOKEN);
    let not_json = send(
        &peer,
        "POST",
        "/rest/api/2/issue",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/xml"),
        ],
        b"<issue/>",
    )
    .await;
    assert_eq!(not_json.status, 415);
    let form_post = send(
        &peer,
        "POST",
        "/rest/api/2/issue",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"summary=x",
    )
    .await;
    assert_eq!(form_post.status, 403);
    assert_eq!(form_post.text(), "XSRF check failed");
    let broken = send(
        &peer,
        "POST",
        "/rest/api/2/issue",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        b"{not json",
    )
    .await;
    assert_eq!(broken.status, 400);
    assert!(
        broken.json()["errorMessages"][0]
            .as_str()
            .unwrap()
            .starts_with("Unexpected character")
    );
    assert!(jira_peer.issues().is_empty());

    let unknown = jira(&peer, "GET", "/rest/api/2/issue/SEC-99", None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        unknown.json(),
        json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}})
    );
    let comment_unknown = jira(
        &peer,
        "POST",
        "/rest/api/2/issue/SEC-99/comment",
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(comment_unknown.status, 404);
}

#[tokio::test]
async fn jira_credentials_are_checked_like_jira_cloud() {
    let jira_peer = jira_fixture();
    let peer = Peer::start(jira_peer.router()).await;
    let body = new_issue("x").to_string();

    let anonymous = send(
        &peer,
        "POST",
        "/rest/api/2/issue",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.json(),
        json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."], "errors": {}})
    );

    for auth in [
        basic(JIRA_EMAIL, "wrong-token"),
        basic("someone@example.com", JIRA_TOKEN),
        format!("Bearer {JIRA_TOKEN}"),
    ] {
        let wrong = send(
            &peer,
            "POST",
            "/rest/api/2/issue",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await;
        assert_eq!(wrong.status, 401, "{auth}");
        assert_eq!(
            wrong.text(),
            "Client must be authenticated to access this resource."
        );
        assert_eq!(
            wrong.header("x-seraph-loginreason"),
            Some("AUTHENTICATED_FAILED")
        );
    }
    assert!(jira_peer.issues().is_empty());

    let me = jira(&peer, "GET", "/rest/api/3/myself", None).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["emailAddress"], JIRA_EMAIL);
    assert_eq!(
        me.json()["accountId"],
        allama_test_peer::vendors::jira::ACCOUNT_ID
    );
    jira_peer.set_credentials(JIRA_EMAIL, "rotated");
    assert_eq!(
        jira(&peer, "GET", "/rest/api/3/myself", None).await.status,
        401
    );
}

#[tokio::test]
async fn jira_comments() {
    let jira_peer = jira_fixture().with_issue("SEC", "Existing alert");
    let peer = Peer::start(jira_peer.router()).await;

    let added = jira(
        &peer,
        "POST",
        "/rest/api/2/issue/SEC-1/comment",
        Some(json!({"body": "Blocked at the firewall."})),
    )
    .await;
    assert_eq!(added.status, 201);
    let comment = added.json();
    assert_eq!(comment["id"], "10000");
    assert_eq!(comment["body"], "Blocked at the firewall.");
    assert_eq!(
        comment["self"],
        peer.url("/rest/api/2/issue/10001/comment/10000")
    );
    assert_eq!(comment["author"]["emailAddress"], JIRA_EMAIL);
    assert_eq!(comment["author"]["displayName"], "Allama Integration");
    assert!(comment["created"].as_str().unwrap().ends_with("+0000"));

    let empty = jira(
        &peer,
        "POST",
        "/rest/api/2/issue/SEC-1/comment",
        Some(json!({"body": "  "})),
    )
    .await;
    assert_eq!(empty.status, 400);
    assert_eq!(
        empty.json(),
        json!({"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}})
    );
    let v3_string = jira(
        &peer,
        "POST",
        "/rest/api/3/issue/SEC-1/comment",
        Some(json!({"body": "plain"})),
    )
    .await;
    assert_eq!(v3_string.status, 400);

    for n in 2..=4 {
        let added = jira(
            &peer,
            "POST",
            "/rest/api/2/issue/SEC-1/comment",
            Some(json!({"body": format!("Update {n}")})),
        )
        .await;
        assert_eq!(added.status, 201);
    }
    let page = jira(
        &peer,
        "GET",
        "/rest/api/2/issue/SEC-1/comment?startAt=1&maxResults=2",
        None,
    )
    .await
    .json();
    assert_eq!(page["startAt"], 1);
    assert_eq!(page["maxResults"], 2);
    assert_eq!(page["total"], 4);
    let ids: Vec<&str> = page["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["10001", "10002"]);

    let issue = jira_peer.issue("SEC-1").unwrap();
    let bodies: Vec<Value> = issue.comments.iter().map(|c| c.body.clone()).collect();
    assert_eq!(
        bodies,
        [
            json!("Blocked at the firewall."),
            json!("Update 2"),
            json!("Update 3"),
            json!("Update 4")
        ]
    );
}

#[tokio::test]
async fn jira_transitions() {
    let jira_peer = jira_fixture().with_issue("SEC", "Existing alert");
    let peer = Peer::start(jira_peer.router()).await;
    let available = |body: Value| -> Vec<(String, String)> {
        body["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["to"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let path = "/rest/api/2/issue/SEC-1/transitions";

    let listed = jira(&peer, "GET", path, None).await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(listed["expand"], "transitions");
    assert_eq!(listed["transitions"][0]["name"], "In Progress");
    assert_eq!(
        listed["transitions"][0]["to"]["statusCategory"]["key"],
        "indeterminate"
    );
    assert_eq!(
        available(listed),
        [
            ("21".to_owned(), "In Progress".to_owned()),
            ("31".to_owned(), "Done".to_owned())
        ]
    );

    let moved = jira(
        &peer,
        "POST",
        path,
        Some(json!({"transition": {"id": "21"}})),
    )
    .await;
    assert_eq!(moved.status, 204);
    assert!(moved.body.is_empty());
    let issue = jira_peer.issue("SEC-1").unwrap();
    assert_eq!(issue.status, "In Progress");
    assert_eq!(issue.transitions, ["21"]);
    assert_eq!(
        available(jira(&peer, "GET", path, None).await.json()),
        [
            ("11".to_owned(), "To Do".to_owned()),
            ("31".to_owned(), "Done".to_owned())
        ]
    );

    let again = jira(
        &peer,
        "POST",
        path,
        Some(json!({"transition": {"id": "21"}})),
    )
    .await;
    assert_eq!(again.status, 400);
    assert_eq!(
        again.json(),
        json!({"errorMessages": ["Transition id '21' is not valid for this issue."], "errors": {}})
    );
    let no_id = jira(&peer, "POST", path, Some(json!({}))).await;
    assert_eq!(no_id.status, 400);
    assert_eq!(
        no_id.json()["errorMessages"],
        json!(["Missing 'transition' identifier"])
    );

    let done = jira(
        &peer,
        "POST",
        path,
        Some(json!({
            "transition": {"id": 31},
            "update": {"comment": [{"add": {"body": "Closed by Allama."}}]},
        })),
    )
    .await;
    assert_eq!(done.status, 204);
    let issue = jira_peer.issue("SEC-1").unwrap();
    assert_eq!(issue.status, "Done");
    assert_eq!(issue.transitions, ["21", "31"]);
    assert_eq!(issue.comments[0].body, "Closed by Allama.");
    let fetched = jira(&peer, "GET", "/rest/api/2/issue/SEC-1", None)
        .await
        .json();
    assert_eq!(fetched["fields"]["status"]["name"], "Done");
    assert_eq!(fetched["fields"]["status"]["statusCategory"]["key"], "done");
    assert_eq!(fetched["fields"]["comment"]["total"], 1);

    // A custom workflow replaces the default one.
    let custom = Jira::new(JIRA_EMAIL, JIRA_TOKEN)
        .with_project("SEC", "Security")
        .with_initial_status("Open")
        .with_transition("5", "Start triage", "Triage")
        .with_issue("SEC", "x");
    let custom_peer = Peer::start(custom.router()).await;
    assert_eq!(
        available(jira(&custom_peer, "GET", path, None).await.json()),
        [("5".to_owned(), "Triage".to_owned())]
    );
}

#[tokio::test]
async fn jira_permissions_and_forced_failures() {
    let jira_peer = jira_fixture()
        .with_project("OPS", "Operations")
        .with_read_only_project("OPS")
        .with_issue("OPS", "Read-only issue")
        .with_issue("SEC", "Writable issue");
    let peer = Peer::start(jira_peer.router()).await;

    let mut ops_issue = new_issue("x");
    ops_issue["fields"]["project"]["key"] = json!("OPS");
    let create = jira(&peer, "POST", "/rest/api/2/issue", Some(ops_issue)).await;
    assert_eq!(create.status, 403);
    assert_eq!(
        create.json(),
        json!({"errorMessages": ["You do not have permission to create issues in this project."], "errors": {}})
    );
    let comment = jira(
        &peer,
        "POST",
        "/rest/api/2/issue/OPS-1/comment",
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(comment.status, 403);
    let transition = jira(
        &peer,
        "POST",
        "/rest/api/2/issue/OPS-1/transitions",
        Some(json!({"transition": {"id": "21"}})),
    )
    .await;
    assert_eq!(transition.status, 403);
    assert_eq!(
        jira(&peer, "GET", "/rest/api/2/issue/OPS-1", None)
            .await
            .status,
        200
    );
    assert_eq!(jira_peer.issue("OPS-1").unwrap().status, "To Do");

    jira_peer.fail_next(Jira::rate_limited(12));
    let limited = jira(&peer, "GET", "/rest/api/2/issue/SEC-1", None).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("12"));
    assert_eq!(
        limited.json(),
        json!({"errorMessages": ["Rate limit exceeded."], "errors": {}})
    );

    let path = "/rest/api/2/issue/SEC-1/transitions";
    jira_peer.fail_next_on("POST", path, Jira::server_error(500));
    assert_eq!(jira(&peer, "GET", path, None).await.status, 200);
    let failed = jira(
        &peer,
        "POST",
        path,
        Some(json!({"transition": {"id": "21"}})),
    )
    .await;
    assert_eq!(failed.status, 500);
    assert_eq!(
        failed.json()["errorMessages"],
        json!(["Internal server error"])
    );
    assert_eq!(jira_peer.issue("SEC-1").unwrap().status, "To Do");
    let retried = jira(
        &peer,
        "POST",
        path,
        Some(json!({"transition": {"id": "21"}})),
    )
    .await;
    assert_eq!(retried.status, 204);
    assert_eq!(jira_peer.issue("SEC-1").unwrap().status, "In Progress");

    jira_peer.fail_always(Jira::server_error(503));
    for _ in 0..2 {
        let down = jira(&peer, "GET", "/rest/api/2/issue/SEC-1", None).await;
        assert_eq!(down.status, 503);
    }
    jira_peer.stop_failing();
    jira_peer.fail_next(Jira::forbidden());
    assert_eq!(
        jira(&peer, "GET", "/rest/api/2/issue/SEC-1", None)
            .await
            .status,
        403
    );
    assert_eq!(
        jira(&peer, "GET", "/rest/api/2/issue/SEC-1", None)
            .await
            .status,
        200
    );
}
