//! Streaming EIF writer.
//!
//! Sections are written in order from offset 548 and never buffered whole: each section's
//! header is written with size 0 and patched once its data is through. The EIF header, which
//! carries the section table and the CRC of everything else, is written last. The CRC of each
//! piece (header, every section header, every section's data) is computed separately and
//! combined in file order at the end, so each data byte is read exactly once.

use std::io::{self, Read, Seek, SeekFrom, Write};

use thiserror::Error;

use super::header::{
    EifHeader, SectionHeader, SectionType, CRC_OFFSET, EIF_VERSION, HEADER_LEN, MAX_SECTIONS,
    SECTION_HEADER_LEN,
};
use super::measure::{Lane, Pipeline, CHUNK_LEN};
use super::pcr::Measurements;
use super::sign::{EifSigner, SignError};

/// Errors from [`EifWriter`].
#[derive(Debug, Error)]
pub enum WriteError {
    /// Reading an input or writing the output failed.
    #[error("I/O error while writing the EIF: {0}")]
    Io(#[from] io::Error),
    /// Sections must be added in the order kernel, cmdline, metadata, ramdisks.
    #[error("the {got} section cannot be added now: expected the {expected} next")]
    OutOfOrder {
        /// The section the writer expects next.
        expected: &'static str,
        /// The section that was added.
        got: &'static str,
    },
    /// A previous ramdisk writer was dropped without `finish()`; the output is incomplete and
    /// the writer cannot continue.
    #[error("the {0} section was not finished (RamdiskWriter dropped without finish())")]
    Unfinished(&'static str),
    /// An earlier call failed midway; the output is incomplete and the writer cannot continue.
    #[error("an earlier write failed; the EIF is incomplete")]
    Poisoned,
    /// Internal misuse: data without a section being written (not reachable through the
    /// public API).
    #[error("no section is being written")]
    NoOpenSection,
    /// The command line contains a NUL byte, which the kernel would truncate at.
    #[error("the kernel command line contains a NUL byte at position {0}")]
    NulInCmdline(usize),
    /// More sections than the header's table holds.
    #[error("too many sections: the EIF header holds at most {MAX_SECTIONS}")]
    TooManySections,
    /// `finish` was called before any ramdisk was added.
    #[error("an EIF needs at least one ramdisk (the bootstrap ramdisk)")]
    NoRamdisk,
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// Header fields that are not derived from the sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EifOptions {
    /// Header flags; bit 0 set for aarch64 images.
    pub flags: u16,
    /// Default enclave memory in bytes.
    pub default_mem: u64,
    /// Default number of vCPUs.
    pub default_cpus: u64,
}

impl Default for EifOptions {
    /// The official `EifBuilder`'s values: x86_64, 1 GiB, 2 vCPUs.
    fn default() -> Self {
        EifOptions {
            flags: 0,
            default_mem: 1 << 30,
            default_cpus: 2,
        }
    }
}

/// Which section the writer accepts next; the order is fixed by the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Kernel,
    Cmdline,
    Metadata,
    Ramdisks,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Kernel => "kernel",
            Stage::Cmdline => "cmdline",
            Stage::Metadata => "metadata",
            Stage::Ramdisks => "ramdisk",
        }
    }
}

/// A section already written: where, how big, and the CRC of its data alone.
struct Written {
    kind: SectionType,
    offset: u64,
    size: u64,
    data_crc: crc32fast::Hasher,
}

/// The section currently being streamed.
struct Open {
    section: Written,
    pcr0: bool,
    lane: Option<Lane>,
}

/// Writes an EIF to any `Write + Seek` output, streaming every section.
///
/// Usage: [`kernel`](Self::kernel), [`cmdline`](Self::cmdline), [`metadata`](Self::metadata),
/// one or more [`ramdisk`](Self::ramdisk)s (the first is the bootstrap ramdisk, measured in
/// PCR1; the others are the app, measured in PCR2), then [`finish`](Self::finish).
pub struct EifWriter<W: Write + Seek> {
    out: W,
    options: EifOptions,
    /// Offset of the next byte to write.
    pos: u64,
    stage: Stage,
    sections: Vec<Written>,
    open: Option<Open>,
    pipeline: Pipeline,
    /// The chunk being filled; always `CHUNK_LEN` long, valid up to `filled`.
    chunk: Vec<u8>,
    filled: usize,
    /// Set when an I/O step failed midway: the output no longer matches the bookkeeping.
    poisoned: bool,
}

