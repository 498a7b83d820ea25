//! Helpers of the control tests: an enclave whose control server listens on a Unix socket in
//! its rootfs (visible to the host test), clients, raw frames.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use enclave_proto::client::{Client, ClientError, ConnectOptions, ExecIo};
use enclave_proto::handoff::{self, EnclaveIdentity, SupervisorOffer, HANDOFF_VERSION};
use enclave_proto::transport::{Addr, Connection};
use enclave_proto::wire::auth::SigningKey;
use enclave_proto::wire::secure::{SecureReader, SecureWriter, ServerCheck};
use enclave_proto::wire::{
    read_frame, Capability, ClientConfig, ClientHello, ClientMessage, ClientSession, ExecRequest,
    ExitStatus, Security, ServerMessage, Verdict, PROTOCOL_VERSION,
};

use super::{Enclave, Run};

/// How to reach a booted enclave's control server as its operator.
#[derive(Clone)]
pub struct Access {
    /// The control socket, host path.
    pub addr: Addr,
    /// The key the test's stand-in supervisor handed to the enclave.
    pub supervisor_key: SigningKey,
    /// The control identity the enclave handed back (the pin).
    pub control_key: [u8; 32],
}

/// A booted enclave with its control socket.
pub struct Booted {
    /// The running init.
    pub run: Run,
    /// Its control server.
    pub access: Access,
}

impl std::ops::Deref for Booted {
    type Target = Access;
    fn deref(&self) -> &Access {
        &self.access
    }
}

impl Drop for Booted {
    /// Ends the enclave with the test: killing unshare kills its init (`--kill-child`).
    fn drop(&mut self) {
        let _ = self.run.child.kill();
        let _ = self.run.child.wait();
    }
}

/// How long an unauthenticated connection is safe from eviction (the server's rule).
pub const GRACE: Duration = enclave_init::control::slots::GRACE;

/// `sh -c script`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// The supervisor's side of the boot hand-off, on a Unix socket in the rootfs: offers `key`
/// and `secrets`, returns the identity the enclave answered with.
pub fn stand_in_supervisor(
    path: PathBuf,
    key: SigningKey,
    secrets: BTreeMap<String, Vec<u8>>,
) -> std::thread::JoinHandle<EnclaveIdentity> {
    let listener = UnixListener::bind(&path).expect("bind the hand-off socket");
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the enclave connects");
        let offer = SupervisorOffer {
            version: HANDOFF_VERSION,
            supervisor_key: key.verifying_key().to_bytes(),
            nonce: [0x5a; 32],
            secrets: secrets
                .into_iter()
                .map(|(k, v)| (k, serde_bytes::ByteBuf::from(v)))
                .collect(),
        };
        handoff::write_offer(&mut conn, &offer).unwrap();
        handoff::read_identity(&mut conn).unwrap()
    })
}

/// Boots an enclave running as root with `spec`, the control server on `/control.sock`.
pub fn boot(spec: &serde_json::Value) -> Option<Booted> {
    boot_with(spec, "root", BTreeMap::new())
}

/// [`boot`] with the app (its services, exec and cp) running as `user` (`app` is 1000:1000).
pub fn boot_as(spec: &serde_json::Value, user: &str) -> Option<Booted> {
    boot_with(spec, user, BTreeMap::new())
}

/// [`boot`], the app running as `user`, the supervisor handing over `secrets`.
pub fn boot_with(
    spec: &serde_json::Value,
    user: &str,
    secrets: BTreeMap<String, Vec<u8>>,
) -> Option<Booted> {
    let enclave = Enclave::prepare(spec, &sh("while :; do sleep 1; done"), user)?;
    // initctl is a copy of the init binary run inside the rootfs: a dynamically linked test
    // build needs its libraries there too.
    let init_bin = std::env::var_os("ENCLAVE_INIT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_enclave-init")));
    super::copy_libs(&init_bin, &enclave.dir.path().join("rootfs"));
    let supervisor_key = SigningKey::from_bytes(&[0x77; 32]);
    let supervisor = stand_in_supervisor(
        enclave.dir.path().join("rootfs/supervisor.sock"),
        supervisor_key.clone(),
        secrets,
    );
    let run = enclave.boot(&[
        ("ENCLAVE_INIT_CONTROL_ADDR", "unix:/control.sock"),
        ("ENCLAVE_INIT_SUPERVISOR_ADDR", "unix:/supervisor.sock"),
        ("ENCLAVE_INIT_GRACE_MS", "300"),
    ]);
    let up = run.wait_for(Duration::from_secs(20), |out| {
        out.contains("control: listening on") && out.contains("started main")
    });
    assert!(up, "the control server did not start:\n{}", run.output());
    let identity = supervisor.join().expect("the hand-off");
    let addr = Addr::Unix(run.root().join("rootfs/control.sock"));
    if let Ok(secs) = std::env::var("CONTROL_TEST_WATCHDOG") {
        run.watchdog(Duration::from_secs(secs.parse().unwrap_or(30)));
    }
    Some(Booted {
        run,
        access: Access {
            addr,
            supervisor_key,
            control_key: identity.control_key,
        },
    })
}

