//! IP address classification: which addresses a component may reach without
//! an explicit `http.allow_private` grant.
//!
//! The runtime calls [`classify`] on every address a name resolves to, so that
//! a public-looking name pointing at `127.0.0.1` or the cloud metadata service
//! is refused. Anything not positively known to be public unicast is treated
//! as non-public: when in doubt, deny.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// What kind of address an IP is, as far as reaching it from a component goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// Ordinary globally routable unicast address.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// `169.254.0.0/16`, `fe80::/10`; includes cloud metadata `169.254.169.254`.
    LinkLocal,
    /// Carrier-grade NAT shared space `100.64.0.0/10` (Alibaba metadata lives here).
    SharedCgnat,
    /// IPv6 unique local `fc00::/7` (AWS IPv6 metadata `fd00:ec2::254` lives here).
    UniqueLocal,
    /// `0.0.0.0`, `::`: connects to the local host on most systems.
    Unspecified,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// TEST-NET-1/2/3, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`, `2001:2::/48`.
    Benchmarking,
    /// Every other special-purpose or unallocated range (`0.0.0.0/8`,
    /// `240.0.0.0/4`, `192.0.0.0/24`, `100::/64`, Teredo, non-`2000::/3`, ...).
    Reserved,
}

impl AddressClass {
    /// Whether a component may reach this address without `http.allow_private`.
    pub fn is_public(self) -> bool {
        matches!(self, AddressClass::Public)
    }

    /// Short human description used in denial messages.
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private (RFC 1918)",
            AddressClass::LinkLocal => "link-local (includes cloud metadata 169.254.169.254)",
            AddressClass::SharedCgnat => {
                "shared CGNAT (100.64.0.0/10; includes cloud metadata 100.100.100.200)"
            }
            AddressClass::UniqueLocal => {
                "unique local (fc00::/7; includes cloud metadata fd00:ec2::254)"
            }
            AddressClass::Unspecified => "unspecified (0.0.0.0 or ::)",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation-only",
            AddressClass::Benchmarking => "benchmarking (198.18.0.0/15)",
            AddressClass::Reserved => "reserved (special-purpose)",
        }
    }

    /// [`describe`](Self::describe) with the right indefinite article, for prose.
    pub(crate) fn with_article(self) -> String {
        let article = match self {
            AddressClass::Unspecified => "an",
            _ => "a",
        };
        format!("{article} {}", self.describe())
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// IPv4 special ranges, first match wins (more specific before less specific).
const V4_TABLE: &[(Ipv4Net, AddressClass)] = &[
    (v4(0, 0, 0, 0, 32), AddressClass::Unspecified),
    (v4(0, 0, 0, 0, 8), AddressClass::Reserved),
    (v4(10, 0, 0, 0, 8), AddressClass::Private),
    (v4(100, 64, 0, 0, 10), AddressClass::SharedCgnat),
    (v4(127, 0, 0, 0, 8), AddressClass::Loopback),
    (v4(169, 254, 0, 0, 16), AddressClass::LinkLocal),
    (v4(172, 16, 0, 0, 12), AddressClass::Private),
    (v4(192, 0, 0, 0, 24), AddressClass::Reserved),
    (v4(192, 0, 2, 0, 24), AddressClass::Documentation),
    (v4(192, 88, 99, 0, 24), AddressClass::Reserved), // deprecated 6to4 relay anycast
    (v4(192, 168, 0, 0, 16), AddressClass::Private),
    (v4(198, 18, 0, 0, 15), AddressClass::Benchmarking),
    (v4(198, 51, 100, 0, 24), AddressClass::Documentation),
    (v4(203, 0, 113, 0, 24), AddressClass::Documentation),
    (v4(224, 0, 0, 0, 4), AddressClass::Multicast),
    (v4(255, 255, 255, 255, 32), AddressClass::Broadcast),
    (v4(240, 0, 0, 0, 4), AddressClass::Reserved),
];

/// IPv6 special ranges that do not embed an IPv4 address, first match wins.
/// Anything outside `2000::/3` that is not listed is [`AddressClass::Reserved`].
const V6_TABLE: &[(Ipv6Net, AddressClass)] = &[
    (
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        AddressClass::Reserved,
    ), // SIIT ::ffff:0:a.b.c.d
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        AddressClass::Reserved,
    ), // local-use NAT64
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), AddressClass::Reserved), // discard-only
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        AddressClass::Documentation,
    ),
    (
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        AddressClass::Benchmarking,
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        AddressClass::Reserved,
    ), // Teredo
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        AddressClass::Reserved,
    ), // IETF protocol assignments
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        AddressClass::Documentation,
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        AddressClass::UniqueLocal,
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        AddressClass::LinkLocal,
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        AddressClass::Reserved,
    ), // deprecated site-local
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        AddressClass::Multicast,
    ),
    (v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3), AddressClass::Public),
];

