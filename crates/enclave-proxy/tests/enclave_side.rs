//! The enclave side end to end, with real sockets and real netfilter, each test in its own
//! network namespace (see `netns::in_netns`). The tests play the host: the egress
//! proxy is a Unix socket here, and ingress connections come over a Unix socket too.

mod enclave_support;
mod logs;
mod netns;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;

use enclave_proxy::enclave::{
    EnclaveNetwork, EnclaveNetworkConfig, EnclaveNetworkError, HostAddr, ListenAddr, Netfilter,
};
use enclave_proxy::header::{Request, Status};
use enclave_spec::{EgressSpec, IngressSpec};
use enclave_support::*;
use logs::{capture_logs, log_lines, wait_for_log};
use netns::{in_netns, run};

const DNS: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53));
const A: u16 = 1;
const AAAA: u16 = 28;
const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;

fn config(
    dir: &Path,
    host: &Path,
    ingress: Vec<IngressSpec>,
    egress: &str,
) -> EnclaveNetworkConfig {
    EnclaveNetworkConfig {
        ingress,
        egress: yaml_serde::from_str::<EgressSpec>(egress).unwrap(),
        ingress_listen: ListenAddr::Unix(dir.join("ingress.sock")),
        host: HostAddr::Unix(host.to_owned()),
        etc_dir: dir.join("etc"),
        dns_addr: DNS,
        transparent_port: 15001,
        netfilter: Some(Netfilter::Nftables),
    }
}

fn alias(n: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(127, 0, 0, n), port))
}

fn name_req(name: &str, port: u16) -> Request {
    Request::EgressName {
        name: name.into(),
        port,
    }
}

#[test]
fn dns_and_named_egress() {
    in_netns("dns_and_named_egress", || {
        let dir = tempfile::tempdir().unwrap();
        let server = echo_server();
        let host = FakeHost::start(dir.path(), move |req| match req {
            Request::EgressName { name, .. } if name != "denied.internal" => Some(server),
            _ => None,
        });
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/hosts"),
            "127.0.0.1 localhost\n10.9.9.9 db.internal\n",
        )
        .unwrap();
        let cfg = config(
            dir.path(),
            &host.path,
            vec![],
            "- {host: db.internal, port: 5432}\n- {host: denied.internal, port: 5432}\n\
             - {host: \"*.example.com\", port: 8443}\n- {host: db.internal, port: 6432}\n",
        );
        let net = EnclaveNetwork::start(cfg).unwrap();

        // /etc: our aliases in spec order, the image's line for our name gone, localhost kept.
        let hosts = std::fs::read_to_string(dir.path().join("etc/hosts")).unwrap();
        assert!(hosts.starts_with("127.0.0.1 localhost\n"), "{hosts}");
        assert!(!hosts.contains("10.9.9.9"), "{hosts}");
        assert!(
            hosts.contains("\n127.0.0.2 db.internal\n127.0.0.3 denied.internal\n"),
            "{hosts}"
        );
        let resolv = std::fs::read_to_string(dir.path().join("etc/resolv.conf")).unwrap();
        assert!(resolv.contains("nameserver 127.0.0.1\n"), "{resolv}");

        // DNS: exact names, AAAA, unknown names.
        let db = dns_query(DNS, "DB.internal", A);
        assert_eq!(
            (db.rcode, db.a),
            (NOERROR, Some(Ipv4Addr::new(127, 0, 0, 2)))
        );
        let six = dns_query(DNS, "db.internal", AAAA);
        assert_eq!((six.rcode, six.answers), (NOERROR, 0));
        assert_eq!(dns_query(DNS, "nope.internal", A).rcode, NXDOMAIN);
        assert_eq!(dns_query(DNS, "example.com", A).rcode, NXDOMAIN);
        // Under the wildcard, but not a host name the host would accept: no alias for it.
        assert_eq!(dns_query(DNS, "_svc.example.com", A).rcode, NXDOMAIN);

        // Named egress on both ports of one name.
        let got = round_trip(TcpStream::connect(alias(2, 5432)).unwrap(), b"ping").unwrap();
        assert_eq!(got, b"ping");
        assert_eq!(host.next(), name_req("db.internal", 5432));
        let got = round_trip(TcpStream::connect(alias(2, 6432)).unwrap(), b"pong").unwrap();
        assert_eq!(got, b"pong");
        assert_eq!(host.next(), name_req("db.internal", 6432));
        // No listener for a port no rule names.
        assert!(TcpStream::connect(alias(2, 80)).is_err());

        // The host refuses: the program sees a reset.
        assert_reset(alias(3, 5432));
        assert_eq!(host.next(), name_req("denied.internal", 5432));

        // A wildcard name gets the next alias on first sight, the same one after, and works.
        let api = dns_query(DNS, "api.example.com", A);
        assert_eq!(
            (api.rcode, api.a),
            (NOERROR, Some(Ipv4Addr::new(127, 0, 0, 4)))
        );
        assert_eq!(dns_query(DNS, "api.example.com", A).a, api.a);
        let other = dns_query(DNS, "a.b.example.com", A);
        assert_eq!(other.a, Some(Ipv4Addr::new(127, 0, 0, 5)));
        let got = round_trip(TcpStream::connect(alias(4, 8443)).unwrap(), b"wild").unwrap();
        assert_eq!(got, b"wild");
        assert_eq!(host.next(), name_req("api.example.com", 8443));

        net.stop();
    });
}

