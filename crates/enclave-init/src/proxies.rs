//! The enclave's network: the ingress forwarder, the egress forwarders, DNS for allow-listed
//! names and, in transparent mode, the netfilter redirect (all in `enclave-proxy`), started
//! from the measured spec before any service.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::OnceLock;

use enclave_proto::ports;
use enclave_proxy::enclave::{
    EnclaveNetwork, EnclaveNetworkConfig, HostAddr, ListenAddr, Netfilter,
};
use enclave_spec::EnclaveSpec;

use crate::error::{Error, Result};

/// The vsock device, for the local CID ioctl.
const VSOCK_DEVICE: &str = "/dev/vsock";

/// The running network: it lives as long as PID 1 (its thread runs the forwarders).
static NETWORK: OnceLock<EnclaveNetwork> = OnceLock::new();

/// Starts the network the spec asks for, with the measured config's netfilter backend for
/// transparent egress; `false` when it asks for none.
pub fn start(spec: &EnclaveSpec, parent_cid: u32, netfilter: Option<Netfilter>) -> Result<bool> {
    if spec.ingress.is_empty() && spec.egress.is_empty() {
        return Ok(false);
    }
    // The parent's egress port is this enclave's own (one proxy per enclave on the parent).
    let egress_port = if spec.egress.is_empty() {
        0
    } else {
        ports::egress(own_cid()?)
    };
    route_tracing_to_console();
    let config = EnclaveNetworkConfig {
        ingress: spec.ingress.clone(),
        egress: spec.egress.clone(),
        ingress_listen: ListenAddr::Vsock {
            port: ports::INGRESS,
        },
        host: HostAddr::Vsock {
            cid: parent_cid,
            port: egress_port,
        },
        etc_dir: PathBuf::from("/etc"),
        dns_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 53)),
        transparent_port: enclave_proxy::enclave::DEFAULT_TRANSPARENT_PORT,
        netfilter,
    };
    let network = EnclaveNetwork::start(config).map_err(|e| Error::Network(e.to_string()))?;
    // Boot runs once, so the cell is empty here.
    let _ = NETWORK.set(network);
    Ok(true)
}

/// This enclave's vsock CID, from the vsock device.
fn own_cid() -> Result<u32> {
    let dev = std::fs::File::open(VSOCK_DEVICE).map_err(|e| Error::io(VSOCK_DEVICE, e))?;
    crate::vsock_cid_unsafe::vsock_local_cid(dev.as_fd())
        .map_err(|e| Error::sys("reading the enclave's vsock CID", e))
}

/// enclave-proxy logs with `tracing`; its events become console lines like init's own.
fn route_tracing_to_console() {
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_writer(|| ConsoleLine(Vec::new()))
        .try_init();
}

/// One formatted event, written to the console as lines when dropped.
struct ConsoleLine(Vec<u8>);

impl Write for ConsoleLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        for line in String::from_utf8_lossy(&self.0).lines() {
            crate::console::init_line(line);
        }
    }
}
