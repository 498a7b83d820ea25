//! Signing an existing EIF (`enclave-ctl sign`, nitro-cli's `sign-eif`): add or replace its
//! signature section so that PCR8 is the signing certificate's measurement.
//!
//! The image is copied section by section through the same [`EifWriter`] a build uses, and
//! signed by its [`EifWriter::finish`], so a build signed afterwards is byte for byte the build
//! signed at build time (same sections, same signature: RFC 6979 signing is deterministic).
//! The input is checked first (layout, CRC), and the PCR0 the writer computes from the bytes it
//! copied must equal the PCR0 of that check: an input changed while it was being read is
//! refused rather than signed. The output goes to a temporary file next to it and is renamed
//! into place only when complete, so a failure leaves no partial file, and signing in place
//! (input = output) never destroys the input.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::header::SectionType;
use super::pcr::Measurements;
use super::reader::{EifReader, ReadError, SectionInfo, METADATA_LIMIT};
use super::sign::EifSigner;
use super::writer::{EifOptions, EifWriter, WriteError};

/// Errors of [`sign_eif_file`] and [`resign`].
#[derive(Debug, Error)]
pub enum ResignError {
    /// The input is not a valid EIF (bad header, truncated, CRC mismatch, ...).
    #[error("the input is not a valid EIF: {0}")]
    Input(#[source] ReadError),
    /// The input's sections are not in the order kernel, cmdline, metadata, ramdisks,
    /// [signature] that `build` and nitro-cli write (e.g. an EIF older than version 4, which has
    /// no metadata section).
    #[error(
        "the EIF's sections are {found}; signing supports the layout kernel, cmdline, \
         metadata, ramdisk..., [signature] (EIF version 4, as build and nitro-cli write)"
    )]
    UnsupportedLayout {
        /// The section types in file order, comma-separated.
        found: String,
    },
    /// Writing the signed EIF failed.
    #[error("writing the signed EIF: {0}")]
    Write(#[from] WriteError),
    /// The input changed between its check and its copy.
    #[error(
        "the input changed while it was being signed (PCR0 {before} became {after}); try again"
    )]
    InputChanged {
        /// PCR0 when checked.
        before: String,
        /// PCR0 of the bytes copied.
        after: String,
    },
    /// A file operation around the output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Reads the EIF at `input`, signs it with `signer` and writes the result atomically to
/// `output` (which may be `input`); returns the measurements of the signed image. The output
/// keeps the input's permission bits.
pub fn sign_eif_file(
    input: &Path,
    output: &Path,
    signer: &EifSigner,
) -> Result<Measurements, ResignError> {
    let io_err = |what: String| move |source| ResignError::Io { what, source };
    let file = File::open(input).map_err(io_err(format!("opening {}", input.display())))?;
    let permissions = file
        .metadata()
        .map_err(io_err(format!("reading {}", input.display())))?
        .permissions();
    let out_dir = parent_dir(output);
    let tmp = tempfile::Builder::new()
        .prefix(".enclave-ctl-sign-")
        .tempfile_in(&out_dir)
        .map_err(io_err(format!(
            "creating a temporary file in {}",
            out_dir.display()
        )))?;
    let out = tmp
        .as_file()
        .try_clone()
        .map_err(io_err("duplicating the output file handle".into()))?;
    // On any error `tmp` is dropped here, which removes the temporary file.
    let measurements = resign(file, out, signer)?;
    let file = tmp.as_file();
    file.set_permissions(permissions)
        .and_then(|()| file.sync_all())
        .map_err(io_err("flushing the signed EIF to disk".into()))?;
    tmp.persist(output).map_err(|e| ResignError::Io {
        what: format!("moving the signed EIF into place at {}", output.display()),
        source: e.error,
    })?;
    Ok(measurements)
}

/// Copies the EIF read from `input` to `output` with a signature section by `signer` (any
/// previous one is dropped); returns the measurements of the signed image.
pub fn resign<R: Read + Seek, W: io::Write + Seek>(
    input: R,
    output: W,
    signer: &EifSigner,
) -> Result<Measurements, ResignError> {
    let mut reader = EifReader::new(input).map_err(ResignError::Input)?;
    let sections = reader.sections().to_vec();
    check_layout(&sections)?;
    // Checks the CRC of every byte and computes PCR0; an existing signature is not parsed, it
    // is replaced whatever it holds.
    let before = reader
        .measure_without_signature()
        .map_err(ResignError::Input)?;
    let header = *reader.header();
    let mut writer = EifWriter::new(
        output,
        EifOptions {
            flags: header.flags,
            default_mem: header.default_mem,
            default_cpus: header.default_cpus,
        },
    )?;
    let cmdline = reader.cmdline().map_err(ResignError::Input)?;
    for info in sections {
        let mut data = reader
            .section_reader(info.index)
            .map_err(ResignError::Input)?;
        match info.section_type {
            SectionType::Kernel => {
                writer.kernel(&mut data)?;
            }
            SectionType::Cmdline => writer.cmdline(&cmdline)?,
            SectionType::Metadata => {
                if info.size > METADATA_LIMIT {
                    return Err(ResignError::Input(ReadError::SectionTooLarge {
                        section: SectionType::Metadata,
                        size: info.size,
                        limit: METADATA_LIMIT,
                    }));
                }
                let mut metadata = Vec::new();
                data.read_to_end(&mut metadata)
                    .map_err(|e| ResignError::Input(e.into()))?;
                writer.metadata(&metadata)?;
            }
            SectionType::Ramdisk => {
                writer.ramdisk_from(&mut data)?;
            }
            SectionType::Signature => {}
        }
    }
    let measurements = writer.finish(Some(signer))?;
    if measurements.pcr0 != before.pcr0 {
        return Err(ResignError::InputChanged {
            before: before.pcr0_hex(),
            after: measurements.pcr0_hex(),
        });
    }
    Ok(measurements)
}

/// Kernel, cmdline, metadata, at least one ramdisk, then at most a signature: the only layout
/// the writer produces, so the copy has the input's PCRs.
fn check_layout(sections: &[SectionInfo]) -> Result<(), ResignError> {
    let types: Vec<SectionType> = sections.iter().map(|s| s.section_type).collect();
    let body = match types.split_last() {
        Some((SectionType::Signature, body)) => body,
        _ => &types[..],
    };
    let ok = body.len() >= 4
        && body[..3]
            == [
                SectionType::Kernel,
                SectionType::Cmdline,
                SectionType::Metadata,
            ]
        && body[3..].iter().all(|t| *t == SectionType::Ramdisk);
    if ok {
        return Ok(());
    }
    Err(ResignError::UnsupportedLayout {
        found: types
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
