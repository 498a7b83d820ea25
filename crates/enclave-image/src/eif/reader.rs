//! EIF reader: validates the layout, lists and streams sections, checks the CRC, computes the
//! measurements and verifies the signature.
//!
//! Every size and offset from the file is checked against the file's actual length before it
//! is used, and anything loaded into memory has a per-section cap, so arbitrary input (see the
//! `eif_reader` fuzz target) can neither panic the reader nor make it allocate unboundedly.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::SystemTime;

use thiserror::Error;

use super::header::{
    EifHeader, HeaderError, SectionHeader, SectionType, CRC_OFFSET, HEADER_LEN, SECTION_HEADER_LEN,
};
use super::measure::{Lane, Pipeline, CHUNK_LEN};
use super::pcr::Measurements;
use super::sign::{self, SignError, VerifiedSignature};

/// Largest command line [`EifReader::cmdline`] loads.
pub const CMDLINE_LIMIT: u64 = 1 << 20;
/// Largest metadata section [`EifReader::metadata`] loads.
pub const METADATA_LIMIT: u64 = 16 << 20;
/// Largest signature section the reader loads (a certificate and a COSE_Sign1 are a few KiB).
pub const SIGNATURE_LIMIT: u64 = 1 << 20;
/// Largest kernel [`EifReader::kernel`] loads into memory (use [`EifReader::section_reader`] to
/// stream bigger ones).
pub const KERNEL_LIMIT: u64 = 512 << 20;

/// Errors from [`EifReader`].
#[derive(Debug, Error)]
pub enum ReadError {
    /// Reading the input failed (including a file that shrank while being read).
    #[error("I/O error while reading the EIF: {0}")]
    Io(#[from] io::Error),
    /// The header or the section table is invalid (or the file is truncated).
    #[error("invalid EIF: {0}")]
    Header(#[from] HeaderError),
    /// The CRC32 in the header does not match the file: it was corrupted.
    #[error("CRC check failed: header says {header:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC stored in the header.
        header: u32,
        /// The CRC of the file's bytes.
        computed: u32,
    },
    /// A required section is absent.
    #[error("invalid EIF: no {0} section")]
    MissingSection(SectionType),
    /// A section that must be unique appears twice.
    #[error("invalid EIF: more than one {0} section")]
    DuplicateSection(SectionType),
    /// A section is larger than the reader is willing to load into memory.
    #[error(
        "the {section} section is {size} bytes, more than the {limit}-byte limit for loading it"
    )]
    SectionTooLarge {
        /// The section.
        section: SectionType,
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The command line is not UTF-8.
    #[error("the kernel command line is not valid UTF-8")]
    CmdlineNotUtf8,
    /// No section with this index, or no ramdisk with this number.
    #[error("no {what} number {index} (the EIF has {count})")]
    NoSuchSection {
        /// "section" or "ramdisk".
        what: &'static str,
        /// The index asked for.
        index: usize,
        /// How many there are.
        count: usize,
    },
    /// Signature verification was asked of an unsigned EIF.
    #[error("the EIF is not signed")]
    NotSigned,
    /// The signature section is malformed or does not verify.
    #[error(transparent)]
    Signature(#[from] SignError),
}

/// One entry of the section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// Position in the table.
    pub index: usize,
    /// Type from the section header.
    pub section_type: SectionType,
    /// Flags from the section header.
    pub flags: u16,
    /// Offset of the section header.
    pub offset: u64,
    /// Size of the data.
    pub size: u64,
}

impl SectionInfo {
    /// Offset of the first data byte.
    pub fn data_offset(&self) -> u64 {
        self.offset + SECTION_HEADER_LEN as u64
    }
}

/// The metadata section: JSON (normally an `EifIdentityInfo`) or, when it is not JSON, bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Metadata {
    /// Parsed JSON.
    Json(serde_json::Value),
    /// Not JSON; the raw bytes.
    Raw(Vec<u8>),
}

/// Reads an EIF from any `Read + Seek` (a file, or a `Cursor` over bytes).
pub struct EifReader<R: Read + Seek> {
    inner: R,
    raw_header: [u8; HEADER_LEN],
    header: EifHeader,
    sections: Vec<SectionInfo>,
    len: u64,
}

impl EifReader<std::fs::File> {
    /// Opens and validates an EIF file.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        Self::new(std::fs::File::open(path)?)
    }
}

