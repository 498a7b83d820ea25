//! kubernetes-validate, for the tests of generated manifests (cli_kube, cli_kube_eif).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes versions manifests are validated against (schemas shipped by
/// kubernetes-validate 1.37.0).
pub const K8S_VERSIONS: [&str; 2] = ["1.36.0", "1.37.0"];

/// kubernetes-validate: scripts/setup.sh's venv, else PATH.
pub fn kubernetes_validate() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default();
    let venv = cache.join("enclave-engine/venv/bin/kubernetes-validate");
    if venv.is_file() {
        return Some(venv);
    }
    super::have("kubernetes-validate").then(|| PathBuf::from("kubernetes-validate"))
}

/// Validates a manifest file against both versions, strictly (unknown fields are errors).
pub fn validate(file: &Path) {
    let Some(kv) = kubernetes_validate() else {
        let _ = super::require(
            false,
            "kubernetes-validate (pip, in scripts/setup.sh's venv)",
        );
        return;
    };
    for version in K8S_VERSIONS {
        let o = super::run(
            Command::new(&kv)
                .args(["--strict", "--quiet", "-k", version])
                .arg(file),
        );
        assert!(
            o.status.success(),
            "{} does not validate against Kubernetes {version}:\n{}{}",
            file.display(),
            super::stdout(&o),
            super::stderr(&o)
        );
    }
}