#[test]
fn transparent_egress() {
    in_netns("transparent_egress", || {
        transparent_egress_with(Netfilter::Nftables)
    });
}

#[test]
fn transparent_egress_xtables() {
    in_netns("transparent_egress_xtables", || {
        // A rule of someone else's, with a jump into a user chain, must survive the install.
        for args in [
            "-N OTHER",
            "-A OTHER -d 10.0.0.0/8 -j RETURN",
            "-A OUTPUT -j OTHER",
            "-A POSTROUTING -j OTHER",
        ] {
            run(std::process::Command::new("iptables-legacy")
                .args(["-t", "nat"])
                .args(args.split(' ')));
        }
        transparent_egress_with(Netfilter::Xtables);
        let rules = run(std::process::Command::new("iptables-legacy").args(["-t", "nat", "-S"]));
        let output: Vec<&str> = rules
            .lines()
            .filter(|l| l.starts_with("-A OUTPUT"))
            .collect();
        assert_eq!(
            output,
            [
                "-A OUTPUT ! -d 127.0.0.0/24 -p tcp -j REDIRECT --to-ports 15001",
                "-A OUTPUT -j OTHER"
            ],
            "{rules}"
        );
        assert!(rules.contains("-A POSTROUTING -j OTHER\n"), "{rules}");
        assert!(
            rules.contains("-A OTHER -d 10.0.0.0/8 -j RETURN\n"),
            "{rules}"
        );
    });
}

/// The redirect as the backend shows it: nft's ruleset or iptables' nat table.
fn redirect_rules(backend: Netfilter) -> String {
    match backend {
        Netfilter::Nftables => run(std::process::Command::new("nft").args(["list", "ruleset"])),
        Netfilter::Xtables => {
            run(std::process::Command::new("iptables-legacy").args(["-t", "nat", "-S"]))
        }
    }
}

