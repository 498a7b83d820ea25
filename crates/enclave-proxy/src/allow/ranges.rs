//! Address ranges that are not the public internet: loopback, private networks, link-local (the
//! cloud metadata service lives there), documentation ranges and the rest of IANA's
//! special-purpose registries. The egress proxy connects to one of these only when a `cidr` rule
//! lists it, so a name that resolves to `127.0.0.1` or `169.254.169.254` cannot reach the host's
//! own services.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A special-purpose address range an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialRange {
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `fc00::/7`.
    UniqueLocal,
    /// `fec0::/10` (deprecated, still not global).
    SiteLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// `192.0.0.0/24`, `2001::/23`: protocol assignments (Teredo, ORCHID, …).
    ProtocolAssignments,
    /// `192.88.99.0/24`, `64:ff9b:1::/48`, `100::/64`, `5f00::/16`: relay, local-use NAT64,
    /// discard-only and segment-routing prefixes.
    NotGlobal,
    /// `240.0.0.0/4`, IPv6 outside `2000::/3` and the ranges above: reserved.
    Reserved,
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecialRange::Unspecified => "an unspecified address",
            SpecialRange::Loopback => "a loopback address",
            SpecialRange::Private => "a private (RFC 1918) address",
            SpecialRange::SharedAddressSpace => "a carrier-grade NAT (100.64.0.0/10) address",
            SpecialRange::LinkLocal => "a link-local address",
            SpecialRange::UniqueLocal => "a unique-local (fc00::/7) address",
            SpecialRange::SiteLocal => "a site-local (fec0::/10) address",
            SpecialRange::Multicast => "a multicast address",
            SpecialRange::Broadcast => "the broadcast address",
            SpecialRange::Documentation => "a documentation address",
            SpecialRange::Benchmarking => "a benchmarking (198.18.0.0/15) address",
            SpecialRange::ProtocolAssignments => "an IETF protocol-assignment address",
            SpecialRange::NotGlobal => "a special-purpose address that is not globally reachable",
            SpecialRange::Reserved => "a reserved address",
        })
    }
}

/// The special range `ip` is in, or `None` for a public address. An IPv6 address that embeds an
/// IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) is
/// classified by the IPv4 address, since that is where a connection ends up.
pub fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn in_v4(ip: u32, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    ip & mask == u32::from_be_bytes(net)
}

fn special_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    use SpecialRange::*;
    let v = u32::from(ip);
    // Most specific first: 255.255.255.255 is inside 240/4, 192.0.0/24 is not inside 192.168/16.
    let table: [([u8; 4], u32, SpecialRange); 16] = [
        ([255, 255, 255, 255], 32, Broadcast),
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, ProtocolAssignments),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, NotGlobal),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(v, *net, *prefix))
        .map(|&(_, _, range)| range)
}

fn in_v6(ip: u128, net: u128, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    ip & mask == net
}

fn special_v6(ip: Ipv6Addr) -> Option<SpecialRange> {
    use SpecialRange::*;
    let v = u128::from(ip);
    if v == 0 {
        return Some(Unspecified);
    }
    if v == 1 {
        return Some(Loopback);
    }
    // Embedded IPv4: the connection goes to (or is translated to) that address.
    if in_v6(v, 0xffff_0000_0000, 96) || in_v6(v, 0x0064_ff9b << 96, 96) {
        return special_v4(Ipv4Addr::from(v as u32));
    }
    if in_v6(v, 0x2002 << 112, 16) {
        return special_v4(Ipv4Addr::from((v >> 80) as u32));
    }
    let table: [(u128, u32, SpecialRange); 10] = [
        (0x0064_ff9b_0001 << 80, 48, NotGlobal),
        (0x0100 << 112, 64, NotGlobal),
        (0x2001_0db8 << 96, 32, Documentation),
        (0x2001 << 112, 23, ProtocolAssignments),
        (0x3fff << 112, 20, Documentation),
        (0x5f00 << 112, 16, NotGlobal),
        (0xfc00 << 112, 7, UniqueLocal),
        (0xfe80 << 112, 10, LinkLocal),
        (0xfec0 << 112, 10, SiteLocal),
        (0xff00 << 112, 8, Multicast),
    ];
    let special = table
        .iter()
        .find(|(net, prefix, _)| in_v6(v, *net, *prefix))
        .map(|&(_, _, range)| range);
    // Global unicast is 2000::/3; IANA reserves the rest of the space not named above.
    special.or_else(|| (!in_v6(v, 0x2000 << 112, 3)).then_some(Reserved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<SpecialRange> {
        special_range(s.parse().unwrap())
    }

    #[test]
    fn special_ranges_are_classified() {
        use SpecialRange::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.254", SharedAddressSpace),
            ("127.0.0.5", Loopback),
            ("169.254.169.254", LinkLocal),
            ("192.0.0.8", ProtocolAssignments),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.19.0.1", Benchmarking),
            ("192.88.99.1", NotGlobal),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.255", Broadcast),
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("2002:c0a8:0101::1", Private),
            ("::2", Reserved),
            ("::10.0.0.1", Reserved),
            ("64:ff9b:1::1", NotGlobal),
            ("100::1", NotGlobal),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001::1", ProtocolAssignments),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("fec0::1", SiteLocal),
            ("ff02::1", Multicast),
            ("5f00::1", NotGlobal),
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), Some(want), "{addr}");
        }
    }

    #[test]
    fn public_addresses_are_not_special() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(class(addr), None, "{addr}");
        }
    }
}
