//! ECDSA P-384 signature verification, by ring.
//!
//! Why ring: it is already linked (rustls uses it), its P-384 code is BoringSSL's, reviewed and
//! fuzzed far beyond what a verifier of our own would be, and it is as fast as the variable-time
//! double-scalar multiplication this module used to hand-write (see docs/benchmarks.md). ring
//! takes the message, not a digest, and knows SHA-256 and SHA-384 with P-384; the rare
//! ecdsa-with-SHA512 certificate is verified by `p384`'s (constant-time, slower) verifier.
//!
//! Both accept high-S signatures: (r, s) and (r, n - s) are the same ECDSA signature, and
//! neither X.509 nor COSE requires low-S (the NSM does not produce it). Both reject r or s of
//! zero or not below the group order, and keys not on the curve. `tests/p384_differential.rs`
//! checks this module against `p384` over tens of thousands of cases.

use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::{Signature, VerifyingKey};
use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_FIXED};
use sha2::{Digest, Sha512};

/// The hash an ECDSA signature was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// Verifies `sig` over `message` hashed with `hash`, with the P-384 `key`.
pub(crate) fn verify(key: &VerifyingKey, message: &[u8], hash: Hash, sig: &Signature) -> bool {
    verify_raw(
        key.to_encoded_point(false).as_bytes(),
        message,
        hash,
        &sig.to_bytes(),
    )
}

/// Verifies a signature given as r ‖ s (48 bytes each, big-endian) with a key given as an
/// uncompressed SEC1 point; `false` for a malformed key or signature. Public (hidden) so the
/// differential test can hand ring keys and signatures that `p384` would not even parse.
#[doc(hidden)]
pub fn verify_raw(sec1_key: &[u8], message: &[u8], hash: Hash, sig: &[u8]) -> bool {
    match hash {
        Hash::Sha384 => UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, sec1_key)
            .verify(message, sig)
            .is_ok(),
        // ring has P-384 with SHA-256 in the DER form only (the form certificates carry).
        Hash::Sha256 => Signature::from_slice(sig).is_ok_and(|sig| {
            UnparsedPublicKey::new(&ECDSA_P384_SHA256_ASN1, sec1_key)
                .verify(message, sig.to_der().as_bytes())
                .is_ok()
        }),
        Hash::Sha512 => {
            let (Ok(key), Ok(sig)) = (
                VerifyingKey::from_sec1_bytes(sec1_key),
                Signature::from_slice(sig),
            ) else {
                return false;
            };
            let sig = sig.normalize_s().unwrap_or(sig);
            key.verify_prehash(&Sha512::digest(message), &sig).is_ok()
        }
    }
}
