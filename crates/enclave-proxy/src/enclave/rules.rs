//! The /etc/hosts and /etc/resolv.conf contents that point the enclave's programs at the
//! loopback aliases of allowed names (`aliases.rs`) and at the enclave's DNS server. Which
//! names, ports and addresses are allowed is [`crate::allow::EgressPolicy`], the same matcher the
//! host proxy uses.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

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
