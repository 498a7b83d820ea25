//! What the caller expects of a genuine document: PCR values, nonce, user data, public key, and
//! whether a debug-mode enclave is acceptable.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{AttestationDocument, Error, TrustRoot};

/// Expectations checked after the signature and the chain hold. Empty means "anything goes"
/// except debug mode, which is refused unless `allow_debug`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// PCR index to the exact value the document must report.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// The nonce the document must carry (the verifier's challenge).
    pub nonce: Option<Vec<u8>>,
    /// The user_data the document must carry.
    pub user_data: Option<Vec<u8>>,
    /// The public_key the document must carry.
    pub public_key: Option<Vec<u8>>,
    /// Accept debug-mode documents (PCR0..2 all zero).
    pub allow_debug: bool,
}

/// Everything `verify` needs besides the document.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Time at which certificate validity is checked; `None` means now.
    pub at: Option<OffsetDateTime>,
    /// Trust roots; empty means the compiled-in AWS Nitro Enclaves Root-G1.
    pub roots: Vec<TrustRoot>,
    /// Expectations on the document's content.
    pub policy: Policy,
}

impl Policy {
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

    /// Checks `doc` against the policy. Debug mode is checked first: with PCR0..2 zero, any PCR
    /// expectation would fail anyway, and "debug mode" says why.
    pub fn check(&self, doc: &AttestationDocument) -> Result<(), Error> {
        if doc.is_debug_mode() && !self.allow_debug {
            return Err(Error::DebugMode);
        }
        for (&index, expected) in &self.pcrs {
            let actual = doc.pcrs.get(&index);
            if actual != Some(expected) {
                return Err(Error::PcrMismatch {
                    index,
                    expected: hex::encode(expected),
                    actual: actual.map(hex::encode),
                });
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
