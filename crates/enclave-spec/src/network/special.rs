//! Address ranges that are not the public internet: loopback, private networks, link-local, the
//! cloud metadata services, documentation ranges and the rest of IANA's special-purpose
//! registries. They are part of what an egress rule means: an address in one of them is reached
//! only by a rule whose prefix lies inside its range, or by a rule that says
//! `allow_special: true` (docs/networking.md, "Special ranges"). So `{cidr: 0.0.0.0/0, port: 80}`
//! does not reach the host's loopback or 169.254.169.254, and a name that resolves there is
//! refused.
//!
//! Each address belongs to the most specific entry of the table that holds it: 169.254.169.254
//! is in the metadata entry (a /32), not the link-local /16, so `{cidr: 169.254.0.0/16}` reaches
//! link-local services but not the metadata service.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Cidr;

/// A special-purpose address range an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialRange {
    /// `0.0.0.0/8`, `::/128`.
    Unspecified,
    /// `127.0.0.0/8`, `::1/128`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// The instance metadata and credential services: `169.254.169.254` (EC2 IMDS, and the same
    /// address on other clouds), `169.254.170.2` (ECS task credentials), `169.254.170.23` (EKS
    /// Pod Identity), `fd00:ec2::254` (IMDS over IPv6), `fd00:ec2::23` (EKS Pod Identity).
    CloudMetadata,
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
    /// `240.0.0.0/4`, and IPv6 outside `2000::/3` not named above.
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
            SpecialRange::CloudMetadata => "a cloud metadata service address",
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

use SpecialRange::*;

/// The IPv4 table: network, prefix length, range. Entries may nest (the most specific wins).
const V4: [([u8; 4], u8, SpecialRange); 19] = [
    ([0, 0, 0, 0], 8, Unspecified),
    ([10, 0, 0, 0], 8, Private),
    ([100, 64, 0, 0], 10, SharedAddressSpace),
    ([127, 0, 0, 0], 8, Loopback),
    ([169, 254, 0, 0], 16, LinkLocal),
    ([169, 254, 169, 254], 32, CloudMetadata),
    ([169, 254, 170, 2], 32, CloudMetadata),
    ([169, 254, 170, 23], 32, CloudMetadata),
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
    ([255, 255, 255, 255], 32, Broadcast),
];

/// IPv6 prefixes whose addresses carry an IPv4 address, which is where a connection to them ends
/// up (through a NAT64 gateway or a 6to4 relay): such an address is judged by its IPv4 address,
/// and its entry is the IPv4 entry's image under the prefix. IPv4-mapped addresses
/// (`::ffff:0:0/96`) are not here: they *are* IPv4 addresses and are turned into them first.
const EMBEDDED: [(u128, u8); 2] = [
    // NAT64's well-known prefix (RFC 6052): the IPv4 address is the last 32 bits.
    (0x0064_ff9b << 96, 96),
    // 6to4 (RFC 3056): the IPv4 address is the 32 bits after the prefix.
    (0x2002 << 112, 16),
];

/// The IPv6 table; inside `::/3`, `4000::/2` and `8000::/1` (outside global unicast, so
/// reserved) the more specific entries win.
const V6: [(u128, u8, SpecialRange); 17] = [
    (0, 128, Unspecified),
    (1, 128, Loopback),
    (0, 3, Reserved),
    (0x0064_ff9b_0001 << 80, 48, NotGlobal),
    (0x0100 << 112, 64, NotGlobal),
    (0x2001 << 112, 23, ProtocolAssignments),
    (0x2001_0db8 << 96, 32, Documentation),
    (0x3fff << 112, 20, Documentation),
    (0x4000 << 112, 2, Reserved),
    (0x5f00 << 112, 16, NotGlobal),
    (0x8000 << 112, 1, Reserved),
    (0xfc00 << 112, 7, UniqueLocal),
    ((0xfd00_0ec2 << 96) | 0x254, 128, CloudMetadata),
    ((0xfd00_0ec2 << 96) | 0x23, 128, CloudMetadata),
    (0xfe80 << 112, 10, LinkLocal),
    (0xfec0 << 112, 10, SiteLocal),
    (0xff00 << 112, 8, Multicast),
];

/// The special range `ip` is in, or `None` for a public address.
pub fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    special_prefix(ip).map(|(range, _)| range)
}

