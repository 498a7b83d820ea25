//! The emulated NSM's socket server, on the host: one framed NSM API request per connection,
//! answered by one [`EmulatedDevice`]. The supervisor of an emulated enclave binds it where the
//! enclave's [`crate::EmulatedNsm`] connects (the hybrid vsock socket's `<uds>_9001`); that
//! socket is per enclave, so every request comes from the enclave the device was made for.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::EmulatedDevice;
use crate::{read_request, write_response, ErrorCode, Response};

/// How long one client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running emulated NSM server; stopped and its socket removed on drop.
#[derive(Debug)]
pub struct NsmServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NsmServer {
    /// Binds `path` (replacing a stale socket) and serves `device` on a thread.
    pub fn start(path: &Path, device: EmulatedDevice) -> io::Result<NsmServer> {
        Self::start_counting(path, device, Arc::new(AtomicU64::new(0)))
    }

    /// As [`start`](Self::start), adding one to `documents` for every attestation document
    /// signed (the supervisor's metrics count them across boots).
    pub fn start_counting(
        path: &Path,
        mut device: EmulatedDevice,
        documents: Arc<AtomicU64>,
    ) -> io::Result<NsmServer> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
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
                    let response = match read_request(&mut conn) {
                        Ok(Some(request)) => device.handle(request),
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::warn!("emulated NSM: bad request: {e}");
                            Response::Error(ErrorCode::InvalidOperation)
                        }
                    };
                    if matches!(response, Response::Attestation { .. }) {
                        documents.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Err(e) = write_response(&mut conn, &response) {
                        tracing::warn!("emulated NSM: answering: {e}");
                    }
                }
            })?;
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
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
