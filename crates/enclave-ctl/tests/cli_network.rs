//! System tests of enclave networking on the emulated backend (real QEMU microvms, real vsock
//! through vhost-device-vsock, the real host and enclave proxies):
//!
//! - ingress: busybox httpd inside, reached with a TCP client through `run -p`;
//! - named egress: a program in the enclave calls two allow-listed host servers by name and is
//!   refused a third name, and a name whose loopback address (`--add-host`) only a broad rule
//!   holds (special ranges need a rule inside them);
//! - transparent egress: the same by address, through the netfilter redirect, with each backend:
//!   nftables (the emulated kernel as it is) and xtables (the same kernel with a config saying
//!   `# CONFIG_NF_TABLES is not set`, as AWS's enclave kernels do).
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::net::{free_port, until};
use common::{assert_ok, example_image, run, stderr, stdout};
use enclave_proto::init::Netfilter;

struct Env {
    state: PathBuf,
    engine: PathBuf,
    init: PathBuf,
    oci: PathBuf,
    dir: PathBuf,
    names: Vec<String>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self.ctl().args(["rm", "-f", n]).output();
        }
    }
}

impl Env {
    fn new(tmp: &Path) -> Option<Env> {
        let (engine, init) = common::vm_prerequisites()?;
        let oci = example_image(tmp)?;
        Some(Env {
            state: tmp.join("state"),
            engine,
            init,
            oci,
            dir: tmp.to_owned(),
            names: Vec::new(),
        })
    }

    fn ctl(&self) -> Command {
        common::vm_ctl(&self.state, &self.engine)
    }

    /// Builds `spec` (YAML, without `from`) from the example image; returns the EIF.
    fn build(&self, name: &str, spec: &str) -> PathBuf {
        self.build_with(name, spec, &[])
    }

    /// [`Env::build`] with extra `build` arguments.
    fn build_with(&self, name: &str, spec: &str, extra: &[&OsStr]) -> PathBuf {
        let spec_path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&spec_path, spec).unwrap();
        let eif = self.dir.join(format!("{name}.eif"));
        let o = run(common::ctl(&self.init)
            .args(["build", "--quiet", "-f"])
            .arg(&spec_path)
            .arg("--from")
            .arg(format!("oci:{}:latest", self.oci.display()))
            .arg("-o")
            .arg(&eif)
            .args(extra));
        assert_ok(&o);
        eif
    }

    /// `run -d` with extra arguments; remembers the name for clean-up.
    fn run(&mut self, name: &str, eif: &Path, extra: &[&str]) {
        self.names.push(name.to_owned());
        let o = run(self
            .ctl()
            .args(["run", "-d", "--memory", "256", "--name", name])
            .args(extra)
            .arg(eif));
        assert_ok(&o);
    }

    /// `exec NAME -- sh -c SCRIPT`: (exit code, stdout + stderr).
    fn sh(&self, name: &str, script: &str) -> (i32, String) {
        let o = run(self.ctl().args(["exec", name, "--", "sh", "-c", script]));
        (
            o.status.code().unwrap_or(-1),
            format!("{}{}", stdout(&o), stderr(&o)),
        )
    }
}

/// A host HTTP server on `ip`, on a port the kernel picks (returned; fixed ports collide with
/// other runs on the machine), answering every request with `body`; runs until the test ends.
fn serve(ip: &str, body: &'static str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("binding {ip}:0: {e}"));
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = [0u8; 1024];
            let _ = conn.read(&mut req);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

const SPEC_BASE: &str = "debug: {exec: true}\n";

#[test]
fn a_web_server_in_the_enclave_is_reached_through_a_published_port() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut env) = Env::new(tmp.path()) else {
        return;
    };
    if common::require(common::have("curl"), "curl (apt curl)").is_none() {
        return;
    }
    let spec = format!(
        "{SPEC_BASE}entrypoint: [/bin/httpd, -f, -p, \"127.0.0.1:8080\", -h, /app]\ningress:\n  - {{port: 8080}}\n"
    );
    let eif = env.build("web", &spec);
    // A port the image does not accept is refused before anything starts.
    let refused = run(env.ctl().args(["run", "-d", "-p", "9999:22"]).arg(&eif));
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("port 22"), "{}", stderr(&refused));

    let port = free_port();
    let mapping = format!("{port}:8080");
    env.run("web", &eif, &["-p", &mapping]);
    let ps = run(env.ctl().args(["ps"]));
    assert!(
        stdout(&ps).contains(&format!("127.0.0.1:{port}->8080/tcp")),
        "{}",
        stdout(&ps)
    );
    // enclave-init mixed the (emulated) NSM's bytes into the kernel RNG before anything
    // started, without crediting them: they come from the host.
    let logs = stdout(&run(env.ctl().args(["logs", "web"])));
    assert!(
        logs.contains("mixed 256 bytes from the emulated NSM into the RNG (not credited"),
        "{logs}"
    );
    assert!(!logs.contains("(credited)"), "{logs}");
    // httpd starts right after the heartbeat; give it a few tries. curl is what a user runs.
    let url = format!("http://127.0.0.1:{port}/hello.sh");
    let mut last = String::new();
    for _ in 0..50 {
        let o = run(Command::new("curl").args(["-sS", "--max-time", "10", &url]));
        if o.status.success() {
            assert!(
                stdout(&o).contains("hello from the enclave"),
                "{}",
                stdout(&o)
            );
            return;
        }
        last = stderr(&o);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no answer through the published port; last error {last:?}");
}