/// Classify an address. IPv6 forms that embed an IPv4 address (mapped,
/// compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are classified by the
/// embedded IPv4 address, because that is where the packets end up.
pub fn classify(addr: IpAddr) -> AddressClass {
    match addr {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

fn classify_v4(addr: Ipv4Addr) -> AddressClass {
    V4_TABLE
        .iter()
        .find(|(net, _)| net.contains(&addr))
        .map_or(AddressClass::Public, |(_, class)| *class)
}

fn classify_v6(addr: Ipv6Addr) -> AddressClass {
    if let Some(embedded) = embedded_v4(addr) {
        return classify_v4(embedded);
    }
    if addr.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if addr.is_loopback() {
        return AddressClass::Loopback;
    }
    V6_TABLE
        .iter()
        .find(|(net, _)| net.contains(&addr))
        .map_or(AddressClass::Reserved, |(_, class)| *class)
}

/// The IPv4 address an IPv6 address forwards to, if it is one of the
/// embedding forms.
fn embedded_v4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = addr.segments();
    let low32 = || Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32);
    match s {
        // ::ffff:a.b.c.d (IPv4-mapped)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low32()),
        // ::a.b.c.d (IPv4-compatible, deprecated); `::` and `::1` are IPv6 proper.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low32()),
        // 64:ff9b::a.b.c.d (well-known NAT64 prefix)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low32()),
        // 2002:aabb:ccdd::/48 (6to4)
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from(((hi as u32) << 16) | lo as u32)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddressClass {
        classify(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn ipv4_table() {
        use AddressClass::*;
        let cases = [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Reserved),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.15.255.255", Public),
            ("172.32.0.1", Public),
            ("192.168.1.1", Private),
            ("192.169.0.1", Public),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("100.64.0.1", SharedCgnat),
            ("100.100.100.200", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("100.63.255.255", Public),
            ("100.128.0.1", Public),
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("255.255.255.254", Reserved),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("198.20.0.1", Public),
            ("240.0.0.1", Reserved),
            ("192.0.0.170", Reserved),
            ("192.88.99.1", Reserved),
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn ipv6_table() {
        use AddressClass::*;
        let cases = [
            ("::1", Loopback),
            ("::", Unspecified),
            ("fe80::1", LinkLocal),
            ("febf:ffff::1", LinkLocal),
            ("fec0::1", Reserved),
            ("fc00::1", UniqueLocal),
            ("fd00:ec2::254", UniqueLocal),
            ("ff02::1", Multicast),
            ("ff0e::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001:2::1", Benchmarking),
            ("2001::1", Reserved),             // Teredo
            ("2001:0:4136:e378::1", Reserved), // Teredo
            ("2001:10::1", Reserved),          // ORCHID
            ("100::1", Reserved),              // discard
            ("64:ff9b:1::1", Reserved),        // local-use NAT64
            ("2606:4700::1111", Public),
            ("2a00:1450:4001:80b::200e", Public),
            ("4000::1", Reserved), // outside 2000::/3
            ("5f00::1", Reserved),
            ("::ffff:0:7f00:1", Reserved), // SIIT
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn ipv6_embedding_ipv4() {
        use AddressClass::*;
        let cases = [
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:8.8.8.8", Public),
            ("::ffff:0.0.0.0", Unspecified),
            ("::127.0.0.1", Loopback), // IPv4-compatible
            ("::10.0.0.1", Private),
            ("::8.8.8.8", Public),
            ("::2", Reserved), // compatible form of 0.0.0.2
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::808:808", Public),
            ("2002:7f00:1::1", Loopback),
            ("2002:a00:1::", Private),
            ("2002:808:808::1", Public),
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn only_public_is_public() {
        use AddressClass::*;
        for c in [
            Loopback,
            Private,
            LinkLocal,
            SharedCgnat,
            UniqueLocal,
            Unspecified,
            Multicast,
            Broadcast,
            Documentation,
            Benchmarking,
            Reserved,
        ] {
            assert!(!c.is_public(), "{c:?}");
            assert!(!c.describe().is_empty());
        }
        assert!(Public.is_public());
    }

    #[test]
    fn descriptions() {
        assert_eq!(AddressClass::Loopback.describe(), "loopback");
        assert_eq!(AddressClass::Private.describe(), "private (RFC 1918)");
        assert_eq!(
            AddressClass::LinkLocal.to_string(),
            "link-local (includes cloud metadata 169.254.169.254)"
        );
        assert_eq!(
            AddressClass::Unspecified.with_article(),
            "an unspecified (0.0.0.0 or ::)"
        );
        assert_eq!(AddressClass::Private.with_article(), "a private (RFC 1918)");
    }
}
