//! The hashing pipeline shared by the writer and the reader.
//!
//! Every measured byte goes into PCR0 and into exactly one of PCR1 (kernel, cmdline, bootstrap
//! ramdisk) or PCR2 (app ramdisks). SHA-384 dominates the cost of building or checking an EIF,
//! so hashing the same bytes twice on one thread would double the wall time. Instead two worker
//! threads hash from the same buffers, shared through `Arc`: one PCR0, the other PCR1/PCR2,
//! while the caller does its I/O and CRC. On two cores the caller's I/O then overlaps with the
//! hashing instead of adding to one of the lanes, and wall time stays close to one SHA-384 pass.
//!
//! Memory is bounded: at most [`MAX_BUFFERS`] chunks of [`CHUNK_LEN`] bytes exist. Whoever
//! drops the last reference to a chunk (a worker, or the caller) recycles it; the caller blocks
//! in [`Pipeline::buffer`] while all chunks are in flight.

use std::io;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha384};

use super::pcr::{extend, Pcr};

/// Size of one chunk; big enough to amortise channel and syscall costs, small enough that the
/// pipeline's memory stays a few MiB.
pub(crate) const CHUNK_LEN: usize = 1 << 20;
/// Chunks in circulation (being filled, queued, or hashed by a worker).
const MAX_BUFFERS: usize = 6;

/// Which PCR the second worker feeds, besides PCR0 on the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// PCR1: kernel, cmdline, ramdisk 0.
    Bootstrap,
    /// PCR2: ramdisks 1…
    App,
}

struct Job {
    data: Arc<Vec<u8>>,
    lane: Lane,
}

/// One hashing thread: it receives chunks tagged with a lane, hashes them, and recycles each
/// chunk it held last.
struct Worker {
    jobs: Option<SyncSender<Job>>,
    handle: Option<JoinHandle<(Sha384, Sha384)>>,
}

impl Worker {
    fn spawn(name: &str, recycle: Sender<Vec<u8>>) -> io::Result<Self> {
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(MAX_BUFFERS);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut bootstrap = Sha384::new();
                let mut app = Sha384::new();
                for job in job_rx {
                    match job.lane {
                        Lane::Bootstrap => bootstrap.update(job.data.as_slice()),
                        Lane::App => app.update(job.data.as_slice()),
                    }
                    if let Ok(buf) = Arc::try_unwrap(job.data) {
                        // The caller may be gone (error path); then the buffer is simply freed.
                        let _ = recycle.send(buf);
                    }
                }
                (bootstrap, app)
            })?;
        Ok(Self {
            jobs: Some(jobs),
            handle: Some(handle),
        })
    }

    fn send(&self, data: &Arc<Vec<u8>>, lane: Lane) -> io::Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(worker_gone)?;
        jobs.send(Job {
            data: Arc::clone(data),
            lane,
        })
        .map_err(|_| worker_gone())
    }

    /// Closes the job channel (ending the loop) and joins; `None` if already stopped or
    /// panicked.
    fn stop(&mut self) -> Option<(Sha384, Sha384)> {
        drop(self.jobs.take());
        self.handle.take()?.join().ok()
    }
}

/// The three-thread hasher. Dropping it without [`Pipeline::finish`] (an error path) closes the
/// workers' channels and joins them, so no thread outlives an abandoned writer or reader.
pub(crate) struct Pipeline {
    /// Hashes PCR0 (it always uses the `App` lane).
    whole: Worker,
    /// Hashes PCR1 and PCR2.
    parts: Worker,
    returned: Receiver<Vec<u8>>,
    /// Buffers the caller held last, ready for reuse.
    spare: Vec<Vec<u8>>,
    allocated: usize,
}

/// PCR0, PCR1, PCR2 as extended values.
pub(crate) struct Pcrs {
    pub(crate) pcr0: Pcr,
    pub(crate) pcr1: Pcr,
    pub(crate) pcr2: Pcr,
}

