//! The special ranges at the host egress proxy, with real sockets: a broad rule does not reach
//! the host's loopback or the metadata service, whether asked by address or through a name; a
//! rule inside the range, or `allow_special: true`, does. The listeners stand where the proxy
//! would connect, and a refusal must leave them untouched: it comes before any connect.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::netns::{in_netns, run};
use super::*;

/// A listener nobody serves: the test looks at its accept queue.
struct Trap(TcpListener);

impl Trap {
    fn bind(addr: SocketAddr) -> Trap {
        let l = TcpListener::bind(addr).unwrap();
        l.set_nonblocking(true).unwrap();
        Trap(l)
    }

    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }

    /// Nothing ever connected.
    fn assert_untouched(&self, what: &str) {
        match self.0.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("{what}: the proxy connected (from {peer})"),
            Err(e) => panic!("{what}: {e}"),
        }
    }

    /// Waits for the proxy's connection and proves the path: bytes from here reach `client`.
    fn assert_reached(&self, mut client: std::os::unix::net::UnixStream, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        let mut server = loop {
            match self.0.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{what}: no connection at the destination: {e}"),
            }
        };
        server.set_nonblocking(false).unwrap();
        server.write_all(what.as_bytes()).unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        assert_eq!(got, what.as_bytes());
    }
}

/// An egress proxy for `rules` (transparent mode) in its own directory under `dir`.
fn proxy_for(
    dir: &Path,
    tag: &str,
    rules: &[String],
    hosts: &[(&str, &str)],
) -> (HostProxies, PathBuf) {
    let sub = dir.join(tag);
    std::fs::create_dir(&sub).unwrap();
    let mut yaml = "egress:\n  mode: transparent\n  allow:\n".to_owned();
    for r in rules {
        yaml.push_str(&format!("    - {r}\n"));
    }
    // Long enough that a refusal can never be a timed-out connect in disguise.
    let limits = Limits {
        connect_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    egress_proxies(&sub, &yaml, hosts, limits)
}

fn status_of(path: &Path, req: &Request) -> (Option<u8>, std::os::unix::net::UnixStream) {
    egress_request(path, req)
}

#[test]
fn a_broad_rule_does_not_reach_loopback_a_rule_inside_it_or_allow_special_does() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let trap = Trap::bind(SocketAddr::new(LOCALHOST, 0));
    let p = trap.port();
    let hosts = [("local.test", "127.0.0.1")];

    let broad = [
        format!("{{cidr: 0.0.0.0/0, port: {p}}}"),
        format!("{{cidr: \"::/0\", port: {p}}}"),
        format!("{{host: local.test, port: {p}}}"),
    ];
    let (_broad, path) = proxy_for(dir.path(), "broad", &broad, &hosts);
    for (req, status) in [
        (addr("127.0.0.1", p), Status::NotAllowed),
        (addr("::ffff:127.0.0.1", p), Status::NotAllowed),
        (name("local.test", p), Status::ResolveFailed),
    ] {
        let (got, mut s) = status_of(&path, &req);
        assert_eq!(got, byte(status), "{req}");
        assert_eq!(read_all(&mut s), b"", "{req}");
        trap.assert_untouched(&req.to_string());
    }
    wait_for_log(&[
        "egress refused",
        &format!(
            "127.0.0.1:{p} is a loopback address (127.0.0.0/8): a cidr rule for port {p} reaches \
             it only if its prefix lies inside 127.0.0.0/8 or it says allow_special: true"
        ),
    ]);
    wait_for_log(&[
        "egress refused",
        "local.test resolved to 127.0.0.1, a loopback address (127.0.0.0/8), which needs \
         allow_special: true on the rule",
    ]);

    // A rule inside loopback reaches it; so does the broad rule with allow_special.
    let inside = [format!("{{cidr: 127.0.0.1/32, port: {p}}}")];
    let (_inside, path) = proxy_for(dir.path(), "inside", &inside, &hosts);
    let (got, s) = status_of(&path, &addr("127.0.0.1", p));
    assert_eq!(got, byte(Status::Connected));
    trap.assert_reached(s, "by 127.0.0.1/32");

    let special = [
        format!("{{cidr: 0.0.0.0/0, port: {p}, allow_special: true}}"),
        format!("{{host: local.test, port: {p}, allow_special: true}}"),
    ];
    let (_special, path) = proxy_for(dir.path(), "special", &special, &hosts);
    for req in [addr("127.0.0.1", p), name("local.test", p)] {
        let (got, s) = status_of(&path, &req);
        assert_eq!(got, byte(Status::Connected), "{req}");
        trap.assert_reached(s, &format!("by allow_special: {req}"));
    }
}

