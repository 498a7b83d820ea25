//! Helpers of the control tests: an enclave whose control server listens on a Unix socket in
//! its rootfs (visible to the host test), clients, raw frames.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use enclave_proto::client::{Client, ClientError, ConnectOptions, ExecIo};
use enclave_proto::transport::{Addr, Connection};
use enclave_proto::wire::auth::SigningKey;
use enclave_proto::wire::{
    Capability, ClientHello, ClientMessage, ExecRequest, ExitStatus, ServerMessage,
    PROTOCOL_VERSION,
};

use super::{Enclave, Run};

/// A booted enclave with its control socket.
pub struct Booted {
    /// The running init.
    pub run: Run,
    /// The control socket, host path.
    pub addr: Addr,
}

impl Drop for Booted {
    /// Ends the enclave with the test: killing unshare kills its init (`--kill-child`).
    fn drop(&mut self) {
        let _ = self.run.child.kill();
        let _ = self.run.child.wait();
    }
}

/// `sh -c script`.
pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Boots an enclave running as root with `spec`, the control server on `/control.sock`.
pub fn boot(spec: &serde_json::Value) -> Option<Booted> {
    boot_as(spec, "root")
}

/// [`boot`] with the app (its services, exec and cp) running as `user` (`app` is 1000:1000).
pub fn boot_as(spec: &serde_json::Value, user: &str) -> Option<Booted> {
    let enclave = Enclave::prepare(spec, &sh("while :; do sleep 1; done"), user)?;
    // initctl is a copy of the init binary run inside the rootfs: a dynamically linked test
    // build needs its libraries there too.
    let init_bin = std::env::var_os("ENCLAVE_INIT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_enclave-init")));
    super::copy_libs(&init_bin, &enclave.dir.path().join("rootfs"));
    let run = enclave.boot(&[
        ("ENCLAVE_INIT_CONTROL_ADDR", "unix:/control.sock"),
        ("ENCLAVE_INIT_GRACE_MS", "300"),
    ]);
    let up = run.wait_for(Duration::from_secs(20), |out| {
        out.contains("control: listening on") && out.contains("started main")
    });
    assert!(up, "the control server did not start:\n{}", run.output());
    let addr = Addr::Unix(run.root().join("rootfs/control.sock"));
    if let Ok(secs) = std::env::var("CONTROL_TEST_WATCHDOG") {
        run.watchdog(Duration::from_secs(secs.parse().unwrap_or(30)));
    }
    Some(Booted { run, addr })
}

/// Connection options with these capabilities and key.
pub fn opts(caps: &[Capability], key: Option<SigningKey>) -> ConnectOptions {
    ConnectOptions {
        capabilities: caps.to_vec(),
        key,
        client: "control-test".into(),
        retry: Duration::from_secs(5),
    }
}

/// A client with exec and cp asked for.
pub fn client(addr: &Addr) -> Client {
    Client::connect(addr, &opts(&[Capability::Exec, Capability::Cp], None)).expect("connect")
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

/// A raw connection for hand-made frames.
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
pub fn read_all(s: &mut UnixStream) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    while let Ok(Some(m)) = enclave_proto::wire::read_message::<ServerMessage>(s) {
        out.push(m);
    }
    out
}

/// Reads one message.
pub fn read_one(s: &mut UnixStream) -> ServerMessage {
    enclave_proto::wire::read_message::<ServerMessage>(s)
        .expect("read")
        .expect("a message")
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
