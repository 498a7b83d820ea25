//! A connection's writer thread: the only one that blocks on the socket. Frames come from
//! [`Conn`](super::conn::Conn) in the order the session checked them; small ones coalesce
//! between flushes and file chunks queued together go out in one vectored write.

use std::net::Shutdown;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use enclave_proto::transport::Connection;
use enclave_proto::wire::FrameWriter;

use super::conn::Conn;
use super::frames::LaidOutFrame;

/// File chunks written together when they are queued together: 256 KiB, as the record
/// writer's batches of smaller frames. One write per chunk made the receiving end cost more.
const CHUNK_BATCH: usize = 4;

/// A frame for the writer thread.
pub(super) enum Outgoing {
    /// Its head, then a `Data` message's bytes, shared with the message rather than copied
    /// (the record writer copies them once, into the record).
    Frame { head: Vec<u8>, data: Option<Bytes> },
    /// A `Data` frame with room around it, sealed where it lies: a file's chunk from `cp_from`.
    LaidOut(LaidOutFrame),
}

/// Writes queued frames until the queue is closed, or the connection is and the queue drained.
/// `w` buffers; it is flushed whenever the queue runs empty, so small messages coalesce and
/// nothing waits.
pub(super) fn write_loop(
    sock: Connection,
    mut w: FrameWriter<Connection>,
    rx: mpsc::Receiver<Outgoing>,
    closed: Arc<Conn>,
) {
    let mut pending = false;
    // A frame taken from the queue while gathering chunks, written next.
    let mut carried = None;
    loop {
        let frame = if let Some(frame) = carried.take() {
            frame
        } else if pending {
            match rx.try_recv() {
                Ok(p) => p,
                Err(_) => {
                    pending = false;
                    if w.flush().is_err() {
                        break;
                    }
                    continue;
                }
            }
        } else {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(p) => p,
                Err(RecvTimeoutError::Timeout) if closed.is_closed() => break,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        let written = match frame {
            Outgoing::Frame {
                head,
                data: Some(data),
            } => w.write_frame_parts(&[&head, &data]),
            Outgoing::Frame { head, data: None } => w.write_frame(&head),
            Outgoing::LaidOut(first) => {
                let (mut chunks, next) = gather_chunks(first, &rx);
                carried = next;
                let mut frames: Vec<&mut [u8]> = chunks.iter_mut().map(|f| f.laid_out()).collect();
                w.write_frames_in_place(&mut frames)
            }
        };
        if written.is_err() {
            break;
        }
        pending = true;
    }
    let _ = w.flush();
    let _ = sock.shutdown(Shutdown::Both);
    closed.mark_closed();
}

/// `first` and the file chunks queued right behind it, up to [`CHUNK_BATCH`]: written in one
/// vectored write. Also returns the frame that ended the run, if one did.
fn gather_chunks(
    first: LaidOutFrame,
    rx: &mpsc::Receiver<Outgoing>,
) -> (Vec<LaidOutFrame>, Option<Outgoing>) {
    let mut chunks = vec![first];
    while chunks.len() < CHUNK_BATCH {
        match rx.try_recv() {
            Ok(Outgoing::LaidOut(frame)) => chunks.push(frame),
            Ok(other) => return (chunks, Some(other)),
            Err(_) => break,
        }
    }
    (chunks, None)
}
