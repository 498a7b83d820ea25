//! The enclave's side of the trust boundary, set up at boot before the heartbeat and before any
//! service runs (`docs/security.md`):
//!
//! 1. [`mark_debug_surface`]: PCR31 is extended with the marker of the debug capabilities the
//!    measured spec grants (`enclave_proto::debug_pcr::debug_marker`; nothing when none) and locked,
//!    so every attestation document shows what the host may do inside. When that fails the NSM
//!    is withdrawn for the boot: no document is ever issued without the marker.
//! 2. [`establish`]: the control identity (an X25519 key made here, never leaving the enclave)
//!    and the document binding it; then the hand-off with the supervisor
//!    (`enclave_proto::handoff`): its key in, the identity out, the operator's secrets written
//!    to [`SECRETS_DIR`]. The connection stays open: the enclave's last word on it is the exit
//!    report ([`SupervisorLink::report_exit`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use enclave_nsm::Nsm;
use enclave_proto::debug_pcr::{debug_marker, DEBUG_PCR};
use enclave_proto::handoff::{
    self, EnclaveExit, EnclaveIdentity, SupervisorOffer, HANDOFF_VERSION,
};
use enclave_proto::transport::{self, Addr};
use enclave_proto::wire::auth::VerifyingKey;
use enclave_proto::wire::secure::{ControlIdentity, IDENTITY_USER_DATA};
use enclave_proto::wire::{Capability, ExitStatus};
use enclave_spec::DebugSpec;
use serde_bytes::ByteBuf;

use crate::say;

/// Environment variable overriding the supervisor's hand-off address (tests: `unix:/path`).
pub const ENV_SUPERVISOR_ADDR: &str = "ENCLAVE_INIT_SUPERVISOR_ADDR";
/// Where the operator's secrets go (root only); the spec names credentials files there.
pub use enclave_spec::SECRETS_DIR;
/// How long the hand-off may take once connected (the supervisor answers at once; the bound is
/// for a parent that accepts and then says nothing).
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(5);

/// The hand-off connection, kept open for the enclave's life: its last message is the exit
/// report ([`report_exit`](Self::report_exit)).
pub struct SupervisorLink(transport::Connection);

impl SupervisorLink {
    /// Tells the supervisor how the enclave ends, just before the power-off: the main service's
    /// exit status (`enclave-ctl run` exits with it) and the reason. Bounded by the hand-off's
    /// write timeout; a failure is logged, never fatal.
    /// `oom`: the kernel's OOM killer ended the main service.
    pub fn report_exit(mut self, main: Option<ExitStatus>, oom: bool, reason: &str) {
        let exit = EnclaveExit::new(main, oom, reason.to_owned());
        match handoff::write_exit(&mut self.0, &exit) {
            Ok(()) => {
                // Wait (bounded) for the supervisor to close its end: the report is then read,
                // not lost with the VM that powers off right after.
                let _ = self.0.set_read_timeout(Some(EXIT_REPORT_WAIT));
                let _ = std::io::Read::read(&mut self.0, &mut [0u8; 1]);
            }
            Err(e) => say!("control: reporting the exit to the supervisor: {e}"),
        }
    }
}

/// How long the exit report waits for the supervisor to take it.
const EXIT_REPORT_WAIT: Duration = Duration::from_secs(2);

/// What the control server needs from the boot.
#[derive(Debug, Clone)]
pub struct ControlKeys {
    /// The enclave's control identity.
    pub identity: Arc<ControlIdentity>,
    /// The supervisor's key, when one handed itself over.
    pub supervisor_key: Option<VerifyingKey>,
}

/// Extends PCR31 with the marker of the spec's debug capabilities (when it grants any) and locks
/// it. `Ok(None)`: there is no NSM, so no document can be issued and there is nothing to mark.
pub fn mark_debug_surface(
    nsm: Option<&dyn Nsm>,
    debug: &DebugSpec,
) -> Result<Option<Vec<Capability>>, String> {
    let Some(nsm) = nsm else {
        return Ok(None);
    };
    let caps = Capability::granted_by(debug);
    if let Some(marker) = debug_marker(&caps) {
        nsm.extend_pcr(DEBUG_PCR, marker)
            .map_err(|e| format!("extending PCR{DEBUG_PCR}: {e}"))?;
    }
    nsm.lock_pcr(DEBUG_PCR)
        .map_err(|e| format!("locking PCR{DEBUG_PCR}: {e}"))?;
    Ok(Some(caps))
}