#[test]
fn named_egress_reaches_allowed_names_only() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut env) = Env::new(tmp.path()) else {
        return;
    };
    let p1 = serve("127.0.0.2", "alpha says hi");
    let p2 = serve("127.0.0.3", "beta says hi");
    let p3 = serve("127.0.0.4", "gamma should be unreachable");
    let p4 = serve("127.0.0.5", "delta should be unreachable");
    let spec = format!(
        "{SPEC_BASE}egress:\n  - {{host: alpha.test, port: {p1}}}\n  - {{host: beta.test, port: {p2}}}\n  \
         - {{host: delta.test, port: {p4}}}\n  - {{cidr: 127.0.0.2/32, port: {p1}}}\n  - {{cidr: 127.0.0.3/32, port: {p2}}}\n  \
         - {{cidr: 0.0.0.0/0, port: {p4}}}\n"
    );
    let eif = env.build("named", &spec);
    // A mapping for a name no rule allows would never be used: refused before anything starts.
    let o = run(env
        .ctl()
        .args(["run", "-d", "--memory", "256", "--name", "refused"])
        .args(["--add-host", "gamma.test:127.0.0.4"])
        .arg(&eif));
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "--add-host gamma.test:127.0.0.4: the image may not connect to gamma.test (the host \
             names of its measured egress list are [alpha.test, beta.test, delta.test])"
        ),
        "{}",
        stderr(&o)
    );
    let o = run(env.ctl().args(["ps", "-a", "--format", "{{.Name}}"]));
    assert_eq!(stdout(&o), "", "a refused run left an enclave");
    env.run(
        "named",
        &eif,
        &[
            "--add-host",
            "alpha.test:127.0.0.2",
            "--add-host",
            "beta.test:127.0.0.3",
            "--add-host",
            "delta.test:127.0.0.5",
        ],
    );
    // Recorded as given.
    let o = run(env.ctl().args(["inspect", "named"]));
    let rec: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        rec["network"]["add_hosts"].as_array().map(Vec::len),
        Some(3),
        "{rec:#}"
    );
    let get = |host: &str, port: u16| {
        env.sh("named", &format!("wget -q -O - http://{host}:{port}/ 2>&1"))
    };
    let (code, out) = get("alpha.test", p1);
    assert_eq!((code, out.as_str()), (0, "alpha says hi"), "alpha");
    let (code, out) = get("beta.test", p2);
    assert_eq!((code, out.as_str()), (0, "beta says hi"), "beta");
    // Not in the allow-list: the enclave's DNS does not know it.
    let (code, out) = get("gamma.test", p3);
    assert_ne!(code, 0, "gamma: {out}");
    assert!(!out.contains("unreachable"), "{out}");
    // Allowed by name, but the host resolves it to a loopback address no cidr rule reaches (the
    // broad rule for its port does not reach special ranges).
    let (code, out) = get("delta.test", p4);
    assert_ne!(code, 0, "delta: {out}");
    assert!(!out.contains("unreachable"), "{out}");
    let logs = stdout(&run(env.ctl().args(["logs", "named"])));
    let supervisor_log = std::fs::read_to_string(
        env.state
            .join("enclaves")
            .read_dir()
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path()
            .join("supervisor.log"),
    )
    .unwrap_or_default();
    assert!(
        format!("{logs}{supervisor_log}")
            .contains("delta.test resolved to 127.0.0.5, a loopback address (127.0.0.0/8)"),
        "the refusal is logged with its reason:\n{logs}\n{supervisor_log}"
    );
}

#[test]
fn transparent_egress_reaches_allowed_addresses_only() {
    transparent_egress(Netfilter::Nftables);
}

#[test]
fn transparent_egress_reaches_allowed_addresses_only_xtables() {
    transparent_egress(Netfilter::Xtables);
}

