//! The EIF header (548 bytes) and section headers (12 bytes), big-endian.
//!
//! Field order and sizes follow `aws_nitro_enclaves_image_format::defs::EifHeader`; decoding
//! never panics and checks every field a reader later relies on.

use thiserror::Error;

/// `.eif` in ASCII.
pub const EIF_MAGIC: [u8; 4] = *b".eif";
/// The version this crate writes (V4 added the metadata section).
pub const EIF_VERSION: u16 = 4;
/// The oldest version the reader accepts: V2 introduced the CRC the reader relies on.
pub const MIN_READ_VERSION: u16 = 2;
/// Number of slots in the header's section table.
pub const MAX_SECTIONS: usize = 32;
/// Size of the encoded [`EifHeader`].
pub const HEADER_LEN: usize = 548;
/// Size of the encoded [`SectionHeader`].
pub const SECTION_HEADER_LEN: usize = 12;
/// Offset of the CRC32 field, the last 4 bytes of the header; the CRC covers everything else.
pub const CRC_OFFSET: usize = HEADER_LEN - 4;
/// Header flag bit: the image is for aarch64 (cleared for x86_64).
pub const FLAG_ARCH_ARM64: u16 = 0x1;

/// Errors found while decoding or validating headers. Every variant names the faulty value so
/// that a corrupted file can be diagnosed from the message alone.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The input is shorter than the 548-byte header.
    #[error("file is {len} bytes, shorter than the {HEADER_LEN}-byte EIF header")]
    TooShort {
        /// Length of the input.
        len: u64,
    },
    /// The first four bytes are not `.eif`.
    #[error("bad magic {found:02x?}, expected \".eif\"")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The version is outside [`MIN_READ_VERSION`]..=[`EIF_VERSION`].
    #[error("unsupported EIF version {0} (supported: {MIN_READ_VERSION} to {EIF_VERSION})")]
    UnsupportedVersion(u16),
    /// `num_sections` is larger than the table.
    #[error("header declares {0} sections, at most {MAX_SECTIONS} are possible")]
    TooManySections(u16),
    /// `num_sections` is zero.
    #[error("header declares no sections")]
    NoSections,
    /// A section (its header plus data) does not fit in the file.
    #[error("section {index} at offset {offset} with {size} bytes of data does not fit in the {file_len}-byte file")]
    SectionOutOfBounds {
        /// Index in the section table.
        index: usize,
        /// Offset of the section header.
        offset: u64,
        /// Data size from the table.
        size: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// A section starts before the previous one (or the header) ends.
    #[error("section {index} at offset {offset} overlaps the previous part of the file, which ends at {previous_end}")]
    SectionOverlap {
        /// Index in the section table.
        index: usize,
        /// Offset of the section header.
        offset: u64,
        /// End of the header or of the previous section.
        previous_end: u64,
    },
    /// A section starts after the previous one ends: unmeasured, unexplained bytes.
    #[error("section {index} at offset {offset} leaves a gap after the previous part of the file, which ends at {previous_end}")]
    SectionGap {
        /// Index in the section table.
        index: usize,
        /// Offset of the section header.
        offset: u64,
        /// End of the header or of the previous section.
        previous_end: u64,
    },
    /// Bytes follow the last section.
    #[error("{extra} unexplained bytes after the last section (which ends at {end})")]
    TrailingData {
        /// End of the last section.
        end: u64,
        /// Number of bytes after it.
        extra: u64,
    },
    /// A section header has a type this format does not define.
    #[error("section at offset {offset} has unknown type {value}")]
    UnknownSectionType {
        /// Offset of the section header.
        offset: u64,
        /// The type field.
        value: u16,
    },
    /// The size in a section header differs from the size in the header's table.
    #[error(
        "section {index}: the table says {in_table} bytes, its section header says {in_section}"
    )]
    SectionSizeMismatch {
        /// Index in the section table.
        index: usize,
        /// Size from the EIF header's table.
        in_table: u64,
        /// Size from the section header.
        in_section: u64,
    },
}

