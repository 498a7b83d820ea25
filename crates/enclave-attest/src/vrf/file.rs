//! File claims: `(path, SHA3-512)` pairs proven with the enclave's VRF key.

use std::io::Read;
use std::path::Path;

use sha3::{Digest, Sha3_512};

use super::{prove, verify, Output, Proof, PublicKey, SecretKey, VrfError};

/// Domain separator that starts every file-claim VRF input (`alpha`).
pub const FILE_CLAIM_DOMAIN: &[u8] = b"enclave-engine file v1\0";

/// Streams `path` through SHA3-512.
pub fn file_hash(path: impl AsRef<Path>) -> std::io::Result<[u8; 64]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha3_512::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// A statement "the file at `path` has SHA3-512 digest `sha3_512`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileClaim {
    /// The file's path as named in the attestation spec (UTF-8, compared byte for byte).
    pub path: String,
    /// SHA3-512 of the file's contents.
    pub sha3_512: [u8; 64],
}

impl FileClaim {
    /// Hashes the file at `fs_path` and records it under the name `path`.
    pub fn from_file(path: impl Into<String>, fs_path: impl AsRef<Path>) -> std::io::Result<Self> {
        Ok(Self {
            path: path.into(),
            sha3_512: file_hash(fs_path)?,
        })
    }

    /// The canonical VRF input: `FILE_CLAIM_DOMAIN || u32-BE(len(path)) || path || sha3_512`.
    ///
    /// The length prefix makes the encoding injective (the digest has a fixed length).
    ///
    /// # Errors
    ///
    /// [`VrfError::PathTooLong`] if the path does not fit a `u32` length.
    pub fn alpha(&self) -> Result<Vec<u8>, VrfError> {
        let path = self.path.as_bytes();
        let len = u32::try_from(path.len()).map_err(|_| VrfError::PathTooLong)?;
        let mut alpha = Vec::with_capacity(FILE_CLAIM_DOMAIN.len() + 4 + path.len() + 64);
        alpha.extend_from_slice(FILE_CLAIM_DOMAIN);
        alpha.extend_from_slice(&len.to_be_bytes());
        alpha.extend_from_slice(path);
        alpha.extend_from_slice(&self.sha3_512);
        Ok(alpha)
    }
}

/// Proves `claim` with the enclave's VRF key.
pub fn prove_file(sk: &SecretKey, claim: &FileClaim) -> Result<Proof, VrfError> {
    prove(sk, &claim.alpha()?)
}

/// Verifies a file proof offline against the attested VRF public key; returns `beta`.
pub fn verify_file(pk: &PublicKey, claim: &FileClaim, proof: &Proof) -> Result<Output, VrfError> {
    verify(pk, &claim.alpha()?, proof)
}
