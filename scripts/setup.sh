#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for enclave-engine: system packages, the guest kernel of the
# `emulated` profile, and the reproducible static enclave-init. Safe to run again.
#
#   scripts/setup.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Tools the build and its tests use: busybox-static (example rootfs), umoci and skopeo (make and
# convert real OCI images), cpio (check our archives with GNU cpio), openssl (signing keys),
# qemu-system-x86 (the emulated backend of `enclave-ctl run`), tmux (a real terminal for the
# `exec -it` test in crates/enclave-ctl/tests/cli_control.rs), nftables and iptables (`nft` and
# `iptables-legacy` read back transparent egress's redirect in enclave-proxy's netns tests),
# python3-venv (the venv of kubernetes-validate, below), runc (runs the packaged image as a real
# container in crates/enclave-ctl/tests/cli_container.rs), prometheus (promtool checks
# `run --metrics-listen`'s output and a Prometheus server scrapes it in cli_metrics.rs).
packages=(busybox-static umoci skopeo cpio openssl file qemu-system-x86 tmux socat wrk nats-server nftables iptables iproute2 curl python3-venv runc prometheus)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's prometheus package enables a server on 0.0.0.0:9090 where systemd runs; the
    # tests start their own on loopback, so that service is not left listening.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null \
        && systemctl is-system-running >/dev/null 2>&1; then
        "${sudo_cmd[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

# The vhost-user vsock device of the emulated backend (not packaged in Debian 12).
if ! command -v vhost-device-vsock >/dev/null && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/vhost-device-vsock" ]]; then
    echo "setup: installing vhost-device-vsock with cargo"
    cargo install vhost-device-vsock --locked
fi

# cargo-deny, for the licence and duplicate-version policy in deny.toml (.ci/run runs it).
if ! command -v cargo-deny >/dev/null && [[ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny" ]]; then
    echo "setup: installing cargo-deny with cargo"
    cargo install cargo-deny --locked
fi

# kubernetes-validate (PyPI), which checks the generated Kubernetes manifests against the API's
# schemas (crates/enclave-ctl/tests/cli_kube.rs finds it here, or on PATH). In a venv of its
# own: Debian 12's Python refuses system-wide pip installs (PEP 668).
venv="${XDG_CACHE_HOME:-$HOME/.cache}/enclave-engine/venv"
if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
    echo "setup: installing kubernetes-validate into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.37,<2'
fi
# schemathesis (PyPI) tests the engine API against docs/api/openapi.yaml
# (crates/enclave-ctl/tests/cli_daemon.rs), in the same venv.
if [[ ! -x "$venv/bin/schemathesis" ]]; then
    echo "setup: installing schemathesis into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5'
fi

"$here/fetch-kernel.sh"
"$here/build-init.sh"
