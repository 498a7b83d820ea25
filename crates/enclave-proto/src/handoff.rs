//! The hand-off at boot between an enclave and its supervisor.
//!
//! Before its heartbeat, enclave-init connects to its parent on [`crate::ports::SUPERVISOR`]
//! and the two exchange one message each:
//!
//! ```text
//! supervisor -> enclave   offer    {version, supervisor_key (Ed25519), nonce (32), secrets}
//! enclave -> supervisor   identity {version, control_key (X25519), document?}
//! ```
//!
//! - `supervisor_key` is the key the enclave then accepts on its control channel besides the
//!   spec's `debug.authorized_keys`: it is how root on the parent (through `enclave-ctl`, which
//!   reads the private half from the enclave's 0700 state directory) drives the enclave, and no
//!   one else on the parent can. Only root can listen on a vsock port below 1024 on the parent,
//!   so an unprivileged user cannot pose as the supervisor; on the emulated backend the port is a
//!   Unix socket inside the supervisor's own 0700 directory.
//! - `control_key` is the enclave's control identity ([`crate::wire::secure::ControlIdentity`]);
//!   `document` binds it (`public_key`) with the supervisor's `nonce`, so the supervisor knows it
//!   is fresh from this boot. The supervisor verifies it and pins the key for clients.
//! - `secrets` are small files the operator gave to `run --secret NAME=FILE`: enclave-init
//!   writes them to `/run/enclave/secrets/NAME` (root only). They are the operator's (the host
//!   knows them): credentials that keep *network* parties out, never what protects the enclave
//!   from its host.
//!
//!
//! The connection then stays open for the enclave's life. When the enclave ends by itself,
//! enclave-init sends one more message before it powers off:
//!
//! ```text
//! enclave -> supervisor   exit     {version, main?, reason}
//! ```
//!
//! - `main` is how the main service (the image's entrypoint and cmd, as amended by the spec)
//!   ended: the exit status `enclave-ctl run` exits with and `ps` shows. It is absent when the
//!   image has no main service or it never started. `oom` says the kernel's OOM killer ended
//!   it: such a report is version [`EXIT_OOM_VERSION`], every other one stays version 1, so a
//!   supervisor from before `oom` still reads every report but that one (and then keeps its
//!   own guess of how the enclave ended). The host learns nothing it could not see
//!   in the logs; the report is as trustworthy as the enclave's own word to its host.
//!
//! Each message is one frame of the control protocol's codec (CBOR, unknown fields refused).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::wire::frame::{read_frame, write_frame, FrameError};
use crate::wire::ExitStatus;

/// The hand-off's version.
pub const HANDOFF_VERSION: u16 = 1;

/// Largest secret file.
pub const MAX_SECRET: usize = 64 << 10;
/// Most secrets in one offer.
pub const MAX_SECRETS: usize = 8;
/// Largest identity document (as in the control handshake).
pub const MAX_DOCUMENT: usize = crate::wire::secure::MAX_IDENTITY_DOCUMENT;

/// Why a hand-off message was refused.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// Reading or writing the frame failed.
    #[error("hand-off frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer closed before sending its message.
    #[error("the peer closed the hand-off before its message")]
    Closed,
    /// The frame is not the expected message.
    #[error("hand-off message: {0}")]
    Decode(String),
    /// A version this side does not speak.
    #[error("hand-off version {0} (this side speaks {HANDOFF_VERSION})")]
    Version(u16),
    /// A field beyond its limit or malformed.
    #[error("hand-off message: {0}")]
    Invalid(String),
}

/// The supervisor's message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorOffer {
    /// [`HANDOFF_VERSION`].
    pub version: u16,
    /// The supervisor's Ed25519 public key.
    #[serde(with = "serde_bytes")]
    pub supervisor_key: [u8; 32],
    /// Fresh random bytes the enclave binds into its identity document.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 32],
    /// Files for `/run/enclave/secrets/`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, ByteBuf>,
}