impl<W: Write + Seek> EifWriter<W> {
    /// Starts an EIF at the output's offset 0 (a header-sized placeholder is written first).
    pub fn new(mut out: W, options: EifOptions) -> Result<Self, WriteError> {
        out.seek(SeekFrom::Start(0))?;
        // The placeholder makes the file layout final from the start; it is overwritten by
        // `finish`, so an interrupted build never looks like a valid EIF (magic is zero).
        out.write_all(&[0u8; HEADER_LEN])?;
        let mut pipeline = Pipeline::new()?;
        let chunk = full_buffer(&mut pipeline);
        Ok(EifWriter {
            out,
            options,
            pos: HEADER_LEN as u64,
            stage: Stage::Kernel,
            sections: Vec::new(),
            open: None,
            pipeline,
            chunk,
            filled: 0,
            poisoned: false,
        })
    }

    /// Streams the kernel image (measured in PCR0 and PCR1).
    pub fn kernel(&mut self, kernel: &mut impl Read) -> Result<u64, WriteError> {
        self.advance(Stage::Kernel)?;
        self.begin(SectionType::Kernel, true, Some(Lane::Bootstrap))?;
        let copied = self.copy_from(kernel);
        self.poison_on_error(copied)?;
        self.end()
    }

    /// Writes the kernel command line (measured in PCR0 and PCR1), without a NUL terminator.
    pub fn cmdline(&mut self, cmdline: &str) -> Result<(), WriteError> {
        if let Some(pos) = cmdline.bytes().position(|b| b == 0) {
            return Err(WriteError::NulInCmdline(pos));
        }
        self.advance(Stage::Cmdline)?;
        self.begin(SectionType::Cmdline, true, Some(Lane::Bootstrap))?;
        self.push(cmdline.as_bytes())?;
        self.end().map(drop)
    }

    /// Writes the metadata section (not measured): the JSON `EifIdentityInfo`, as bytes.
    pub fn metadata(&mut self, metadata: &[u8]) -> Result<(), WriteError> {
        self.advance(Stage::Metadata)?;
        self.begin(SectionType::Metadata, false, None)?;
        self.push(metadata)?;
        self.end().map(drop)
    }

