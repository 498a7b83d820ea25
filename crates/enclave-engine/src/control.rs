//! How the host side reaches an enclave's control channel (`docs/security.md`).
//!
//! - The **supervisor key** (`<enclave dir>/control.key`, 0600): an Ed25519 key made when the
//!   supervisor first starts, handed to enclave-init at each boot (its public half) and accepted
//!   there besides the spec's `debug.authorized_keys`. Whoever can read it drives the enclave:
//!   the user who ran it (root on a Nitro parent), nobody else.
//! - The **pinned identity** (`<enclave dir>/identity.json`): the enclave's control key as the
//!   supervisor received and verified it at the last boot. A client that has it checks the
//!   handshake against it; otherwise it verifies the enclave's identity document against the
//!   record's PCRs ([`DocumentCheck`]).
//! - [`connect_options`] puts both together for a client of this host.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use enclave_attest::{Expectation, Policy, TrustRoot, Verifier};
use enclave_proto::client::ConnectOptions;
use enclave_proto::wire::auth::SigningKey;
use enclave_proto::wire::secure::{IdentityVerifier, ServerCheck, IDENTITY_USER_DATA};
use enclave_proto::wire::{Capability, Security};
use serde::{Deserialize, Serialize};

use crate::backend::Attestation;
use crate::error::{EngineError, Result};
use crate::state::{EnclaveRecord, StateRoot};

/// The supervisor key's file in the enclave's directory.
pub const KEY_FILE: &str = "control.key";
/// The pinned identity's file in the enclave's directory.
pub const IDENTITY_FILE: &str = "identity.json";

/// A file the operator hands to the enclave at each boot (`run --secret NAME=FILE`), for
/// credentials that keep network parties out (a NATS token, say): the host knows it, so it is
/// never what protects the enclave from its host.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Its name in `/run/enclave/secrets/`.
    pub name: String,
    /// Its content.
    pub content: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, {} bytes)", self.name, self.content.len())
    }
}

impl Secret {
    /// Reads `NAME=FILE`.
    pub fn from_arg(arg: &str) -> Result<Secret> {
        let (name, file) = arg
            .split_once('=')
            .ok_or_else(|| EngineError::Invalid(format!("--secret {arg:?}: expected NAME=FILE")))?;
        let path = Path::new(file);
        let content = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        Ok(Secret {
            name: name.to_owned(),
            content,
        })
    }
}