impl std::fmt::Debug for SupervisorOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets by name only.
        f.debug_struct("SupervisorOffer")
            .field("version", &self.version)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The enclave's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveIdentity {
    /// [`HANDOFF_VERSION`].
    pub version: u16,
    /// The enclave's control identity key (X25519).
    #[serde(with = "serde_bytes")]
    pub control_key: [u8; 32],
    /// The attestation document binding it with the offer's nonce; absent without an NSM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<ByteBuf>,
}

/// The version of an exit report that says the OOM killer ended the main service.
pub const EXIT_OOM_VERSION: u16 = 2;

/// Longest `reason` in an [`EnclaveExit`], bytes.
pub const MAX_EXIT_REASON: usize = 1024;

/// The enclave's last word: how it ended, sent just before it powers off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveExit {
    /// [`HANDOFF_VERSION`].
    pub version: u16,
    /// How the main service's last run ended; absent without a main service, or when it never
    /// ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<ExitStatus>,
    /// The kernel's OOM killer ended the main service's last run (version [`EXIT_OOM_VERSION`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom: bool,
    /// Why the enclave is powering off, for the log (at most [`MAX_EXIT_REASON`] bytes).
    pub reason: String,
}

impl EnclaveExit {
    /// A report in the lowest version that says it.
    pub fn new(main: Option<ExitStatus>, oom: bool, reason: String) -> Self {
        Self {
            version: if oom {
                EXIT_OOM_VERSION
            } else {
                HANDOFF_VERSION
            },
            main,
            oom,
            reason,
        }
    }

    /// Checks the limits a receiver relies on.
    pub fn check(&self) -> Result<(), HandoffError> {
        if self.version != HANDOFF_VERSION && self.version != EXIT_OOM_VERSION {
            return Err(HandoffError::Version(self.version));
        }
        if self.oom && self.version < EXIT_OOM_VERSION {
            return Err(HandoffError::Invalid(format!(
                "an exit report saying `oom` is version {EXIT_OOM_VERSION}"
            )));
        }
        if self.reason.len() > MAX_EXIT_REASON {
            return Err(HandoffError::Invalid(format!(
                "exit reason longer than {MAX_EXIT_REASON} bytes"
            )));
        }
        Ok(())
    }
}

/// Whether `name` may name a secret: 1 to 64 of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl SupervisorOffer {
    /// Checks the limits a receiver relies on.
    pub fn check(&self) -> Result<(), HandoffError> {
        if self.version != HANDOFF_VERSION {
            return Err(HandoffError::Version(self.version));
        }
        if self.secrets.len() > MAX_SECRETS {
            return Err(HandoffError::Invalid(format!(
                "more than {MAX_SECRETS} secrets"
            )));
        }
        for (name, content) in &self.secrets {
            if !valid_secret_name(name) {
                return Err(HandoffError::Invalid(format!(
                    "secret name {name:?} (allowed: 1 to 64 of A-Z a-z 0-9 . _ -, no leading dot)"
                )));
            }
            if content.len() > MAX_SECRET {
                return Err(HandoffError::Invalid(format!(
                    "secret {name:?} is larger than {MAX_SECRET} bytes"
                )));
            }
        }
        Ok(())
    }
}

impl EnclaveIdentity {
    /// Checks the limits a receiver relies on.
    pub fn check(&self) -> Result<(), HandoffError> {
        if self.version != HANDOFF_VERSION {
            return Err(HandoffError::Version(self.version));
        }
        if self
            .document
            .as_ref()
            .is_some_and(|d| d.len() > MAX_DOCUMENT)
        {
            return Err(HandoffError::Invalid(format!(
                "identity document larger than {MAX_DOCUMENT} bytes"
            )));
        }
        Ok(())
    }
}

fn read_one<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, HandoffError> {
    let frame = read_frame(r)?.ok_or(HandoffError::Closed)?;
    let mut rest = frame.payload();
    let msg = ciborium::from_reader(&mut rest).map_err(|e| HandoffError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(HandoffError::Decode("trailing bytes".into()));
    }
    Ok(msg)
}

