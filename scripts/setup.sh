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
# `iptables-legacy` read back transparent egress's redirect in enclave-proxy's netns tests).
packages=(busybox-static umoci skopeo cpio openssl file qemu-system-x86 tmux socat wrk nats-server nftables iptables iproute2 curl)

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

"$here/fetch-kernel.sh"
"$here/build-init.sh"