impl Pipeline {
    /// Starts the worker threads.
    pub(crate) fn new() -> io::Result<Self> {
        let (recycle, returned) = mpsc::channel();
        Ok(Pipeline {
            whole: Worker::spawn("eif-pcr0-hasher", recycle.clone())?,
            parts: Worker::spawn("eif-pcr12-hasher", recycle)?,
            returned,
            spare: Vec::new(),
            allocated: 0,
        })
    }

    /// An empty buffer with capacity [`CHUNK_LEN`], recycled when possible. Blocks while all
    /// buffers are in flight, which is what bounds memory.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        let mut buf = if let Some(buf) = self.spare.pop() {
            buf
        } else {
            match self.returned.try_recv() {
                Ok(buf) => buf,
                Err(TryRecvError::Empty) if self.allocated >= MAX_BUFFERS => {
                    // Every buffer is in flight: wait for a worker to give one back. The
                    // channel cannot be disconnected while `self` holds the workers.
                    self.returned
                        .recv()
                        .unwrap_or_else(|_| Vec::with_capacity(CHUNK_LEN))
                }
                Err(_) => {
                    self.allocated += 1;
                    Vec::with_capacity(CHUNK_LEN)
                }
            }
        };
        buf.clear();
        buf
    }

    /// Measures `chunk`: into PCR0 when `pcr0`, into `lane` (PCR1 or PCR2) when given, and
    /// hands it to `io` (write, CRC, …) on this thread while the workers hash.
    pub(crate) fn process<E: From<io::Error>>(
        &mut self,
        chunk: Vec<u8>,
        pcr0: bool,
        lane: Option<Lane>,
        io: impl FnOnce(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if chunk.is_empty() {
            return Ok(());
        }
        let data = Arc::new(chunk);
        if pcr0 {
            self.whole.send(&data, Lane::App)?;
        }
        if let Some(lane) = lane {
            self.parts.send(&data, lane)?;
        }
        io(&data)?;
        // Unique when the workers are done with it (or never got it): recycle it here.
        if let Ok(buf) = Arc::try_unwrap(data) {
            self.spare.push(buf);
        }
        Ok(())
    }

    /// Waits for the workers and returns the extended PCRs.
    pub(crate) fn finish(mut self) -> io::Result<Pcrs> {
        let (_, pcr0) = self.whole.stop().ok_or_else(worker_gone)?;
        let (bootstrap, app) = self.parts.stop().ok_or_else(worker_gone)?;
        Ok(Pcrs {
            pcr0: extend(&pcr0.finalize().into()),
            pcr1: extend(&bootstrap.finalize().into()),
            pcr2: extend(&app.finalize().into()),
        })
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.whole.stop();
        self.parts.stop();
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("the PCR hashing thread stopped unexpectedly")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eif::pcr::measure;

    #[test]
    fn pipeline_matches_plain_hashing() {
        let mut p = Pipeline::new().expect("pipeline");
        let mut seen = Vec::new();
        let mut seen_expected = Vec::new();
        let mut all = Vec::new();
        let mut boot = Vec::new();
        let mut app = Vec::new();
        // Every fifth chunk is unmeasured (like metadata), which must not leak buffers.
        for i in 0..40u8 {
            let mut buf = p.buffer();
            buf.extend(std::iter::repeat_n(i, 1000 + usize::from(i) * 27_777));
            let lane = if i < 7 { Lane::Bootstrap } else { Lane::App };
            seen_expected.extend_from_slice(&buf);
            if i % 5 != 4 {
                match lane {
                    Lane::Bootstrap => boot.extend_from_slice(&buf),
                    Lane::App => app.extend_from_slice(&buf),
                }
            }
            let lane = (i % 5 != 4).then_some(lane);
            let pcr0 = lane.is_some();
            if pcr0 {
                all.extend_from_slice(&buf);
            }
            let r: io::Result<()> = p.process(buf, pcr0, lane, |d| {
                seen.extend_from_slice(d);
                Ok(())
            });
            assert!(r.is_ok());
        }
        let pcrs = p.finish().expect("finish");
        assert_eq!(seen, seen_expected);
        assert_eq!(pcrs.pcr0, measure(&all));
        assert_eq!(pcrs.pcr1, measure(&boot));
        assert_eq!(pcrs.pcr2, measure(&app));
    }
}
