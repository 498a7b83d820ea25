//! What the caller expects of a genuine document: which enclave ([`Expectation`]: pinned PCRs,
//! or any enclave said explicitly), nonce, user data, public key, and whether Nitro debug mode
//! or debug capabilities are acceptable.
//!
//! A genuine document alone proves only that *some* Nitro enclave produced it: anyone can run
//! an enclave, including one running this very server with a key of their own. So a policy
//! cannot be built without an expectation: [`Policy::new`] takes one, and
//! [`Expectation::pcrs`] refuses a set of PCRs that pins neither the image (PCR0) nor its
//! signer (PCR8).

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::debug_caps::DebugCapabilities;
use crate::{AttestationDocument, Error, TrustRoot};

/// PCRs that identify the code: PCR0 measures the whole image (kernel, boot ramdisks,
/// application), PCR8 the certificate that signed it. Any other PCR alone (PCR1 the kernel and
/// boot ramdisk, PCR2 the application ramdisks, PCR3 the parent's IAM role, PCR4 the parent
/// instance) leaves the rest of the image free.
pub const PINNING_PCRS: [u8; 2] = [0, 8];

/// Which enclave the caller expects: the part of a policy without which a verification
/// means nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The document's PCRs must equal these values; they pin PCR0 or PCR8 (see
    /// [`Expectation::pcrs`], the only way to build one).
    Pcrs(ExpectedPcrs),
    /// Any genuine enclave, whatever code it runs, on any AWS account: the caller says so
    /// explicitly (`--any-enclave`), typically to read the PCRs it will pin next time.
    AnyEnclave,
}

/// PCR values a document must report, pinning at least PCR0 or PCR8 with a non-zero value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPcrs(BTreeMap<u8, Vec<u8>>);

impl ExpectedPcrs {
    /// The expected values, PCR index to bytes.
    pub fn values(&self) -> &BTreeMap<u8, Vec<u8>> {
        &self.0
    }
}

impl Expectation {
    /// Expect these exact PCR values. Refused as [`Error::NoExpectation`] unless PCR0 or PCR8
    /// is among them with a value other than all zero (an all-zero PCR0 is every debug-mode
    /// enclave, an all-zero PCR8 every unsigned image: neither pins anything).
    /// The same PCR twice with different values is [`Error::ConflictingExpectation`].
    pub fn pcrs(pcrs: impl IntoIterator<Item = (u8, Vec<u8>)>) -> Result<Expectation, Error> {
        let mut map = BTreeMap::new();
        for (index, value) in pcrs {
            if map
                .insert(index, value.clone())
                .is_some_and(|old| old != value)
            {
                return Err(Error::ConflictingExpectation { index });
            }
        }
        let pcrs = map;
        let pins = PINNING_PCRS
            .iter()
            .any(|i| pcrs.get(i).is_some_and(|v| v.iter().any(|b| *b != 0)));
        if !pins {
            return Err(Error::NoExpectation {
                given: pcrs.keys().copied().collect(),
            });
        }
        Ok(Expectation::Pcrs(ExpectedPcrs(pcrs)))
    }

    /// The PCR values checked (none for [`Expectation::AnyEnclave`]).
    pub fn pcr_values(&self) -> Option<&BTreeMap<u8, Vec<u8>>> {
        match self {
            Expectation::Pcrs(p) => Some(p.values()),
            Expectation::AnyEnclave => None,
        }
    }
}

/// Expectations checked after the signature and the chain hold. Built with [`Policy::new`],
/// which needs an [`Expectation`]; the other fields default to "not checked" (nonce, user
/// data, public key) and "refused" (debug mode, debug capabilities).
///
/// There is no `Default` and the expectation is private, so a policy that pins nothing cannot
/// be written by accident:
///
/// ```compile_fail
/// let policy = enclave_attest::Policy::default();
/// ```
/// ```compile_fail
/// let options = enclave_attest::VerifyOptions::default();
/// ```
/// ```compile_fail
/// let policy = enclave_attest::Policy {
///     nonce: None,
///     user_data: None,
///     public_key: None,
///     allow_debug_mode: false,
///     allow_debug_capabilities: false,
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    expectation: Expectation,
    /// The nonce the document must carry (the verifier's challenge).
    pub nonce: Option<Vec<u8>>,
    /// The user_data the document must carry.
    pub user_data: Option<Vec<u8>>,
    /// The public_key the document must carry.
    pub public_key: Option<Vec<u8>>,
    /// Accept Nitro debug-mode documents (PCR0..2 all zero: the enclave was started with
    /// `--debug-mode`, and the parent instance can read its memory and console).
    pub allow_debug_mode: bool,
    /// Accept an enclave whose PCR31 shows debug capabilities (`debug.exec`, `debug.cp`,
    /// `debug.attest` granted by its spec: the host may run code in it, copy files in and out,
    /// or obtain documents binding keys of its choosing), or an unknown non-zero PCR31.
    pub allow_debug_capabilities: bool,
}

/// Everything `verify` needs besides the document.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Time at which certificate validity is checked; `None` means now.
    pub at: Option<OffsetDateTime>,
    /// Trust roots; empty means the compiled-in AWS Nitro Enclaves Root-G1.
    pub roots: Vec<TrustRoot>,
    /// Expectations on the document's content.
    pub policy: Policy,
}

impl VerifyOptions {
    /// `policy`, checked now, against the compiled-in AWS root.
    pub fn new(policy: Policy) -> VerifyOptions {
        VerifyOptions {
            at: None,
            roots: Vec::new(),
            policy,
        }
    }
}

