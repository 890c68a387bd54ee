//! IP addresses, CIDR ranges, and indicators of compromise in free text.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use cel::Value as Cel;
use ipnet::IpNet;
use regex::Regex;

use super::{Def, def, str_list, str_value, string, too_many, wrong};
use crate::limits::MAX_LIST_ITEMS;

pub(super) fn defs() -> Vec<Def> {
    vec![
        def!("isIp", 1, is_ip, "isIp(s: string) -> bool",
            "Whether `s` is an IPv4 or IPv6 address.", "isIp('2001:db8::1')" => "true"),
        def!("isIpv4", 1, is_ipv4, "isIpv4(s: string) -> bool",
            "Whether `s` is an IPv4 address (dotted quad).", "isIpv4('10.0.0.300')" => "false"),
        def!("isIpv6", 1, is_ipv6, "isIpv6(s: string) -> bool",
            "Whether `s` is an IPv6 address.", "isIpv6('::1')" => "true"),
        def!("isPrivateIp", 1, is_private_ip, "isPrivateIp(s: string) -> bool",
            "Whether `s` is an address that is not publicly routable: RFC 1918, CGNAT, loopback, \
             link-local, unique-local, unspecified (also inside IPv4-mapped IPv6); false for a \
             non-address.",
            "isPrivateIp('192.168.1.20') && !isPrivateIp('8.8.8.8')" => "true"),
        def!("inCidr", 2, in_cidr, "inCidr(ip: string, cidr: string|list(string)) -> bool",
            "Whether the address is in the range (or in any of the ranges); false for a \
             non-address, an error for a bad range.",
            "inCidr('10.1.2.3', ['192.168.0.0/16', '10.0.0.0/8'])" => "true"),
        def!("extractIps", 1, extract_ips, "extractIps(text: string) -> list(string)",
            "IPv4 and IPv6 addresses in the text, refanged, deduplicated in first-seen order.",
            "extractIps('from 1.2.3[.]4 and 1.2.3.4, then fe80::1')"
                => r#"["1.2.3.4","fe80::1"]"#),
        def!("extractIpv4", 1, extract_ipv4, "extractIpv4(text: string) -> list(string)",
            "IPv4 addresses only.", "extractIpv4('a 10.0.0.1 b ::1')" => r#"["10.0.0.1"]"#),
        def!("extractIpv6", 1, extract_ipv6, "extractIpv6(text: string) -> list(string)",
            "IPv6 addresses only.", "extractIpv6('a 10.0.0.1 b 2001:db8::5')"
                => r#"["2001:db8::5"]"#),
        def!("extractDomains", 1, extract_domains, "extractDomains(text: string) -> list(string)",
            "Domain names (lower-cased, refanged; file names with common extensions skipped).",
            "extractDomains('visit hxxp://Evil[.]com/a.php or mail bob@corp.example')"
                => r#"["evil.com","corp.example"]"#),
        def!("extractUrls", 1, extract_urls, "extractUrls(text: string) -> list(string)",
            "http, https and ftp URLs, refanged, without trailing punctuation.",
            "extractUrls('see hxxps://evil[.]com/x?a=1).')" => r#"["https://evil.com/x?a=1"]"#),
        def!("extractEmails", 1, extract_emails, "extractEmails(text: string) -> list(string)",
            "Email addresses, lower-cased, refanged.",
            "extractEmails('From: Bob <Bob@Corp[.]example>')" => r#"["bob@corp.example"]"#),
        def!("extractMd5", 1, extract_md5, "extractMd5(text: string) -> list(string)",
            "32-hex-digit hashes, lower-cased.",
            "extractMd5('md5=900150983CD24FB0D6963F7D28E17F72')"
                => r#"["900150983cd24fb0d6963f7d28e17f72"]"#),
        def!("extractSha1", 1, extract_sha1, "extractSha1(text: string) -> list(string)",
            "40-hex-digit hashes, lower-cased.",
            "extractSha1('a9993e364706816aba3e25717850c26c9cd0d89d')"
                => r#"["a9993e364706816aba3e25717850c26c9cd0d89d"]"#),
        def!("extractSha256", 1, extract_sha256, "extractSha256(text: string) -> list(string)",
            "64-hex-digit hashes, lower-cased.",
            "size(extractSha256('x ' + 'ab'.repeat(32) + ' ' + 'cd'.repeat(32)))" => "2"),
        def!("extractCves", 1, extract_cves, "extractCves(text: string) -> list(string)",
            "CVE identifiers, upper-cased.",
            "extractCves('patch cve-2024-3094 and CVE-2021-44228')"
                => r#"["CVE-2024-3094","CVE-2021-44228"]"#),
        def!("defang", 1, defang, "defang(s: string) -> string",
            "Makes indicators unclickable: `http` → `hxxp`, `.` → `[.]`, `@` → `[@]`.",
            "defang('http://evil.com')" => r#""hxxp://evil[.]com""#),
        def!("refang", 1, refang_fn, "refang(s: string) -> string",
            "Undoes common defanging: `hxxp`, `[.]`, `(.)`, `[dot]`, `[:]`, `[@]`, `[at]`, `\\.`.",
            "refang('hxxps://evil[.]com/a[dot]b')" => r#""https://evil.com/a.b""#),
    ]
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}

fn is_ip(args: &[Cel]) -> Result<Cel, String> {
    Ok(Cel::Bool(parse_ip(string(args, 0)?).is_some()))
}

fn is_ipv4(args: &[Cel]) -> Result<Cel, String> {
    Ok(Cel::Bool(matches!(
        parse_ip(string(args, 0)?),
        Some(IpAddr::V4(_))
    )))
}

fn is_ipv6(args: &[Cel]) -> Result<Cel, String> {
    Ok(Cel::Bool(matches!(
        parse_ip(string(args, 0)?),
        Some(IpAddr::V6(_))
    )))
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return private_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

fn is_private_ip(args: &[Cel]) -> Result<Cel, String> {
    Ok(Cel::Bool(match parse_ip(string(args, 0)?) {
        Some(IpAddr::V4(ip)) => private_v4(ip),
        Some(IpAddr::V6(ip)) => private_v6(ip),
        None => false,
    }))
}

fn net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR range"))
}

fn in_cidr(args: &[Cel]) -> Result<Cel, String> {
    let ip = parse_ip(string(args, 0)?);
    let nets: Vec<IpNet> = match &args[1] {
        Cel::String(s) => vec![net(s)?],
        Cel::List(items) => items
            .iter()
            .map(|v| match v {
                Cel::String(s) => net(s),
                _ => Err("the ranges must be strings".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(wrong(args, 1, "a CIDR string or a list of them")),
    };
    Ok(Cel::Bool(
        ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
    ))
}

// ---- indicators -------------------------------------------------------------------------

fn re(pattern: &str) -> Regex {
    // The patterns are constants of this file, checked by the tests.
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in pattern {pattern:?}: {e}"))
}

static REFANG: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    vec![
        (re(r"\[://\]"), "://"),
        (re(r"\[:\]"), ":"),
        (re(r"(?i)\bhxxp(s?)://"), "http$1://"),
        (re(r"(?i)\bfxp://"), "ftp://"),
        (re(r"(?i)\s?[\[\(\{]\s*(?:\.|dot)\s*[\]\)\}]\s?"), "."),
        (re(r"(?i)\s?[\[\(\{]\s*(?:@|at)\s*[\]\)\}]\s?"), "@"),
        (re(r"\\\."), "."),
    ]
});

/// Undoes common defanging.
fn refang(s: &str) -> String {
    let mut out = s.to_owned();
    for (pattern, replacement) in REFANG.iter() {
        if pattern.is_match(&out) {
            out = pattern.replace_all(&out, *replacement).into_owned();
        }
    }
    out
}

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
});
static IPV6: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:(?:\.\d{1,3}){3})?"));
static DOMAIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\b"));
static URL: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)\b(?:https?|ftp)://[^\s<>"'`{}|\\^\[\]]+"#));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b[a-z0-9._%+-]+@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\b")
});
static MD5: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9a-fA-F]{32}\b"));
static SHA1: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9a-fA-F]{40}\b"));
static SHA256: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9a-fA-F]{64}\b"));
static CVE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bCVE-\d{4}-\d{4,7}\b"));

/// Extensions that make `name.ext` a file rather than a domain (a few of them are also
/// TLDs, such as `.zip`; as indicators they are far more often files).
const FILE_EXTENSIONS: &[&str] = &[
    "exe", "dll", "sys", "drv", "ocx", "cpl", "scr", "msi", "bat", "cmd", "ps1", "psm1", "vbs",
    "vbe", "js", "jse", "wsf", "hta", "jar", "class", "py", "pyc", "sh", "bin", "dat", "tmp",
    "log", "txt", "csv", "json", "xml", "yaml", "yml", "ini", "cfg", "conf", "html", "htm", "php",
    "asp", "aspx", "jsp", "cgi", "pdf", "doc", "docx", "docm", "xls", "xlsx", "xlsm", "ppt",
    "pptx", "rtf", "odt", "jpg", "jpeg", "png", "gif", "bmp", "svg", "ico", "zip", "rar", "gz",
    "tgz", "tar", "iso", "img", "vhd", "lnk", "eml", "msg", "dmg", "pkg", "deb", "rpm", "apk",
    "elf", "so", "dylib",
];

/// Collects distinct matches in first-seen order, up to the list cap.
struct Found {
    seen: HashSet<String>,
    items: Vec<String>,
}

impl Found {
    fn new() -> Found {
        Found {
            seen: HashSet::new(),
            items: Vec::new(),
        }
    }

    fn add(&mut self, item: String) -> Result<(), String> {
        if self.seen.insert(item.clone()) {
            if self.items.len() >= MAX_LIST_ITEMS {
                return Err(too_many(self.items.len() + 1));
            }
            self.items.push(item);
        }
        Ok(())
    }

    fn done(self) -> Result<Cel, String> {
        Ok(str_list(self.items))
    }
}

fn before(text: &str, start: usize) -> Option<char> {
    text[..start].chars().next_back()
}

fn after(text: &str, end: usize) -> Option<char> {
    text[end..].chars().next()
}

/// IPv4 matches that are not part of a longer dotted number (`1.2.3.4.5`, a version).
fn ipv4s(text: &str, found: &mut Vec<(usize, String)>) {
    for m in IPV4.find_iter(text) {
        let prev = before(text, m.start());
        let next = after(text, m.end());
        let next2 = text[m.end()..].chars().nth(1);
        let glued_before = prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.');
        let glued_after = next.is_some_and(|c| c.is_ascii_alphanumeric())
            || (next == Some('.') && next2.is_some_and(|c| c.is_ascii_digit()));
        if !glued_before && !glued_after {
            found.push((m.start(), m.as_str().to_owned()));
        }
    }
}

fn ipv6s(text: &str, found: &mut Vec<(usize, String)>) {
    for m in IPV6.find_iter(text) {
        let candidate = m.as_str().trim_end_matches('.');
        let prev = before(text, m.start());
        let next = after(text, m.start() + candidate.len());
        if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == ':')
            || next.is_some_and(|c| c.is_ascii_alphanumeric())
            || !candidate.chars().any(|c| c.is_ascii_hexdigit())
        {
            continue;
        }
        if let Ok(ip) = candidate.parse::<Ipv6Addr>() {
            found.push((m.start(), ip.to_string()));
        }
    }
}

fn ips(args: &[Cel], v4: bool, v6: bool) -> Result<Cel, String> {
    let text = refang(string(args, 0)?);
    let mut hits = Vec::new();
    if v4 {
        ipv4s(&text, &mut hits);
    }
    if v6 {
        ipv6s(&text, &mut hits);
    }
    hits.sort_by_key(|(at, _)| *at);
    let mut found = Found::new();
    for (_, ip) in hits {
        found.add(ip)?;
    }
    found.done()
}

fn extract_ips(args: &[Cel]) -> Result<Cel, String> {
    ips(args, true, true)
}

fn extract_ipv4(args: &[Cel]) -> Result<Cel, String> {
    ips(args, true, false)
}

fn extract_ipv6(args: &[Cel]) -> Result<Cel, String> {
    ips(args, false, true)
}

fn extract_domains(args: &[Cel]) -> Result<Cel, String> {
    let text = refang(string(args, 0)?);
    let mut found = Found::new();
    for m in DOMAIN.find_iter(&text) {
        let domain = m.as_str().to_lowercase();
        // The local part of an email address, or a file name, is not a domain.
        if after(&text, m.end()) == Some('@') || before(&text, m.start()) == Some('.') {
            continue;
        }
        let tld = domain.rsplit('.').next().unwrap_or_default();
        if FILE_EXTENSIONS.contains(&tld) {
            continue;
        }
        found.add(domain)?;
    }
    found.done()
}

fn extract_urls(args: &[Cel]) -> Result<Cel, String> {
    let text = refang(string(args, 0)?);
    let mut found = Found::new();
    for m in URL.find_iter(&text) {
        let url = m
            .as_str()
            .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', '"']);
        found.add(url.to_owned())?;
    }
    found.done()
}

fn simple(args: &[Cel], pattern: &Regex, normalize: fn(&str) -> String) -> Result<Cel, String> {
    let text = refang(string(args, 0)?);
    let mut found = Found::new();
    for m in pattern.find_iter(&text) {
        found.add(normalize(m.as_str()))?;
    }
    found.done()
}

fn extract_emails(args: &[Cel]) -> Result<Cel, String> {
    simple(args, &EMAIL, str::to_lowercase)
}

fn extract_md5(args: &[Cel]) -> Result<Cel, String> {
    simple(args, &MD5, str::to_lowercase)
}

fn extract_sha1(args: &[Cel]) -> Result<Cel, String> {
    simple(args, &SHA1, str::to_lowercase)
}

fn extract_sha256(args: &[Cel]) -> Result<Cel, String> {
    simple(args, &SHA256, str::to_lowercase)
}

fn extract_cves(args: &[Cel]) -> Result<Cel, String> {
    simple(args, &CVE, str::to_uppercase)
}

static HTTP: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b(ht)tp(s?)://"));
static FTP: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\bftp://"));

fn defang(args: &[Cel]) -> Result<Cel, String> {
    // Refang first so that defanging is idempotent.
    let s = refang(string(args, 0)?);
    let s = HTTP.replace_all(&s, "hxxp$2://");
    let s = FTP.replace_all(&s, "fxp://");
    let s = s.replace('.', "[.]").replace('@', "[@]");
    str_value(s)
}

fn refang_fn(args: &[Cel]) -> Result<Cel, String> {
    str_value(refang(string(args, 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn run(f: fn(&[Cel]) -> Result<Cel, String>, text: &str) -> Vec<String> {
        match f(&[Cel::String(Arc::new(text.to_owned()))]).unwrap() {
            Cel::List(items) => items
                .iter()
                .map(|v| match v {
                    Cel::String(s) => s.as_str().to_owned(),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    const ALERT: &str = "ALERT 4625: failed logon from 185.220.101[.]45 (tor exit) to \
        DC01.corp.local; beacon to hxxps://update-check[.]evil-cdn[.]com/gate.php?id=7 and \
        hxxp://45.133.1[.]20:8080/x. Dropper sha256 \
        E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855, md5 \
        d41d8cd98f00b204e9800998ecf8427e; sender billing[@]acme-payments[.]com exploited \
        CVE-2023-23397. Version 10.0.19045.3803 is not an IP; neither is 1.2.3.4.5. \
        Also 185.220.101.45 again and v6 2001:db8:0:0::1 near std::cout at 12:30:45.";

    #[test]
    fn extracts_from_alert_text() {
        assert_eq!(
            run(extract_ips, ALERT),
            ["185.220.101.45", "45.133.1.20", "2001:db8::1"]
        );
        assert_eq!(
            run(extract_urls, ALERT),
            [
                "https://update-check.evil-cdn.com/gate.php?id=7",
                "http://45.133.1.20:8080/x"
            ]
        );
        assert_eq!(
            run(extract_domains, ALERT),
            [
                "dc01.corp.local",
                "update-check.evil-cdn.com",
                "acme-payments.com"
            ]
        );
        assert_eq!(run(extract_emails, ALERT), ["billing@acme-payments.com"]);
        assert_eq!(
            run(extract_sha256, ALERT),
            ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
        );
        assert_eq!(
            run(extract_md5, ALERT),
            ["d41d8cd98f00b204e9800998ecf8427e"]
        );
        assert_eq!(run(extract_sha1, ALERT), Vec::<String>::new());
        assert_eq!(run(extract_cves, ALERT), ["CVE-2023-23397"]);
    }

    #[test]
    fn defang_round_trips() {
        let s = |v: &str| Cel::String(Arc::new(v.to_owned()));
        let d = defang(&[s("https://a.b.com/x@y")]).unwrap();
        assert_eq!(d, s("hxxps://a[.]b[.]com/x[@]y"));
        assert_eq!(defang(std::slice::from_ref(&d)).unwrap(), d, "idempotent");
        assert_eq!(refang_fn(&[d]).unwrap(), s("https://a.b.com/x@y"));
        for (fanged, clean) in [
            ("evil(.)com", "evil.com"),
            ("evil{dot}com", "evil.com"),
            ("evil [dot] com", "evil.com"),
            ("evil\\.com", "evil.com"),
            ("a(at)b[.]c", "a@b.c"),
            ("hxxp[://]x[.]y", "http://x.y"),
            ("http[:]//x[.]y", "http://x.y"),
            ("fxp://files[.]x", "ftp://files.x"),
        ] {
            assert_eq!(refang(fanged), clean, "{fanged}");
        }
    }

    #[test]
    fn private_ranges() {
        for (ip, private) in [
            ("10.1.1.1", true),
            ("172.31.0.1", true),
            ("172.32.0.1", false),
            ("100.64.0.1", true),
            ("169.254.169.254", true),
            ("127.0.0.1", true),
            ("0.0.0.0", true),
            ("8.8.8.8", false),
            ("::1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("::ffff:10.0.0.1", true),
            ("2606:4700::1111", false),
            ("not an ip", false),
        ] {
            let got = is_private_ip(&[Cel::String(Arc::new(ip.to_owned()))]).unwrap();
            assert_eq!(got, Cel::Bool(private), "{ip}");
        }
    }

    #[test]
    fn patterns_compile() {
        LazyLock::force(&REFANG);
        for r in [
            &IPV4, &IPV6, &DOMAIN, &URL, &EMAIL, &MD5, &SHA1, &SHA256, &CVE, &HTTP, &FTP,
        ] {
            LazyLock::force(r);
        }
    }
}
