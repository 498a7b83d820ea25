//! The host proxies with real sockets: ingress through an enclave-side stand-in (a Unix listener
//! that reads the header and connects to a local TCP server), egress through the allow-list to
//! local servers, the special ranges (loopback, the metadata service), and the standalone binary
//! as a real process.

mod logs;
mod netns;
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use enclave_proxy::header::{Request, Status};
use enclave_proxy::host::{
    EgressConfig, EgressListen, EnclaveConnector, HostProxies, HostProxyConfig, Limits, Publish,
};
use logs::*;
use support::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOOPBACK_5: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));

fn publish(enclave_port: u16) -> Publish {
    Publish {
        host_ip: LOCALHOST,
        host_port: 0,
        enclave_port,
    }
}

fn ingress_proxies(enclave: &Path, enclave_ports: &[u16], limits: Limits) -> HostProxies {
    let config = HostProxyConfig {
        publish: enclave_ports.iter().map(|&p| publish(p)).collect(),
        enclave: EnclaveConnector::Unix(enclave.to_owned()),
        egress: None,
    };
    HostProxies::start_with_limits(config, limits).unwrap()
}

/// An echo round trip through `addr`.
fn ping(addr: SocketAddr, msg: &[u8]) {
    let mut c = tcp_client(addr);
    c.write_all(msg).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut c), msg);
}

#[test]
fn ingress_relays_both_ways_and_keeps_half_close() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (echo, _echo) = tcp_server(LOCALHOST, Behaviour::Echo);
    let (summary, _summary) = tcp_server(LOCALHOST, Behaviour::Summary);
    let sock = dir.path().join("enclave.sock");
    let _enclave = enclave_stand_in(&sock, &[echo.port(), summary.port()]);
    let proxies = ingress_proxies(&sock, &[echo.port(), summary.port()], Limits::default());
    let [to_echo, to_summary] = proxies.ingress_addrs() else {
        panic!("{:?}", proxies.ingress_addrs())
    };

    // Full duplex: 4 MB out while the echo comes back.
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut c = tcp_client(*to_echo);
    let mut writer = c.try_clone().unwrap();
    let sent = data.clone();
    let w = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    assert_eq!(read_all(&mut c), data);
    w.join().unwrap();

    // The server answers only after our EOF reached it, on the still-open way back.
    let mut c = tcp_client(*to_summary);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        String::from_utf8(read_all(&mut c)).unwrap(),
        summary_of(&data)
    );
    proxies.stop();
}

#[test]
fn ingress_refusals_reset_the_client_and_say_why() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (echo, _echo) = tcp_server(LOCALHOST, Behaviour::Echo);
    let sock = dir.path().join("enclave.sock");
    let _enclave = enclave_stand_in(&sock, &[echo.port()]);
    // An enclave port the enclave does not list, next to one it does.
    let unlisted = if echo.port() == 1 { 2 } else { echo.port() - 1 };
    let proxies = ingress_proxies(&sock, &[unlisted, echo.port()], Limits::default());
    let mut c = tcp_client(proxies.ingress_addrs()[0]);
    let _ = c.write_all(b"hello");
    assert_eq!(read_all(&mut c), b"");
    wait_for_log(&[
        "ingress connection refused",
        &format!("refused ingress to enclave port {unlisted}: not allowed by the allow-list"),
    ]);
    ping(proxies.ingress_addrs()[1], b"still serving");

    // No enclave at all.
    let missing = dir.path().join("no-enclave.sock");
    let orphan = ingress_proxies(&missing, &[echo.port()], Limits::default());
    let mut c = tcp_client(orphan.ingress_addrs()[0]);
    assert_eq!(read_all(&mut c), b"");
    wait_for_log(&[
        "ingress connection refused",
        &format!("cannot connect to unix:{}", missing.display()),
    ]);
}

#[test]
fn ingress_far_side_closing_early_closes_the_client() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (early, _early) = tcp_server(LOCALHOST, Behaviour::CloseEarly);
    let (echo, _echo) = tcp_server(LOCALHOST, Behaviour::Echo);
    let sock = dir.path().join("enclave.sock");
    let _enclave = enclave_stand_in(&sock, &[early.port(), echo.port()]);
    let proxies = ingress_proxies(&sock, &[early.port(), echo.port()], Limits::default());
    for _ in 0..3 {
        // The client keeps its write half open: the server's close alone must end it.
        let mut c = tcp_client(proxies.ingress_addrs()[0]);
        c.write_all(b"hello").unwrap();
        assert_eq!(read_all(&mut c), b"bye");
    }
    ping(proxies.ingress_addrs()[1], b"after");
}

#[test]
fn a_peer_that_never_reads_is_not_buffered_and_blocks_nobody() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (silent, _silent) = tcp_server(LOCALHOST, Behaviour::Silent);
    let (echo, _echo) = tcp_server(LOCALHOST, Behaviour::Echo);
    let sock = dir.path().join("enclave.sock");
    let _enclave = enclave_stand_in(&sock, &[silent.port(), echo.port()]);
    let proxies = ingress_proxies(&sock, &[silent.port(), echo.port()], Limits::default());

    let mut c = TcpStream::connect(proxies.ingress_addrs()[0]).unwrap();
    // "Stalled" = no progress for a while; judging too early only makes this check weaker.
    c.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let attempt = 512usize << 20;
    let mut written = 0usize;
    while written < attempt {
        match c.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
    }
    // What is in flight is the kernel's socket buffers on each hop (tens of MiB at most with
    // autotuning) plus one 64 KiB relay buffer per direction, not what the client sent.
    assert!(
        written < 160 << 20,
        "{written} bytes accepted by a peer that never reads"
    );

    // Meanwhile, other connections through the same proxy and stand-in work.
    for i in 0..5 {
        ping(proxies.ingress_addrs()[1], format!("ping {i}").as_bytes());
    }
    drop(c);
}

