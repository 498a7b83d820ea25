//! The egress proxy: allow-list by name, by resolved address and by cidr, counted per rule;
//! malformed headers; floods of silent connections.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::time::Duration;

use super::*;

/// Sends `payload` after a `Connected` answer and reads the echo.
fn echo_through(mut s: std::os::unix::net::UnixStream, payload: &[u8]) {
    s.write_all(payload).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), payload);
}

fn refused(path: &Path, request: &Request, status: Status) {
    let (got, mut s) = egress_request(path, request);
    assert_eq!(got, byte(status), "{request}");
    assert_eq!(
        read_all(&mut s),
        b"",
        "{request}: not closed after the refusal"
    );
}

#[test]
fn egress_allow_list_by_name_resolved_address_and_cidr() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (echo, _echo) = tcp_server(LOOPBACK_5, Behaviour::Echo);
    let p = echo.port();
    let yaml = format!(
        "egress:
  mode: transparent
  allow:
    - {{host: db.test, port: {p}}}
    - {{host: \"*.svc.test\", port: {p}}}
    - {{host: nocidr.test, port: {p}}}
    - {{host: mixed.test, port: {p}}}
    - {{host: pub.test, port: {p}}}
    - {{cidr: 127.0.0.5/32, port: {p}}}
"
    );
    let hosts = [
        ("db.test", "127.0.0.5"),
        ("api.svc.test", "127.0.0.5"),
        ("nocidr.test", "127.0.0.6"),
        ("mixed.test", "127.0.0.6"),
        ("mixed.test", "127.0.0.5"),
        // TEST-NET-free public address: allowed by the name alone; whether it answers is the
        // network's business.
        ("pub.test", "1.1.1.1"),
    ];
    let limits = Limits {
        connect_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let (proxies, path) = egress_proxies(dir.path(), &yaml, &hosts, limits);
    let listen = format!("listen=unix:{}", path.display());

    // Allowed: name + override to a loopback address a cidr rule lists.
    for req in [
        name("db.test", p),
        name("api.svc.test", p),
        addr("127.0.0.5", p),
    ] {
        let (got, s) = egress_request(&path, &req);
        assert_eq!(got, byte(Status::Connected), "{req}");
        echo_through(s, format!("through {req}").as_bytes());
    }
    // The unlisted address of a name is skipped, the listed one used.
    let (got, s) = egress_request(&path, &name("mixed.test", p));
    assert_eq!(got, byte(Status::Connected));
    echo_through(s, b"mixed");

    // Payload sent right behind the header, before the answer, is delivered.
    let mut early = name("db.test", p).to_bytes();
    early.extend_from_slice(b"eager");
    let mut s = egress_client(&path, &early);
    s.shutdown(Shutdown::Write).unwrap();
    let got = read_all(&mut s);
    assert_eq!(got, [&[Status::Connected as u8][..], b"eager"].concat());

    // Refused, each with its reason in the log.
    let cases = [
        (
            name("other.test", p),
            Status::NotAllowed,
            format!("no egress rule allows other.test:{p}"),
        ),
        (
            name("db.test", p + 1),
            Status::NotAllowed,
            format!("no egress rule allows db.test:{}", p + 1),
        ),
        (
            name("nocidr.test", p),
            Status::ResolveFailed,
            format!(
                "nocidr.test resolved to 127.0.0.6, a loopback address (127.0.0.0/8), which \
                 needs allow_special: true on the rule or a cidr rule for port {p} inside \
                 127.0.0.0/8"
            ),
        ),
        (
            addr("127.0.0.6", p),
            Status::NotAllowed,
            format!("no egress cidr rule allows 127.0.0.6:{p}"),
        ),
        (
            addr("127.0.0.5", p + 1),
            Status::NotAllowed,
            format!("no egress cidr rule allows 127.0.0.5:{}", p + 1),
        ),
        (
            Request::Ingress { port: p },
            Status::NotAllowed,
            "an ingress request sent to the egress proxy".to_string(),
        ),
    ];
    for (req, status, reason) in cases {
        refused(&path, &req, status);
        let line = wait_for_log(&["egress refused", &listen, &reason]);
        assert!(line.contains(&format!("request={req}")), "{line}");
    }

    // Counted by the rule each request fell under; what no rule holds, as unlisted.
    let counts: std::collections::BTreeMap<String, (u64, u64)> = proxies
        .stats()
        .rules
        .iter()
        .map(|(rule, s)| (rule.clone(), (s.read().opened, s.read().refused)))
        .collect();
    let want: std::collections::BTreeMap<String, (u64, u64)> = [
        (format!("egress host db.test:{p}"), (2, 0)),
        (format!("egress host *.svc.test:{p}"), (1, 0)),
        (format!("egress host nocidr.test:{p}"), (0, 1)),
        (format!("egress host mixed.test:{p}"), (1, 0)),
        (format!("egress host pub.test:{p}"), (0, 0)),
        (format!("egress cidr 127.0.0.5/32:{p}"), (1, 0)),
        ("egress unlisted".to_owned(), (0, 5)),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want);

    // A public address passes the allow-list: it is connected or fails to connect, but is not
    // refused.
    let (got, _s) = egress_request(&path, &name("pub.test", p));
    assert!(
        got == byte(Status::Connected) || got == byte(Status::ConnectFailed),
        "{got:?}"
    );
}

#[test]
fn egress_malformed_headers_get_an_answer_a_close_and_a_log_line() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (_proxies, path) = egress_proxies(
        dir.path(),
        "egress:\n  - {host: db.test, port: 80}\n",
        &[],
        Limits::default(),
    );
    let listen = format!("listen=unix:{}", path.display());
    let malformed = Status::Malformed;
    let cases: [(&[u8], Status, &str); 8] = [
        (
            &[2, 1, 0, 80],
            Status::UnsupportedVersion,
            "unsupported proxy header version 2",
        ),
        (&[1, 9, 0, 80], malformed, "unknown proxy request kind 9"),
        (&[1, 1, 0, 0], malformed, "proxy request for port 0"),
        (&[1, 2, 0, 80, 0], malformed, "invalid host: \"\""),
        (
            &[1, 2, 0, 80, 3, b'A', b'.', b'b'],
            malformed,
            "invalid host: \"A.b\"",
        ),
        (
            &[1, 2, 0, 80, 3, b'a', b'/', b'b'],
            malformed,
            "invalid host: \"a/b\"",
        ),
        (
            &[1, 2, 0, 80, 2, 0xff, 0xfe],
            malformed,
            "invalid host: \"\u{fffd}\u{fffd}\"",
        ),
        (&[1, 3, 0, 80, 5], malformed, "address family 5"),
    ];
    for (bytes, status, reason) in cases {
        let mut s = egress_client(&path, bytes);
        let mut reply = [0u8; 2];
        assert_eq!(s.read(&mut reply).unwrap(), 1, "{bytes:?}");
        assert_eq!(reply[0], status as u8, "{bytes:?}");
        assert_eq!(read_all(&mut s), b"", "{bytes:?}");
        wait_for_log(&["malformed egress request refused", &listen, reason]);
    }
    // A header cut short by the peer: no answer, just the close.
    let mut s = egress_client(&path, &[1, 2, 0, 80, 10, b'a']);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"");
    wait_for_log(&["egress connection closed", &listen, "closed after 6 bytes"]);
}