/// Two allowed addresses and a routed one reached, one refused, with the kernel that makes the
/// build choose `backend`; the enclave has loaded that backend's modules and not the other's.
fn transparent_egress(backend: Netfilter) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut env) = Env::new(tmp.path()) else {
        return;
    };
    let kernel_dir = match backend {
        Netfilter::Nftables => None,
        Netfilter::Xtables => match kernel_without_nf_tables(tmp.path()) {
            Some(dir) => Some(dir),
            None => return,
        },
    };
    let kernel_args: Vec<&OsStr> = match &kernel_dir {
        Some(dir) => vec![OsStr::new("--kernel-dir"), dir.as_os_str()],
        None => vec![],
    };
    let p1 = serve("127.0.1.2", "first allowed");
    let p2 = serve("127.0.1.3", "second allowed");
    let p3 = serve("127.0.1.4", "third should be unreachable");
    // A destination outside loopback: this host's own address on its network, which the host
    // proxy can reach and the enclave (no interface but lo) only through the redirect.
    let Some(host_ip) = host_address() else {
        return;
    };
    let p4 = serve(&host_ip, "routed allowed");
    let spec = format!(
        "{SPEC_BASE}egress:\n  mode: transparent\n  allow:\n    - {{cidr: 127.0.1.2/32, port: {p1}}}\n    \
         - {{cidr: 127.0.1.3/32, port: {p2}}}\n    - {{cidr: {host_ip}/32, port: {p4}}}\n    \
         - {{cidr: 0.0.0.0/0, port: {p3}}}\n"
    );
    let eif = env.build_with("transparent", &spec, &kernel_args);
    env.run("transparent", &eif, &[]);
    // Only the chosen backend's modules were loaded (all of them are modules in this kernel).
    let (code, modules) = env.sh("transparent", "cut -d' ' -f1 /proc/modules");
    assert_eq!(code, 0, "{modules}");
    let loaded: Vec<&str> = modules.lines().collect();
    let (wanted, unwanted) = match backend {
        Netfilter::Nftables => (["nf_tables", "nft_redir"], ["ip_tables", "xt_REDIRECT"]),
        Netfilter::Xtables => (["ip_tables", "xt_REDIRECT"], ["nf_tables", "nft_redir"]),
    };
    for m in wanted {
        assert!(loaded.contains(&m), "{m} not loaded: {modules}");
    }
    for m in unwanted {
        assert!(!loaded.contains(&m), "{m} loaded: {modules}");
    }
    let get = |addr: &str, port: u16| {
        env.sh(
            "transparent",
            &format!("wget -q -O - http://{addr}:{port}/ 2>&1"),
        )
    };
    let (code, out) = get("127.0.1.2", p1);
    assert_eq!((code, out.as_str()), (0, "first allowed"));
    let (code, out) = get("127.0.1.3", p2);
    assert_eq!((code, out.as_str()), (0, "second allowed"));
    // A broad rule for the port does not reach loopback (the host's, through the redirect).
    let (code, out) = get("127.0.1.4", p3);
    assert_ne!(code, 0, "third: {out}");
    assert!(!out.contains("unreachable"), "{out}");
    // Refused inside the enclave, with the reason on its console.
    // The console line can trail the request that caused it: polled.
    let refusal = format!("127.0.1.4:{p3} is a loopback address (127.0.0.0/8)");
    let logs = || stdout(&run(env.ctl().args(["logs", "transparent"])));
    until(
        "the refusal in the enclave's logs",
        Duration::from_secs(15),
        String::new,
        || Some(logs()).filter(|l| !l.contains(&refusal)),
    );
    let logs = logs();
    let (code, out) = get(&host_ip, p4);
    assert_eq!((code, out.as_str()), (0, "routed allowed"));
    assert!(
        logs.contains(&format!("({})", backend.name())),
        "the redirect's backend is not {}: {logs}",
        backend.name()
    );
}

/// A kernel directory for the xtables backend: the emulated kernel, its modules and command
/// line, and its config with `# CONFIG_NF_TABLES is not set` (its iptables options unchanged),
/// or `None` (after `require`) when the cached kernel predates the xtables module list.
fn kernel_without_nf_tables(tmp: &Path) -> Option<PathBuf> {
    let (emulated, _) = common::build_inputs()?;
    common::require(
        emulated.join("modules/xtables").is_file(),
        "the emulated kernel's xtables modules (scripts/fetch-kernel.sh, again)",
    )?;
    let dir = tmp.join("kernel-xtables");
    std::fs::create_dir(&dir).unwrap();
    for f in ["bzImage", "cmdline", "modules"] {
        std::os::unix::fs::symlink(emulated.join(f), dir.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(emulated.join("bzImage.config")).unwrap();
    assert!(
        config.contains("\nCONFIG_NF_TABLES=m\n"),
        "the emulated kernel's nf_tables"
    );
    let edited = config.replace(
        "\nCONFIG_NF_TABLES=m\n",
        "\n# CONFIG_NF_TABLES is not set\n",
    );
    std::fs::write(dir.join("bzImage.config"), edited).unwrap();
    Some(dir)
}

/// The host's first global IPv4 address (`ip -4 -o addr show scope global`), or `None` (after
/// `require`).
fn host_address() -> Option<String> {
    let o = run(Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]));
    let addr = stdout(&o)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next().map(str::to_owned));
    common::require(addr.is_some(), "a global IPv4 address on this host")?;
    addr
}
