//! The Nitro Enclaves image format (EIF): writer, reader, measurements (PCRs) and PCR0 signing.
//!
//! The byte layout is the one `aws-nitro-enclaves-image-format` 0.8 writes (version 4); see
//! `docs/architecture.md`, section "Enclave image (EIF) layout". In short:
//!
//! * a 548-byte big-endian [`header::EifHeader`] at offset 0 whose CRC32 covers every other byte
//!   of the file,
//! * then the sections, each a 12-byte [`header::SectionHeader`] followed by its data, in the
//!   order kernel, cmdline, metadata, ramdisk 0 (bootstrap), ramdisk 1.. (app), signature.
//!
//! The writer ([`writer::EifWriter`]) and the reader ([`reader::EifReader`]) both stream: no
//! ramdisk is ever held in memory, and each byte is read once while PCR0 and PCR1/PCR2 are
//! hashed on two threads (see `measure`).
//!
//! ```no_run
//! use enclave_image::eif::{EifOptions, EifWriter};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let out = std::fs::File::create("app.eif")?;
//! let mut w = EifWriter::new(out, EifOptions::default())?;
//! w.kernel(&mut std::fs::File::open("bzImage")?)?;
//! w.cmdline("console=ttyS0")?;
//! w.metadata(br#"{"ImageName":"app"}"#)?;
//! w.ramdisk_from(&mut std::fs::File::open("bootstrap.cpio")?)?;
//! {
//!     let mut rd = w.ramdisk()?;
//!     std::io::copy(&mut std::fs::File::open("app.cpio")?, &mut rd)?;
//!     rd.finish()?;
//! }
//! let measurements = w.finish(None)?;
//! println!("{}", measurements.pcr0_hex());
//! # Ok(()) }
//! ```

pub mod app_spec;
pub mod cert_info;
pub mod cose;
#[doc(hidden)]
pub mod fuzz;
pub mod header;
mod measure;
pub mod pcr;
pub mod reader;
pub mod resign;
pub mod sign;
pub mod writer;

pub use header::{EifHeader, HeaderError, SectionHeader, SectionType};
pub use pcr::{pcr8_of_certificate, Measurements};
pub use reader::{EifReader, ReadError, SectionInfo};
pub use resign::{resign, sign_eif_file, ResignError};
pub use sign::{EifSigner, SignError, VerifiedSignature};
pub use writer::{EifOptions, EifWriter, RamdiskWriter, WriteError};
