//! The supervisor's side of the boot hand-off (`enclave_proto::handoff`).
//!
//! Before each boot the supervisor listens where only it can: on the emulated backend the
//! hybrid vsock socket `<sk>/vsock.sock_900` inside its 0700 state directory; on Nitro vsock
//! port 900 of the parent, which only root can bind (and a connection from another CID than the
//! enclave's is refused). The enclave connects once, early in its boot; the supervisor offers
//! its key, a fresh nonce and the operator's secrets, receives the enclave's control identity,
//! verifies the identity document against the record (genuine, the measured PCRs, the key,
//! the nonce) and pins the key in `identity.json` for clients. The listener is closed as soon
//! as one exchange is done, so that the next enclave's supervisor on a Nitro parent can bind
//! the port.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use enclave_proto::handoff::{self, SupervisorOffer, HANDOFF_VERSION};
use enclave_proto::transport::{Connection, Listener};
use enclave_proto::wire::auth::{random_nonce, VerifyingKey};
use serde_bytes::ByteBuf;

use crate::control::{remove_pin, write_pin, DocumentCheck};
use crate::error::{EngineError, Result};

/// How long one exchange may take once the enclave connected.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the serving thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// What one boot's hand-off needs.
pub struct HandoffSetup {
    /// Bound before the enclave starts.
    pub listener: Listener,
    /// Nitro: the enclave's CID, the only peer accepted.
    pub expect_cid: Option<u32>,
    /// The supervisor key's public half.
    pub key: VerifyingKey,
    /// Secrets by name (`run --secret`).
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// How to verify the identity document; `None` for a Nitro debug-mode enclave, whose PCRs
    /// are zero (then the hand-off channel alone vouches for the key).
    pub check: Option<DocumentCheck>,
    /// The enclave's directory (where the pin goes).
    pub dir: PathBuf,
    /// Where to report what happened (the supervisor's event log).
    pub events: Arc<dyn Fn(&str) + Send + Sync>,
}

/// A hand-off being served for one boot; stopped on drop.
pub struct HandoffServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HandoffServer {
    /// Forgets the previous boot's pin and serves `setup` on a thread until one exchange is
    /// done or the server is dropped.
    pub fn start(setup: HandoffSetup) -> Result<Self> {
        remove_pin(&setup.dir);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("handoff".into())
            .spawn(move || serve(setup, &flag))
            .map_err(|e| EngineError::Backend(format!("no thread for the hand-off: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for HandoffServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(setup: HandoffSetup, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let conn = match setup.listener.accept_timeout(POLL) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                (setup.events)(&format!("hand-off: accept: {e}"));
                std::thread::sleep(POLL);
                continue;
            }
        };
        if let (Some(want), Some(cid)) = (setup.expect_cid, conn.peer_cid()) {
            if want != cid {
                (setup.events)(&format!(
                    "hand-off: refused a connection from CID {cid} (this enclave is CID {want})"
                ));
                continue;
            }
        }
        match exchange(conn, &setup) {
            Ok(attested) => {
                (setup.events)(if attested {
                    "control identity verified and pinned"
                } else {
                    "control identity pinned (not attested: the enclave has no NSM)"
                });
                // Done for this boot: the listener goes with `setup`.
                return;
            }
            Err(e) => (setup.events)(&format!("hand-off: {e}")),
        }
    }
}

/// One exchange; the identity is pinned only when it checks out. Returns whether a document
/// attested it.
fn exchange(mut conn: Connection, setup: &HandoffSetup) -> std::result::Result<bool, String> {
    let started = Instant::now();
    conn.set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .and_then(|()| conn.set_write_timeout(Some(EXCHANGE_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let nonce = random_nonce().map_err(|e| format!("no randomness for the nonce: {e}"))?;
    let offer = SupervisorOffer {
        version: HANDOFF_VERSION,
        supervisor_key: setup.key.to_bytes(),
        nonce,
        secrets: setup
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), ByteBuf::from(v.clone())))
            .collect(),
    };
    handoff::write_offer(&mut conn, &offer).map_err(|e| e.to_string())?;
    let identity = handoff::read_identity(&mut conn).map_err(|e| e.to_string())?;
    let attested = match (&setup.check, identity.document.as_deref()) {
        (Some(check), Some(document)) => {
            check
                .clone()
                .with_nonce(&nonce)
                .check(&identity.control_key, document)
                .map_err(|e| format!("the enclave's control identity was not pinned: {e}"))?;
            true
        }
        (_, None) | (None, _) => false,
    };
    write_pin(&setup.dir, &identity.control_key, attested).map_err(|e| e.to_string())?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        attested,
        "hand-off done"
    );
    Ok(attested)
}
