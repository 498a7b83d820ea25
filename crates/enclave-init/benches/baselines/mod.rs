//! The copies cp is measured against, on the same transport (an AF_UNIX stream pair with the
//! send buffer the control channel asks for), file -> socket -> file (fsynced), the receiver on
//! CPU 0 (the enclave's core) and the sender on the calling thread (CPU 1, the client's):
//!
//! - [`raw_copy`]: the bytes as they are, 256 KiB at a time;
//! - [`sealed_copy`]: the same bytes in AES-256-GCM records of the control channel's size and
//!   layout (a 2-byte length, ciphertext, tag; the record's count as the nonce), sealed and
//!   opened in place with ring, written 256 KiB at a time, the plaintext written to the file
//!   from where it was opened: an encrypted copy with no protocol, framing or threads around
//!   it. What separates it from the raw copy is the cipher; what separates cp from it, the
//!   protocol.
//!
//! Both write 1 GiB of new pages per round, as cp does; [`PageReporting`] says when the machine
//! makes that cost vary.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use enclave_proto::transport::Connection;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::{cpu_secs, pin, this_thread};

/// Plaintext bytes per record: the control channel's most (`MAX_RECORD_PLAINTEXT`).
const RECORD: usize = 65535 - TAG;
const TAG: usize = 16;
/// Records per write (the control channel writes its sealed records in 256 KiB batches).
const BATCH: usize = 4;
const CHUNK: usize = 256 << 10;

/// A connected pair, the sending end with the control channel's bulk send buffer.
fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    Connection::Unix(a.try_clone().unwrap())
        .set_bulk_send_buffer()
        .unwrap();
    (a, b)
}

/// Runs `receive` on a thread pinned to CPU 0 and `send` here; the time of the whole and the
/// receiving thread's CPU seconds.
fn run(
    send: impl FnOnce(UnixStream),
    receive: impl FnOnce(UnixStream) + Send + 'static,
) -> (Duration, f64) {
    let (a, b) = pair();
    let start = Instant::now();
    let receiver = std::thread::spawn(move || {
        pin(&this_thread(), 0, false);
        let cpu0 = cpu_secs("thread-self");
        receive(b);
        cpu_secs("thread-self") - cpu0
    });
    send(a);
    let receiver_cpu = receiver.join().unwrap();
    (start.elapsed(), receiver_cpu)
}

/// The raw copy; its time and its receiver's CPU seconds.
pub fn raw_copy(src: &Path, dst: &Path) -> (Duration, f64) {
    let mut input = File::open(src).unwrap();
    let mut out = File::create(dst).unwrap();
    run(
        |mut sock| pump(&mut input, &mut sock),
        move |mut sock| {
            pump(&mut sock, &mut out);
            out.sync_all().unwrap();
        },
    )
}

/// Moves everything `from` holds to `to`, [`CHUNK`] bytes at a time. Not `std::io::copy`: that
/// moves 8 KiB at a time, or hands a file's bytes to the kernel (`sendfile`, `splice`) where
/// the control channel cannot.
fn pump(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).unwrap();
    }
}

fn key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap())
}

