//! The parent's side of the boot heartbeat on the hybrid vsock socket: the guest's connection
//! to port 9000 arrives on `<uds>_9000`; read 0xB7, echo it.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use enclave_proto::init::HEARTBEAT_BYTE;

use crate::error::{EngineError, Result};

/// A bound heartbeat socket; removed on drop.
pub struct HeartbeatListener {
    listener: UnixListener,
    path: PathBuf,
}

impl HeartbeatListener {
    /// Binds `path` (replacing a stale socket).
    pub fn bind(path: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(|e| EngineError::io(path, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| EngineError::io(path, e))?;
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    /// Answers a waiting heartbeat, if any: `Ok(true)` once one was exchanged.
    pub fn poll(&self) -> Result<bool> {
        let mut stream = match self.listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(EngineError::io(&self.path, e)),
        };
        let io = |e| EngineError::io(&self.path, e);
        stream.set_nonblocking(false).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(io)?;
        let mut byte = [0u8; 1];
        if stream.read_exact(&mut byte).is_err() || byte[0] != HEARTBEAT_BYTE {
            tracing::warn!("a connection to the heartbeat port sent no heartbeat byte");
            return Ok(false);
        }
        stream.write_all(&[HEARTBEAT_BYTE]).map_err(io)?;
        Ok(true)
    }
}

impl Drop for HeartbeatListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_heartbeat_is_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vsock.sock_9000");
        let l = HeartbeatListener::bind(&p).unwrap();
        assert!(!l.poll().unwrap());
        let mut c = UnixStream::connect(&p).unwrap();
        c.write_all(&[HEARTBEAT_BYTE]).unwrap();
        assert!(l.poll().unwrap());
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(b[0], HEARTBEAT_BYTE);
        drop(l);
        assert!(!p.exists());
    }
}