/// Checks names, sizes and count against what the boot hand-off carries.
pub fn check_secrets(secrets: &[Secret]) -> Result<()> {
    use enclave_proto::handoff::{valid_secret_name, MAX_SECRET, MAX_SECRETS};
    if secrets.len() > MAX_SECRETS {
        return Err(EngineError::Invalid(format!(
            "{} secrets: at most {MAX_SECRETS}",
            secrets.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in secrets {
        if !valid_secret_name(&s.name) {
            return Err(EngineError::Invalid(format!(
                "secret name {:?}: use 1 to 64 of A-Z a-z 0-9 . _ -, not starting with a dot",
                s.name
            )));
        }
        if !seen.insert(&s.name) {
            return Err(EngineError::Invalid(format!(
                "secret {:?} given twice",
                s.name
            )));
        }
        if s.content.len() > MAX_SECRET {
            return Err(EngineError::Invalid(format!(
                "secret {:?} is {} bytes, at most {MAX_SECRET}",
                s.name,
                s.content.len()
            )));
        }
    }
    Ok(())
}

/// The directory of the operator's secrets in the enclave directory.
pub const SECRETS_DIR: &str = "secrets";

/// Stores the secrets in `<dir>/secrets/` (0700; files 0600, created exclusively, never
/// through a symlink), where the supervisor reads them at each boot ([`read_secrets`]).
pub fn store_secrets(dir: &Path, secrets: &[Secret]) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if secrets.is_empty() {
        return Ok(());
    }
    let sdir = dir.join(SECRETS_DIR);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&sdir)
        .map_err(|e| EngineError::io(&sdir, e))?;
    for s in secrets {
        create_private(&sdir.join(&s.name), &s.content)?;
    }
    Ok(())
}

/// The operator's secrets of the enclave whose directory is `dir`, as [`store_secrets`] left
/// them: name to content.
pub fn read_secrets(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let sdir = dir.join(SECRETS_DIR);
    let mut secrets = BTreeMap::new();
    let entries = match std::fs::read_dir(&sdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(secrets),
        Err(e) => return Err(EngineError::io(&sdir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| EngineError::io(&sdir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let bytes = std::fs::read(&path).map_err(|e| EngineError::io(&path, e))?;
        secrets.insert(name, bytes);
    }
    Ok(secrets)
}

/// Writes a new file only its owner can read (0600), created exclusively and never through a
/// symlink planted in its place, and syncs it.
fn create_private(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .map_err(|e| EngineError::io(path, e))
}

/// The enclave's control identity as its supervisor received it at the last boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedIdentity {
    /// The X25519 control key, hex.
    pub control_key: String,
    /// Whether an attestation document bound it to the record's measurements (false: the
    /// enclave has no NSM, and only the hand-off channel vouches for it).
    pub attested: bool,
}

/// The supervisor key of the enclave whose directory is `dir`, made on first use.
pub fn load_or_create_key(dir: &Path) -> Result<SigningKey> {
    let path = dir.join(KEY_FILE);
    match load_key(dir) {
        Ok(k) => return Ok(k),
        Err(EngineError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut())
        .map_err(|e| EngineError::Backend(format!("no randomness for the supervisor key: {e}")))?;
    create_private(&path, seed.as_ref())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The supervisor key of the enclave whose directory is `dir`. A key readable by others than
/// its owner is refused: it would let them drive the enclave.
pub fn load_key(dir: &Path) -> Result<SigningKey> {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join(KEY_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| EngineError::io(&path, e))?;
    let meta = file.metadata().map_err(|e| EngineError::io(&path, e))?;
    if meta.mode() & 0o077 != 0 {
        return Err(EngineError::Invalid(format!(
            "{}: mode {:o} lets others read the supervisor key; it must be 0600",
            path.display(),
            meta.mode() & 0o777
        )));
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    use std::io::Read;
    (&file)
        .read_exact(seed.as_mut())
        .map_err(|e| EngineError::io(&path, e))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The identity pinned at the last boot, when there is one.
pub fn pinned_identity(dir: &Path) -> Option<[u8; 32]> {
    let pin: PinnedIdentity = crate::util::read_json(&dir.join(IDENTITY_FILE)).ok()?;
    hex::decode(pin.control_key).ok()?.try_into().ok()
}

/// Records the identity of the boot that just handed it over.
pub fn write_pin(dir: &Path, key: &[u8; 32], attested: bool) -> Result<()> {
    let pin = PinnedIdentity {
        control_key: hex::encode(key),
        attested,
    };
    crate::util::write_json_atomic(&dir.join(IDENTITY_FILE), &pin)
}

/// Forgets the pin (a new boot makes a new identity).
pub fn remove_pin(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(IDENTITY_FILE));
}

/// The trust roots an enclave of `rec`'s backend is attested by: this host's emulation root
/// for emulated enclaves, the AWS root for Nitro.
pub fn trust_roots(root: &StateRoot, rec: &EnclaveRecord) -> Result<Vec<TrustRoot>> {
    match rec.backend.attestation() {
        Attestation::Nitro => Ok(vec![TrustRoot::aws_nitro_root_g1()]),
        Attestation::Emulated => {
            let ca = crate::state::emulation_ca(root.path())?;
            let root = TrustRoot::from_der(ca.root_der())
                .map_err(|e| EngineError::Backend(format!("emulation root: {e}")))?;
            Ok(vec![root])
        }
    }
}

/// Checks an enclave's identity document: genuine (chained to `roots`), of the measured image
/// (PCR0, 1, 2 and 8 as recorded), binding the control key as its `public_key` with the
/// identity's `user_data`, and, at boot, the supervisor's nonce.
#[derive(Debug, Clone)]
pub struct DocumentCheck {
    roots: Vec<TrustRoot>,
    expectation: Expectation,
    nonce: Option<Vec<u8>>,
}

impl DocumentCheck {
    /// A check against `roots` and exactly these PCRs (PCR0 or PCR8 among them).
    pub fn new(roots: Vec<TrustRoot>, pcrs: BTreeMap<u8, Vec<u8>>) -> Result<Self> {
        let expectation = Expectation::pcrs(pcrs)
            .map_err(|e| EngineError::Invalid(format!("the enclave's identity: {e}")))?;
        Ok(Self {
            roots,
            expectation,
            nonce: None,
        })
    }

    /// The check for an enclave of `rec` (its measurements; no nonce).
    pub fn for_record(root: &StateRoot, rec: &EnclaveRecord) -> Result<Self> {
        let pcrs = crate::state::measured_pcrs(&rec.measurements)
            .into_iter()
            .map(|(i, v)| (i, v.to_vec()))
            .collect();
        Self::new(trust_roots(root, rec)?, pcrs)
    }

    /// The same, also requiring `nonce` (the supervisor's, at boot).
    pub fn with_nonce(mut self, nonce: &[u8]) -> Self {
        self.nonce = Some(nonce.to_vec());
        self
    }

    /// Checks `document` for `control_key`.
    pub fn check(
        &self,
        control_key: &[u8; 32],
        document: &[u8],
    ) -> std::result::Result<(), String> {
        let mut policy = Policy::new(self.expectation.clone());
        policy.nonce = self.nonce.clone();
        policy.user_data = Some(IDENTITY_USER_DATA.to_vec());
        policy.public_key = Some(control_key.to_vec());
        // Who drives the enclave knows its spec: the debug surface is not what this checks.
        policy.allow_debug_capabilities = true;
        let verifier = Verifier::with_roots(self.roots.clone()).map_err(|e| e.to_string())?;
        verifier
            .verify(document, time::OffsetDateTime::now_utc(), &policy)
            .map(drop)
            .map_err(|e| format!("its identity document: {e}"))
    }
}

impl IdentityVerifier for DocumentCheck {
    fn verify(
        &self,
        control_key: &[u8; 32],
        document: Option<&[u8]>,
    ) -> std::result::Result<(), String> {
        let document = document.ok_or(
            "the enclave sent no identity document (it has no NSM) and its supervisor pinned no key",
        )?;
        self.check(control_key, document)
    }
}

/// Where and how the host's own requests reach enclave `rec` (the supervisor's graceful
/// shutdown, its health monitor, the daemon's attest route): its control address, and the
/// supervisor's key with no capability ([`connect_options`]).
pub fn supervisor_session(
    root: &StateRoot,
    rec: &EnclaveRecord,
    client: &str,
    retry: Duration,
) -> Result<(enclave_proto::transport::Addr, ConnectOptions)> {
    let addr = rec
        .control_addr
        .parse()
        .map_err(|e| EngineError::Invalid(format!("control address: {e}")))?;
    Ok((addr, connect_options(root, rec, &[], None, client, retry)?))
}

/// What a client of this host needs to drive the enclave `rec`: the supervisor's key (unless
/// `key` is given: a key of the spec's `debug.authorized_keys`), and the enclave's identity
/// (the pin, else its document checked against the record).
pub fn connect_options(
    root: &StateRoot,
    rec: &EnclaveRecord,
    capabilities: &[Capability],
    key: Option<SigningKey>,
    client: &str,
    retry: Duration,
) -> Result<ConnectOptions> {
    let dir = root.dir(&rec.id);
    let key = match key {
        Some(k) => k,
        None => load_key(&dir).map_err(|e| match e {
            EngineError::Io { path, error }
                if error.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                EngineError::Invalid(format!(
                    "{}: permission denied: only the user who started enclave {} (root on a \
                     Nitro parent) can drive it; or use a key listed in its spec's \
                     debug.authorized_keys (--key)",
                    path.display(),
                    rec.name
                ))
            }
            other => other,
        })?,
    };
    let check = match pinned_identity(&dir) {
        Some(pin) => ServerCheck::Pinned(pin),
        None => ServerCheck::Verify(Arc::new(DocumentCheck::for_record(root, rec)?)),
    };
    Ok(ConnectOptions {
        capabilities: capabilities.to_vec(),
        key: Some(key),
        client: client.to_owned(),
        retry,
        security: Security::Remote(check),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn secret(name: &str, len: usize) -> Secret {
        Secret {
            name: name.into(),
            content: vec![7; len],
        }
    }

    #[test]
    fn secrets_are_checked_then_stored_private() {
        for bad in [
            vec![secret("../etc/passwd", 1)],
            vec![secret(".hidden", 1)],
            vec![secret("a", 1), secret("a", 2)],
            vec![secret("big", enclave_proto::handoff::MAX_SECRET + 1)],
            (0..=enclave_proto::handoff::MAX_SECRETS)
                .map(|i| secret(&format!("s{i}"), 1))
                .collect(),
        ] {
            assert!(check_secrets(&bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let good = [secret("nats.creds", 10), secret("token", 3)];
        check_secrets(&good).unwrap();
        store_secrets(dir.path(), &good).unwrap();
        let sdir = dir.path().join(SECRETS_DIR);
        assert_eq!(
            std::fs::metadata(&sdir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = sdir.join("nats.creds");
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(file).unwrap(), vec![7; 10]);
        // Never written twice, never through a link planted in its place.
        assert!(store_secrets(dir.path(), &good).is_err());
    }

    #[test]
    fn the_supervisor_key_is_made_once_and_refused_when_others_can_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let made = load_or_create_key(dir.path()).unwrap();
        let again = load_or_create_key(dir.path()).unwrap();
        assert_eq!(made.to_bytes(), again.to_bytes());
        let path = dir.path().join(KEY_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_key(dir.path()).unwrap_err().to_string();
        assert!(e.contains("lets others read the supervisor key"), "{e}");
    }
}
