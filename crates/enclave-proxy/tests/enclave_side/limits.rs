//! The enclave side's bounds with real sockets: the ingress and egress forwarders' connection
//! caps, and the wildcard aliases (bounded by the /24, REFUSED when all are held, freed when
//! unused). Expiry is tested with a short idle time and by waiting for it to happen, never by
//! timing it.

use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use enclave_proxy::enclave::EnclaveLimits;

use super::*;

const REFUSED: u8 = 5;
const PORT: u16 = 7000;

/// Polls `done` every 20 ms until it holds, failing after [`IO_TIMEOUT`].
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that each of `held` still relays a byte, there and back.
fn still_relay<S: Read + Write>(held: &mut [S]) {
    for s in held {
        s.write_all(b"y").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"y");
    }
}

/// A connection through the ingress forwarder that has proven it holds a slot (a round trip).
fn held_ingress(sock: &Path, port: u16) -> UnixStream {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(&Request::Ingress { port }.to_bytes()).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    assert_eq!(b[0], Status::Connected as u8);
    s.write_all(b"x").unwrap();
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
    s
}

/// The first byte the forwarder answers a new ingress request with (`None`: closed unanswered).
fn ingress_answer(sock: &Path, port: u16) -> Option<u8> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // The forwarder may answer and close before the request is written: not an error here.
    let _ = s.write_all(&Request::Ingress { port }.to_bytes());
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(1) => Some(b[0]),
        Ok(_) => None,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn ingress_forwarder_refuses_connections_over_its_cap_at_once() {
    in_netns(
        "limits::ingress_forwarder_refuses_connections_over_its_cap_at_once",
        || {
            capture_logs();
            let dir = tempfile::tempdir().unwrap();
            let server = echo_server();
            let ingress = vec![IngressSpec {
                port: server.port(),
                host_port: None,
                host_ip: None,
            }];
            let cfg = config(dir.path(), &dir.path().join("no-host.sock"), ingress, "[]");
            let limits = EnclaveLimits {
                ingress_max_connections: 3,
                ..EnclaveLimits::default()
            };
            let net = EnclaveNetwork::start_with_limits(cfg, limits).unwrap();
            let sock = dir.path().join("ingress.sock");
            let mut held: Vec<UnixStream> =
                (0..3).map(|_| held_ingress(&sock, server.port())).collect();

            // Over the cap: answered Busy and closed, while the held ones wait for nothing.
            const FLOOD: usize = 100;
            for _ in 0..FLOOD {
                assert_eq!(
                    ingress_answer(&sock, server.port()),
                    Some(Status::Busy as u8)
                );
            }
            let line = wait_for_log(&["ingress: 3 connections open, the limit; refused one"]);
            assert!(line.contains("WARN"), "{line}");
            // Logged, but not once per refused connection.
            let lines = log_lines(&["connections open, the limit"]).len();
            assert!(
                (1..=10).contains(&lines),
                "{lines} lines for {FLOOD} refusals"
            );

            // The held connections still relay; closing one gives its slot back.
            still_relay(&mut held);
            drop(held.pop());
            eventually("a slot freed by a closed connection", || {
                ingress_answer(&sock, server.port()) == Some(Status::Connected as u8)
            });
            net.stop();
        },
    );
}

#[test]
fn egress_forwarders_reset_connections_over_their_cap_at_once() {
    in_netns(
        "limits::egress_forwarders_reset_connections_over_their_cap_at_once",
        || {
            capture_logs();
            let dir = tempfile::tempdir().unwrap();
            let server = echo_server();
            let host = FakeHost::start(dir.path(), move |_| Some(server));
            let egress = format!("- {{host: capped.test, port: {PORT}}}\n");
            let cfg = config(dir.path(), &host.path, vec![], &egress);
            let limits = EnclaveLimits {
                egress_max_connections: 2,
                ..EnclaveLimits::default()
            };
            let net = EnclaveNetwork::start_with_limits(cfg, limits).unwrap();
            let to = alias(2, PORT);
            // Two connections relayed to the end (a round trip each) hold both slots.
            let mut held: Vec<TcpStream> = (0..2)
                .map(|i| {
                    let mut s = TcpStream::connect(to).unwrap();
                    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    s.write_all(&[i]).unwrap();
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).unwrap();
                    assert_eq!(b, [i]);
                    s
                })
                .collect();
            assert_eq!(host.next(), name_req("capped.test", PORT));
            assert_eq!(host.next(), name_req("capped.test", PORT));

            // Over the cap: reset at once, never sent to the host.
            for _ in 0..20 {
                assert_reset(to);
            }
            let line = wait_for_log(&["egress: 2 connections open, the limit; refused one to"]);
            assert!(
                line.contains("WARN") && line.contains("capped.test"),
                "{line}"
            );
            assert!(
                host.requests.try_recv().is_err(),
                "a refused connection reached the host"
            );

            // The held ones still relay; closing one gives its slot back.
            still_relay(&mut held);
            drop(held.pop());
            eventually("a slot freed by a closed connection", || {
                TcpStream::connect(to)
                    .ok()
                    .and_then(|s| round_trip(s, b"again").ok())
                    .is_some_and(|got| got == b"again")
            });
            net.stop();
        },
    );
}

