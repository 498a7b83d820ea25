//! The Noise NX handshake of both ends, without IO: the enclave's identity, the client's check
//! of it, and the transport keys that come out.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use snow::params::NoiseParams;
use snow::{Builder, HandshakeState};
use zeroize::Zeroizing;

use super::keys::RecordKeys;
use super::{SecureError, NOISE_PARAMS, PROLOGUE_DOMAIN};

/// Largest Noise message (the protocol's own limit).
const MAX_NOISE_MESSAGE: usize = 65535;

/// Largest identity document accepted in the handshake (a Nitro document is about 4.5 KiB).
pub const MAX_IDENTITY_DOCUMENT: usize = 16 << 10;

fn params() -> Result<NoiseParams, SecureError> {
    Ok(NOISE_PARAMS.parse()?)
}

/// The Noise prologue: [`PROLOGUE_DOMAIN`], then each hello's frame payload with its length
/// (u32 big-endian) in front, the client's first.
pub fn prologue(client_hello: &[u8], server_hello: &[u8]) -> Vec<u8> {
    let mut p =
        Vec::with_capacity(PROLOGUE_DOMAIN.len() + 8 + client_hello.len() + server_hello.len());
    p.extend_from_slice(PROLOGUE_DOMAIN);
    for hello in [client_hello, server_hello] {
        p.extend_from_slice(&(hello.len() as u32).to_be_bytes());
        p.extend_from_slice(hello);
    }
    p
}

/// The enclave's control identity: a static X25519 key pair made inside the enclave at boot,
/// and the attestation document binding its public half (when the enclave has an NSM).
pub struct ControlIdentity {
    secret: Zeroizing<Vec<u8>>,
    public: [u8; 32],
    document: Option<Vec<u8>>,
}

impl fmt::Debug for ControlIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("ControlIdentity")
            .field("public", &hex_short(&self.public))
            .field("document", &self.document.as_ref().map(Vec::len))
            .finish()
    }
}

fn hex_short(b: &[u8]) -> String {
    b.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl ControlIdentity {
    /// A fresh key pair from the kernel's random source, without a document yet.
    pub fn generate() -> Result<Self, SecureError> {
        let pair = Builder::new(params()?).generate_keypair()?;
        let public: [u8; 32] = pair
            .public
            .as_slice()
            .try_into()
            .map_err(|_| SecureError::Payload("X25519 public key is not 32 bytes".into()))?;
        Ok(Self {
            secret: Zeroizing::new(pair.private),
            public,
            document: None,
        })
    }

    /// The public key: what the supervisor pins and the document binds.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Attaches the attestation document that binds [`public_key`](Self::public_key).
    pub fn with_document(mut self, document: Vec<u8>) -> Self {
        self.document = Some(document);
        self
    }

    /// The attestation document, when there is one.
    pub fn document(&self) -> Option<&[u8]> {
        self.document.as_deref()
    }
}

/// The payload of the server's handshake message (encrypted by Noise): the identity document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityPayload {
    /// The attestation document binding the server's static key; absent when the enclave has no
    /// NSM (then only a key pinned by the supervisor can be checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<ByteBuf>,
}

impl IdentityPayload {
    fn encode(&self) -> Result<Vec<u8>, SecureError> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).map_err(|e| SecureError::Payload(e.to_string()))?;
        Ok(out)
    }

    /// Decodes the payload; exactly one CBOR item, a document of at most
    /// [`MAX_IDENTITY_DOCUMENT`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, SecureError> {
        let mut rest = bytes;
        let payload: Self =
            ciborium::from_reader(&mut rest).map_err(|e| SecureError::Payload(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SecureError::Payload("trailing bytes".into()));
        }
        if payload
            .document
            .as_ref()
            .is_some_and(|d| d.len() > MAX_IDENTITY_DOCUMENT)
        {
            return Err(SecureError::Payload(format!(
                "identity document larger than {MAX_IDENTITY_DOCUMENT} bytes"
            )));
        }
        Ok(payload)
    }
}

/// Checks an enclave's identity document for the client: e.g. the verifier of `enclave-attest`
/// with the expected PCRs and trust roots (enclave-proto does not verify documents itself).
pub trait IdentityVerifier: Send + Sync {
    /// Accepts `document` as proof that `control_key` belongs to the expected enclave, or says
    /// why not. `None`: the enclave sent no document.
    fn verify(&self, control_key: &[u8; 32], document: Option<&[u8]>) -> Result<(), String>;
}

/// What a client accepts as the enclave's identity.
#[derive(Clone)]
pub enum ServerCheck {
    /// Exactly this control key: the one the enclave's supervisor received at boot.
    Pinned([u8; 32]),
    /// Whatever the verifier accepts from the document.
    Verify(Arc<dyn IdentityVerifier>),
    /// Any enclave (`--any-enclave`): the session is still encrypted, but nothing says whose
    /// end it is. For tools that check the enclave some other way, and tests.
    AnyEnclave,
}

