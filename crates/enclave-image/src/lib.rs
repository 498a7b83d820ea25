//! enclave-image: reproducible Nitro Enclave images (EIF) from OCI images, with no Docker daemon.
//!
//! - [`source`]: image sources in skopeo's notation, layers streamed and verified.
//! - [`rootfs`]: layers applied (whiteouts, links, modes) into a tree, never onto the host.
//! - [`cpio`]: the deterministic newc writer of the ramdisks.
//! - [`eif`]: the EIF writer and reader, PCRs, PCR0 signing (PCR8).
//! - [`kernel`]: kernel profiles (`nitro`, `emulated`).
//! - [`metadata`]: the metadata section and the build's provenance.
//! - [`build`]: the pipeline tying them together.
//! - [`package`]: an EIF and the project's binaries as an OCI image on a base image.
//!
//! Where it runs: on the parent or any build machine, in `enclave-ctl` (build, inspect, measure,
//! sign, package); nothing of it is in the enclave, which only ever sees the ramdisks it wrote.
#![deny(unsafe_code)]
pub mod build;
pub mod cpio;
pub mod eif;
pub mod kernel;
pub mod metadata;
pub mod package;
pub mod rootfs;
pub mod source;
