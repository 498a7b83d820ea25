//! Content digests (`sha256:<64 hex>`), the only algorithm we accept.

use std::fmt;

use sha2::{Digest as _, Sha256};

use super::SourceError;

/// A validated `sha256:<lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; other algorithms are refused, so a digest can always
    /// be verified and safely used as a file name.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(SourceError::InvalidDigest(s.to_owned()));
        };
        if algorithm != "sha256" {
            return Err(SourceError::UnsupportedDigest(s.to_owned()));
        }
        let valid_hex = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid_hex {
            return Err(SourceError::InvalidDigest(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(bytes).into())
    }

    /// Wraps a finished SHA-256 hash.
    pub fn from_sha256(hash: [u8; 32]) -> Self {
        Self(format!("sha256:{}", hex::encode(hash)))
    }

    /// The algorithm name (`sha256`).
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, hex)| hex)
    }

    /// The whole `sha256:<hex>` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks that `bytes` hash to this digest.
    pub(crate) fn verify(&self, bytes: &[u8], what: &str) -> Result<(), SourceError> {
        let actual = Self::of(bytes);
        if &actual != self {
            return Err(SourceError::DigestMismatch {
                what: what.to_owned(),
                expected: self.clone(),
                actual,
            });
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_sha256_hex() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&good).unwrap().hex(), "a".repeat(64));
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(&format!("sha256:{}/..", "a".repeat(61))).is_err());
        assert!(matches!(
            Digest::parse(&format!("sha512:{}", "a".repeat(128))),
            Err(SourceError::UnsupportedDigest(_))
        ));
        assert!(Digest::parse("nocolon").is_err());
    }
}
