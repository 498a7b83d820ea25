//! The special-range table, address by address and range by range.

use super::*;

fn class(s: &str) -> Option<SpecialRange> {
    special_range(s.parse().unwrap())
}

fn prefix_of(s: &str) -> Option<String> {
    special_prefix(s.parse().unwrap()).map(|(_, c)| c.to_string())
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

#[test]
fn special_ranges_are_classified() {
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
        ("169.254.1.1", LinkLocal),
        ("169.254.169.253", LinkLocal),
        ("169.254.169.254", CloudMetadata),
        ("169.254.170.2", CloudMetadata),
        ("169.254.170.23", CloudMetadata),
        ("192.0.0.8", ProtocolAssignments),
        ("192.0.2.1", Documentation),
        ("198.51.100.7", Documentation),
        ("203.0.113.9", Documentation),
        ("198.19.0.1", Benchmarking),
        ("192.88.99.1", NotGlobal),
        ("224.0.0.1", Multicast),
        ("239.255.255.250", Multicast),
        ("240.0.0.1", Reserved),
        ("255.255.255.254", Reserved),
        ("255.255.255.255", Broadcast),
        ("::", Unspecified),
        ("::1", Loopback),
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:10.0.0.1", Private),
        ("::ffff:169.254.169.254", CloudMetadata),
        ("64:ff9b::a9fe:a9fe", CloudMetadata),
        ("64:ff9b::7f00:1", Loopback),
        ("2002:c0a8:0101::1", Private),
        ("2002:7f00:0001::", Loopback),
        ("::2", Reserved),
        ("::10.0.0.1", Reserved),
        ("::ffff:0:10.0.0.1", Reserved),
        ("64:ff9b:1::1", NotGlobal),
        ("100::1", NotGlobal),
        ("2001:db8::1", Documentation),
        ("3fff::1", Documentation),
        ("2001::1", ProtocolAssignments),
        ("4000::1", Reserved),
        ("5f00::1", NotGlobal),
        ("8000::1", Reserved),
        ("fc00::1", UniqueLocal),
        ("fd12:3456::1", UniqueLocal),
        ("fd00:ec2::253", UniqueLocal),
        ("fd00:ec2::254", CloudMetadata),
        ("fd00:ec2::23", CloudMetadata),
        ("fe80::1", LinkLocal),
        ("fec0::1", SiteLocal),
        ("ff02::1", Multicast),
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
        "169.253.255.255",
        "169.255.0.0",
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

#[test]
fn an_address_belongs_to_its_most_specific_entry() {
    let cases = [
        ("169.254.169.254", "169.254.169.254/32"),
        ("169.254.169.253", "169.254.0.0/16"),
        ("127.0.0.1", "127.0.0.0/8"),
        ("10.2.3.4", "10.0.0.0/8"),
        ("172.20.0.1", "172.16.0.0/12"),
        ("255.255.255.255", "255.255.255.255/32"),
        ("250.0.0.1", "240.0.0.0/4"),
        ("::1", "::1/128"),
        ("::2", "::/3"),
        ("fd00:ec2::254", "fd00:ec2::254/128"),
        ("fd00:ec2::1", "fc00::/7"),
        ("fe80::1", "fe80::/10"),
        ("5f00::1", "5f00::/16"),
        // An IPv4-mapped address is an IPv4 address.
        ("::ffff:10.1.1.1", "10.0.0.0/8"),
        // Embedded IPv4: the image of the IPv4 entry.
        ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe/128"),
        ("64:ff9b::a01:101", "64:ff9b::a00:0/104"),
        ("2002:7f00:1::1", "2002:7f00::/24"),
    ];
    for (addr, want) in cases {
        assert_eq!(prefix_of(addr).as_deref(), Some(want), "{addr}");
    }
    assert_eq!(prefix_of("8.8.8.8"), None);
}

#[test]
fn ranges_that_need_allow_special_to_reach_what_they_hold() {
    // Wider than a special range, or holding a more specific one.
    for wide in [
        "0.0.0.0/0",
        "0.0.0.0/1",
        "8.0.0.0/6",
        "169.254.0.0/16",
        "169.254.169.0/24",
        "240.0.0.0/4",
        "::/0",
        "::/3",
        "2000::/3",
        "fc00::/7",
        "fd00:ec2::/32",
        "64:ff9b::/96",
        "64:ff9b::/64",
        "64:ff9b::/100",
        "2002::/16",
        "2002:a9fe::/32",
    ] {
        assert!(holds_special_beyond(&cidr(wide)), "{wide}");
    }
    // Public, or inside the entry of everything special they hold.
    for narrow in [
        "8.8.8.0/24",
        "1.0.0.0/8",
        "10.0.0.0/8",
        "10.1.0.0/16",
        "127.0.0.1/32",
        "127.0.0.0/8",
        "169.254.169.254/32",
        "169.254.1.0/24",
        "255.255.255.255/32",
        "2606:4700::/32",
        "fd00:1::/32",
        "fd00:ec2::254/128",
        "64:ff9b::808:800/120",
        "64:ff9b::a00:0/104",
        "2002:a9fe:a9fe::/48",
        "2002:a9fe:a9fe:1::/64",
        "2002:808::/32",
    ] {
        assert!(!holds_special_beyond(&cidr(narrow)), "{narrow}");
    }
}
