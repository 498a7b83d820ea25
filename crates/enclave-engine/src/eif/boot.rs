//! What one boot hands to its backend, measured on the way and compared with the record.
//!
//! The qemu backend boots files, not the EIF: the kernel, the ramdisks concatenated into one
//! initrd, and the command line. So the measurement that matters is that of those bytes, taken
//! while they are written: each booted section is read once from the pinned EIF, hashed as Nitro
//! hashes it (PCR0: kernel, cmdline and every ramdisk, in file order; PCR1: kernel, cmdline and
//! ramdisk 0; PCR2: ramdisks 1…; each `SHA384(0^48 || SHA384(data))`) and written to a
//! temporary. Only when PCR0, PCR1 and PCR2 equal the record's are the temporaries renamed to
//! `kernel` and `initrd`; QEMU never sees bytes that were not measured. The nitro backend hands
//! nitro-cli the pinned EIF itself, so it measures that file the same way with nowhere to write.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;

use enclave_image::eif::pcr::{extend, Pcr};
use enclave_image::eif::{EifReader, ReadError, SectionType};
use sha2::{Digest, Sha384};

use crate::error::{EngineError, Result};
use crate::util::TempFile;

/// Read size while measuring.
const CHUNK: usize = 1 << 20;
/// Chunks queued for the PCR0 thread (bounds the memory to a few MiB).
const PCR0_QUEUE: usize = 4;

/// The boot files of an EIF, extracted for a VM.
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// The kernel image.
    pub kernel: PathBuf,
    /// Every ramdisk, concatenated in order (the kernel unpacks them all into one tmpfs).
    pub initrd: PathBuf,
    /// The measured command line.
    pub cmdline: String,
}

/// PCR0, PCR1 and PCR2 of what is booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootMeasurements {
    /// kernel ‖ cmdline ‖ every ramdisk.
    pub pcr0: Pcr,
    /// kernel ‖ cmdline ‖ ramdisk 0.
    pub pcr1: Pcr,
    /// ramdisk 1 ‖ ramdisk 2 ‖ ….
    pub pcr2: Pcr,
}

/// Extracts the kernel and the ramdisks of the pinned `eif` into `dir` (`kernel`, `initrd`),
/// measuring them as they are written; refuses (writing nothing) unless PCR0, PCR1 and PCR2
/// equal `expected` (the record's `measurements`).
pub fn extract_boot_files(
    eif: &Path,
    dir: &Path,
    expected: &BTreeMap<String, String>,
) -> Result<BootFiles> {
    let mut reader = EifReader::open(eif).map_err(unreadable(eif))?;
    let kernel_path = dir.join("kernel");
    let initrd_path = dir.join("initrd");
    let mut kernel = TempFile::new(&kernel_path, 0o600)?;
    let mut initrd = TempFile::new(&initrd_path, 0o600)?;
    let (found, cmdline) = {
        let mut k = BufWriter::new(kernel.file());
        let mut i = BufWriter::new(initrd.file());
        let measured = measure_sections(
            eif,
            &mut reader,
            Sink {
                path: &kernel_path,
                out: &mut k,
            },
            Sink {
                path: &initrd_path,
                out: &mut i,
            },
        )?;
        k.flush().map_err(|e| EngineError::io(&kernel_path, e))?;
        i.flush().map_err(|e| EngineError::io(&initrd_path, e))?;
        measured
    };
    compare(eif, expected, &found)?;
    kernel.commit()?;
    initrd.commit()?;
    Ok(BootFiles {
        kernel: kernel_path,
        initrd: initrd_path,
        cmdline,
    })
}

/// Measures the booted sections of `eif` and compares them with `expected`, for backends that
/// hand the EIF itself to their tool (nitro-cli).
pub fn check_pinned(eif: &Path, expected: &BTreeMap<String, String>) -> Result<()> {
    let mut reader = EifReader::open(eif).map_err(unreadable(eif))?;
    let nowhere = Path::new("/dev/null");
    let (found, _) = measure_sections(
        eif,
        &mut reader,
        Sink {
            path: nowhere,
            out: &mut io::sink(),
        },
        Sink {
            path: nowhere,
            out: &mut io::sink(),
        },
    )?;
    compare(eif, expected, &found)
}

/// Where one kind of booted bytes goes.
struct Sink<'a> {
    path: &'a Path,
    out: &'a mut dyn Write,
}

