//! An opt-in cache of certificate links already verified.
//!
//! Why: every document repeats its CA bundle, and the region, zonal and instance certificates
//! stay the same across all documents of a host for hours to weeks. A service verifying many
//! documents can skip re-checking a signature it has already checked. What is cached is only
//! the fact "this exact certificate (all of its DER, signature included) verifies under this
//! exact issuer key", keyed by SHA-256 of both; validity times, names and constraints are still
//! checked on every document. Failures are never cached, so input cannot poison the cache.

use std::collections::HashSet;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::cert::{ParsedCert, PublicKey};
use crate::error::ChainFault;

/// Verified (certificate, issuer key) pairs, bounded in size.
#[derive(Debug)]
pub(crate) struct LinkCache {
    seen: Mutex<HashSet<[u8; 32]>>,
    capacity: usize,
}

impl LinkCache {
    pub fn new(capacity: usize) -> LinkCache {
        LinkCache {
            seen: Mutex::new(HashSet::new()),
            capacity: capacity.max(1),
        }
    }

    /// Checks `cert`'s signature under `issuer`, skipping the check when already done.
    pub fn check(&self, cert: &ParsedCert<'_>, issuer: &PublicKey) -> Result<(), ChainFault> {
        let id = link_id(cert.der, issuer);
        // A poisoned lock only means another thread panicked mid-insert; the set is still valid.
        if self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&id)
        {
            return Ok(());
        }
        cert.check_signature(issuer)?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= self.capacity {
            // Crude but bounded: a miss costs one signature check, never a wrong answer.
            seen.clear();
        }
        seen.insert(id);
        Ok(())
    }
}

fn link_id(cert_der: &[u8], issuer: &PublicKey) -> [u8; 32] {
    let mut h = Sha256::new();
    // Length-prefixed so the boundary between the two parts is unambiguous.
    h.update((cert_der.len() as u64).to_be_bytes());
    h.update(cert_der);
    match issuer {
        PublicKey::P384(k) => h.update(k.to_encoded_point(false).as_bytes()),
        PublicKey::P256(k) => h.update(k.to_encoded_point(false).as_bytes()),
    }
    h.finalize().into()
}