/// Section types, numbered as in the official `EifSectionType` (0 is "invalid").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionType {
    /// The kernel image (bzImage / Image).
    Kernel,
    /// The kernel command line, without a NUL terminator.
    Cmdline,
    /// An initramfs (newc cpio); the first is the bootstrap ramdisk, the others the app.
    Ramdisk,
    /// The CBOR-encoded PCR0 signature.
    Signature,
    /// The JSON `EifIdentityInfo`.
    Metadata,
}

impl SectionType {
    /// The on-disk type number.
    pub fn to_u16(self) -> u16 {
        match self {
            SectionType::Kernel => 1,
            SectionType::Cmdline => 2,
            SectionType::Ramdisk => 3,
            SectionType::Signature => 4,
            SectionType::Metadata => 5,
        }
    }

    /// Decodes an on-disk type number; `None` for 0 ("invalid") and unknown values.
    pub fn from_u16(value: u16) -> Option<Self> {
        match value {
            1 => Some(SectionType::Kernel),
            2 => Some(SectionType::Cmdline),
            3 => Some(SectionType::Ramdisk),
            4 => Some(SectionType::Signature),
            5 => Some(SectionType::Metadata),
            _ => None,
        }
    }

    /// Lower-case name for messages and listings.
    pub fn name(self) -> &'static str {
        match self {
            SectionType::Kernel => "kernel",
            SectionType::Cmdline => "cmdline",
            SectionType::Ramdisk => "ramdisk",
            SectionType::Signature => "signature",
            SectionType::Metadata => "metadata",
        }
    }
}

impl std::fmt::Display for SectionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The 12-byte header in front of each section's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionHeader {
    /// What the section holds.
    pub section_type: SectionType,
    /// Unused by the format so far; written as 0.
    pub flags: u16,
    /// Size of the data that follows, in bytes.
    pub size: u64,
}

impl SectionHeader {
    /// A header with flags 0, as every known writer produces.
    pub fn new(section_type: SectionType, size: u64) -> Self {
        SectionHeader {
            section_type,
            flags: 0,
            size,
        }
    }

    /// Big-endian encoding.
    pub fn to_bytes(&self) -> [u8; SECTION_HEADER_LEN] {
        let mut out = [0u8; SECTION_HEADER_LEN];
        out[0..2].copy_from_slice(&self.section_type.to_u16().to_be_bytes());
        out[2..4].copy_from_slice(&self.flags.to_be_bytes());
        out[4..12].copy_from_slice(&self.size.to_be_bytes());
        out
    }

    /// Decodes a section header found at `offset` (the offset only serves the error message).
    pub fn decode(bytes: &[u8; SECTION_HEADER_LEN], offset: u64) -> Result<Self, HeaderError> {
        let mut r = BeReader(bytes);
        let value = r.u16();
        let flags = r.u16();
        let size = r.u64();
        let section_type = SectionType::from_u16(value)
            .ok_or(HeaderError::UnknownSectionType { offset, value })?;
        Ok(SectionHeader {
            section_type,
            flags,
            size,
        })
    }
}

/// The 548-byte EIF header. `section_offsets[i]` points at section *i*'s [`SectionHeader`];
/// `section_sizes[i]` is the size of its data (without the 12-byte section header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EifHeader {
    /// Format version ([`EIF_VERSION`] when written by us).
    pub version: u16,
    /// Flags; bit 0 = aarch64 ([`FLAG_ARCH_ARM64`]).
    pub flags: u16,
    /// Default enclave memory, in bytes.
    pub default_mem: u64,
    /// Default number of vCPUs.
    pub default_cpus: u64,
    /// Reserved, 0.
    pub reserved: u16,
    /// Number of used slots in the section table.
    pub num_sections: u16,
    /// Offset of each section header; slots past `num_sections` are 0.
    pub section_offsets: [u64; MAX_SECTIONS],
    /// Data size of each section; slots past `num_sections` are 0.
    pub section_sizes: [u64; MAX_SECTIONS],
    /// Unused, 0.
    pub unused: u32,
    /// CRC32 (IEEE) of the whole file except this field.
    pub crc32: u32,
}

