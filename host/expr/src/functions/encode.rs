//! JSON, YAML, base64, hex, URLs and hashes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD,
};
use cel::Value as Cel;
use cel::objects::Key;
use md5::Digest;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use ring::{digest, hmac};

use super::{Def, data, def, map, map_value, str_value, string, wrong};
use crate::convert::{cel_to_json, json_to_cel, key_string, type_name};
use crate::limits::MAX_STRING_BYTES;

pub(super) fn defs() -> Vec<Def> {
    vec![
        def!("toJson", 1, to_json, "toJson(x) -> string",
            "Compact JSON text (maps with sorted keys).",
            "toJson({'b': [1, true], 'a': null})" => r#""{\"a\":null,\"b\":[1,true]}""#),
        def!("toPrettyJson", 1, to_pretty_json, "toPrettyJson(x) -> string",
            "Indented JSON text.", "toPrettyJson([1])" => r#""[\n  1\n]""#),
        def!("fromJson", 1, from_json, "fromJson(s: string) -> dyn",
            "Parses JSON text.", "fromJson('{\"a\": [1, 2]}').a[1]" => "2"),
        def!("toYaml", 1, to_yaml, "toYaml(x) -> string",
            "YAML text.", "toYaml({'a': 1})" => r#""a: 1\n""#),
        def!("fromYaml", 1, from_yaml, "fromYaml(s: string) -> dyn",
            "Parses one YAML document (with limits on depth, aliases and size).",
            "fromYaml('a: [1, two]').a" => r#"[1,"two"]"#),
        def!("base64Encode", 1, base64_encode, "base64Encode(x: string|bytes) -> string",
            "Standard base64, padded.", "base64Encode('hi!')" => r#""aGkh""#),
        def!("base64Decode", 1, base64_decode, "base64Decode(s: string) -> string",
            "Decodes standard base64 (padding optional, whitespace ignored) to UTF-8 text.",
            "base64Decode('aGkh')" => r#""hi!""#),
        def!("base64DecodeBytes", 1, base64_decode_bytes, "base64DecodeBytes(s: string) -> bytes",
            "Decodes standard base64 to bytes (for data that is not text).",
            "size(base64DecodeBytes('AAEC'))" => "3"),
        def!("base64UrlEncode", 1, base64_url_encode, "base64UrlEncode(x: string|bytes) -> string",
            "URL-safe base64, unpadded.", "base64UrlEncode('hi?>')" => r#""aGk_Pg""#),
        def!("base64UrlDecode", 1, base64_url_decode, "base64UrlDecode(s: string) -> string",
            "Decodes URL-safe base64 (padding optional) to UTF-8 text.",
            "base64UrlDecode('aGk_Pg')" => r#""hi?>""#),
        def!("hexEncode", 1, hex_encode, "hexEncode(x: string|bytes) -> string",
            "Lower-case hex.", "hexEncode('hi')" => r#""6869""#),
        def!("hexDecode", 1, hex_decode, "hexDecode(s: string) -> string",
            "Decodes hex to UTF-8 text.", "hexDecode('6869')" => r#""hi""#),
        def!("urlEncode", 1, url_encode, "urlEncode(s: string) -> string",
            "Percent-encodes everything but `A-Z a-z 0-9 - _ . ~` (for one query value or path \
             segment).",
            "urlEncode('a b&c/d')" => r#""a%20b%26c%2Fd""#),
        def!("urlDecode", 1, url_decode, "urlDecode(s: string) -> string",
            "Decodes percent-escapes (`+` stays `+`).", "urlDecode('a%20b%2Fc')" => r#""a b/c""#),
        def!("parseUrl", 1, parse_url, "parseUrl(s: string) -> map",
            "`scheme`, `host`, `port` (the scheme's default if absent), `path`, `query`, \
             `fragment`, `username` and `params` (the first value of each query parameter).",
            "parseUrl('https://evil.com:8443/x?id=7#f').pick(['host', 'port', 'params'])"
                => r#"{"host":"evil.com","params":{"id":"7"},"port":8443}"#),
        def!("toQueryString", 1, to_query_string, "toQueryString(m: map) -> string",
            "A form-encoded query string, keys sorted; list values repeat the key.",
            "toQueryString({'q': 'a b', 'n': [1, 2]})" => r#""n=1&n=2&q=a+b""#),
        def!("md5", 1, md5_hex, "md5(x: string|bytes) -> string",
            "MD5 digest, hex.", "md5('abc')" => r#""900150983cd24fb0d6963f7d28e17f72""#),
        def!("sha1", 1, sha1_hex, "sha1(x: string|bytes) -> string",
            "SHA-1 digest, hex.", "sha1('abc')" => r#""a9993e364706816aba3e25717850c26c9cd0d89d""#),
        def!("sha256", 1, sha256_hex, "sha256(x: string|bytes) -> string",
            "SHA-256 digest, hex.", "sha256('abc')"
                => r#""ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad""#),
        def!("sha512", 1, sha512_hex, "sha512(x: string|bytes) -> string",
            "SHA-512 digest, hex.", "sha512('abc').substring(0, 16)" => r#""ddaf35a193617aba""#),
        def!("hmacSha256", 2, hmac_sha256, "hmacSha256(key: string|bytes, data: string|bytes) -> string",
            "HMAC-SHA256, hex (of data you hold; a secret is never a value: for signatures with \
             a secret use the host's HMAC capability).",
            "hmacSha256('key', 'The quick brown fox jumps over the lazy dog')"
                => r#""f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8""#),
    ]
}

fn json_text(args: &[Cel], pretty: bool) -> Result<Cel, String> {
    let json = cel_to_json(&args[0])?;
    let text = if pretty {
        serde_json::to_string_pretty(&json)
    } else {
        serde_json::to_string(&json)
    }
    .map_err(|e| e.to_string())?;
    str_value(text)
}

fn to_json(args: &[Cel]) -> Result<Cel, String> {
    json_text(args, false)
}

fn to_pretty_json(args: &[Cel]) -> Result<Cel, String> {
    json_text(args, true)
}

fn from_json(args: &[Cel]) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let json: serde_json::Value =
        serde_json::from_str(s).map_err(|e| format!("invalid JSON: {e}"))?;
    json_to_cel(&json)
}

fn to_yaml(args: &[Cel]) -> Result<Cel, String> {
    let json = cel_to_json(&args[0])?;
    str_value(serde_saphyr::to_string(&json).map_err(|e| e.to_string())?)
}

fn from_yaml(args: &[Cel]) -> Result<Cel, String> {
    let s = string(args, 0)?;
    let json: serde_json::Value =
        serde_saphyr::from_str(s).map_err(|e| format!("invalid YAML: {e}"))?;
    json_to_cel(&json)
}

/// Standard base64 that accepts input with or without padding.
static STANDARD_LENIENT: LazyLock<GeneralPurpose> = LazyLock::new(|| {
    GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
});

static URL_LENIENT: LazyLock<GeneralPurpose> = LazyLock::new(|| {
    GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
});

fn text(bytes: Vec<u8>, hint: &str) -> Result<Cel, String> {
    let s = String::from_utf8(bytes)
        .map_err(|_| format!("the decoded data is not UTF-8 text{hint}"))?;
    str_value(s)
}

fn decode64(args: &[Cel], engine: &GeneralPurpose) -> Result<Vec<u8>, String> {
    let s: String = string(args, 0)?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    engine
        .decode(s.as_bytes())
        .map_err(|e| format!("invalid base64: {e}"))
}

fn base64_encode(args: &[Cel]) -> Result<Cel, String> {
    str_value(STANDARD.encode(data(args, 0)?))
}

fn base64_decode(args: &[Cel]) -> Result<Cel, String> {
    text(
        decode64(args, &STANDARD_LENIENT)?,
        "; use base64DecodeBytes for binary data",
    )
}

fn base64_decode_bytes(args: &[Cel]) -> Result<Cel, String> {
    Ok(Cel::Bytes(Arc::new(decode64(args, &STANDARD_LENIENT)?)))
}

fn base64_url_encode(args: &[Cel]) -> Result<Cel, String> {
    str_value(URL_SAFE_NO_PAD.encode(data(args, 0)?))
}

fn base64_url_decode(args: &[Cel]) -> Result<Cel, String> {
    text(decode64(args, &URL_LENIENT)?, "")
}

fn hex_encode(args: &[Cel]) -> Result<Cel, String> {
    let bytes = data(args, 0)?;
    if bytes.len() * 2 > MAX_STRING_BYTES {
        return Err(super::too_long(bytes.len() * 2));
    }
    str_value(hex::encode(bytes))
}

fn hex_decode(args: &[Cel]) -> Result<Cel, String> {
    let bytes = hex::decode(string(args, 0)?.trim()).map_err(|e| format!("invalid hex: {e}"))?;
    text(bytes, "")
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn url_encode(args: &[Cel]) -> Result<Cel, String> {
    str_value(utf8_percent_encode(string(args, 0)?, COMPONENT).to_string())
}

fn url_decode(args: &[Cel]) -> Result<Cel, String> {
    let decoded = percent_decode_str(string(args, 0)?)
        .decode_utf8()
        .map_err(|_| "the decoded data is not UTF-8 text".to_owned())?;
    str_value(decoded.into_owned())
}

fn s(v: &str) -> Cel {
    Cel::String(Arc::new(v.to_owned()))
}

fn opt(v: Option<&str>) -> Cel {
    v.map_or(Cel::Null, s)
}

fn parse_url(args: &[Cel]) -> Result<Cel, String> {
    let u = url::Url::parse(string(args, 0)?).map_err(|e| format!("invalid URL: {e}"))?;
    let mut params = HashMap::new();
    for (k, v) in u.query_pairs() {
        params
            .entry(Key::String(Arc::new(k.into_owned())))
            .or_insert_with(|| Cel::String(Arc::new(v.into_owned())));
    }
    let username = u.username();
    let out: HashMap<Key, Cel> = [
        ("scheme", s(u.scheme())),
        ("host", opt(u.host_str())),
        (
            "port",
            u.port_or_known_default()
                .map_or(Cel::Null, |p| Cel::Int(i64::from(p))),
        ),
        ("path", s(u.path())),
        ("query", opt(u.query())),
        ("fragment", opt(u.fragment())),
        (
            "username",
            if username.is_empty() {
                Cel::Null
            } else {
                s(username)
            },
        ),
        ("params", map_value(params)),
    ]
    .into_iter()
    .map(|(k, v)| (Key::String(Arc::new(k.to_owned())), v))
    .collect();
    Ok(map_value(out))
}

/// A scalar as query-string text.
fn query_text(v: &Cel, key: &str) -> Result<String, String> {
    match v {
        Cel::String(s) => Ok(s.as_str().to_owned()),
        Cel::Int(_) | Cel::UInt(_) | Cel::Float(_) | Cel::Bool(_) => {
            Ok(cel_to_json(v)?.to_string())
        }
        other => Err(format!(
            "the value of {key:?} is a {}; use strings, numbers, bools or lists of them",
            type_name(other)
        )),
    }
}

fn to_query_string(args: &[Cel]) -> Result<Cel, String> {
    let m = map(args, 0)?;
    let sorted: BTreeMap<String, &Cel> = m.iter().map(|(k, v)| (key_string(k), v)).collect();
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in sorted {
        match v {
            Cel::List(items) => {
                for item in items.iter() {
                    out.append_pair(&k, &query_text(item, &k)?);
                }
            }
            Cel::Null => {}
            other => {
                out.append_pair(&k, &query_text(other, &k)?);
            }
        }
    }
    str_value(out.finish())
}

fn md5_hex(args: &[Cel]) -> Result<Cel, String> {
    str_value(hex::encode(md5::Md5::digest(data(args, 0)?)))
}

fn ring_digest(args: &[Cel], alg: &'static digest::Algorithm) -> Result<Cel, String> {
    str_value(hex::encode(digest::digest(alg, data(args, 0)?)))
}

fn sha1_hex(args: &[Cel]) -> Result<Cel, String> {
    ring_digest(args, &digest::SHA1_FOR_LEGACY_USE_ONLY)
}

fn sha256_hex(args: &[Cel]) -> Result<Cel, String> {
    ring_digest(args, &digest::SHA256)
}

fn sha512_hex(args: &[Cel]) -> Result<Cel, String> {
    ring_digest(args, &digest::SHA512)
}

fn hmac_sha256(args: &[Cel]) -> Result<Cel, String> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, data(args, 0)?);
    let message = data(args, 1).map_err(|_| wrong(args, 1, "a string or bytes"))?;
    str_value(hex::encode(hmac::sign(&key, message)))
}