fn transparent_egress_with(backend: Netfilter) {
    let dir = tempfile::tempdir().unwrap();
    let server = echo_server();
    let host = FakeHost::start(dir.path(), move |_| Some(server));
    let egress = "mode: transparent\nallow:\n  - {cidr: 127.0.1.0/24, port: 7000}\n  - {cidr: 10.9.0.0/16, port: 7000}\n";
    let cfg = || EnclaveNetworkConfig {
        netfilter: Some(backend),
        ..config(dir.path(), &host.path, vec![], egress)
    };
    let net = EnclaveNetwork::start(cfg()).unwrap();

    let ruleset = redirect_rules(backend);
    match backend {
        Netfilter::Nftables => {
            assert!(ruleset.contains("table ip enclave_egress"), "{ruleset}");
            assert!(
                ruleset.contains("type nat hook output priority -100"),
                "{ruleset}"
            );
            assert!(
                ruleset.contains("ip daddr != 127.0.0.0/24 meta l4proto tcp redirect to :15001"),
                "{ruleset}"
            );
        }
        Netfilter::Xtables => assert!(
            ruleset.contains("-A OUTPUT ! -d 127.0.0.0/24 -p tcp -j REDIRECT --to-ports 15001"),
            "{ruleset}"
        ),
    }

    // Nothing listens on 127.0.1.2:7000: netfilter sends it to the forwarder, which asks the
    // host for the original destination.
    let got = round_trip(TcpStream::connect("127.0.1.2:7000").unwrap(), b"through").unwrap();
    assert_eq!(got, b"through");
    let want = |ip: &str| Request::EgressAddr {
        addr: ip.parse().unwrap(),
        port: 7000,
    };
    assert_eq!(host.next(), want("127.0.1.2"));

    // An address outside loopback: routed to lo by the default route transparent mode adds
    // (the enclave has no other interface), then redirected like the others.
    let routes = run(std::process::Command::new("ip").args(["route"]));
    assert!(routes.contains("default dev lo"), "{routes}");
    assert!(routes.contains("src 127.0.0.1"), "{routes}");
    let got = round_trip(TcpStream::connect("10.9.0.5:7000").unwrap(), b"routed").unwrap();
    assert_eq!(got, b"routed");
    assert_eq!(host.next(), want("10.9.0.5"));

    // No rule for port 7001 or for 127.0.2.0/24: refused in the enclave, never sent to the
    // host (the next request the host sees is the allowed one after it).
    assert_reset("127.0.1.2:7001".parse().unwrap());
    assert_reset("127.0.2.1:7000".parse().unwrap());
    let got = round_trip(TcpStream::connect("127.0.1.3:7000").unwrap(), b"again").unwrap();
    assert_eq!(got, b"again");
    assert_eq!(host.next(), want("127.0.1.3"));
    // The enclave's own loopback /24 is not redirected.
    assert!(TcpStream::connect("127.0.0.9:7000").is_err());

    // Starting again replaces the rule instead of adding a second one.
    net.stop();
    let net = EnclaveNetwork::start(cfg()).unwrap();
    let ruleset = redirect_rules(backend);
    let rules = ruleset.matches("redirect to").count() + ruleset.matches("-j REDIRECT").count();
    assert_eq!(rules, 1, "{ruleset}");
    net.stop();
}

#[test]
fn transparent_broad_rule_stays_out_of_special_ranges() {
    in_netns("transparent_broad_rule_stays_out_of_special_ranges", || {
        let dir = tempfile::tempdir().unwrap();
        let server = echo_server();
        let host = FakeHost::start(dir.path(), move |_| Some(server));
        let egress = "mode: transparent\nallow:\n  - {cidr: 0.0.0.0/0, port: 7000}\n  \
                      - {cidr: 0.0.0.0/0, port: 7001, allow_special: true}\n";
        let net = EnclaveNetwork::start(config(dir.path(), &host.path, vec![], egress)).unwrap();
        let want = |ip: &str, port: u16| Request::EgressAddr {
            addr: ip.parse().unwrap(),
            port,
        };
        // Loopback outside the enclave's own /24 (redirected, so it would be the host's),
        // the metadata service, a private and a link-local address: refused in the enclave, never
        // sent to the host.
        for special in ["127.0.1.2", "169.254.169.254", "10.1.2.3", "169.254.1.1"] {
            assert_reset(format!("{special}:7000").parse().unwrap());
        }
        // A public address passes; it is the first request the host sees.
        let got = round_trip(TcpStream::connect("8.8.8.8:7000").unwrap(), b"public").unwrap();
        assert_eq!(got, b"public");
        assert_eq!(host.next(), want("8.8.8.8", 7000));
        // With allow_special the same broad rule reaches the special ranges.
        for special in ["127.0.1.2", "169.254.169.254"] {
            let s = TcpStream::connect(format!("{special}:7001")).unwrap();
            assert_eq!(
                round_trip(s, special.as_bytes()).unwrap(),
                special.as_bytes()
            );
            assert_eq!(host.next(), want(special, 7001));
        }
        net.stop();
    });
}

