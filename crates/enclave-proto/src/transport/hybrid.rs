//! The hybrid vsock of vhost-device-vsock (and Firecracker): the guest's vsock is a Unix socket
//! on the host.
//!
//! Host to guest: connect to the Unix socket, send `CONNECT <port>\n`, read `OK <n>\n` (`n` is
//! the host-side port the device assigned), then the stream is the guest connection. Guest to
//! host: the device connects to the Unix socket `<uds_path>_<port>`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Longest answer line accepted (`OK 4294967295\n` is 14 bytes).
const MAX_LINE: usize = 32;

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The device closed the connection before answering: nothing listens on the port in the
    /// guest (yet).
    #[error("closed by the vsock device before answering (nothing listening on the port?)")]
    Closed,
    /// The device answered something other than `OK <n>`.
    #[error("vsock device answered {0:?} instead of `OK <port>`")]
    Refused(String),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Performs the client side of the handshake on a connected stream; returns the host-side port
/// from the answer. Reads the answer one byte at a time so that no byte of what follows it (the
/// guest's first bytes) is consumed here.
pub fn client_handshake<S: Read + Write>(stream: &mut S, port: u32) -> Result<u32, HandshakeError> {
    stream.write_all(format!("CONNECT {port}\n").as_bytes())?;
    stream.flush()?;
    let mut line = Vec::with_capacity(16);
    loop {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) if line.is_empty() => return Err(HandshakeError::Closed),
            Ok(0) => return Err(refused(&line)),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() >= MAX_LINE => return Err(refused(&line)),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    parse_ok(&line).ok_or_else(|| refused(&line))
}

fn refused(line: &[u8]) -> HandshakeError {
    HandshakeError::Refused(String::from_utf8_lossy(line).into_owned())
}

fn parse_ok(line: &[u8]) -> Option<u32> {
    let digits = line.strip_prefix(b"OK ")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Connects to the guest's `port` through the device's Unix socket at `uds_path`.
pub fn connect(uds_path: &Path, port: u32) -> Result<UnixStream, HandshakeError> {
    let mut stream = UnixStream::connect(uds_path)?;
    client_handshake(&mut stream, port)?;
    Ok(stream)
}

/// The Unix socket path on which the host must listen for guest connections to `port`.
pub fn listen_path(uds_path: &Path, port: u32) -> PathBuf {
    let mut path = uds_path.as_os_str().to_owned();
    path.push(format!("_{port}"));
    PathBuf::from(path)
}
