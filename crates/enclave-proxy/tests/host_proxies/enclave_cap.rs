//! A published port in front of the real enclave-side ingress forwarder at its connection cap:
//! the client over the cap is reset at once, and the host's log says the enclave was busy.

use std::io::{Read, Write};

use enclave_proxy::enclave::{
    EnclaveLimits, EnclaveNetwork, EnclaveNetworkConfig, HostAddr, ListenAddr,
};
use enclave_spec::{EgressSpec, IngressSpec};

use super::*;

#[test]
fn a_busy_enclave_resets_the_client_and_the_host_says_why() {
    let _g = shared();
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let (echo, _echo) = tcp_server(LOCALHOST, Behaviour::Echo);
    let sock = dir.path().join("ingress.sock");
    // Only ingress: the forwarder needs no privileges and no namespace.
    let config = EnclaveNetworkConfig {
        ingress: vec![IngressSpec {
            port: echo.port(),
            host_port: None,
            host_ip: None,
        }],
        egress: EgressSpec::default(),
        ingress_listen: ListenAddr::Unix(sock.clone()),
        host: HostAddr::Unix(dir.path().join("unused")),
        etc_dir: dir.path().join("etc"),
        dns_addr: "127.0.0.1:0".parse().unwrap(),
        transparent_port: 0,
        netfilter: None,
    };
    let limits = EnclaveLimits {
        ingress_max_connections: 2,
        ..EnclaveLimits::default()
    };
    let enclave = EnclaveNetwork::start_with_limits(config, limits).unwrap();
    let proxies = ingress_proxies(&sock, &[echo.port()], Limits::default());
    let addr = proxies.ingress_addrs()[0];

    let mut held: Vec<TcpStream> = (0..2).map(|_| tcp_client(addr)).collect();
    for c in &mut held {
        c.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
    }
    let mut extra = tcp_client(addr);
    let _ = extra.write_all(b"y");
    assert_eq!(read_all(&mut extra), b"");
    wait_for_log(&[
        "ingress connection refused",
        &format!(
            "refused ingress to enclave port {}: busy: at its connection limit",
            echo.port()
        ),
    ]);
    drop(held);
    enclave.stop();
}