/// Sends `bytes` on a new ingress connection; the status byte (if any) and what followed.
fn ingress_conn(sock: &Path, bytes: &[u8]) -> (Option<u8>, Vec<u8>) {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    match got.split_first() {
        Some((status, rest)) => (Some(*status), rest.to_vec()),
        None => (None, got),
    }
}

#[test]
fn ingress_forwarder() {
    in_netns("ingress_forwarder", || {
        let dir = tempfile::tempdir().unwrap();
        let server = echo_server();
        // A listed port nothing listens on: the port of a listener that is closed again.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ports = [server.port(), closed];
        let ingress = ports
            .iter()
            .map(|&port| IngressSpec {
                port,
                host_port: None,
                host_ip: None,
            })
            .collect();
        let cfg = config(dir.path(), &dir.path().join("no-host.sock"), ingress, "[]");
        let sock = dir.path().join("ingress.sock");
        let net = EnclaveNetwork::start(cfg).unwrap();
        // No egress rules: /etc is left alone.
        assert!(!dir.path().join("etc/hosts").exists());

        // Bytes sent right behind the header reach the server too.
        let mut req = Request::Ingress {
            port: server.port(),
        }
        .to_bytes();
        req.extend_from_slice(b"hello");
        assert_eq!(
            ingress_conn(&sock, &req),
            (Some(Status::Connected as u8), b"hello".to_vec())
        );

        let unlisted = Request::Ingress { port: 1 }.to_bytes();
        assert_eq!(
            ingress_conn(&sock, &unlisted),
            (Some(Status::NotAllowed as u8), vec![])
        );
        let egress = name_req("a.b", 80).to_bytes();
        assert_eq!(
            ingress_conn(&sock, &egress),
            (Some(Status::NotAllowed as u8), vec![])
        );
        let nobody = Request::Ingress { port: closed }.to_bytes();
        assert_eq!(
            ingress_conn(&sock, &nobody),
            (Some(Status::ConnectFailed as u8), vec![])
        );
        assert_eq!(
            ingress_conn(&sock, &[9, 1, 0, 80]),
            (Some(Status::UnsupportedVersion as u8), vec![])
        );
        assert_eq!(
            ingress_conn(&sock, &[1, 9, 0, 80]),
            (Some(Status::Malformed as u8), vec![])
        );
        assert_eq!(ingress_conn(&sock, &[1, 1]), (None, vec![]));

        // Still serving after all that.
        let req = Request::Ingress {
            port: server.port(),
        }
        .to_bytes();
        let (status, _) = ingress_conn(&sock, &req);
        assert_eq!(status, Some(Status::Connected as u8));
        net.stop();
    });
}

#[test]
fn start_reports_what_it_cannot_bind() {
    in_netns("start_reports_what_it_cannot_bind", || {
        let dir = tempfile::tempdir().unwrap();
        let taken = UdpSocket::bind(DNS).unwrap();
        let cfg = config(
            dir.path(),
            &dir.path().join("h.sock"),
            vec![],
            "- {host: a.b, port: 1}\n",
        );
        match EnclaveNetwork::start(cfg) {
            Err(e @ EnclaveNetworkError::Listen { .. }) => {
                assert!(e.to_string().contains("127.0.0.1:53/udp (DNS)"), "{e}");
            }
            other => panic!("expected a listen error, got {other:?}"),
        }
        drop(taken);
        // Nothing was written before the failure.
        assert!(!dir.path().join("etc").exists());
    });
}

#[path = "enclave_side/limits.rs"]
mod limits;