#[test]
fn egress_flood_of_silent_connections_is_shed_and_the_proxy_keeps_serving() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (echo, _echo) = tcp_server(LOOPBACK_5, Behaviour::Echo);
    let p = echo.port();
    let limits = Limits {
        max_connections: 20,
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (_proxies, path) = egress_proxies(
        dir.path(),
        &format!(
            "egress:\n  - {{host: db.test, port: {p}}}\n  - {{cidr: 127.0.0.5/32, port: {p}}}\n"
        ),
        &[("db.test", "127.0.0.5")],
        limits,
    );
    let listen = format!("listen=unix:{}", path.display());
    const FLOOD: usize = 200;
    let mut flood: Vec<_> = (0..FLOOD).map(|_| egress_client(&path, b"")).collect();
    // Every one is closed without an answer: the extra ones at once, the others when their
    // header time is up.
    for s in &mut flood {
        assert_eq!(read_all(s), b"");
    }
    let shed = wait_for_log(&["connection limit reached", &listen]);
    assert!(shed.contains("max_connections=20"), "{shed}");
    wait_for_log(&["no egress request header in time", &listen]);
    // Rate-limited: far fewer lines than shed connections.
    let lines = log_lines(&["connection limit reached", &listen]).len();
    assert!(
        (1..=40).contains(&lines),
        "{lines} lines for {} shed connections",
        FLOOD - 20
    );

    let (got, s) = egress_request(&path, &name("db.test", p));
    assert_eq!(got, byte(Status::Connected));
    echo_through(s, b"still serving");
}