impl<R: Read + Seek> EifReader<R> {
    /// Reads and validates the header, the section table and every section header.
    pub fn new(mut inner: R) -> Result<Self, ReadError> {
        let len = inner.seek(SeekFrom::End(0))?;
        if len < HEADER_LEN as u64 {
            return Err(HeaderError::TooShort { len }.into());
        }
        inner.seek(SeekFrom::Start(0))?;
        let mut raw_header = [0u8; HEADER_LEN];
        inner.read_exact(&mut raw_header)?;
        let header = EifHeader::decode(&raw_header)?;
        header.validate_layout(len)?;

        let mut sections = Vec::with_capacity(usize::from(header.num_sections));
        for (index, (offset, size)) in header.sections().enumerate() {
            inner.seek(SeekFrom::Start(offset))?;
            let mut raw = [0u8; SECTION_HEADER_LEN];
            inner.read_exact(&mut raw)?;
            let section = SectionHeader::decode(&raw, offset)?;
            if section.size != size {
                return Err(HeaderError::SectionSizeMismatch {
                    index,
                    in_table: size,
                    in_section: section.size,
                }
                .into());
            }
            sections.push(SectionInfo {
                index,
                section_type: section.section_type,
                flags: section.flags,
                offset,
                size,
            });
        }
        check_section_set(&sections)?;
        Ok(EifReader {
            inner,
            raw_header,
            header,
            sections,
            len,
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &EifHeader {
        &self.header
    }

    /// The sections, in table (= file) order.
    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// Length of the EIF in bytes.
    pub fn file_len(&self) -> u64 {
        self.len
    }

    /// Whether the EIF has a signature section.
    pub fn is_signed(&self) -> bool {
        self.find(SectionType::Signature).is_some()
    }

    /// Number of ramdisks (the first is the bootstrap ramdisk).
    pub fn ramdisk_count(&self) -> usize {
        self.ramdisks().count()
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Streams the data of section `index` (see [`sections`](Self::sections)).
    pub fn section_reader(&mut self, index: usize) -> Result<io::Take<&mut R>, ReadError> {
        let info = *self.sections.get(index).ok_or(ReadError::NoSuchSection {
            what: "section",
            index,
            count: self.sections.len(),
        })?;
        self.inner.seek(SeekFrom::Start(info.data_offset()))?;
        Ok((&mut self.inner).take(info.size))
    }

    /// Streams ramdisk number `n` (0 = bootstrap); e.g. to boot from it.
    pub fn ramdisk(&mut self, n: usize) -> Result<io::Take<&mut R>, ReadError> {
        let count = self.ramdisk_count();
        let info = self.ramdisks().nth(n).ok_or(ReadError::NoSuchSection {
            what: "ramdisk",
            index: n,
            count,
        })?;
        self.section_reader(info.index)
    }

    /// Copies ramdisk number `n` to `out`; returns the number of bytes.
    pub fn copy_ramdisk_to(&mut self, n: usize, out: &mut impl Write) -> Result<u64, ReadError> {
        let mut src = self.ramdisk(n)?;
        Ok(io::copy(&mut src, out)?)
    }

    /// Loads the kernel image (up to [`KERNEL_LIMIT`]).
    pub fn kernel(&mut self) -> Result<Vec<u8>, ReadError> {
        self.load(SectionType::Kernel, KERNEL_LIMIT)?
            .ok_or(ReadError::MissingSection(SectionType::Kernel))
    }

    /// Loads the kernel command line.
    pub fn cmdline(&mut self) -> Result<String, ReadError> {
        let bytes = self
            .load(SectionType::Cmdline, CMDLINE_LIMIT)?
            .ok_or(ReadError::MissingSection(SectionType::Cmdline))?;
        String::from_utf8(bytes).map_err(|_| ReadError::CmdlineNotUtf8)
    }

    /// Loads the metadata section, parsed as JSON when it is JSON. `None` for EIFs older than
    /// version 4, which have none.
    pub fn metadata(&mut self) -> Result<Option<Metadata>, ReadError> {
        Ok(self
            .load(SectionType::Metadata, METADATA_LIMIT)?
            .map(|bytes| match serde_json::from_slice(&bytes) {
                Ok(value) => Metadata::Json(value),
                Err(_) => Metadata::Raw(bytes),
            }))
    }

    /// The raw signature section, if any.
    pub fn signature_section(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        self.load(SectionType::Signature, SIGNATURE_LIMIT)
    }

    /// Checks the CRC in one streaming pass; the error names both values on mismatch.
    pub fn check_crc(&mut self) -> Result<(), ReadError> {
        self.scan(false).map(drop)
    }

    /// Computes the measurements in one streaming pass, checking the CRC on the way. PCR8 is
    /// the measurement of the signature section's certificate, for signed images.
    pub fn measure(&mut self) -> Result<Measurements, ReadError> {
        let (measurements, signature) = self.scan(true)?;
        let pcr8 = match signature {
            Some(section) => Some(sign::pcr8_of_section(&section)?),
            None => None,
        };
        Ok(Measurements {
            pcr8,
            ..measurements
        })
    }

    /// Measures PCR0/1/2 and checks the CRC without parsing the signature section (for
    /// re-signing, which replaces it whatever it holds).
    pub(crate) fn measure_without_signature(&mut self) -> Result<Measurements, ReadError> {
        self.scan(true).map(|(measurements, _)| measurements)
    }

    /// Measures the image and verifies its signature: the COSE signature against the embedded
    /// certificate, the signed PCR0 against the computed one, the certificate's validity at
    /// `at`.
    pub fn verify_signature(&mut self, at: SystemTime) -> Result<VerifiedSignature, ReadError> {
        let (measurements, signature) = self.scan(true)?;
        let section = signature.ok_or(ReadError::NotSigned)?;
        Ok(sign::verify_signature_section(
            &section,
            &measurements.pcr0,
            at,
        )?)
    }

    fn find(&self, kind: SectionType) -> Option<SectionInfo> {
        self.sections
            .iter()
            .find(|s| s.section_type == kind)
            .copied()
    }

    fn ramdisks(&self) -> impl Iterator<Item = SectionInfo> + '_ {
        self.sections
            .iter()
            .filter(|s| s.section_type == SectionType::Ramdisk)
            .copied()
    }

    /// Loads the (unique) section of type `kind`, refusing sizes above `limit`.
    fn load(&mut self, kind: SectionType, limit: u64) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(info) = self.find(kind) else {
            return Ok(None);
        };
        if info.size > limit {
            return Err(ReadError::SectionTooLarge {
                section: kind,
                size: info.size,
                limit,
            });
        }
        // `info.size` is at most `limit` and was checked against the file length.
        let mut data = Vec::with_capacity(info.size as usize);
        self.section_reader(info.index)?.read_to_end(&mut data)?;
        if (data.len() as u64) < info.size {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        Ok(Some(data))
    }

    /// One pass over the whole file: CRC of every byte but the CRC field, and (when `measure`)
    /// PCR0/1/2 through the two-thread pipeline. Returns the signature section's bytes too, so
    /// callers need not read it again. Fails with `CrcMismatch` before anything is parsed from
    /// a corrupted section.
    fn scan(&mut self, measure: bool) -> Result<(Measurements, Option<Vec<u8>>), ReadError> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.raw_header[..CRC_OFFSET]);
        let mut pipeline = Pipeline::new()?;
        let mut signature = None;
        let mut seen_ramdisk = false;
        for info in self.sections.clone() {
            self.inner.seek(SeekFrom::Start(info.offset))?;
            let mut raw = [0u8; SECTION_HEADER_LEN];
            self.inner.read_exact(&mut raw)?;
            crc.update(&raw);
            let (pcr0, lane) = match info.section_type {
                SectionType::Kernel | SectionType::Cmdline => (true, Some(Lane::Bootstrap)),
                SectionType::Ramdisk if !seen_ramdisk => (true, Some(Lane::Bootstrap)),
                SectionType::Ramdisk => (true, Some(Lane::App)),
                SectionType::Metadata | SectionType::Signature => (false, None),
            };
            seen_ramdisk |= info.section_type == SectionType::Ramdisk;
            let (pcr0, lane) = if measure { (pcr0, lane) } else { (false, None) };
            let capture = measure && info.section_type == SectionType::Signature;
            if capture && info.size > SIGNATURE_LIMIT {
                return Err(ReadError::SectionTooLarge {
                    section: SectionType::Signature,
                    size: info.size,
                    limit: SIGNATURE_LIMIT,
                });
            }
            let mut captured = capture.then(Vec::new);
            let mut remaining = info.size;
            while remaining > 0 {
                let n = remaining.min(CHUNK_LEN as u64) as usize;
                let mut buf = pipeline.buffer();
                buf.resize(n, 0);
                self.inner.read_exact(&mut buf)?;
                remaining -= n as u64;
                pipeline.process(buf, pcr0, lane, |data| -> Result<(), ReadError> {
                    crc.update(data);
                    if let Some(sig) = captured.as_mut() {
                        sig.extend_from_slice(data);
                    }
                    Ok(())
                })?;
            }
            if captured.is_some() {
                signature = captured;
            }
        }
        let computed = crc.finalize();
        if computed != self.header.crc32 {
            return Err(ReadError::CrcMismatch {
                header: self.header.crc32,
                computed,
            });
        }
        let pcrs = pipeline.finish()?;
        let measurements = Measurements {
            pcr0: pcrs.pcr0,
            pcr1: pcrs.pcr1,
            pcr2: pcrs.pcr2,
            pcr8: None,
        };
        Ok((measurements, signature))
    }
}

/// Exactly one kernel and cmdline, at least one ramdisk, at most one metadata and signature.
fn check_section_set(sections: &[SectionInfo]) -> Result<(), ReadError> {
    let count = |kind| sections.iter().filter(|s| s.section_type == kind).count();
    for kind in [
        SectionType::Kernel,
        SectionType::Cmdline,
        SectionType::Ramdisk,
    ] {
        if count(kind) == 0 {
            return Err(ReadError::MissingSection(kind));
        }
    }
    for kind in [
        SectionType::Kernel,
        SectionType::Cmdline,
        SectionType::Metadata,
        SectionType::Signature,
    ] {
        if count(kind) > 1 {
            return Err(ReadError::DuplicateSection(kind));
        }
    }
    Ok(())
}