fn wildcard_config(dir: &Path, host: &Path) -> EnclaveNetworkConfig {
    config(
        dir,
        host,
        vec![],
        &format!(
            "- {{host: exact.test, port: {PORT}}}\n- {{host: \"*.wild.test\", port: {PORT}}}\n"
        ),
    )
}

fn resolve(name: &str) -> Ipv4Addr {
    let r = dns_query(DNS, name, A);
    assert_eq!(r.rcode, NOERROR, "{name}");
    r.a.unwrap_or_else(|| panic!("{name}: no address"))
}

/// Whether something listens on `alias` (a connection, which counts as a use of the alias).
fn listening(alias: Ipv4Addr) -> bool {
    TcpStream::connect((alias, PORT)).is_ok()
}

#[test]
fn wildcard_aliases_are_bounded_and_a_full_table_is_refused() {
    in_netns(
        "limits::wildcard_aliases_are_bounded_and_a_full_table_is_refused",
        || {
            capture_logs();
            let dir = tempfile::tempdir().unwrap();
            let server = echo_server();
            let host = FakeHost::start(dir.path(), move |_| Some(server));
            // The default idle time (minutes): nothing expires while the test runs.
            let net = EnclaveNetwork::start(wildcard_config(dir.path(), &host.path)).unwrap();
            assert_eq!(resolve("exact.test"), Ipv4Addr::new(127, 0, 0, 2));
            // The other 252 aliases of 127.0.0.2-254 go to the first 252 wildcard names.
            let mut given = std::collections::BTreeSet::new();
            for i in 0..252 {
                let alias = resolve(&format!("n{i}.wild.test"));
                assert_eq!(alias.octets()[..3], [127, 0, 0], "{alias}");
                assert!((3..=254).contains(&alias.octets()[3]), "{alias}");
                assert!(given.insert(alias), "{alias} given twice");
            }
            // Full: a clear refusal, logged, and the server goes on answering.
            for _ in 0..3 {
                assert_eq!(dns_query(DNS, "more.wild.test", A).rcode, REFUSED);
            }
            wait_for_log(&[
            "no loopback alias left for more.wild.test: all 253 are held (1 by exact names, 252 \
             by wildcard names",
            "REFUSED",
        ]);
            assert_eq!(resolve("exact.test"), Ipv4Addr::new(127, 0, 0, 2));
            let first = resolve("n0.wild.test");
            assert!(given.contains(&first));
            assert_eq!(dns_query(DNS, "not.allowed", A).rcode, NXDOMAIN);
            // A wildcard alias works like any other.
            let got = round_trip(TcpStream::connect((first, PORT)).unwrap(), b"wild").unwrap();
            assert_eq!(got, b"wild");
            assert_eq!(host.next(), name_req("n0.wild.test", PORT));
            net.stop();
        },
    );
}

#[test]
fn wildcard_aliases_are_freed_when_unused() {
    in_netns("limits::wildcard_aliases_are_freed_when_unused", || {
        capture_logs();
        let dir = tempfile::tempdir().unwrap();
        let server = echo_server();
        let host = FakeHost::start(dir.path(), move |_| Some(server));
        let limits = EnclaveLimits {
            alias_idle: Duration::from_millis(500),
            ..EnclaveLimits::default()
        };
        let net =
            EnclaveNetwork::start_with_limits(wildcard_config(dir.path(), &host.path), limits)
                .unwrap();
        let exact = resolve("exact.test");
        let kept = resolve("kept.wild.test");
        let idle = resolve("idle.wild.test");
        assert_eq!(
            (exact.octets()[3], kept.octets()[3], idle.octets()[3]),
            (2, 3, 4)
        );

        // A connection through `kept`, left open.
        let mut conn = TcpStream::connect((kept, PORT)).unwrap();
        conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        conn.write_all(b"1").unwrap();
        let mut b = [0u8; 1];
        conn.read_exact(&mut b).unwrap();
        assert_eq!(host.next(), name_req("kept.wild.test", PORT));

        // `idle` (asked for after `kept`, no connection) is taken back: its listener closes.
        // (Watched in the log: probing the listener would be a connection, which is a use.)
        wait_for_log(&["idle.wild.test unused for", "127.0.0.4 freed"]);
        assert!(!listening(idle));
        // `kept` is past its idle time too, but its connection keeps it.
        assert!(listening(kept));
        conn.write_all(b"2").unwrap();
        conn.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"2");
        assert_eq!(resolve("kept.wild.test"), kept);
        assert!(log_lines(&["kept.wild.test unused for"]).is_empty());
        // A freed alias is reused last: a new name gets one never handed out before.
        assert_eq!(resolve("new.wild.test").octets()[3], 5);
        // An expired name asked for again gets an alias again.
        let again = resolve("idle.wild.test");
        assert!(listening(again));

        // Once its connections are closed, `kept` goes too; the exact name never does.
        drop(conn);
        wait_for_log(&["kept.wild.test unused for", "127.0.0.3 freed"]);
        assert!(!listening(kept));
        assert_eq!(resolve("exact.test"), exact);
        assert!(listening(exact));
        net.stop();
    });
}
