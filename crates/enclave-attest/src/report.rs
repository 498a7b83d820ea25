//! What a successful verification returns: the decoded document and the chain that vouches for
//! it, printable for people (`Display`) and serialisable for scripts (`--json`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cert::ParsedCert;
use crate::debug_caps::DebugCapabilities;
use crate::error::CertPosition;
use crate::TrustRoot;

/// Bytes that serialise as a lowercase hex string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexBytes(pub Vec<u8>);

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl std::ops::Deref for HexBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

fn rfc3339<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_time(*t))
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// One certificate of the verified path.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// Where it sits in the path.
    pub position: CertPosition,
    /// Subject name (RFC 4514).
    pub subject: String,
    /// Issuer name (RFC 4514).
    pub issuer: String,
    /// notBefore.
    #[serde(serialize_with = "rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter.
    #[serde(serialize_with = "rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
}

impl CertInfo {
    pub(crate) fn from_parsed(position: CertPosition, c: &ParsedCert<'_>) -> CertInfo {
        let tbs = &c.cert.tbs_certificate;
        CertInfo {
            position,
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            not_before: c.not_before,
            not_after: c.not_after,
            sha256: hex::encode(Sha256::digest(c.der)),
        }
    }

    pub(crate) fn from_root(r: &TrustRoot) -> CertInfo {
        CertInfo {
            position: CertPosition::Root,
            subject: r.subject().to_string(),
            issuer: r.subject().to_string(),
            not_before: r.not_before,
            not_after: r.not_after,
            sha256: hex::encode(r.sha256()),
        }
    }
}

/// A verified attestation document: only returned when the signature, the chain to a configured
/// root and the policy all hold.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// NSM module id.
    pub module_id: String,
    /// PCR digest algorithm (`SHA384`).
    pub digest: String,
    /// Document creation time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Document creation time.
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Nitro debug mode: PCR0..2 all zero (accepted only because the policy allowed it).
    pub debug_mode: bool,
    /// The debug capabilities PCR31 shows (anything but none or not measured is accepted
    /// only because the policy allowed it).
    pub debug_capabilities: DebugCapabilities,
    /// The PCR indices the policy pinned; empty when it accepted any enclave.
    pub expected_pcrs: Vec<u8>,
    /// PCR index to value.
    pub pcrs: BTreeMap<u8, HexBytes>,
    /// Optional public key from the enclave.
    pub public_key: Option<HexBytes>,
    /// Optional user data from the enclave.
    pub user_data: Option<HexBytes>,
    /// Optional nonce from the enclave.
    pub nonce: Option<HexBytes>,
    /// Whether the COSE_Sign1 carried tag 18.
    pub cose_tagged: bool,
    /// The leaf certificate (the document's signer).
    pub certificate: CertInfo,
    /// The verified path, leaf first, ending below the root.
    pub chain: Vec<CertInfo>,
    /// The configured root the chain ends at.
    pub root: CertInfo,
    /// The time certificate validity was checked at.
    #[serde(serialize_with = "rfc3339")]
    pub verified_at: OffsetDateTime,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |v: &Option<HexBytes>| {
            v.as_ref()
                .map_or("absent".to_string(), |b| format!("{} bytes", b.len()))
        };
        writeln!(f, "module_id:    {}", self.module_id)?;
        writeln!(
            f,
            "timestamp:    {} ({} ms)",
            fmt_time(self.timestamp),
            self.timestamp_ms
        )?;
        writeln!(f, "digest:       {}", self.digest)?;
        let pinned: Vec<String> = self
            .expected_pcrs
            .iter()
            .map(|i| format!("PCR{i}"))
            .collect();
        if pinned.is_empty() {
            writeln!(f, "expected:     any enclave (no PCR pinned)")?;
        } else {
            writeln!(f, "expected:     {}", pinned.join(", "))?;
        }
        writeln!(
            f,
            "debug mode:   {}",
            if self.debug_mode {
                "yes, Nitro debug mode (PCR0..2 zero; allowed)"
            } else {
                "no"
            }
        )?;
        let allowed = match self.debug_capabilities {
            DebugCapabilities::Granted { .. } | DebugCapabilities::Unknown { .. } => "; allowed",
            DebugCapabilities::None | DebugCapabilities::NotMeasured => "",
        };
        writeln!(f, "debug caps:   {}{allowed}", self.debug_capabilities)?;
        for (i, v) in &self.pcrs {
            writeln!(f, "PCR{i:<2}        {}", hex::encode(&v.0))?;
        }
        writeln!(f, "certificate:  {}", self.certificate.subject)?;
        writeln!(f, "  expires:    {}", fmt_time(self.certificate.not_after))?;
        writeln!(
            f,
            "chain:        {} certificate(s) to root {} (sha256 {})",
            self.chain.len(),
            self.root.subject,
            self.root.sha256
        )?;
        writeln!(f, "public_key:   {}", size(&self.public_key))?;
        writeln!(f, "user_data:    {}", size(&self.user_data))?;
        writeln!(f, "nonce:        {}", size(&self.nonce))?;
        write!(f, "verified at:  {}", fmt_time(self.verified_at))
    }
}