/// One pass over the booted sections in file order: the kernel goes to `kernel`, the ramdisks
/// to `initrd`; returns the measurements and the command line. Every byte is hashed twice
/// (PCR0, and PCR1 or PCR2), so PCR0 is hashed on a second thread from the same chunks while
/// this one hashes the other lane and writes: on two cores the check then costs about one
/// SHA-384 pass instead of two (docs/benchmarks.md).
fn measure_sections<'a>(
    eif: &Path,
    reader: &mut EifReader<File>,
    kernel: Sink<'a>,
    initrd: Sink<'a>,
) -> Result<(BootMeasurements, String)> {
    std::thread::scope(|scope| {
        let (chunks, pcr0_chunks) = mpsc::sync_channel::<Arc<Vec<u8>>>(PCR0_QUEUE);
        let pcr0 = std::thread::Builder::new()
            .name("pcr0".into())
            .spawn_scoped(scope, move || {
                let mut pcr0 = Sha384::new();
                for chunk in pcr0_chunks {
                    pcr0.update(chunk.as_slice());
                }
                pcr0
            })
            .map_err(EngineError::Thread)?;
        // On an error the sender is dropped here, so the PCR0 thread ends and the scope joins it.
        let (pcr1, pcr2, cmdline) = hash_lanes(eif, reader, kernel, initrd, chunks)?;
        let pcr0 = pcr0
            .join()
            .map_err(|_| EngineError::Thread(std::io::Error::other("the PCR0 thread panicked")))?;
        let digest = |h: Sha384| extend(&h.finalize().into());
        Ok((
            BootMeasurements {
                pcr0: digest(pcr0),
                pcr1: digest(pcr1),
                pcr2: digest(pcr2),
            },
            cmdline,
        ))
    })
}

/// The reading, writing and PCR1/PCR2 side of [`measure_sections`]; every measured chunk also
/// goes to `pcr0`.
fn hash_lanes<'a>(
    eif: &Path,
    reader: &mut EifReader<File>,
    kernel: Sink<'a>,
    initrd: Sink<'a>,
    pcr0: SyncSender<Arc<Vec<u8>>>,
) -> Result<(Sha384, Sha384, String)> {
    let mut bootstrap = Sha384::new();
    let mut app = Sha384::new();
    let mut cmdline = None;
    let mut seen_ramdisk = false;
    let send = |chunk: Arc<Vec<u8>>| {
        pcr0.send(chunk)
            .map_err(|_| EngineError::Thread(std::io::Error::other("the PCR0 thread ended")))
    };
    for info in reader.sections().to_vec() {
        let (lane, out, out_path) = match info.section_type {
            SectionType::Kernel => (&mut bootstrap, &mut *kernel.out, kernel.path),
            SectionType::Cmdline => {
                let text = reader.cmdline().map_err(unreadable(eif))?;
                bootstrap.update(text.as_bytes());
                send(Arc::new(text.as_bytes().to_vec()))?;
                cmdline = Some(text);
                continue;
            }
            SectionType::Ramdisk if !seen_ramdisk => {
                (&mut bootstrap, &mut *initrd.out, initrd.path)
            }
            SectionType::Ramdisk => (&mut app, &mut *initrd.out, initrd.path),
            SectionType::Metadata | SectionType::Signature => continue,
        };
        seen_ramdisk |= info.section_type == SectionType::Ramdisk;
        let mut src = reader.section_reader(info.index).map_err(unreadable(eif))?;
        let mut left = info.size;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            src.read_exact(&mut buf)
                .map_err(|e| unreadable(eif)(ReadError::from(e)))?;
            let chunk = Arc::new(buf);
            lane.update(chunk.as_slice());
            out.write_all(&chunk)
                .map_err(|e| EngineError::io(out_path, e))?;
            send(chunk)?;
            left -= want as u64;
        }
    }
    let cmdline =
        cmdline.ok_or_else(|| unreadable(eif)(ReadError::MissingSection(SectionType::Cmdline)))?;
    Ok((bootstrap, app, cmdline))
}

fn unreadable(eif: &Path) -> impl FnOnce(ReadError) -> EngineError + '_ {
    move |error| EngineError::PinnedUnreadable {
        path: eif.to_owned(),
        error,
    }
}

/// Refuses unless PCR0, PCR1 and PCR2 of `found` equal those of `expected`.
pub fn compare(
    eif: &Path,
    expected: &BTreeMap<String, String>,
    found: &BootMeasurements,
) -> Result<()> {
    let found = [
        ("PCR0", hex::encode(found.pcr0)),
        ("PCR1", hex::encode(found.pcr1)),
        ("PCR2", hex::encode(found.pcr2)),
    ];
    let mut differing = Vec::new();
    for (name, value) in &found {
        let want = expected
            .get(*name)
            .ok_or_else(|| EngineError::MissingMeasurement((*name).to_owned()))?;
        if !want.eq_ignore_ascii_case(value) {
            differing.push((*name).to_owned());
        }
    }
    if differing.is_empty() {
        return Ok(());
    }
    Err(EngineError::MeasurementMismatch {
        path: eif.to_owned(),
        expected_pcr0: expected["PCR0"].clone(),
        found_pcr0: found[0].1.clone(),
        differing,
    })
}
