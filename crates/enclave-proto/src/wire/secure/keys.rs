//! The records' AES-256-GCM, keyed with the two transport keys of the Noise handshake and used
//! through ring directly: records are sealed and opened where they lie, where snow's own
//! transport state copies each one into another buffer first. The construction is Noise's
//! (`AESGCM` cipher functions): 12-byte nonce of 4 zero bytes and the record counter, big
//! endian; no associated data. A test checks records against snow's transport.

use std::fmt;
use std::io;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};

use super::SecureError;

/// One session's keys: one per direction.
pub struct RecordKeys {
    send: LessSafeKey,
    recv: LessSafeKey,
}

impl fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordKeys")
    }
}

fn key(bytes: &[u8; 32]) -> Result<LessSafeKey, SecureError> {
    let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SecureError::Keys)?;
    Ok(LessSafeKey::new(unbound))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

impl RecordKeys {
    /// This end's sending and receiving keys.
    pub(super) fn new(send: &[u8; 32], recv: &[u8; 32]) -> Result<Self, SecureError> {
        Ok(Self {
            send: key(send)?,
            recv: key(recv)?,
        })
    }

    /// Encrypts `in_out` in place as record number `counter`; the tag follows it on the wire.
    /// Each counter is used once: the writer counts its records.
    pub(super) fn seal(&self, counter: u64, in_out: &mut [u8]) -> io::Result<Tag> {
        self.send
            .seal_in_place_separate_tag(nonce(counter), Aad::empty(), in_out)
            .map_err(|_| super::record::invalid("sealing a control record failed"))
    }

    /// Decrypts record number `counter` (ciphertext and tag) in place; the plaintext is the
    /// front of `in_out`. An error for anything but the record the peer sealed as `counter`.
    pub(super) fn open<'a>(&self, counter: u64, in_out: &'a mut [u8]) -> io::Result<&'a [u8]> {
        match self
            .recv
            .open_in_place(nonce(counter), Aad::empty(), in_out)
        {
            Ok(plain) => Ok(plain),
            Err(_) => Err(super::record::invalid(
                "control record failed authentication",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::secure::NOISE_PARAMS;

    /// A finished NX handshake of snow's: (initiator, responder).
    fn handshake() -> (snow::HandshakeState, snow::HandshakeState) {
        let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
        let static_key = snow::Builder::new(params.clone())
            .generate_keypair()
            .unwrap();
        let mut i = snow::Builder::new(params.clone())
            .build_initiator()
            .unwrap();
        let mut r = snow::Builder::new(params)
            .local_private_key(&static_key.private)
            .unwrap()
            .build_responder()
            .unwrap();
        let (mut a, mut b) = ([0u8; 1024], [0u8; 1024]);
        let n = i.write_message(&[], &mut a).unwrap();
        r.read_message(&a[..n], &mut b).unwrap();
        let n = r.write_message(&[], &mut a).unwrap();
        i.read_message(&a[..n], &mut b).unwrap();
        (i, r)
    }

    /// Our records are Noise's: snow's transport opens what these keys seal, and these keys
    /// open what snow seals, in both directions and at counters past 0.
    #[test]
    fn records_are_snows_transport_messages() {
        let (mut i, r) = handshake();
        let (first, second) = i.dangerously_get_raw_split();
        let ours = RecordKeys::new(&first, &second).unwrap();
        let snow = r.into_stateless_transport_mode().unwrap();
        for counter in [0, 1, 7, 1 << 40] {
            let plain = format!("record {counter}").into_bytes();
            let mut sealed = plain.clone();
            let tag = ours.seal(counter, &mut sealed).unwrap();
            sealed.extend_from_slice(tag.as_ref());
            let mut opened = vec![0; sealed.len()];
            let n = snow.read_message(counter, &sealed, &mut opened).unwrap();
            assert_eq!(opened[..n], plain[..]);

            let mut back = vec![0; plain.len() + 16];
            let n = snow.write_message(counter, &plain, &mut back).unwrap();
            assert_eq!(ours.open(counter, &mut back[..n]).unwrap(), &plain[..]);
            // The wrong counter, or a changed byte, does not open.
            let mut wrong = back[..n].to_vec();
            assert!(ours.open(counter + 1, &mut wrong).is_err());
            let mut changed = back[..n].to_vec();
            changed[0] ^= 1;
            assert!(ours.open(counter, &mut changed).is_err());
        }
    }
}