fn write_one<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), HandoffError> {
    let mut payload = Vec::new();
    ciborium::into_writer(msg, &mut payload).map_err(|e| HandoffError::Decode(e.to_string()))?;
    write_frame(w, &payload)?;
    Ok(())
}

/// Reads and checks the supervisor's offer (enclave side).
pub fn read_offer(r: &mut impl Read) -> Result<SupervisorOffer, HandoffError> {
    let offer: SupervisorOffer = read_one(r)?;
    offer.check()?;
    Ok(offer)
}

/// Sends the offer (supervisor side).
pub fn write_offer(w: &mut impl Write, offer: &SupervisorOffer) -> Result<(), HandoffError> {
    offer.check()?;
    write_one(w, offer)
}

/// Reads and checks the enclave's identity (supervisor side).
pub fn read_identity(r: &mut impl Read) -> Result<EnclaveIdentity, HandoffError> {
    let identity: EnclaveIdentity = read_one(r)?;
    identity.check()?;
    Ok(identity)
}

/// Sends the identity (enclave side).
pub fn write_identity(w: &mut impl Write, identity: &EnclaveIdentity) -> Result<(), HandoffError> {
    identity.check()?;
    write_one(w, identity)
}

/// Reads and checks the enclave's exit report (supervisor side).
pub fn read_exit(r: &mut impl Read) -> Result<EnclaveExit, HandoffError> {
    let exit: EnclaveExit = read_one(r)?;
    exit.check()?;
    Ok(exit)
}

/// Sends the exit report (enclave side). A reason over the limit is cut at a character
/// boundary rather than refused: the report matters more than its wording.
pub fn write_exit(w: &mut impl Write, exit: &EnclaveExit) -> Result<(), HandoffError> {
    let mut exit = exit.clone();
    if exit.reason.len() > MAX_EXIT_REASON {
        let mut end = MAX_EXIT_REASON;
        while !exit.reason.is_char_boundary(end) {
            end -= 1;
        }
        exit.reason.truncate(end);
    }
    exit.check()?;
    write_one(w, &exit)
}

// The offer must fit one frame with room to spare; checked at compile time.
const _: () = assert!(MAX_SECRETS * (MAX_SECRET + 128) < crate::wire::MAX_FRAME_LEN as usize);

