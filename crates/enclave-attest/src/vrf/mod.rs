//! File attestation primitives: RFC 9381 ECVRF proofs over SHA3-512 file hashes.
//!
//! * [`ecvrf`]-backed [`prove`] / [`verify`] / [`proof_to_hash`] implement
//!   ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381 section 5, suite string `0x03`) on
//!   `curve25519-dalek`, checked against the RFC's Appendix B.3 test vectors.
//! * [`file_hash`], [`FileClaim`], [`prove_file`] and [`verify_file`] bind a file's path and
//!   SHA3-512 digest, with the boot's [`Epoch`] and a generation, into a canonical VRF input,
//!   so a client holding only the enclave's VRF public key can verify a file proof offline;
//!   [`DeleteClaim`], [`prove_delete`] and [`verify_delete`] do the same for the removal of a
//!   file (a signed tombstone), under a different domain string.
//!
//! Nothing here panics on input: malformed keys and proofs are [`VrfError`]s.

mod ecvrf;
mod file;

pub use ecvrf::{proof_to_hash, prove, verify};
pub use file::{
    file_hash, prove_delete, prove_file, verify_delete, verify_file, DeleteClaim, Epoch, FileClaim,
    DELETE_CLAIM_DOMAIN, FILE_CLAIM_DOMAIN,
};

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};

/// Length of an encoded proof: Gamma (32) || c (16) || s (32).
pub const PROOF_LEN: usize = 80;
/// Length of a VRF output (`beta`), a SHA-512 digest.
pub const OUTPUT_LEN: usize = 64;

/// Why a VRF key, proof or verification was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VrfError {
    /// The public key is not a canonical edwards25519 point encoding.
    #[error("VRF public key is not a valid edwards25519 point encoding")]
    InvalidPublicKey,
    /// The public key has small order (cofactor * Y is the identity), as RFC 9381 forbids.
    #[error("VRF public key has small order")]
    SmallOrderPublicKey,
    /// The proof has the wrong length.
    #[error("VRF proof must be {PROOF_LEN} bytes, got {0}")]
    ProofLength(usize),
    /// Gamma in the proof is not a canonical edwards25519 point encoding.
    #[error("VRF proof Gamma is not a valid edwards25519 point encoding")]
    InvalidGamma,
    /// The proof's scalar `s` is not reduced modulo the group order.
    #[error("VRF proof scalar s is not canonical")]
    NonCanonicalScalar,
    /// The proof is well formed but does not verify for this key and input.
    #[error("VRF proof does not verify")]
    VerificationFailed,
    /// No curve point found for the input in 256 tries (probability about 2^-256).
    #[error("VRF encode_to_curve found no point for this input")]
    EncodeToCurve,
    /// A claim's path is longer than `u32::MAX` bytes.
    #[error("file claim path is too long to encode")]
    PathTooLong,
}

/// An ECVRF secret key: a 32-byte seed, expanded as an Ed25519 secret key (RFC 8032 5.1.5).
#[derive(Clone)]
pub struct SecretKey {
    seed: [u8; 32],
}

impl SecretKey {
    /// Wraps a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { seed }
    }

    /// Generates a fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)?;
        Ok(Self { seed })
    }

    /// The seed bytes (secret).
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public key `Y = x * B`.
    pub fn public_key(&self) -> PublicKey {
        ecvrf::public_key(self)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// An ECVRF public key: a validated, canonically encoded edwards25519 point of large order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
}

impl PublicKey {
    /// Decodes and validates a public key (RFC 9381 5.4.5 `ECVRF_validate_key`): the encoding
    /// must be canonical (RFC 8032 5.1.3) and the point must not have small order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VrfError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| VrfError::InvalidPublicKey)?;
        let point = decode_point(&bytes).ok_or(VrfError::InvalidPublicKey)?;
        if point.is_small_order() {
            return Err(VrfError::SmallOrderPublicKey);
        }
        Ok(Self { bytes, point })
    }

    /// The 32-byte encoding (`PK_string`).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.bytes))
    }
}

/// An encoded ECVRF proof `pi_string` (Gamma 32 || c 16 || s 32).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Proof(pub [u8; PROOF_LEN]);

impl Proof {
    /// Wraps proof bytes, checking only the length (verification checks the rest).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VrfError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| VrfError::ProofLength(bytes.len()))
    }

    /// The 80 proof bytes.
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        self.0
    }
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proof({})", hex::encode(self.0))
    }
}

/// The VRF output `beta_string` (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Output(pub [u8; OUTPUT_LEN]);

impl Output {
    /// The 64 output bytes.
    pub fn to_bytes(&self) -> [u8; OUTPUT_LEN] {
        self.0
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Output({})", hex::encode(self.0))
    }
}

/// Strict RFC 8032 5.1.3 point decoding: `curve25519-dalek` accepts non-canonical `y >= p`
/// and `x = 0` with the sign bit set, so the decoded point must re-encode to the same bytes.
fn decode_point(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    (point.compress().to_bytes() == *bytes).then_some(point)
}