impl Policy {
    /// A policy expecting `expectation`, checking no nonce, user data or public key, and
    /// refusing Nitro debug mode and debug capabilities.
    pub fn new(expectation: Expectation) -> Policy {
        Policy {
            expectation,
            nonce: None,
            user_data: None,
            public_key: None,
            allow_debug_mode: false,
            allow_debug_capabilities: false,
        }
    }

    /// Which enclave the policy expects.
    pub fn expectation(&self) -> &Expectation {
        &self.expectation
    }

    /// Parses a `N=HEX` argument (as in `--pcr 0=ab12…`) into an index and a value.
    pub fn parse_pcr_arg(arg: &str) -> Result<(u8, Vec<u8>), Error> {
        let (index, value) = arg
            .split_once('=')
            .ok_or_else(|| Error::BadPolicy(format!("PCR expectation {arg:?} is not N=HEX")))?;
        let index: u8 = index
            .trim()
            .parse()
            .ok()
            .filter(|i| *i < 32)
            .ok_or_else(|| Error::BadPolicy(format!("PCR index {index:?} is not 0..=31")))?;
        let value = parse_hex_arg(&format!("PCR{index}"), value)?;
        if ![32, 48, 64].contains(&value.len()) {
            return Err(Error::BadPolicy(format!(
                "PCR{index} value is {} bytes, PCRs are 32, 48 or 64",
                value.len()
            )));
        }
        Ok((index, value))
    }

    /// Checks `doc` against the policy. Nitro debug mode is checked first: with PCR0..2 zero,
    /// any PCR expectation would fail anyway, and "debug mode" says why. Then the expected
    /// PCRs, then the debug capabilities PCR31 shows (after the PCRs, so that a document of
    /// another image says "PCR0 mismatch" rather than describing that image's debug surface),
    /// then nonce, user_data and public_key.
    pub fn check(&self, doc: &AttestationDocument) -> Result<(), Error> {
        if doc.is_debug_mode() && !self.allow_debug_mode {
            return Err(Error::DebugMode);
        }
        for (&index, expected) in self.expectation.pcr_values().into_iter().flatten() {
            let actual = doc.pcrs.get(&index);
            if actual != Some(expected) {
                return Err(Error::PcrMismatch {
                    index,
                    expected: hex::encode(expected),
                    actual: actual.map(hex::encode),
                });
            }
        }
        if !self.allow_debug_capabilities {
            match DebugCapabilities::of(doc) {
                DebugCapabilities::None | DebugCapabilities::NotMeasured => {}
                DebugCapabilities::Granted { capabilities } => {
                    return Err(Error::DebugCapabilities { capabilities })
                }
                DebugCapabilities::Unknown { pcr31 } => {
                    return Err(Error::UnknownDebugMarker {
                        pcr31: hex::encode(&pcr31.0),
                    })
                }
            }
        }
        let differs =
            |want: &Option<Vec<u8>>, have: &Option<Vec<u8>>| want.is_some() && want != have;
        let hexes = |want: &Option<Vec<u8>>, have: &Option<Vec<u8>>| {
            (
                want.as_deref().map(hex::encode).unwrap_or_default(),
                have.as_deref().map(hex::encode),
            )
        };
        if differs(&self.nonce, &doc.nonce) {
            let (expected, actual) = hexes(&self.nonce, &doc.nonce);
            return Err(Error::NonceMismatch { expected, actual });
        }
        if differs(&self.user_data, &doc.user_data) {
            let (expected, actual) = hexes(&self.user_data, &doc.user_data);
            return Err(Error::UserDataMismatch { expected, actual });
        }
        if differs(&self.public_key, &doc.public_key) {
            let (expected, actual) = hexes(&self.public_key, &doc.public_key);
            return Err(Error::PublicKeyMismatch { expected, actual });
        }
        Ok(())
    }
}

/// Parses a hex argument (whitespace and a `0x` prefix tolerated); `what` names it in errors.
pub fn parse_hex_arg(what: &str, arg: &str) -> Result<Vec<u8>, Error> {
    let t = arg.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    hex::decode(t).map_err(|e| Error::BadPolicy(format!("{what}: not hex ({e})")))
}

/// Parses an RFC 3339 time (as in `--at 2025-01-06T17:00:00Z`).
pub fn parse_time(arg: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(arg.trim(), &Rfc3339)
        .map_err(|e| Error::BadPolicy(format!("time {arg:?} is not RFC 3339: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_zero_pcr0_or_pcr8_pins_an_enclave() {
        let v = |b: u8| vec![b; 48];
        assert!(Expectation::pcrs([(0, v(1))]).is_ok());
        assert!(Expectation::pcrs([(8, v(1)), (2, v(2))]).is_ok());
        assert!(Expectation::pcrs([(0, v(0)), (8, v(3))]).is_ok());
        assert!(Expectation::pcrs([(0, v(1)), (0, v(1))]).is_ok());
        assert!(matches!(
            Expectation::pcrs([(0, v(1)), (2, v(2)), (0, v(3))]),
            Err(Error::ConflictingExpectation { index: 0 })
        ));
        for refused in [
            vec![],
            vec![(2, v(2))],
            vec![(1, v(1)), (2, v(2)), (3, v(3)), (4, v(4))],
            vec![(0, v(0))],
            vec![(8, v(0)), (2, v(2))],
        ] {
            let mut given: Vec<u8> = refused.iter().map(|(i, _)| *i).collect();
            given.sort_unstable();
            match Expectation::pcrs(refused) {
                Err(Error::NoExpectation { given: g }) => assert_eq!(g, given),
                other => panic!("{given:?}: {other:?}"),
            }
        }
    }
}
