//! The hashing pipeline shared by the writer and the reader.
//!
//! Every measured byte goes into PCR0 and into exactly one of PCR1 (kernel, cmdline, bootstrap
//! ramdisk) or PCR2 (app ramdisks). SHA-384 dominates the cost of building or checking an EIF,
//! so hashing the same bytes twice on one thread would double the wall time. Instead the caller
//! hashes PCR0 (and does its I/O and CRC) while a worker thread hashes PCR1/PCR2 from the same
//! buffers, shared through `Arc`: wall time stays close to one SHA-384 pass.
//!
//! Memory is bounded: at most [`MAX_BUFFERS`] chunks of [`CHUNK_LEN`] bytes exist; the worker
//! sends each buffer back when done and the caller reuses it, blocking when all are in flight.

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha384};

use super::pcr::{extend, Pcr};

/// Size of one chunk; big enough to amortise channel and syscall costs, small enough that the
/// pipeline's memory stays a few MiB.
pub(crate) const CHUNK_LEN: usize = 1 << 20;
/// Chunks in circulation (being filled, queued, or hashed by the worker).
const MAX_BUFFERS: usize = 4;

/// Which PCR the worker thread feeds, besides PCR0 on the caller's thread.
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

/// The two-thread hasher. Dropping it without [`Pipeline::finish`] (an error path) closes the
/// worker's channel and joins it, so no thread outlives an abandoned writer or reader.
pub(crate) struct Pipeline {
    pcr0: Sha384,
    jobs: Option<SyncSender<Job>>,
    returned: Receiver<Arc<Vec<u8>>>,
    worker: Option<JoinHandle<(Sha384, Sha384)>>,
    /// Buffers that never went to the worker (no lane), ready for reuse.
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
    /// Starts the worker thread.
    pub(crate) fn new() -> io::Result<Self> {
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(MAX_BUFFERS);
        let (ret_tx, returned) = mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("eif-pcr-hasher".into())
            .spawn(move || {
                let mut bootstrap = Sha384::new();
                let mut app = Sha384::new();
                for job in job_rx {
                    match job.lane {
                        Lane::Bootstrap => bootstrap.update(job.data.as_slice()),
                        Lane::App => app.update(job.data.as_slice()),
                    }
                    // The caller may be gone (error path); then the buffer is simply freed.
                    let _ = ret_tx.send(job.data);
                }
                (bootstrap, app)
            })?;
        Ok(Pipeline {
            pcr0: Sha384::new(),
            jobs: Some(jobs),
            returned,
            worker: Some(worker),
            spare: Vec::new(),
            allocated: 0,
        })
    }

    /// An empty buffer with capacity [`CHUNK_LEN`], recycled when possible. Blocks while all
    /// buffers are in flight, which is what bounds memory.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        if let Some(mut buf) = self.spare.pop() {
            buf.clear();
            return buf;
        }
        loop {
            let returned = match self.returned.try_recv() {
                Ok(buf) => Some(buf),
                Err(TryRecvError::Empty) if self.allocated < MAX_BUFFERS => None,
                Err(TryRecvError::Empty) => self.returned.recv().ok(),
                Err(TryRecvError::Disconnected) => None,
            };
            match returned {
                Some(buf) => {
                    // The worker sends a buffer back once it holds the only reference left
                    // (the caller dropped its clone after processing), so this succeeds; if it
                    // ever did not, the buffer is dropped and the loop fetches another.
                    if let Ok(mut buf) = Arc::try_unwrap(buf) {
                        buf.clear();
                        return buf;
                    }
                    self.allocated = self.allocated.saturating_sub(1);
                }
                None => {
                    self.allocated += 1;
                    return Vec::with_capacity(CHUNK_LEN);
                }
            }
        }
    }

    /// Measures `chunk`: into PCR0 when `pcr0`, into the worker's `lane` when given, and hands
    /// it to `io` (write, CRC, …) on this thread while the worker hashes.
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
        if let Some(lane) = lane {
            let jobs = self.jobs.as_ref().ok_or_else(worker_gone)?;
            jobs.send(Job {
                data: Arc::clone(&data),
                lane,
            })
            .map_err(|_| worker_gone())?;
        }
        io(&data)?;
        if pcr0 {
            self.pcr0.update(data.as_slice());
        }
        // Unique only when the worker never got it (no lane): keep it here, since it will not
        // come back through the channel. Otherwise the worker returns it.
        if let Ok(buf) = Arc::try_unwrap(data) {
            self.spare.push(buf);
        }
        Ok(())
    }

    /// Waits for the worker and returns the extended PCRs.
    pub(crate) fn finish(mut self) -> io::Result<Pcrs> {
        let (bootstrap, app) = self.stop().ok_or_else(worker_gone)?;
        let pcr0 = std::mem::take(&mut self.pcr0);
        Ok(Pcrs {
            pcr0: extend(&pcr0.finalize().into()),
            pcr1: extend(&bootstrap.finalize().into()),
            pcr2: extend(&app.finalize().into()),
        })
    }
}

impl Pipeline {
    /// Closes the job channel (ending the worker's loop) and joins the worker; `None` if it
    /// was already stopped or panicked.
    fn stop(&mut self) -> Option<(Sha384, Sha384)> {
        drop(self.jobs.take());
        self.worker.take()?.join().ok()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop();
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
