//! File claims and tombstones: what the enclave's VRF key proves about a file.
//!
//! A claim is bound to the boot that made it (the [`Epoch`], the hash of the attestation
//! server's start-up document) and to its place in that boot's history (the generation, a
//! counter the enclave never repeats within a boot), so an old claim cannot pass for a current
//! one. The two kinds of statement start their VRF input with different domain strings, so a
//! proof of one is never a proof of the other:
//!
//! | statement | alpha |
//! |---|---|
//! | "`path` has SHA3-512 `h`" ([`FileClaim`]) | `"enclave-engine file v2\0" ‖ epoch ‖ u64-BE(gen) ‖ u32-BE(len) ‖ path ‖ h` |
//! | "`path` is gone" ([`DeleteClaim`]) | `"enclave-engine delete v1\0" ‖ epoch ‖ u64-BE(gen) ‖ u32-BE(len) ‖ path` |
//!
//! Each domain string ends with its only NUL byte, so neither is a prefix of the other (nor of
//! the retired `"enclave-engine file v1\0"`); after it every field has a fixed length or a
//! length prefix, so each encoding is injective.

use std::io::Read;
use std::path::Path;

use sha2::Sha256;
use sha3::{Digest, Sha3_512};

use super::{prove, verify, Output, Proof, PublicKey, SecretKey, VrfError};

/// Domain separator that starts every file-claim VRF input (`alpha`).
pub const FILE_CLAIM_DOMAIN: &[u8] = b"enclave-engine file v2\0";
/// Domain separator that starts every tombstone VRF input.
pub const DELETE_CLAIM_DOMAIN: &[u8] = b"enclave-engine delete v1\0";

/// Which boot of the attestation server made a claim: SHA-256 of its start-up document (the
/// document, fetched once at start, that binds the server's TLS and VRF keys).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub [u8; 32]);

impl Epoch {
    /// The epoch of the boot whose start-up document is `document` (the raw COSE_Sign1 bytes).
    pub fn of_startup_document(document: &[u8]) -> Epoch {
        Epoch(Sha256::digest(document).into())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Epoch> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Epoch(bytes))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Epoch({})", self.to_hex())
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

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

/// A statement "in boot `epoch`, at generation `generation`, the file at `path` has SHA3-512
/// digest `sha3_512`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileClaim {
    /// The file's path as named in the attestation spec (UTF-8, compared byte for byte).
    pub path: String,
    /// SHA3-512 of the file's contents.
    pub sha3_512: [u8; 64],
    /// The enclave's change counter when it hashed the file (unique within the boot).
    pub generation: u64,
    /// The boot.
    pub epoch: Epoch,
}

impl FileClaim {
    /// The canonical VRF input (see the module documentation).
    ///
    /// # Errors
    ///
    /// [`VrfError::PathTooLong`] if the path does not fit a `u32` length.
    pub fn alpha(&self) -> Result<Vec<u8>, VrfError> {
        let mut alpha = header(FILE_CLAIM_DOMAIN, &self.epoch, self.generation, &self.path)?;
        alpha.extend_from_slice(&self.sha3_512);
        Ok(alpha)
    }
}

/// A statement "in boot `epoch`, at generation `generation`, nothing is attested at `path`
/// any more": a signed tombstone, published instead of a bare key-value delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteClaim {
    /// The path of the removed file.
    pub path: String,
    /// The enclave's change counter when it saw the removal.
    pub generation: u64,
    /// The boot.
    pub epoch: Epoch,
}

impl DeleteClaim {
    /// The canonical VRF input (see the module documentation).
    ///
    /// # Errors
    ///
    /// [`VrfError::PathTooLong`] if the path does not fit a `u32` length.
    pub fn alpha(&self) -> Result<Vec<u8>, VrfError> {
        header(
            DELETE_CLAIM_DOMAIN,
            &self.epoch,
            self.generation,
            &self.path,
        )
    }
}

/// `domain ‖ epoch ‖ u64-BE(generation) ‖ u32-BE(len(path)) ‖ path`, with room for a digest.
fn header(domain: &[u8], epoch: &Epoch, generation: u64, path: &str) -> Result<Vec<u8>, VrfError> {
    let path = path.as_bytes();
    let len = u32::try_from(path.len()).map_err(|_| VrfError::PathTooLong)?;
    let mut alpha = Vec::with_capacity(domain.len() + 32 + 8 + 4 + path.len() + 64);
    alpha.extend_from_slice(domain);
    alpha.extend_from_slice(&epoch.0);
    alpha.extend_from_slice(&generation.to_be_bytes());
    alpha.extend_from_slice(&len.to_be_bytes());
    alpha.extend_from_slice(path);
    Ok(alpha)
}

/// Proves `claim` with the enclave's VRF key.
pub fn prove_file(sk: &SecretKey, claim: &FileClaim) -> Result<Proof, VrfError> {
    prove(sk, &claim.alpha()?)
}

/// Verifies a file proof offline against the attested VRF public key; returns `beta`.
pub fn verify_file(pk: &PublicKey, claim: &FileClaim, proof: &Proof) -> Result<Output, VrfError> {
    verify(pk, &claim.alpha()?, proof)
}

/// Proves a tombstone with the enclave's VRF key.
pub fn prove_delete(sk: &SecretKey, claim: &DeleteClaim) -> Result<Proof, VrfError> {
    prove(sk, &claim.alpha()?)
}

/// Verifies a tombstone offline against the attested VRF public key; returns `beta`.
pub fn verify_delete(
    pk: &PublicKey,
    claim: &DeleteClaim,
    proof: &Proof,
) -> Result<Output, VrfError> {
    verify(pk, &claim.alpha()?, proof)
}