#[test]
fn ingress_connection_limit_closes_extra_connections_at_once() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (echo, _echo) = tcp_server(LOCALHOST, Behaviour::Echo);
    let sock = dir.path().join("enclave.sock");
    let _enclave = enclave_stand_in(&sock, &[echo.port()]);
    let limits = Limits {
        max_connections: 3,
        ..Limits::default()
    };
    let proxies = ingress_proxies(&sock, &[echo.port()], limits);
    let addr = proxies.ingress_addrs()[0];
    let mut held: Vec<TcpStream> = (0..3).map(|_| tcp_client(addr)).collect();
    for c in &mut held {
        // A round trip proves the connection holds a slot.
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
    }
    let mut extra = tcp_client(addr);
    let _ = extra.write_all(b"y");
    assert_eq!(read_all(&mut extra), b"");
    wait_for_log(&[
        "connection limit reached",
        "max_connections=3",
        &format!("listen={addr}"),
    ]);
    drop(held);
    // The slots come back once the relays have seen the close.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut c = tcp_client(addr);
        if c.write_all(b"z").is_ok()
            && c.shutdown(Shutdown::Write).is_ok()
            && read_all(&mut c) == b"z"
        {
            break;
        }
        assert!(Instant::now() < deadline, "slots never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn thousand_concurrent_connections_leave_no_descriptor_behind() {
    let _g = exclusive();
    capture_logs();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    const N: usize = 1000;
    // Six descriptors per connection live in this process: client, proxy (2), stand-in (2),
    // server.
    assert!(
        hard >= (6 * N + 500) as u64,
        "RLIMIT_NOFILE hard limit {hard} is too low"
    );
    let dir = tempfile::tempdir().unwrap();
    let before_everything = open_fds();
    {
        let (echo, _echo) = tcp_server(LOCALHOST, Behaviour::Echo);
        let sock = dir.path().join("enclave.sock");
        let _enclave = enclave_stand_in(&sock, &[echo.port()]);
        let proxies = ingress_proxies(&sock, &[echo.port()], Limits::default());
        let addr = proxies.ingress_addrs()[0];
        ping(addr, b"warm-up");
        let idle = settle(open_fds());
        let mut conns: Vec<TcpStream> = (0..N).map(|_| tcp_client(addr)).collect();
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(format!("conn {i:05}\n").as_bytes()).unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let mut line = [0u8; 11];
            c.read_exact(&mut line).unwrap();
            assert_eq!(line, format!("conn {i:05}\n").as_bytes());
        }
        // Every connection is open end to end at the same time.
        assert!(
            open_fds() >= idle + 6 * N,
            "{} open, idle {idle}",
            open_fds()
        );
        drop(conns);
        assert_eq!(
            settle_to(idle),
            idle,
            "descriptors leaked by closed connections"
        );
        proxies.stop();
    }
    assert_eq!(
        settle_to(before_everything),
        before_everything,
        "descriptors leaked by stopped proxies"
    );
}

/// Waits until the descriptor count stops changing.
fn settle(mut n: usize) -> usize {
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(20));
        let now = open_fds();
        if now == n {
            return n;
        }
        n = now;
    }
    n
}

/// Waits (up to [`PATIENCE`]) for the descriptor count to come down to `want`; returns it.
fn settle_to(want: usize) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let n = open_fds();
        if n <= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- egress ------------------------------------------------------------------------------------

fn egress_proxies(
    dir: &Path,
    yaml: &str,
    add_hosts: &[(&str, &str)],
    limits: Limits,
) -> (HostProxies, PathBuf) {
    let path = dir.join("egress.sock");
    let list = enclave_proxy::allow::AllowList::from_yaml(yaml).unwrap();
    let config = HostProxyConfig {
        publish: Vec::new(),
        enclave: EnclaveConnector::Unix(dir.join("unused")),
        egress: Some(EgressConfig {
            listen: EgressListen::Unix(path.clone()),
            policy: list.egress,
            add_hosts: add_hosts
                .iter()
                .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
                .collect(),
        }),
    };
    let proxies = HostProxies::start_with_limits(config, limits).unwrap();
    (proxies, path)
}

fn name(name: &str, port: u16) -> Request {
    Request::EgressName {
        name: name.into(),
        port,
    }
}

fn addr(ip: &str, port: u16) -> Request {
    Request::EgressAddr {
        addr: ip.parse().unwrap(),
        port,
    }
}

#[path = "host_proxies/binary.rs"]
mod binary;
#[path = "host_proxies/egress.rs"]
mod egress;
#[path = "host_proxies/enclave_cap.rs"]
mod enclave_cap;
#[path = "host_proxies/special.rs"]
mod special;