/// Waits until TCP connections to `ip` work, through a listener of its own on another port: a
/// new IPv6 address may refuse connections for a moment after `ip addr add` returned (seen as
/// "network unreachable" now and then).
fn wait_connectable(ip: IpAddr) {
    let probe = TcpListener::bind((ip, 0)).unwrap();
    let addr = probe.local_addr().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while let Err(e) = std::net::TcpStream::connect(addr) {
        assert!(Instant::now() < deadline, "cannot connect to {addr}: {e}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const METADATA_V4: &str = "169.254.169.254";
const METADATA_V6: &str = "fd00:ec2::254";

#[test]
fn the_metadata_service_is_refused_before_any_connect() {
    // The metadata addresses must be local for a listener to stand there: a namespace of our
    // own, so the host's real metadata service (if any) is never touched. The lock is held
    // around the child process too: its pipes are descriptors of this process.
    let _g = shared();
    in_netns(
        "special::the_metadata_service_is_refused_before_any_connect",
        || {
            run(Command::new("ip").args(["addr", "add", "169.254.169.254/32", "dev", "lo"]));
            run(Command::new("ip").args([
                "-6",
                "addr",
                "add",
                "fd00:ec2::254/128",
                "dev",
                "lo",
                "nodad",
            ]));
            for ip in [METADATA_V4, METADATA_V6] {
                wait_connectable(ip.parse().unwrap());
            }
            capture_logs();
            let dir = tempfile::tempdir().unwrap();
            let v4 = Trap::bind(SocketAddr::new(METADATA_V4.parse().unwrap(), 80));
            let v6 = Trap::bind(SocketAddr::new(METADATA_V6.parse().unwrap(), 80));
            let hosts = [("meta.test", METADATA_V4), ("meta6.test", METADATA_V6)];

            let broad = [
                "{cidr: 0.0.0.0/0, port: 80}".to_owned(),
                "{cidr: \"::/0\", port: 80}".to_owned(),
                // Link-local and unique-local as a whole: the metadata entries are more specific.
                "{cidr: 169.254.0.0/16, port: 80}".to_owned(),
                "{cidr: \"fc00::/7\", port: 80}".to_owned(),
                "{host: \"*.test\", port: 80}".to_owned(),
            ];
            let (_broad, path) = proxy_for(dir.path(), "broad", &broad, &hosts);
            for (req, status) in [
                (addr(METADATA_V4, 80), Status::NotAllowed),
                (addr(METADATA_V6, 80), Status::NotAllowed),
                (addr("::ffff:169.254.169.254", 80), Status::NotAllowed),
                (name("meta.test", 80), Status::ResolveFailed),
                (name("meta6.test", 80), Status::ResolveFailed),
            ] {
                let (got, mut s) = status_of(&path, &req);
                assert_eq!(got, byte(status), "{req}");
                assert_eq!(read_all(&mut s), b"", "{req}");
                v4.assert_untouched(&req.to_string());
                v6.assert_untouched(&req.to_string());
            }
            wait_for_log(&[
                "egress refused",
                "169.254.169.254:80 is a cloud metadata service address (169.254.169.254/32)",
            ]);

            // Only a rule for the service itself, or allow_special, reaches it.
            let own = [
                "{cidr: 169.254.169.254/32, port: 80}".to_owned(),
                "{cidr: \"fd00:ec2::254/128\", port: 80}".to_owned(),
            ];
            let (_own, path) = proxy_for(dir.path(), "own", &own, &hosts);
            let (got, s) = status_of(&path, &addr(METADATA_V4, 80));
            assert_eq!(got, byte(Status::Connected));
            v4.assert_reached(s, "v4 by its own rule");
            let (got, s) = status_of(&path, &addr(METADATA_V6, 80));
            assert_eq!(got, byte(Status::Connected));
            v6.assert_reached(s, "v6 by its own rule");

            let special = [
                "{cidr: 0.0.0.0/0, port: 80, allow_special: true}".to_owned(),
                "{host: meta6.test, port: 80, allow_special: true}".to_owned(),
            ];
            let (_special, path) = proxy_for(dir.path(), "special", &special, &hosts);
            let (got, s) = status_of(&path, &addr(METADATA_V4, 80));
            assert_eq!(got, byte(Status::Connected));
            v4.assert_reached(s, "v4 by allow_special");
            let (got, s) = status_of(&path, &name("meta6.test", 80));
            assert_eq!(got, byte(Status::Connected));
            v6.assert_reached(s, "v6 through a name with allow_special");
        },
    );
}
