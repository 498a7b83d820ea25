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
//! the port; the connection stays open for the enclave's exit report (how its main service
//! ended), which [`HandoffServer::exit_report`] then holds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use enclave_proto::handoff::{self, EnclaveExit, SupervisorOffer, HANDOFF_VERSION};
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

/// What the serving thread shares with its owner.
#[derive(Default)]
struct Shared {
    /// A clone of the open hand-off connection, shut down on drop to end the wait for the
    /// exit report.
    conn: Mutex<Option<Connection>>,
    /// The enclave's exit report, once it came.
    exit: Mutex<Option<EnclaveExit>>,
}

/// A hand-off being served for one boot; stopped on drop.
pub struct HandoffServer {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl HandoffServer {
    /// Forgets the previous boot's pin and serves `setup` on a thread until one exchange is
    /// done and the enclave's exit report came, or the server is dropped.
    pub fn start(setup: HandoffSetup) -> Result<Self> {
        remove_pin(&setup.dir);
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::default());
        let (flag, state) = (stop.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("handoff".into())
            .spawn(move || serve(setup, &flag, &state))
            .map_err(|e| EngineError::Backend(format!("no thread for the hand-off: {e}")))?;
        Ok(Self {
            stop,
            shared,
            thread: Some(thread),
        })
    }

    /// The enclave's exit report, when it sent one (it does just before powering off by
    /// itself).
    pub fn exit_report(&self) -> Option<EnclaveExit> {
        lock(&self.shared.exit).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for HandoffServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(conn) = lock(&self.shared.conn).take() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(setup: HandoffSetup, stop: &AtomicBool, shared: &Shared) {
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
        let mut conn = conn;
        match exchange(&mut conn, &setup) {
            Ok(attested) => {
                (setup.events)(if attested {
                    "control identity verified and pinned"
                } else {
                    "control identity pinned (not attested: the enclave has no NSM)"
                });
                // Done with the listener for this boot (the port is free for another enclave).
                let HandoffSetup {
                    listener, events, ..
                } = setup;
                drop(listener);
                wait_exit_report(conn, stop, shared, events.as_ref());
                return;
            }
            Err(e) => (setup.events)(&format!("hand-off: {e}")),
        }
    }
}

/// Waits on the open hand-off connection for the enclave's exit report, until the enclave is
/// gone (the connection closes) or the server is dropped (which shuts the connection down).
fn wait_exit_report(
    mut conn: Connection,
    stop: &AtomicBool,
    shared: &Shared,
    events: &(dyn Fn(&str) + Send + Sync),
) {
    let _ = conn.set_read_timeout(None);
    match conn.try_clone() {
        Ok(clone) => *lock(&shared.conn) = Some(clone),
        Err(e) => {
            events(&format!("hand-off: no exit report this boot ({e})"));
            return;
        }
    }
    // Dropped between the check above and the clone being stored: nobody would shut it down.
    if stop.load(Ordering::SeqCst) {
        return;
    }
    match handoff::read_exit(&mut conn) {
        Ok(exit) => {
            let main = match exit.main {
                Some(s) => format!("the main service ended ({})", describe(s)),
                None => "no main service ran".to_owned(),
            };
            events(&format!("the enclave reports: {main}; {}", exit.reason));
            *lock(&shared.exit) = Some(exit);
        }
        // Closed without a report: killed, crashed, or stopped by us.
        Err(handoff::HandoffError::Closed) => {}
        Err(e) if stop.load(Ordering::SeqCst) => tracing::debug!("hand-off closed: {e}"),
        Err(e) => events(&format!("hand-off: the exit report: {e}")),
    }
    // Dropping the connection tells the enclave the report was taken: it powers off at once.
}

/// `exit code 3`, `signal 9`.
fn describe(s: enclave_proto::wire::ExitStatus) -> String {
    match s {
        enclave_proto::wire::ExitStatus::Code(c) => format!("exit code {c}"),
        enclave_proto::wire::ExitStatus::Signal(n) => format!("signal {n}"),
    }
}

/// One exchange; the identity is pinned only when it checks out. Returns whether a document
/// attested it.
fn exchange(conn: &mut Connection, setup: &HandoffSetup) -> std::result::Result<bool, String> {
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
    handoff::write_offer(conn, &offer).map_err(|e| e.to_string())?;
    let identity = handoff::read_identity(conn).map_err(|e| e.to_string())?;
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