/// Body of the fuzz target `fuzz/fuzz_targets/handoff.rs` (also run over seeds by `cargo
/// test`): whatever the peer sends, each reader returns a value or an error, never panics, and
/// what it accepts passes its checks and encodes back to a message it accepts again.
pub fn fuzz_messages(data: &[u8]) {
    fn again<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        msg: &T,
        read: fn(&mut &[u8]) -> Result<T, HandoffError>,
    ) {
        let mut buf = Vec::new();
        write_one(&mut buf, msg).expect("an accepted message encodes");
        assert_eq!(&read(&mut buf.as_slice()).expect("and decodes again"), msg);
    }
    if let Ok(offer) = read_offer(&mut &data[..]) {
        again(&offer, |r| read_offer(r));
    }
    if let Ok(identity) = read_identity(&mut &data[..]) {
        again(&identity, |r| read_identity(r));
    }
    if let Ok(exit) = read_exit(&mut &data[..]) {
        assert!(exit.reason.len() <= MAX_EXIT_REASON);
        again(&exit, |r| read_exit(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz body over valid messages and their truncations and bit flips.
    #[test]
    fn the_fuzz_body_runs_over_seeds() {
        let mut seeds = Vec::new();
        let mut push = |payload: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = Vec::new();
            payload(&mut buf);
            seeds.push(buf);
        };
        push(&|b| {
            let offer = SupervisorOffer {
                version: HANDOFF_VERSION,
                supervisor_key: [1; 32],
                nonce: [2; 32],
                secrets: [("db".to_owned(), ByteBuf::from(vec![3; 10]))].into(),
            };
            write_offer(b, &offer).unwrap()
        });
        push(&|b| {
            let identity = EnclaveIdentity {
                version: HANDOFF_VERSION,
                control_key: [4; 32],
                document: Some(ByteBuf::from(vec![5; 40])),
            };
            write_identity(b, &identity).unwrap()
        });
        push(&|b| {
            let exit = EnclaveExit::new(
                Some(ExitStatus::Signal(9)),
                true,
                "the main service ended".into(),
            );
            write_exit(b, &exit).unwrap()
        });
        for seed in &seeds {
            fuzz_messages(seed);
            for cut in 0..seed.len() {
                fuzz_messages(&seed[..cut]);
            }
            for i in 0..seed.len() {
                for bit in [0x01, 0x80] {
                    let mut m = seed.clone();
                    m[i] ^= bit;
                    fuzz_messages(&m);
                }
            }
        }
    }

    #[test]
    fn the_exit_report_round_trips_and_long_reasons_are_cut() {
        let exit = EnclaveExit::new(
            Some(ExitStatus::Code(3)),
            false,
            "é".repeat(MAX_EXIT_REASON),
        );
        let mut buf = Vec::new();
        write_exit(&mut buf, &exit).unwrap();
        let back = read_exit(&mut buf.as_slice()).unwrap();
        assert_eq!(back.main, Some(ExitStatus::Code(3)));
        assert_eq!((back.version, back.oom), (HANDOFF_VERSION, false));
        assert!(back.reason.len() <= MAX_EXIT_REASON && back.reason.starts_with('é'));
    }

    #[test]
    fn only_an_oom_report_needs_version_2() {
        let oom = EnclaveExit::new(Some(ExitStatus::Signal(9)), true, "oom".into());
        assert_eq!(oom.version, EXIT_OOM_VERSION);
        let mut buf = Vec::new();
        write_exit(&mut buf, &oom).unwrap();
        assert_eq!(read_exit(&mut buf.as_slice()).unwrap(), oom);
        // Without `oom` the bytes are what a version-1 reader expects.
        let plain = EnclaveExit::new(Some(ExitStatus::Signal(9)), false, "killed".into());
        let mut payload = Vec::new();
        ciborium::into_writer(&plain, &mut payload).unwrap();
        let fields: ciborium::Value = ciborium::from_reader(payload.as_slice()).unwrap();
        let keys: Vec<_> = fields
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_text().unwrap().to_owned())
            .collect();
        assert_eq!(keys, ["version", "main", "reason"]);
        // `oom` under version 1 is refused.
        let forged = EnclaveExit {
            version: HANDOFF_VERSION,
            ..oom
        };
        assert!(matches!(forged.check(), Err(HandoffError::Invalid(_))));
    }

    #[test]
    fn an_exit_report_with_unknown_fields_or_version_is_refused() {
        #[derive(Serialize)]
        struct Extra {
            version: u16,
            reason: String,
            surprise: u8,
        }
        for (version, bad) in [(HANDOFF_VERSION, true), (EXIT_OOM_VERSION + 1, false)] {
            let mut payload = Vec::new();
            if bad {
                let msg = Extra {
                    version,
                    reason: String::new(),
                    surprise: 1,
                };
                ciborium::into_writer(&msg, &mut payload).unwrap();
            } else {
                let msg = EnclaveExit {
                    version,
                    main: None,
                    oom: false,
                    reason: String::new(),
                };
                ciborium::into_writer(&msg, &mut payload).unwrap();
            }
            let mut buf = Vec::new();
            write_frame(&mut buf, &payload).unwrap();
            let err = read_exit(&mut buf.as_slice()).unwrap_err();
            match (bad, err) {
                (true, HandoffError::Decode(_)) | (false, HandoffError::Version(_)) => {}
                (_, e) => panic!("unexpected: {e}"),
            }
        }
    }
}