/// The supervisor's address: [`ENV_SUPERVISOR_ADDR`] or the parent's hand-off port.
fn supervisor_addr(parent_cid: u32) -> Result<Addr, String> {
    match std::env::var(ENV_SUPERVISOR_ADDR) {
        Ok(s) => s.parse().map_err(|e| format!("{ENV_SUPERVISOR_ADDR}: {e}")),
        Err(_) => Ok(Addr::Vsock {
            cid: parent_cid,
            port: enclave_proto::ports::SUPERVISOR,
        }),
    }
}

/// Makes the control identity, gets its document and hands it to the supervisor. Problems are
/// logged and survived: without a supervisor only the spec's authorized keys can drive the
/// enclave; without a document only a supervisor's pin can vouch for the identity. The
/// connection to the supervisor is returned when the hand-off went through, for the exit
/// report.
pub fn establish(
    parent_cid: u32,
    nsm: Option<&dyn Nsm>,
) -> Result<(ControlKeys, Option<SupervisorLink>), String> {
    let identity = ControlIdentity::generate().map_err(|e| format!("control identity: {e}"))?;
    let mut conn = match supervisor_addr(parent_cid)
        .and_then(|a| transport::connect(&a).map_err(|e| format!("no supervisor at {a}: {e}")))
    {
        Ok(c) => Some(c),
        Err(e) => {
            say!("control: {e}; only the spec's authorized keys can drive this enclave");
            None
        }
    };
    let offer = conn.as_mut().and_then(|c| {
        let _ = c.set_read_timeout(Some(HANDOFF_TIMEOUT));
        let _ = c.set_write_timeout(Some(HANDOFF_TIMEOUT));
        handoff::read_offer(c)
            .map_err(|e| say!("control: the supervisor's hand-off: {e}"))
            .ok()
    });
    let supervisor_key = offer.as_ref().and_then(|o| {
        VerifyingKey::from_bytes(&o.supervisor_key)
            .map_err(|_| say!("control: the supervisor's key is not an Ed25519 key"))
            .ok()
    });
    let document = nsm.and_then(|nsm| {
        let nonce = offer.as_ref().map(|o| o.nonce.to_vec());
        nsm.attest(
            Some(IDENTITY_USER_DATA.to_vec()),
            nonce,
            Some(identity.public_key().to_vec()),
        )
        .map_err(|e| say!("control: no document for the control identity: {e}"))
        .ok()
    });
    let identity = match document {
        Some(d) => identity.with_document(d),
        None => identity,
    };
    let mut link = None;
    if let (Some(mut conn), Some(offer)) = (conn, offer.as_ref()) {
        let answer = EnclaveIdentity {
            version: HANDOFF_VERSION,
            control_key: identity.public_key(),
            document: identity.document().map(|d| ByteBuf::from(d.to_vec())),
        };
        match handoff::write_identity(&mut conn, &answer) {
            Ok(()) => link = Some(SupervisorLink(conn)),
            Err(e) => say!("control: handing the identity to the supervisor: {e}"),
        }
        if let Err(e) = write_secrets(Path::new(SECRETS_DIR), offer) {
            say!("control: secrets: {e}");
        }
    }
    let keys = ControlKeys {
        identity: Arc::new(identity),
        supervisor_key,
    };
    Ok((keys, link))
}

/// Writes the offer's secrets into `dir` (created 0700; each file 0600, created exclusively,
/// never through a symlink).
pub fn write_secrets(dir: &Path, offer: &SupervisorOffer) -> Result<usize, String> {
    if offer.secrets.is_empty() {
        return Ok(0);
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, content) in &offer.secrets {
        // The names were checked by `read_offer` (no `/`, no leading dot).
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| f.write_all(content))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    say!(
        "control: {} secret(s) from the supervisor in {}",
        offer.secrets.len(),
        dir.display()
    );
    Ok(offer.secrets.len())
}