    /// Starts a ramdisk section; write its bytes to the returned writer, then call
    /// [`RamdiskWriter::finish`]. Ramdisk 0 is the bootstrap ramdisk (PCR1), later ones the
    /// app (PCR2); all are in PCR0.
    pub fn ramdisk(&mut self) -> Result<RamdiskWriter<'_, W>, WriteError> {
        self.advance(Stage::Ramdisks)?;
        let first = !self.sections.iter().any(|s| s.kind == SectionType::Ramdisk);
        let lane = if first { Lane::Bootstrap } else { Lane::App };
        self.begin(SectionType::Ramdisk, true, Some(lane))?;
        Ok(RamdiskWriter { eif: self })
    }

    /// Adds a ramdisk whose bytes come from `src`; returns its size.
    pub fn ramdisk_from(&mut self, src: &mut impl Read) -> Result<u64, WriteError> {
        let rd = self.ramdisk()?;
        let copied = rd.eif.copy_from(src);
        rd.eif.poison_on_error(copied)?;
        rd.finish()
    }

    /// Signs (when `signer` is given), writes the signature section and the header with its
    /// CRC, flushes, and returns the measurements.
    pub fn finish(self, signer: Option<&EifSigner>) -> Result<Measurements, WriteError> {
        self.ensure_closed()?;
        if self.stage != Stage::Ramdisks
            || !self.sections.iter().any(|s| s.kind == SectionType::Ramdisk)
        {
            return Err(WriteError::NoRamdisk);
        }
        let EifWriter {
            mut out,
            options,
            mut pos,
            mut sections,
            pipeline,
            ..
        } = self;
        let pcrs = pipeline.finish()?;
        let mut measurements = Measurements {
            pcr0: pcrs.pcr0,
            pcr1: pcrs.pcr1,
            pcr2: pcrs.pcr2,
            pcr8: None,
        };

        if let Some(signer) = signer {
            if sections.len() >= MAX_SECTIONS {
                return Err(WriteError::TooManySections);
            }
            let signature = signer.signature_section(&measurements.pcr0)?;
            let size = signature.len() as u64;
            out.write_all(&SectionHeader::new(SectionType::Signature, size).to_bytes())?;
            out.write_all(&signature)?;
            let mut data_crc = crc32fast::Hasher::new();
            data_crc.update(&signature);
            sections.push(Written {
                kind: SectionType::Signature,
                offset: pos,
                size,
                data_crc,
            });
            pos += SECTION_HEADER_LEN as u64 + size;
            measurements.pcr8 = Some(signer.pcr8());
        }

        let mut header = EifHeader {
            version: EIF_VERSION,
            flags: options.flags,
            default_mem: options.default_mem,
            default_cpus: options.default_cpus,
            reserved: 0,
            // `begin` and the check above keep this at most MAX_SECTIONS.
            num_sections: sections.len() as u16,
            section_offsets: [0; MAX_SECTIONS],
            section_sizes: [0; MAX_SECTIONS],
            unused: 0,
            crc32: 0,
        };
        for (i, s) in sections.iter().enumerate() {
            header.section_offsets[i] = s.offset;
            header.section_sizes[i] = s.size;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header.to_bytes()[..CRC_OFFSET]);
        for s in &sections {
            crc.update(&SectionHeader::new(s.kind, s.size).to_bytes());
            crc.combine(&s.data_crc);
        }
        header.crc32 = crc.finalize();

        out.seek(SeekFrom::Start(0))?;
        out.write_all(&header.to_bytes())?;
        out.seek(SeekFrom::Start(pos))?;
        out.flush()?;
        Ok(measurements)
    }

    fn ensure_closed(&self) -> Result<(), WriteError> {
        if self.poisoned {
            return Err(WriteError::Poisoned);
        }
        match &self.open {
            Some(open) => Err(WriteError::Unfinished(open.section.kind.name())),
            None => Ok(()),
        }
    }

    /// Moves to `next`, enforcing the section order (ramdisks may repeat).
    fn advance(&mut self, next: Stage) -> Result<(), WriteError> {
        self.ensure_closed()?;
        let expected = self.stage;
        if next != expected {
            return Err(WriteError::OutOfOrder {
                expected: expected.name(),
                got: next.name(),
            });
        }
        self.stage = match next {
            Stage::Kernel => Stage::Cmdline,
            Stage::Cmdline => Stage::Metadata,
            Stage::Metadata | Stage::Ramdisks => Stage::Ramdisks,
        };
        Ok(())
    }

    fn begin(
        &mut self,
        kind: SectionType,
        pcr0: bool,
        lane: Option<Lane>,
    ) -> Result<(), WriteError> {
        // A full table is refused before any output, so the writer stays usable (e.g. for
        // `finish`). One slot is left for a signature only if the caller signs; `finish`
        // checks that.
        if self.sections.len() >= MAX_SECTIONS {
            return Err(WriteError::TooManySections);
        }
        let result = self.begin_inner(kind, pcr0, lane);
        self.poison_on_error(result)
    }

    fn begin_inner(
        &mut self,
        kind: SectionType,
        pcr0: bool,
        lane: Option<Lane>,
    ) -> Result<(), WriteError> {
        self.open = Some(Open {
            section: Written {
                kind,
                offset: self.pos,
                size: 0,
                data_crc: crc32fast::Hasher::new(),
            },
            pcr0,
            lane,
        });
        self.out
            .write_all(&SectionHeader::new(kind, 0).to_bytes())?;
        self.pos += SECTION_HEADER_LEN as u64;
        Ok(())
    }

    /// Appends bytes to the open section.
    fn push(&mut self, mut data: &[u8]) -> Result<(), WriteError> {
        while !data.is_empty() {
            let room = &mut self.chunk[self.filled..];
            let n = room.len().min(data.len());
            room[..n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == CHUNK_LEN {
                self.dispatch()?;
            }
        }
        Ok(())
    }

    /// Streams `src` into the open section, reading straight into the chunk buffer.
    fn copy_from(&mut self, src: &mut impl Read) -> Result<(), WriteError> {
        loop {
            match src.read(&mut self.chunk[self.filled..]) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    self.filled += n;
                    if self.filled == CHUNK_LEN {
                        self.dispatch()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes the filled part of the chunk to the output and measures it.
    fn dispatch(&mut self) -> Result<(), WriteError> {
        if self.poisoned {
            return Err(WriteError::Poisoned);
        }
        let result = self.dispatch_inner();
        self.poison_on_error(result)
    }

    fn dispatch_inner(&mut self) -> Result<(), WriteError> {
        // Callers only stream into a section between `begin` and `end`; without one there is
        // nothing to attribute the bytes to, so refuse rather than write them.
        let Some(open) = self.open.as_mut() else {
            return Err(WriteError::NoOpenSection);
        };
        if self.filled == 0 {
            return Ok(());
        }
        let mut chunk = std::mem::replace(&mut self.chunk, full_buffer(&mut self.pipeline));
        chunk.truncate(self.filled);
        self.filled = 0;
        let len = chunk.len() as u64;
        let out = &mut self.out;
        let crc = &mut open.section.data_crc;
        self.pipeline
            .process(chunk, open.pcr0, open.lane, |data| -> io::Result<()> {
                out.write_all(data)?;
                crc.update(data);
                Ok(())
            })?;
        open.section.size += len;
        self.pos += len;
        Ok(())
    }

    /// Flushes the open section, patches its header's size, and records it.
    fn end(&mut self) -> Result<u64, WriteError> {
        let result = self.end_inner();
        self.poison_on_error(result)
    }

    /// Any failure once output has started leaves the file and the bookkeeping out of step.
    fn poison_on_error<T>(&mut self, result: Result<T, WriteError>) -> Result<T, WriteError> {
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn end_inner(&mut self) -> Result<u64, WriteError> {
        self.dispatch()?;
        let Some(open) = self.open.as_ref() else {
            return Err(WriteError::NoOpenSection);
        };
        let header = SectionHeader::new(open.section.kind, open.section.size);
        self.out.seek(SeekFrom::Start(open.section.offset))?;
        self.out.write_all(&header.to_bytes())?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        let size = open.section.size;
        if let Some(open) = self.open.take() {
            self.sections.push(open.section);
        }
        Ok(size)
    }
}

/// Writer for one ramdisk section, from [`EifWriter::ramdisk`]. Call [`finish`](Self::finish)
/// when done; dropping it without `finish` leaves the EIF writer unusable.
pub struct RamdiskWriter<'a, W: Write + Seek> {
    eif: &'a mut EifWriter<W>,
}

impl<W: Write + Seek> RamdiskWriter<'_, W> {
    /// Completes the section; returns its size.
    pub fn finish(self) -> Result<u64, WriteError> {
        self.eif.end()
    }
}

impl<W: Write + Seek> Write for RamdiskWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.eif.push(buf).map_err(into_io)?;
        Ok(buf.len())
    }

    /// Data is written in whole chunks; a partial chunk is written by `finish`, because the
    /// section size must be final before it is patched in.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A pipeline buffer resized to `CHUNK_LEN`, so reads can go straight into it. Zeroing it once
/// per chunk (rather than per read) keeps small reads cheap.
fn full_buffer(pipeline: &mut Pipeline) -> Vec<u8> {
    let mut buf = pipeline.buffer();
    buf.resize(CHUNK_LEN, 0);
    buf
}

fn into_io(e: WriteError) -> io::Error {
    match e {
        WriteError::Io(e) => e,
        other => io::Error::other(other),
    }
}
