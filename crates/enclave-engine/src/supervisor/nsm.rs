//! The emulated NSM on the parent's side of the hybrid vsock socket: the guest's connections to
//! port 9001 ([`enclave_proto::ports::NSM_EMULATION`]) arrive on `<uds>_9001`. The socket is
//! per enclave (vhost-device-vsock serves one guest), so every request comes from this enclave.
//! One framed NSM API request per connection, answered by an [`EmulatedDevice`] holding the
//! PCRs measured from the EIF this supervisor booted and signing with the host's emulation CA.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use enclave_attest::emulated::EmulatedDevice;
use enclave_proto::nsm;

use crate::error::{EngineError, Result};
use crate::state::{emulation_ca, measured_pcrs};

/// How long one client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the emulated NSM for one boot of `rec` on `path` (where the guest's connections to
/// the parent's port 9001 arrive). A CA that cannot be loaded is an error for the caller to
/// log; only `attest` needs it.
pub fn start_for(
    state_root: &Path,
    rec: &crate::state::EnclaveRecord,
    path: &Path,
) -> Result<NsmServer> {
    let ca = Arc::new(emulation_ca(state_root)?);
    let device = EmulatedDevice::new(ca, &rec.id, &measured_pcrs(&rec.measurements));
    NsmServer::start(path, device)
}

/// A running emulated NSM server; stopped and its socket removed on drop.
pub struct NsmServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NsmServer {
    /// Binds `path` (replacing a stale socket) and serves `device` on a thread.
    pub fn start(path: &Path, mut device: EmulatedDevice) -> Result<NsmServer> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|e| EngineError::io(path, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nsm".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let _ = conn.set_read_timeout(Some(CLIENT_TIMEOUT));
                    let _ = conn.set_write_timeout(Some(CLIENT_TIMEOUT));
                    let response = match nsm::read_request(&mut conn) {
                        Ok(Some(request)) => device.handle(request),
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!("emulated NSM: bad request: {e}");
                            nsm::Response::Error(nsm::ErrorCode::InvalidOperation)
                        }
                    };
                    if let Err(e) = nsm::write_response(&mut conn, &response) {
                        tracing::warn!("emulated NSM: answering: {e}");
                    }
                }
            })
            .map_err(|e| EngineError::io(path, e))?;
        Ok(NsmServer {
            path: path.to_owned(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for NsmServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use enclave_proto::nsm::{EmulatedNsm, Nsm};
    use enclave_proto::transport::Addr;

    #[test]
    fn the_enclave_gets_documents_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(emulation_ca(dir.path()).unwrap());
        let measurements: BTreeMap<String, String> = [
            ("HashAlgorithm", "Sha384 { ... }".to_owned()),
            ("PCR0", "11".repeat(48)),
            ("PCR1", "22".repeat(48)),
            ("PCR2", "33".repeat(48)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let pcrs = measured_pcrs(&measurements);
        assert_eq!(pcrs.len(), 3);
        let device = EmulatedDevice::new(ca.clone(), &"ef".repeat(32), &pcrs);
        let path = dir.path().join("vsock.sock_9001");
        let server = NsmServer::start(&path, device).unwrap();

        let client = EmulatedNsm::at(Addr::Unix(path.clone()));
        let doc = client.attest(None, Some(vec![5; 16]), None).unwrap();
        let expected = enclave_attest::Expectation::pcrs([(0, vec![0x11; 48])]).unwrap();
        let opts = enclave_attest::VerifyOptions {
            roots: enclave_attest::TrustRoot::from_pem_or_der(
                &std::fs::read(ca.root_path()).unwrap(),
            )
            .unwrap(),
            ..enclave_attest::VerifyOptions::new(enclave_attest::Policy::new(expected))
        };
        let report = enclave_attest::verify(&doc, &opts).unwrap();
        assert_eq!(report.pcrs[&0].0, vec![0x11; 48]);
        assert_eq!(report.nonce.unwrap().0, vec![5; 16]);
        assert_eq!(client.get_random().unwrap().len(), 256);
        assert_eq!(client.describe_pcr(2).unwrap(), (true, vec![0x33; 48]));

        // Garbage is answered with an error, and the server keeps serving.
        let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
        enclave_proto::wire::frame::write_frame(&mut raw, b"\xff\xff").unwrap();
        let frame = enclave_proto::wire::frame::read_frame(&mut raw)
            .unwrap()
            .unwrap();
        assert!(matches!(
            nsm::decode_response(frame.payload()).unwrap(),
            nsm::Response::Error(nsm::ErrorCode::InvalidOperation)
        ));
        assert!(client.get_random().is_ok());
        drop(server);
        assert!(!path.exists());
    }
}