impl fmt::Debug for ServerCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerCheck::Pinned(k) => write!(f, "Pinned({})", hex_short(k)),
            ServerCheck::Verify(_) => f.write_str("Verify(..)"),
            ServerCheck::AnyEnclave => f.write_str("AnyEnclave"),
        }
    }
}

impl ServerCheck {
    fn check(&self, key: &[u8; 32], document: Option<&[u8]>) -> Result<(), SecureError> {
        match self {
            ServerCheck::Pinned(pinned) if pinned == key => Ok(()),
            ServerCheck::Pinned(pinned) => Err(SecureError::Identity(format!(
                "the enclave's control key {}… is not the one its supervisor pinned at boot ({}…)",
                hex_short(key),
                hex_short(pinned)
            ))),
            ServerCheck::Verify(v) => v.verify(key, document).map_err(SecureError::Identity),
            ServerCheck::AnyEnclave => Ok(()),
        }
    }
}

/// The transport keys of a finished handshake, and the handshake hash that names the session.
pub struct Transport {
    keys: Arc<RecordKeys>,
    hash: [u8; 32],
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("hash", &hex_short(&self.hash))
            .finish()
    }
}

impl Transport {
    fn from_handshake(mut state: HandshakeState) -> Result<Self, SecureError> {
        if !state.is_handshake_finished() {
            return Err(snow::Error::State(snow::error::StateProblem::HandshakeNotFinished).into());
        }
        let hash: [u8; 32] = state
            .get_handshake_hash()
            .try_into()
            .map_err(|_| SecureError::Payload("handshake hash is not 32 bytes".into()))?;
        // Noise's Split(): the first key is the initiator's sending key, the second the
        // responder's. Used through ring directly (record.rs), wiped here.
        let (first, second) = state.dangerously_get_raw_split();
        let (first, second) = (Zeroizing::new(first), Zeroizing::new(second));
        let (send, recv) = if state.is_initiator() {
            (&first, &second)
        } else {
            (&second, &first)
        };
        Ok(Self {
            keys: Arc::new(RecordKeys::new(send, recv)?),
            hash,
        })
    }

    /// The handshake hash: unique to this session, what the client's key signs.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The session's record keys, for [`super::SecureReader`] and [`super::SecureWriter`].
    pub fn state(&self) -> Arc<RecordKeys> {
        self.keys.clone()
    }
}

/// The client's side: `-> e`, then reads `<- e, ee, s, es` and checks the identity.
pub struct Initiator {
    state: HandshakeState,
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Initiator")
    }
}

impl Initiator {
    /// Starts the handshake; returns the first message to send.
    pub fn start(prologue: &[u8]) -> Result<(Self, Vec<u8>), SecureError> {
        let mut state = Builder::new(params()?)
            .prologue(prologue)?
            .build_initiator()?;
        let mut msg = vec![0u8; MAX_NOISE_MESSAGE];
        let len = state.write_message(&[], &mut msg)?;
        msg.truncate(len);
        Ok((Self { state }, msg))
    }

    /// Reads the server's message, checks its identity; returns the transport and the identity
    /// key the server proved.
    pub fn finish(
        mut self,
        message: &[u8],
        check: &ServerCheck,
    ) -> Result<(Transport, [u8; 32]), SecureError> {
        let mut payload = vec![0u8; MAX_NOISE_MESSAGE];
        let len = self.state.read_message(message, &mut payload)?;
        let identity = IdentityPayload::decode(&payload[..len])?;
        let key: [u8; 32] = self
            .state
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| SecureError::Payload("no static key from the server".into()))?;
        check.check(&key, identity.document.as_ref().map(|d| &d[..]))?;
        Ok((Transport::from_handshake(self.state)?, key))
    }
}

/// The enclave's side: reads `-> e`, answers `<- e, ee, s, es` with the identity payload.
pub struct Responder {
    state: HandshakeState,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Responder")
    }
}

impl Responder {
    /// A responder with the enclave's identity key.
    pub fn new(identity: &ControlIdentity, prologue: &[u8]) -> Result<Self, SecureError> {
        let state = Builder::new(params()?)
            .local_private_key(&identity.secret)?
            .prologue(prologue)?
            .build_responder()?;
        Ok(Self { state })
    }

    /// Reads the client's message and returns the answer and the transport.
    pub fn respond(
        mut self,
        message: &[u8],
        identity: &ControlIdentity,
    ) -> Result<(Vec<u8>, Transport), SecureError> {
        let mut scratch = vec![0u8; MAX_NOISE_MESSAGE];
        let len = self.state.read_message(message, &mut scratch)?;
        if len != 0 {
            return Err(SecureError::Payload(
                "the client's handshake message carries no payload".into(),
            ));
        }
        let payload = IdentityPayload {
            document: identity.document.clone().map(ByteBuf::from),
        }
        .encode()?;
        let mut msg = vec![0u8; MAX_NOISE_MESSAGE];
        let len = self.state.write_message(&payload, &mut msg)?;
        msg.truncate(len);
        Ok((msg, Transport::from_handshake(self.state)?))
    }
}
