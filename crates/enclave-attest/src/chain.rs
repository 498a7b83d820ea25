//! The certificate chain walk: leaf `certificate`, then `cabundle` from last to second, then a
//! configured trust root.
//!
//! `cabundle[0]` is the document's own copy of the root. It is skipped, not compared: what
//! anchors the chain is that the last certificate of the path is signed by a root the caller
//! configured (by key and by name), so a document that brings its own root gains nothing.

use time::OffsetDateTime;

use crate::cache::LinkCache;
use crate::cert::{ParsedCert, PublicKey};
use crate::error::{CertPosition, ChainFault};
use crate::report::CertInfo;
use crate::{Error, TrustRoot};

/// What a successful walk established.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedChain {
    /// The path from the leaf up to the last certificate below the root.
    pub path: Vec<CertInfo>,
    /// The configured root that anchors it.
    pub root: CertInfo,
}

/// Verifies `leaf` up through `cabundle[n-1..=1]` to one of `roots`, at time `at`.
pub(crate) fn verify(
    leaf: ParsedCert<'_>,
    cabundle: &[Vec<u8>],
    roots: &[TrustRoot],
    at: OffsetDateTime,
    cache: Option<&LinkCache>,
) -> Result<VerifiedChain, Error> {
    let check = |cert: &ParsedCert<'_>, key: &PublicKey| match cache {
        Some(cache) => cache.check(cert, key),
        None => cert.check_signature(key),
    };
    let mut path = vec![(CertPosition::Leaf, leaf)];
    for i in (1..cabundle.len()).rev() {
        path.push((
            CertPosition::CaBundle(i),
            ParsedCert::parse(&cabundle[i], CertPosition::CaBundle(i))?,
        ));
    }

    for (k, (which, cert)) in path.iter().enumerate() {
        let which = *which;
        cert.check_validity(which, at)?;
        check_role(cert, k).map_err(|reason| Error::ChainBroken { which, reason })?;
        if let Some((_, issuer)) = path.get(k + 1) {
            if cert.issuer_der() != issuer.subject_der() {
                return Err(Error::ChainBroken {
                    which,
                    reason: ChainFault::IssuerMismatch,
                });
            }
            check(cert, &issuer.key).map_err(|reason| Error::ChainBroken { which, reason })?;
        }
    }

    let (last_pos, last) = path.last().expect("path holds at least the leaf");
    let issuer = last.issuer_der();
    // Several configured roots may share a name (a re-keyed root); the key decides.
    let root = roots
        .iter()
        .filter(|r| r.subject_der() == issuer.as_slice())
        .find(|r| check(last, &r.key).is_ok())
        .ok_or_else(|| {
            let issuer = last.cert.tbs_certificate.issuer.to_string();
            if crate::roots::is_emulation_root_name(&issuer) {
                Error::EmulationRoot { issuer }
            } else {
                Error::UntrustedRoot {
                    which: *last_pos,
                    issuer,
                }
            }
        })?;
    if at > root.not_after {
        return Err(Error::Expired {
            which: CertPosition::Root,
            not_after: root.not_after,
            at,
        });
    }
    if at < root.not_before {
        return Err(Error::NotYetValid {
            which: CertPosition::Root,
            not_before: root.not_before,
            at,
        });
    }

    Ok(VerifiedChain {
        path: path
            .iter()
            .map(|(w, c)| CertInfo::from_parsed(*w, c))
            .collect(),
        root: CertInfo::from_root(root),
    })
}

/// Checks what a certificate at path index `k` must be allowed to do: the leaf signs documents
/// (digitalSignature); every other certificate issues certificates (CA, keyCertSign) with a
/// pathLenConstraint, if any, covering the `k - 1` CA certificates below it.
fn check_role(cert: &ParsedCert<'_>, k: usize) -> Result<(), ChainFault> {
    let c = &cert.constraints;
    if k == 0 {
        if c.key_usage.is_some_and(|ku| !ku.digital_signature()) {
            return Err(ChainFault::KeyUsage("digitalSignature"));
        }
        return Ok(());
    }
    match c.basic {
        Some((true, path_len)) => {
            if let Some(path_len) = path_len {
                if usize::from(path_len) < k - 1 {
                    return Err(ChainFault::PathLenExceeded {
                        path_len,
                        below: k - 1,
                    });
                }
            }
        }
        _ => return Err(ChainFault::NotCa),
    }
    if c.key_usage.is_some_and(|ku| !ku.key_cert_sign()) {
        return Err(ChainFault::KeyUsage("keyCertSign"));
    }
    Ok(())
}
