//! Driving real enclaves from a test: an `enclave-ctl` with its own state directory, and what
//! the VM scenarios look at (records, processes).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{assert_ok, run, stderr, stdout};

/// A scenario's state directory and engine binary.
pub struct Env {
    /// The state directory (`ENCLAVE_ENGINE_STATE_DIR`).
    pub state: PathBuf,
    /// The enclave-engine binary.
    pub engine: PathBuf,
    /// The enclaves the scenario may create, removed when it ends.
    pub names: &'static [&'static str],
}

/// Removes (and so stops) every enclave of the test, even when an assertion failed.
impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.ctl().arg("rm").arg("-f").args(self.names).output();
    }
}

impl Env {
    /// enclave-ctl on this state directory.
    pub fn ctl(&self) -> Command {
        super::vm_ctl(&self.state, &self.engine)
    }

    /// Runs and asserts success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = run(self.ctl().args(args));
        assert_ok(&o);
        stdout(&o)
    }

    /// Runs and asserts failure; stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = run(self.ctl().args(args));
        assert!(!o.status.success(), "{args:?} succeeded:\n{}", stdout(&o));
        stderr(&o)
    }

    /// `run -d --name NAME --memory 128 --boot-timeout 90 [extra…] EIF`, checked to succeed.
    pub fn run_detached(&self, name: &str, eif: &std::path::Path, extra: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name, "--memory", "128"];
        args.extend(["--boot-timeout", "90"]);
        args.extend(extra);
        args.push(eif.to_str().expect("a UTF-8 path"));
        self.ok(&args);
    }

    /// `enclave-engine daemon` on this state directory, once its socket answers; killed when
    /// dropped.
    pub fn start_daemon(&self) -> super::KillOnDrop {
        let child = std::process::Command::new(&self.engine)
            .arg("daemon")
            .env("ENCLAVE_ENGINE_STATE_DIR", &self.state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting enclave-engine daemon");
        let sock = self.state.join("engine.sock");
        super::net::until(
            "the socket answers",
            Duration::from_secs(10),
            String::new,
            || (std::os::unix::net::UnixStream::connect(&sock).is_err()).then(|| "not yet".into()),
        );
        super::KillOnDrop(child)
    }

    /// `--host` for this state directory's daemon.
    pub fn host(&self) -> String {
        format!("unix://{}", self.state.join("engine.sock").display())
    }

    /// Polls `enclave-ctl health NAME` until it exits 0, failing after `limit`.
    pub fn wait_ready(&self, name: &str, limit: Duration) {
        super::net::until(&format!("{name} ready"), limit, String::new, || {
            let o = run(self.ctl().args(["health", name]));
            (!o.status.success()).then(|| stderr(&o))
        });
    }

    /// `events --since 1h --until now --json` with `filters` (`--filter`), as JSON values.
    pub fn past_events(&self, filters: &[&str]) -> Vec<Value> {
        let mut cmd = self.ctl();
        cmd.args(["events", "--since", "1h", "--until", "0s", "--json"]);
        for f in filters {
            cmd.args(["--filter", f]);
        }
        let o = run(&mut cmd);
        assert_ok(&o);
        stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// `inspect NAME` as JSON.
    pub fn inspect(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect prints JSON")
    }

    /// How many enclave directories exist.
    pub fn dirs(&self) -> usize {
        std::fs::read_dir(self.state.join("enclaves"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Polls `inspect NAME` until `ok` holds, failing after `limit`.
    pub fn wait_for(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.inspect(name);
            if ok(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {what} not reached: {v:#}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Live (not zombie) processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !zombie && text.contains(needle) {
            found.push(text);
        }
    }
    found
}

/// `kill SIG PID`, asserted.
pub fn kill(pid: u64, sig: &str) {
    let o: Output = run(Command::new("kill").args([sig, &pid.to_string()]));
    assert_ok(&o);
}

/// `dir/NAME.eif`, built by `enclave-ctl build` from `spec` (written to `dir/NAME.yaml`) over
/// `dir/rootfs`: a static busybox with `applets` linked to it (made once per `dir`).
pub fn busybox_eif(
    init: &std::path::Path,
    dir: &std::path::Path,
    name: &str,
    applets: &[&str],
    spec: &str,
) -> PathBuf {
    let bin = dir.join("rootfs/bin");
    if !bin.exists() {
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        for applet in applets {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
    let yaml = dir.join(format!("{name}.yaml"));
    std::fs::write(&yaml, spec).unwrap();
    let eif = dir.join(format!("{name}.eif"));
    assert_ok(&run(super::ctl(init)
        .current_dir(dir)
        .args(["build", "--quiet", "-f"])
        .arg(&yaml)
        .arg("-o")
        .arg(&eif)));
    eif
}

/// curl on the Unix socket `socket`: `METHOD path` with `headers` and a JSON `body`; (HTTP
/// status, the body as JSON, `Null` when it is not).
pub fn curl_unix(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&Value>,
) -> (u16, Value) {
    let (code, text) = curl_unix_text(socket, method, path, headers, body);
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// [`curl_unix`], the body as text.
pub fn curl_unix_text(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&Value>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "300", "-X", method, "-w", "\n%{http_code}"])
        .arg("--unix-socket")
        .arg(socket);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "-d", &b.to_string()]);
    }
    let o = run(cmd.arg(format!("http://localhost{path}")));
    assert_ok(&o);
    let out = stdout(&o);
    let (text, code) = out.rsplit_once('\n').expect("curl's status line");
    (code.parse().expect("an HTTP status"), text.to_owned())
}
