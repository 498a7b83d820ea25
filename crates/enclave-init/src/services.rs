//! What runs: the main service (the image's entrypoint and cmd) and the spec's services, and
//! how one of their processes is started.

use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::sync::Arc;

use enclave_proto::app::AppConfig;
use enclave_spec::{EnclaveSpec, Readiness, RestartPolicy};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

use crate::users::Credentials;

/// The name of the main service.
pub const MAIN: &str = enclave_spec::MAIN_SERVICE;

/// The name of the attestation server's service (when the spec enables it).
pub const ATTESTATION: &str = "attestation";

/// Where enclave-init puts its copy of the attestation server binary (from the bootstrap
/// ramdisk's [`enclave_proto::paths::ATTEST_SERVER`]) before switching root.
pub const ATTEST_SERVER_COPY: &str = "/run/enclave/enclave-attest";

/// `PATH` for services whose environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to start a service's process, resolved at boot.
#[derive(Debug, Clone)]
pub struct ServiceDef {
    /// Unique name; [`MAIN`] for the main service.
    pub name: Arc<str>,
    /// argv (never empty for a startable service).
    pub argv: Vec<String>,
    /// The complete environment, in order.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub workdir: String,
    /// Who it runs as; an error (unknown user) makes every start fail with it.
    pub creds: Result<Credentials, String>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Restarts allowed before giving up.
    pub max_restarts: u32,
    /// Services that must be ready before this one starts.
    pub depends_on: Vec<String>,
    /// How to tell it is ready (`None`: ready once started).
    pub readiness: Option<Readiness>,
    /// The main service: the enclave shuts down when it ends for good.
    pub is_main: bool,
}

/// Merges `KEY=VALUE` lists: later entries win, order of first appearance kept.
fn merge_env<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in items {
        match out.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => out.push((k.to_owned(), v.to_owned())),
        }
    }
    out
}

fn split_kv(s: &str) -> (&str, &str) {
    s.split_once('=').unwrap_or((s, ""))
}

fn with_defaults(
    mut env: Vec<(String, String)>,
    creds: &Result<Credentials, String>,
) -> Vec<(String, String)> {
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        let home = creds.as_ref().map_or("/", |c| c.home.as_str());
        env.push(("HOME".to_owned(), home.to_owned()));
    }
    env
}

/// The services of this enclave: `main` first (when the app has an argv), then the spec's, in
/// spec order. `creds` is the app's resolved `user`, which every service runs as: the spec has
/// no per-service user, and running sidecars with more privilege than the app would be a
/// surprise.
pub fn build(
    app: &AppConfig,
    spec: &EnclaveSpec,
    creds: Result<Credentials, String>,
) -> Vec<ServiceDef> {
    let app_env: Vec<(&str, &str)> = app.env.iter().map(|s| split_kv(s)).collect();
    let mut defs = Vec::new();
    let argv = app.argv();
    if !argv.is_empty() {
        defs.push(ServiceDef {
            name: Arc::from(MAIN),
            argv,
            env: with_defaults(merge_env(app_env.iter().copied()), &creds),
            workdir: if app.working_dir.is_empty() {
                "/".to_owned()
            } else {
                app.working_dir.clone()
            },
            creds: creds.clone(),
            restart: RestartPolicy::No,
            max_restarts: 0,
            depends_on: Vec::new(),
            readiness: None,
            is_main: true,
        });
    }
    for svc in &spec.services {
        let extra = svc.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        defs.push(ServiceDef {
            name: Arc::from(svc.name.as_str()),
            argv: svc.command.clone(),
            env: with_defaults(merge_env(app_env.iter().copied().chain(extra)), &creds),
            workdir: svc.workdir.clone().unwrap_or_else(|| "/".to_owned()),
            creds: creds.clone(),
            restart: svc.restart,
            max_restarts: svc.max_restarts,
            depends_on: svc.depends_on.clone(),
            readiness: svc.readiness.clone(),
            is_main: false,
        });
    }
    if let Some(server) = spec.attestation.as_ref().and_then(|a| a.server.as_ref()) {
        // Root: it asks enclave-init for documents over the root-only control socket. It reads
        // the measured spec's copy, like the control server does.
        defs.push(ServiceDef {
            name: Arc::from(ATTESTATION),
            argv: vec![
                ATTEST_SERVER_COPY.to_owned(),
                "serve".to_owned(),
                "--spec".to_owned(),
                "/run/enclave/spec.json".to_owned(),
            ],
            env: with_defaults(Vec::new(), &Ok(Credentials::root())),
            workdir: "/".to_owned(),
            creds: Ok(Credentials::root()),
            restart: RestartPolicy::Always,
            max_restarts: 5,
            depends_on: Vec::new(),
            readiness: Some(Readiness {
                tcp: Some(server.port),
                command: None,
            }),
            is_main: false,
        });
    }
    defs
}

