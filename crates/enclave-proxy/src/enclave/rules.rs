//! The loopback aliases allowed names are given in the enclave, and the /etc/hosts and
//! /etc/resolv.conf contents that point programs at them. Which names, ports and addresses are
//! allowed is [`crate::allow::EgressPolicy`], the same matcher the host proxy uses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// The first and last loopback aliases handed out. 127.0.0.1 is the enclave's own loopback and
/// 127.0.0.255 the /24's broadcast address; everything in 127.0.0.0/24 is excluded from the
/// transparent redirect, so aliases must stay inside it.
const FIRST_ALIAS: u8 = 2;
const LAST_ALIAS: u8 = 254;

/// Names and the loopback aliases given to them.
#[derive(Debug, Default)]
pub(crate) struct AliasTable {
    by_name: BTreeMap<String, Ipv4Addr>,
}

impl AliasTable {
    pub(crate) fn get(&self, name: &str) -> Option<Ipv4Addr> {
        self.by_name.get(name).copied()
    }

    /// The lowest alias not given to any name yet, or `None` when all 253 are taken.
    pub(crate) fn next_free(&self) -> Option<Ipv4Addr> {
        let used: BTreeSet<Ipv4Addr> = self.by_name.values().copied().collect();
        (FIRST_ALIAS..=LAST_ALIAS)
            .map(|n| Ipv4Addr::new(127, 0, 0, n))
            .find(|a| !used.contains(a))
    }

    /// Remembers `alias` (from [`AliasTable::next_free`]) for `name`.
    pub(crate) fn insert(&mut self, name: &str, alias: Ipv4Addr) {
        self.by_name.insert(name.to_owned(), alias);
    }

    /// Gives the next free alias to `name`; `None` when none is left.
    pub(crate) fn allocate(&mut self, name: &str) -> Option<Ipv4Addr> {
        let alias = self.next_free()?;
        self.insert(name, alias);
        Some(alias)
    }
}

/// The marker line above our block in /etc/hosts, so a restart replaces the block instead of
/// appending a second one.
const HOSTS_MARKER: &str = "# enclave-proxy: allowed egress names (loopback aliases)";

/// /etc/hosts with `entries` appended to what the image had. Our names are taken off any line of
/// the image that also lists them (resolvers use the first match, which would otherwise win),
/// a previous block of ours is dropped, and `127.0.0.1 localhost` is kept or added.
pub(crate) fn render_hosts(existing: &str, entries: &[(Ipv4Addr, &str)]) -> String {
    let ours: BTreeSet<&str> = entries.iter().map(|(_, n)| *n).collect();
    let mut out = String::new();
    let mut has_localhost = false;
    for line in existing.lines() {
        if line.trim() == HOSTS_MARKER {
            // Our previous block runs to the end of the file.
            break;
        }
        let (data, comment) = match line.find('#') {
            Some(i) => (&line[..i], &line[i..]),
            None => (line, ""),
        };
        let mut fields = data.split_whitespace();
        let Some(addr) = fields.next() else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let names: Vec<&str> = fields.collect();
        let kept: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !ours.contains(n.to_ascii_lowercase().as_str()))
            .collect();
        if kept.len() == names.len() {
            out.push_str(line);
            out.push('\n');
        } else if !kept.is_empty() {
            out.push_str(&format!("{addr} {}", kept.join(" ")));
            if !comment.is_empty() {
                out.push(' ');
                out.push_str(comment);
            }
            out.push('\n');
        }
        if addr == "127.0.0.1" && kept.contains(&"localhost") {
            has_localhost = true;
        }
    }
    if !has_localhost {
        out.push_str("127.0.0.1 localhost\n");
    }
    out.push_str(HOSTS_MARKER);
    out.push('\n');
    for (alias, name) in entries {
        out.push_str(&format!("{alias} {name}\n"));
    }
    out
}

/// /etc/resolv.conf pointing at the enclave's DNS server (the only one that can answer).
pub(crate) fn render_resolv_conf(dns: IpAddr) -> String {
    format!("# written by enclave-proxy: only allow-listed names resolve\nnameserver {dns}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_handed_out_in_order_until_exhausted() {
        let mut t = AliasTable::default();
        assert_eq!(t.allocate("a.b"), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(t.allocate("c.d"), Some(Ipv4Addr::new(127, 0, 0, 3)));
        assert_eq!(t.get("a.b"), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(t.get("x.y"), None);
        for i in 4..=254 {
            assert_eq!(
                t.allocate(&format!("n{i}.x")),
                Some(Ipv4Addr::new(127, 0, 0, i))
            );
        }
        assert_eq!(t.next_free(), None);
        assert_eq!(t.allocate("one.more"), None);
    }

    #[test]
    fn hosts_keeps_the_image_lines_and_replaces_ours() {
        let a2 = Ipv4Addr::new(127, 0, 0, 2);
        let a3 = Ipv4Addr::new(127, 0, 0, 3);
        let image = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\n# note\n\
                     10.0.0.5 db.internal other.internal # old\n10.0.0.6 DB.internal\n";
        let got = render_hosts(image, &[(a2, "db.internal"), (a3, "api.example.com")]);
        let want = format!(
            "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\n# note\n\
             10.0.0.5 other.internal # old\n{HOSTS_MARKER}\n127.0.0.2 db.internal\n\
             127.0.0.3 api.example.com\n"
        );
        assert_eq!(got, want);
        // Rendering again over our own output changes nothing.
        assert_eq!(
            render_hosts(&got, &[(a2, "db.internal"), (a3, "api.example.com")]),
            want
        );
    }

    #[test]
    fn hosts_gets_localhost_when_the_image_has_none() {
        let got = render_hosts("", &[(Ipv4Addr::new(127, 0, 0, 2), "a.b")]);
        assert_eq!(
            got,
            format!("127.0.0.1 localhost\n{HOSTS_MARKER}\n127.0.0.2 a.b\n")
        );
        assert!(
            render_resolv_conf("127.0.0.1".parse().unwrap()).ends_with("nameserver 127.0.0.1\n")
        );
    }
}