/// Connection options with these capabilities, as the operator: the supervisor's key and the
/// pinned identity.
pub fn opts(b: &Access, caps: &[Capability]) -> ConnectOptions {
    opts_with(b, caps, Some(b.supervisor_key.clone()))
}

/// Connection options with exactly this key (`None`: unauthenticated).
pub fn opts_with(b: &Access, caps: &[Capability], key: Option<SigningKey>) -> ConnectOptions {
    ConnectOptions {
        capabilities: caps.to_vec(),
        key,
        client: "control-test".into(),
        retry: Duration::from_secs(5),
        security: Security::Remote(ServerCheck::Pinned(b.control_key)),
    }
}

/// A client with exec and cp asked for, as the operator.
pub fn client(b: &Access) -> Client {
    Client::connect(&b.addr, &opts(b, &[Capability::Exec, Capability::Cp])).expect("connect")
}

/// What an exec produced.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An exec request for `argv`.
pub fn req(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: None,
        tty: None,
        stdin: false,
        detach: false,
        user: None,
    }
}

/// Runs an exec, collecting its output.
pub fn exec(
    client: &mut Client,
    mut request: ExecRequest,
    stdin: Option<Vec<u8>>,
) -> Result<Output, ClientError> {
    request.stdin = stdin.is_some();
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let err = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let io = ExecIo {
        stdin: stdin.map(|b| Box::new(std::io::Cursor::new(b)) as Box<dyn std::io::Read + Send>),
        stdout: Box::new(Sink(out.clone())),
        stderr: Box::new(Sink(err.clone())),
    };
    let status = client.exec(request, io, |_| {})?;
    let stdout = std::mem::take(&mut *out.lock().unwrap());
    let stderr = std::mem::take(&mut *err.lock().unwrap());
    Ok(Output {
        stdout,
        stderr,
        status,
    })
}