impl EifHeader {
    /// Big-endian encoding, magic included.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut w = BeWriter {
            buf: &mut out,
            pos: 0,
        };
        w.put(&EIF_MAGIC);
        w.put(&self.version.to_be_bytes());
        w.put(&self.flags.to_be_bytes());
        w.put(&self.default_mem.to_be_bytes());
        w.put(&self.default_cpus.to_be_bytes());
        w.put(&self.reserved.to_be_bytes());
        w.put(&self.num_sections.to_be_bytes());
        for offset in &self.section_offsets {
            w.put(&offset.to_be_bytes());
        }
        for size in &self.section_sizes {
            w.put(&size.to_be_bytes());
        }
        w.put(&self.unused.to_be_bytes());
        w.put(&self.crc32.to_be_bytes());
        out
    }

    /// Decodes and checks magic, version and section count. The layout against a file length
    /// is checked separately by [`EifHeader::validate_layout`].
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, HeaderError> {
        let mut r = BeReader(bytes);
        let magic = r.array::<4>();
        if magic != EIF_MAGIC {
            return Err(HeaderError::BadMagic { found: magic });
        }
        let version = r.u16();
        if !(MIN_READ_VERSION..=EIF_VERSION).contains(&version) {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let flags = r.u16();
        let default_mem = r.u64();
        let default_cpus = r.u64();
        let reserved = r.u16();
        let num_sections = r.u16();
        if usize::from(num_sections) > MAX_SECTIONS {
            return Err(HeaderError::TooManySections(num_sections));
        }
        if num_sections == 0 {
            return Err(HeaderError::NoSections);
        }
        let mut section_offsets = [0u64; MAX_SECTIONS];
        for slot in &mut section_offsets {
            *slot = r.u64();
        }
        let mut section_sizes = [0u64; MAX_SECTIONS];
        for slot in &mut section_sizes {
            *slot = r.u64();
        }
        let unused = r.u32();
        let crc32 = r.u32();
        Ok(EifHeader {
            version,
            flags,
            default_mem,
            default_cpus,
            reserved,
            num_sections,
            section_offsets,
            section_sizes,
            unused,
            crc32,
        })
    }

    /// `(offset, size)` of each used table slot.
    pub fn sections(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let n = usize::from(self.num_sections).min(MAX_SECTIONS);
        self.section_offsets[..n]
            .iter()
            .copied()
            .zip(self.section_sizes[..n].iter().copied())
    }

    /// Checks the section table against the file length: every section inside the file, and
    /// the sections contiguous from the end of the header to the end of the file, in table
    /// order. Every known writer lays files out this way, and the official reader walks the
    /// sections sequentially, so anything else would be read differently by different tools.
    pub fn validate_layout(&self, file_len: u64) -> Result<(), HeaderError> {
        let mut previous_end = HEADER_LEN as u64;
        for (index, (offset, size)) in self.sections().enumerate() {
            let end = offset
                .checked_add(SECTION_HEADER_LEN as u64)
                .and_then(|v| v.checked_add(size))
                .filter(|&end| end <= file_len)
                .ok_or(HeaderError::SectionOutOfBounds {
                    index,
                    offset,
                    size,
                    file_len,
                })?;
            if offset < previous_end {
                return Err(HeaderError::SectionOverlap {
                    index,
                    offset,
                    previous_end,
                });
            }
            if offset > previous_end {
                return Err(HeaderError::SectionGap {
                    index,
                    offset,
                    previous_end,
                });
            }
            previous_end = end;
        }
        if previous_end < file_len {
            return Err(HeaderError::TrailingData {
                end: previous_end,
                extra: file_len - previous_end,
            });
        }
        Ok(())
    }
}

/// Big-endian cursor over a buffer whose length the caller has fixed by type, so the reads
/// cannot run past the end (the callers read exactly as many bytes as the arrays hold).
struct BeReader<'a>(&'a [u8]);

impl BeReader<'_> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }
}

struct BeWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl BeWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = (self.pos + bytes.len()).min(self.buf.len());
        let n = end - self.pos;
        self.buf[self.pos..end].copy_from_slice(&bytes[..n]);
        self.pos = end;
    }
}
