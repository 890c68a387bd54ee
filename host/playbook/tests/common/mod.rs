//! A catalog shared by the integration tests.

use allama_playbook::{InputSpec, InputType, MemoryCatalog, PlaybookInfo};
use semver::Version;
use serde_json::json;

/// virustotal 1.0.0 and 1.2.0, http, firewall, slack; the child playbook `enrich-domain`.
pub fn catalog() -> MemoryCatalog {
    let v = |s: &str| Version::parse(s).expect("valid version");
    let ip_report = json!({
        "type": "object",
        "properties": {
            "ip": { "type": "string" },
            "include_whois": { "type": "boolean" },
            "max_age_days": { "type": "integer", "minimum": 1 }
        },
        "required": ["ip"],
        "additionalProperties": false
    });
    let mut catalog = MemoryCatalog::new();
    catalog
        .add_action(
            "virustotal",
            v("1.0.0"),
            "ip-report",
            ip_report.clone(),
            json!({}),
        )
        .add_action("virustotal", v("1.2.0"), "ip-report", ip_report, json!({}))
        .add_action(
            "http",
            v("1.0.0"),
            "request",
            json!({
                "type": "object",
                "properties": {
                    "method": { "enum": ["GET", "POST", "PUT", "DELETE"] },
                    "url": { "type": "string" },
                    "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                    "body": {}
                },
                "required": ["url"],
                "additionalProperties": false
            }),
            json!({}),
        )
        .add_action(
            "firewall",
            v("1.0.0"),
            "block",
            json!({
                "type": "object",
                "properties": { "ip": { "type": "string" }, "comment": { "type": "string" } },
                "required": ["ip"],
                "additionalProperties": false
            }),
            json!({}),
        )
        .add_action(
            "slack",
            v("1.0.0"),
            "post-message",
            json!({
                "type": "object",
                "properties": { "channel": { "type": "string" }, "text": { "type": "string" } },
                "required": ["channel", "text"]
            }),
            json!({}),
        );
    let mut inputs = indexmap::IndexMap::new();
    inputs.insert(
        "domain".to_string(),
        InputSpec {
            kind: InputType::String,
            description: None,
            required: true,
            default: None,
        },
    );
    inputs.insert(
        "depth".to_string(),
        InputSpec {
            kind: InputType::Integer,
            description: None,
            required: false,
            default: Some(json!(1)),
        },
    );
    catalog.add_playbook("enrich-domain", PlaybookInfo { inputs });
    catalog
}