/// A started service process.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid, which is also its process group id.
    pub pid: Pid,
    /// Its standard output.
    pub stdout: Option<ChildStdout>,
    /// Its standard error.
    pub stderr: Option<ChildStderr>,
}

fn command(def: &ServiceDef, argv: &[String]) -> std::io::Result<Command> {
    let creds = def
        .creds
        .as_ref()
        .map_err(|e| std::io::Error::other(e.clone()))?;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(def.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&def.workdir)
        .stdin(Stdio::null())
        // Its own process group, so that stopping it reaches the children it started too.
        .process_group(0);
    crate::exec_unsafe::prepare_exec(&mut cmd, creds.uid, creds.gid, creds.groups.clone());
    Ok(cmd)
}

/// Starts the service's process with piped stdout and stderr.
pub fn spawn(def: &ServiceDef) -> std::io::Result<Spawned> {
    let mut child = command(def, &def.argv)?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // The pid fits: Linux pids are below 2^22. The Child is dropped without waiting: the
    // reaper collects every exit with waitpid(-1).
    let pid = Pid::from_raw(child.id() as i32);
    Ok(Spawned {
        pid,
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    })
}

/// Starts a readiness command of `def`, as `def`'s user and with its environment, output
/// discarded.
pub fn spawn_probe(def: &ServiceDef, argv: &[String]) -> std::io::Result<Pid> {
    let child = command(def, argv)?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_spec::ServiceSpec;
    use std::collections::BTreeMap;

    fn env_map(def: &ServiceDef) -> BTreeMap<&str, &str> {
        def.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn app() -> AppConfig {
        AppConfig {
            version: 1,
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo hi".into()],
            env: vec!["A=1".into(), "B=2".into(), "A=3".into(), "EMPTY".into()],
            working_dir: String::new(),
            user: String::new(),
        }
    }

    #[test]
    fn main_and_spec_services_are_built_in_order() {
        let mut spec = EnclaveSpec::default();
        let mut env = BTreeMap::new();
        env.insert("B".to_owned(), "svc".to_owned());
        env.insert("PATH".to_owned(), "/x".to_owned());
        spec.services.push(ServiceSpec {
            name: "side".into(),
            command: vec!["/bin/side".into()],
            env,
            workdir: Some("/srv".into()),
            restart: RestartPolicy::Always,
            max_restarts: 3,
            depends_on: vec!["main".into()],
            readiness: None,
        });
        let defs = build(&app(), &spec, Ok(Credentials::root()));
        assert_eq!(defs.len(), 2);
        let main = &defs[0];
        assert!(main.is_main && &*main.name == MAIN);
        assert_eq!(main.argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(main.workdir, "/");
        let m = env_map(main);
        assert_eq!((m["A"], m["B"], m["EMPTY"]), ("3", "2", ""));
        assert_eq!((m["PATH"], m["HOME"]), (DEFAULT_PATH, "/root"));
        let side = env_map(&defs[1]);
        assert_eq!((side["A"], side["B"], side["PATH"]), ("3", "svc", "/x"));
        assert_eq!(defs[1].workdir, "/srv");
        assert_eq!(defs[1].restart, RestartPolicy::Always);
    }

    #[test]
    fn no_argv_means_no_main_and_bad_user_fails_spawn() {
        let mut a = app();
        a.entrypoint.clear();
        a.cmd.clear();
        assert!(build(&a, &EnclaveSpec::default(), Ok(Credentials::root())).is_empty());
        let defs = build(&app(), &EnclaveSpec::default(), Err("no user \"x\"".into()));
        let e = spawn(&defs[0]).unwrap_err().to_string();
        assert!(e.contains("no user"), "{e}");
    }
}