fn nonce(n: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

/// The sealed copy; its time and its receiver's CPU seconds.
pub fn sealed_copy(src: &Path, dst: &Path) -> (Duration, f64) {
    let mut input = File::open(src).unwrap();
    let mut out = File::create(dst).unwrap();
    run(
        |mut sock| {
            let key = key();
            let mut batch = vec![0u8; BATCH * (2 + RECORD + TAG)];
            let mut count = 0u64;
            let mut eof = false;
            while !eof {
                // Each record's plaintext is read from the file straight into its place.
                let mut len = 0;
                for _ in 0..BATCH {
                    let slot = &mut batch[len..len + 2 + RECORD + TAG];
                    let n = read_full(&mut input, &mut slot[2..2 + RECORD]);
                    if n == 0 {
                        eof = true;
                        break;
                    }
                    let tag = key
                        .seal_in_place_separate_tag(nonce(count), Aad::empty(), &mut slot[2..2 + n])
                        .unwrap();
                    slot[2 + n..2 + n + TAG].copy_from_slice(tag.as_ref());
                    slot[..2].copy_from_slice(&((n + TAG) as u16).to_be_bytes());
                    count += 1;
                    len += 2 + n + TAG;
                    if n < RECORD {
                        eof = true;
                        break;
                    }
                }
                sock.write_all(&batch[..len]).unwrap();
            }
        },
        move |mut sock| {
            let key = key();
            let mut records = vec![vec![0u8; RECORD + TAG]; BATCH];
            let mut count = 0u64;
            loop {
                // Up to a batch of records, each read after its length and opened in place.
                let mut lens = [0usize; BATCH];
                let mut got = 0;
                while got < BATCH {
                    let mut head = [0u8; 2];
                    if read_full(&mut sock, &mut head) == 0 {
                        break;
                    }
                    let len = usize::from(u16::from_be_bytes(head));
                    let record = &mut records[got][..len];
                    sock.read_exact(record).unwrap();
                    let plain = key
                        .open_in_place(nonce(count), Aad::empty(), record)
                        .unwrap();
                    lens[got] = plain.len();
                    count += 1;
                    got += 1;
                }
                if got == 0 {
                    break;
                }
                let mut slices: Vec<IoSlice> = (0..got)
                    .map(|i| IoSlice::new(&records[i][..lens[i]]))
                    .collect();
                let mut slices = &mut slices[..];
                while !slices.is_empty() {
                    let n = out.write_vectored(slices).unwrap();
                    IoSlice::advance_slices(&mut slices, n);
                }
            }
            out.sync_all().unwrap();
        },
    )
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            m => n += m,
        }
    }
    n
}

/// CPU seconds per GiB of AES-256-GCM as the records use it (ring, in place, full records):
/// what each end of an encrypted copy pays on top of a raw one.
pub fn aead_secs_per_gib() -> f64 {
    let key = key();
    let mut record = vec![0xa5u8; RECORD];
    let records = (1u64 << 30) / record.len() as u64;
    let cpu0 = cpu_secs("thread-self");
    for n in 0..records {
        let tag = key.seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut record);
        let _ = std::hint::black_box(tag.unwrap());
    }
    cpu_secs("thread-self") - cpu0
}

/// Free page reporting (virtio-balloon): a guest that reports freed memory hands it back to its
/// host, and the next first touch of those pages faults on the host (about 2.8 s per GiB on the
/// project's machine, against 0.5 s for a whole raw copy). Every round of a copy frees and then
/// allocates 1 GiB, so rounds pay it at random and vary by 2x or more.
pub struct PageReporting {
    order: Option<u32>,
    reported_kib: Option<u64>,
}

const REPORTING: &str = "/sys/module/page_reporting/parameters";

/// The page order above which the kernel never reports (its largest is 10 on x86_64).
const NEVER_REPORTED_ORDER: u32 = 11;

impl PageReporting {
    /// The machine's setting and its count of reported memory so far.
    pub fn now() -> Self {
        let read = |name: &str| {
            std::fs::read_to_string(format!("{REPORTING}/{name}"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
        };
        Self {
            order: read("page_reporting_order").map(|o: u64| o as u32),
            reported_kib: read("reported_kib"),
        }
    }

    /// A warning when freed memory goes back to the host.
    pub fn warning(&self) -> Option<String> {
        let order = self.order.filter(|&o| o < NEVER_REPORTED_ORDER)?;
        Some(format!(
            "warning: this machine reports freed memory to its host (page_reporting_order {order}): \
             rounds that write new pages pay the host's faults at random. For steady rounds, \
             as root: echo {NEVER_REPORTED_ORDER} > {REPORTING}/page_reporting_order \
             (and {order} again afterwards)"
        ))
    }

    /// MiB reported to the host since `earlier`, where the kernel counts it.
    pub fn reported_mib_since(&self, earlier: &Self) -> Option<u64> {
        Some(self.reported_kib?.saturating_sub(earlier.reported_kib?) >> 10)
    }
}