/// The table entry `ip` belongs to: its range and the entry's prefix, in the address's own family
/// (an IPv4-mapped address counts as IPv4; a NAT64 or 6to4 address gets the IPv6 image of its
/// IPv4 address's entry, e.g. `64:ff9b::a9fe:a9fe` is in `64:ff9b::a9fe:a9fe/128`). `None` for a
/// public address.
pub fn special_prefix(ip: IpAddr) -> Option<(SpecialRange, Cidr)> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => lookup_v4(v4),
        IpAddr::V6(v6) => lookup_v6(v6),
    }
}

/// Whether the special ranges inside `cidr` include one that `cidr` does not lie inside: then a
/// rule for `cidr` reaches addresses there only with `allow_special: true`. False for a range
/// that holds no special address, or that lies inside the entry of every special address it
/// holds (`10.0.0.0/8`, `127.0.0.1/32`): `allow_special` changes nothing for those.
pub fn holds_special_beyond(cidr: &Cidr) -> bool {
    match cidr.addr {
        IpAddr::V4(_) => V4
            .iter()
            .any(|&(net, len, _)| len > cidr.prefix && cidr.contains(Ipv4Addr::from(net).into())),
        IpAddr::V6(net) => {
            let holds_v6_entry = V6.iter().any(|&(entry, len, _)| {
                len > cidr.prefix && cidr.contains(Ipv6Addr::from(entry).into())
            });
            let holds_embedded = EMBEDDED.iter().any(|&(base, len)| {
                if cidr.prefix <= len {
                    // The whole embedding prefix is inside: so is the image of every IPv4 entry.
                    cidr.contains(Ipv6Addr::from(base).into())
                } else if in_prefix(u128::from(net), base, len) {
                    holds_special_beyond(&embedded_v4(cidr, base, len))
                } else {
                    false
                }
            });
            holds_v6_entry || holds_embedded
        }
    }
}

fn v4_cidr(net: [u8; 4], prefix: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V4(Ipv4Addr::from(net)),
        prefix,
    }
}

fn v6_cidr(net: u128, prefix: u8) -> Cidr {
    Cidr {
        addr: IpAddr::V6(Ipv6Addr::from(net)),
        prefix,
    }
}

fn in_prefix(v: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    v & mask == net
}

/// The most specific IPv4 entry holding `ip`.
fn lookup_v4(ip: Ipv4Addr) -> Option<(SpecialRange, Cidr)> {
    V4.iter()
        .map(|&(net, len, range)| (range, v4_cidr(net, len)))
        .filter(|(_, c)| c.contains(IpAddr::V4(ip)))
        .max_by_key(|(_, c)| c.prefix)
}

fn lookup_v6(ip: Ipv6Addr) -> Option<(SpecialRange, Cidr)> {
    let v = u128::from(ip);
    for &(base, len) in &EMBEDDED {
        if in_prefix(v, base, len) {
            // The 32 bits right after the prefix.
            let shift = 96 - u32::from(len);
            let v4 = Ipv4Addr::from((v >> shift) as u32);
            return lookup_v4(v4).map(|(range, c)| (range, v6_image(&c, base, len)));
        }
    }
    V6.iter()
        .filter(|&&(net, len, _)| in_prefix(v, net, len))
        .max_by_key(|&&(_, len, _)| len)
        .map(|&(net, len, range)| (range, v6_cidr(net, len)))
}

/// The IPv6 image of IPv4 range `v4` under embedding prefix `base/len`.
fn v6_image(v4: &Cidr, base: u128, len: u8) -> Cidr {
    let IpAddr::V4(a) = v4.addr else {
        return *v4;
    };
    let shift = 96 - u32::from(len);
    v6_cidr(base | (u128::from(u32::from(a)) << shift), len + v4.prefix)
}

/// The IPv4 range an IPv6 range inside embedding prefix `base/len` carries.
fn embedded_v4(cidr: &Cidr, base: u128, len: u8) -> Cidr {
    let IpAddr::V6(net) = cidr.addr else {
        return *cidr;
    };
    let shift = 96 - u32::from(len);
    let bits = ((u128::from(net) & !base) >> shift) as u32;
    let prefix = (cidr.prefix - len).min(32);
    v4_cidr(bits.to_be_bytes(), prefix)
}

#[cfg(test)]
mod tests;
