//! Client authentication: an Ed25519 signature over the session's handshake hash.
//!
//! On the host-facing channel the client and the enclave first run the Noise handshake of
//! [`super::secure`]; its handshake hash is unique to the session and covers both hellos and
//! both ephemeral keys. A client proves a key with [`Auth`]: its public key and a signature over
//!
//! ```text
//! "enclave-engine control v2 auth\0" || handshake hash (32)
//! ```
//!
//! sent inside the encrypted session. The domain string keeps these signatures from being valid
//! for anything else signed with the same key; the handshake hash makes each one good for this
//! session only, so a relay that authenticates its own session to the enclave with a signature
//! it obtained from the real client (whose session has another hash) is refused.
//!
//! The keys: the spec's `debug.authorized_keys`, and the key of the enclave's own supervisor,
//! handed to enclave-init at boot ([`crate::handoff`]).

use base64::Engine as _;
use ed25519_dalek::Signature;
pub use ed25519_dalek::{SigningKey, VerifyingKey};

use super::message::Auth;

/// Domain separation prefix of the signed transcript.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"enclave-engine control v2 auth\0";

/// Why an [`Auth`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The public key is not in the authorized set.
    #[error("key is not authorized")]
    UnknownKey,
    /// The key is authorized but the signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// Why an authorized key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither raw base64 nor an OpenSSH `ssh-ed25519` line.
    #[error("not an Ed25519 public key (base64 of 32 bytes or `ssh-ed25519 AAAA...`): {0:?}")]
    Format(String),
    /// The bytes are not a valid Ed25519 point.
    #[error("invalid Ed25519 public key")]
    Invalid,
}

/// The bytes signed by the client.
pub fn transcript(handshake_hash: &[u8; 32]) -> Vec<u8> {
    let mut t = Vec::with_capacity(TRANSCRIPT_DOMAIN.len() + 32);
    t.extend_from_slice(TRANSCRIPT_DOMAIN);
    t.extend_from_slice(handshake_hash);
    t
}

/// 32 random bytes from the kernel (`getrandom(2)`, no file descriptor needed, so it also works
/// in enclave-init before `/dev` is mounted).
pub fn random_nonce() -> Result<[u8; 32], std::io::Error> {
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(nonce)
}

impl Auth {
    /// Proves `key` for the session whose handshake hash is `handshake_hash`.
    pub fn sign(key: &SigningKey, handshake_hash: &[u8; 32]) -> Self {
        use ed25519_dalek::Signer as _;
        let signature = key.sign(&transcript(handshake_hash));
        Self {
            public_key: key.verifying_key().to_bytes(),
            signature: signature.to_bytes(),
        }
    }
}

/// The keys allowed to drive the enclave: `debug.authorized_keys` of the spec and the
/// supervisor's key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizedKeys {
    keys: Vec<VerifyingKey>,
}

impl AuthorizedKeys {
    /// Parses the spec's list ([`parse_public_key`] for each line).
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Result<Self, KeyError> {
        let keys = lines
            .iter()
            .map(|l| parse_public_key(l.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// From already parsed keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self { keys }
    }

    /// Adds a key (the supervisor's).
    pub fn push(&mut self, key: VerifyingKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Whether no key is listed (then nobody can authenticate: only `ping` and `info` are
    /// served).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Checks a proof for the session `handshake_hash`; returns the key that signed.
    pub fn verify(
        &self,
        auth: &Auth,
        handshake_hash: &[u8; 32],
    ) -> Result<VerifyingKey, AuthError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.as_bytes() == &auth.public_key)
            .ok_or(AuthError::UnknownKey)?;
        let signature = Signature::from_bytes(&auth.signature);
        // verify_strict also refuses small-order keys and non-canonical signatures, so one
        // signature cannot be reshaped into another that verifies.
        key.verify_strict(&transcript(handshake_hash), &signature)
            .map_err(|_| AuthError::BadSignature)?;
        Ok(*key)
    }
}

/// Parses an Ed25519 public key written as base64 of its 32 raw bytes or as an OpenSSH
/// `ssh-ed25519 AAAA... [comment]` line.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let format = || KeyError::Format(text.chars().take(80).collect());
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut words = text.split_whitespace();
    let first = words.next().ok_or_else(format)?;
    let raw: [u8; 32] = if first == "ssh-ed25519" {
        let blob = b64
            .decode(words.next().ok_or_else(format)?)
            .map_err(|_| format())?;
        openssh_blob_key(&blob).ok_or_else(format)?
    } else {
        let bytes = b64.decode(first).map_err(|_| format())?;
        bytes.try_into().map_err(|_| format())?
    };
    VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::Invalid)
}

/// The key inside an OpenSSH public key blob: `string "ssh-ed25519"`, `string key(32)`, each
/// `string` a big-endian u32 length then the bytes.
fn openssh_blob_key(blob: &[u8]) -> Option<[u8; 32]> {
    fn take_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = b.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    let (kind, rest) = take_string(blob)?;
    let (key, rest) = take_string(rest)?;
    if kind != b"ssh-ed25519" || !rest.is_empty() {
        return None;
    }
    key.try_into().ok()
}