/// Stdout of a shell script run in the enclave (must exit 0).
pub fn shell(client: &mut Client, script: &str) -> String {
    let o = exec(client, req(&["/bin/sh", "-c", script]), None).expect("exec");
    assert_eq!(
        o.status,
        ExitStatus::Code(0),
        "{script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A raw connection for hand-made frames (only the set-up in clear is possible on it).
pub fn raw(addr: &Addr) -> UnixStream {
    let Addr::Unix(path) = addr else {
        panic!("unix address expected")
    };
    let s = UnixStream::connect(path).expect("raw connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The client hello, as bytes of a frame.
pub fn hello_frame(caps: &[Capability]) -> Vec<u8> {
    frame(&ClientMessage::Hello(ClientHello {
        version: PROTOCOL_VERSION,
        capabilities: caps.to_vec(),
        client: "raw".into(),
    }))
}

/// A message as the bytes of its frame.
pub fn frame(msg: &ClientMessage) -> Vec<u8> {
    let payload = enclave_proto::wire::encode(msg).expect("encode");
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    out
}

/// Reads messages until end of stream (or timeout); returns them.
pub fn read_all(s: &mut impl std::io::Read) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    while let Ok(Some(m)) = enclave_proto::wire::read_message::<ServerMessage>(s) {
        out.push(m);
    }
    out
}

/// Reads one message.
pub fn read_one(s: &mut impl std::io::Read) -> ServerMessage {
    enclave_proto::wire::read_message::<ServerMessage>(s)
        .expect("read")
        .expect("a message")
}

/// A session set up by the real client state machine, then driven by hand: the test sends
/// whatever bytes it likes inside the encrypted stream, as a buggy or hostile client would.
pub struct RawSession {
    sock: UnixStream,
    /// Decrypted messages from the enclave.
    pub reader: SecureReader<UnixStream>,
    writer: SecureWriter<UnixStream>,
}

impl RawSession {
    /// Sets up a session with `caps` wanted and `key` proven (`None`: unauthenticated).
    pub fn open(b: &Access, caps: &[Capability], key: Option<SigningKey>) -> RawSession {
        let mut sock = raw(&b.addr);
        let mut session = ClientSession::new(ClientConfig {
            capabilities: caps.to_vec(),
            client: "raw".into(),
            key,
            security: Security::Remote(ServerCheck::Pinned(b.control_key)),
        });
        sock.write_all(&frame(&session.hello().unwrap())).unwrap();
        loop {
            let f = read_frame(&mut sock).unwrap().expect("set-up answer");
            let (_, verdict) = session.on_recv_frame(f.payload()).unwrap();
            if let Verdict::Respond(next) = verdict {
                sock.write_all(&frame(&next)).unwrap();
            }
            if let Some(t) = session.take_transport() {
                let mut raw = RawSession {
                    reader: SecureReader::new(sock.try_clone().unwrap(), t.state()),
                    writer: SecureWriter::new(sock.try_clone().unwrap(), t.state()),
                    sock,
                };
                if let Some(auth) = session.auth().unwrap() {
                    raw.send(&auth);
                    let ok = read_one(&mut raw.reader);
                    assert!(matches!(ok, ServerMessage::Authenticated { .. }), "{ok:?}");
                }
                return raw;
            }
        }
    }

    /// Sends a message as it is, unchecked.
    pub fn send(&mut self, msg: &ClientMessage) {
        self.send_bytes(&frame(msg));
    }

    /// Sends bytes inside the encrypted stream.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
        self.writer.flush().unwrap();
    }

    /// Writes bytes on the socket as they are: not records.
    pub fn send_unsealed(&mut self, bytes: &[u8]) {
        let _ = self.sock.write_all(bytes);
    }

    /// The inode of this end's socket, as `ss` names it (`socket:[INODE]` in `/proc/self/fd`).
    pub fn inode(&self) -> u64 {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", self.sock.as_raw_fd())).unwrap();
        let link = link.to_string_lossy();
        link.strip_prefix("socket:[")
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("not a socket: {link}"))
    }

    /// Closes the sending side.
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    /// The next message.
    pub fn read_one(&mut self) -> ServerMessage {
        read_one(&mut self.reader)
    }

    /// Messages until the enclave closes.
    pub fn read_all(&mut self) -> Vec<ServerMessage> {
        read_all(&mut self.reader)
    }
}

/// The send buffer (`tb` of `ss -xm`, bytes) of the enclave's end of the connection whose
/// client end is socket `peer`. Read in this test's own network namespace: the kernel creates
/// the accepted end of a Unix connection in the connecting socket's.
pub fn enclave_send_buffer(peer: u64) -> u64 {
    let o = std::process::Command::new("ss")
        .args(["-xmH"])
        .output()
        .expect("ss (iproute2)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    // `u_str ESTAB 0 0 LOCAL INODE PEER_ADDR PEER_INODE skmem:(r0,rb..,t0,tb..,...)`, one line
    // a socket. The peer's inode is the eighth column: the client's own line has `peer` too,
    // in the sixth (its unbound local address prints as `*`, like a peer's).
    let peer_inode = peer.to_string();
    let line = out
        .lines()
        .find(|l| l.split_whitespace().nth(7) == Some(peer_inode.as_str()))
        .unwrap_or_else(|| panic!("no socket with peer {peer} in:\n{out}"));
    let skmem = line
        .split_whitespace()
        .find(|t| t.starts_with("skmem:("))
        .unwrap_or_else(|| panic!("no skmem in {line}"));
    skmem
        .trim_start_matches("skmem:(")
        .trim_end_matches(')')
        .split(',')
        .find_map(|f| f.strip_prefix("tb"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tb in {skmem}"))
}

/// Number of open fds of a host pid.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Host pids whose parent is `pid` and that are zombies.
pub fn zombie_children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1).and_then(|p| p.parse().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// A connection over an existing stream (for hand-made clients).
pub fn connection(s: UnixStream) -> Connection {
    Connection::Unix(s)
}

/// A host scratch directory on tmpfs when there is one (big files).
pub fn scratch() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir")
    } else {
        tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir")
    }
}
