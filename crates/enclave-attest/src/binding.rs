//! What the attestation server binds into every document it fetches, and the name its TLS
//! certificate has: the contract between the server (crate `enclave-attest-server`) and the
//! client that verifies it ([`crate::client`]).
//!
//! * `public_key` = the DER `SubjectPublicKeyInfo` of the server's TLS key (the key of its
//!   self-signed certificate), so a verifier that checks the document knows which TLS key is the
//!   enclave's.
//! * `user_data` = [`Binding::encode`], a fixed layout, versioned so a later format cannot be
//!   mistaken for this one:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `EATB` (enclave-attest binding) |
//! | 4 | 1 | version, `1` |
//! | 5 | 1 | flags: bit 0 = a VRF public key follows; other bits 0 |
//! | 6 | 32 | the file-attestation VRF public key (ECVRF-EDWARDS25519-SHA512-TAI), when flagged |
//!
//! So 6 bytes without file attestation, 38 with. Decoding is strict: a wrong magic, version,
//! unknown flag or length is an error, never a guess.

use der::{Decode, Encode};
use x509_cert::Certificate;

use crate::vrf;

/// The server certificate's subject CN and DNS name, which the client asks for (SNI) and
/// checks nothing else of: the certificate is self-signed, trusted only through the document.
pub const CERT_NAME: &str = "enclave-attest";

/// The DER SubjectPublicKeyInfo of a certificate: what the document's `public_key` binds, and
/// what the client compares it with.
pub fn cert_spki(cert_der: &[u8]) -> Option<Vec<u8>> {
    Certificate::from_der(cert_der)
        .ok()?
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .ok()
}

/// The first four bytes of a binding.
pub const BINDING_MAGIC: [u8; 4] = *b"EATB";
/// The layout version this build writes and reads.
pub const BINDING_VERSION: u8 = 1;
const FLAG_VRF_KEY: u8 = 0x01;
const HEADER_LEN: usize = 6;

/// The server's `user_data`: which layout, and the VRF public key when files are attested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The key file proofs verify under; `None` when file attestation is off.
    pub vrf_public_key: Option<vrf::PublicKey>,
}

/// Why a `user_data` is not a binding of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The document has no user_data.
    #[error("the document has no user_data; it was not fetched by an enclave-attest server")]
    Missing,
    /// Wrong magic, version, flags or length.
    #[error("user_data is not an enclave-attest binding v{BINDING_VERSION}: {0}")]
    Malformed(&'static str),
    /// The VRF key is not a valid key.
    #[error("user_data: {0}")]
    VrfKey(#[from] vrf::VrfError),
}

impl Binding {
    /// The `user_data` bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 32);
        out.extend_from_slice(&BINDING_MAGIC);
        out.push(BINDING_VERSION);
        match &self.vrf_public_key {
            Some(pk) => {
                out.push(FLAG_VRF_KEY);
                out.extend_from_slice(&pk.to_bytes());
            }
            None => out.push(0),
        }
        out
    }

    /// Reads a `user_data` written by [`Binding::encode`].
    pub fn decode(user_data: &[u8]) -> Result<Binding, BindingError> {
        let (header, rest) = user_data
            .split_at_checked(HEADER_LEN)
            .ok_or(BindingError::Malformed("shorter than its header"))?;
        if header[..4] != BINDING_MAGIC {
            return Err(BindingError::Malformed("wrong magic"));
        }
        if header[4] != BINDING_VERSION {
            return Err(BindingError::Malformed("unknown version"));
        }
        match (header[5], rest.len()) {
            (0, 0) => Ok(Binding {
                vrf_public_key: None,
            }),
            (FLAG_VRF_KEY, 32) => Ok(Binding {
                vrf_public_key: Some(vrf::PublicKey::from_bytes(rest)?),
            }),
            (0 | FLAG_VRF_KEY, _) => Err(BindingError::Malformed("wrong length for its flags")),
            _ => Err(BindingError::Malformed("unknown flags")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_anything_else() {
        let pk = vrf::SecretKey::from_seed([7; 32]).public_key();
        for b in [
            Binding {
                vrf_public_key: None,
            },
            Binding {
                vrf_public_key: Some(pk),
            },
        ] {
            let bytes = b.encode();
            assert_eq!(Binding::decode(&bytes), Ok(b));
            for cut in 0..bytes.len() {
                assert!(Binding::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Binding::decode(&longer).is_err());
            for i in 0..HEADER_LEN {
                let mut bad = bytes.clone();
                bad[i] ^= 0x80;
                assert!(Binding::decode(&bad).is_err(), "flip at {i}");
            }
        }
        assert_eq!(
            Binding {
                vrf_public_key: Some(pk)
            }
            .encode()
            .len(),
            38
        );
    }
}
