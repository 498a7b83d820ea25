#!/usr/bin/env bash
# The crate cut by where code runs, checked in CI: what a relying party links (enclave-attest)
# has no async runtime, HTTP server, filesystem watcher or NSM emulation in it, and PID 1
# (enclave-init) has neither the verifier nor the NSM emulation's signing and X.509 code.
# `cargo tree -p` resolves features for that package alone, as `cargo build -p` does.
#
#   scripts/check-deps.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# forbid PACKAGE CRATE...: fails when any CRATE is among PACKAGE's normal dependencies.
forbid() {
    local package="$1"; shift
    local tree bad=0
    tree="$(cargo tree --offline --locked -p "$package" -e normal --prefix none --format '{p}')"
    for crate in "$@"; do
        # Lines are "name vX.Y.Z [(path)]": match the name exactly.
        if grep -E "^${crate} v" <<<"$tree" | sed "s/ (\*)$//" | sort -u | sed "s/^/check-deps: $package depends on /" >&2; then
            bad=1
        fi
    done
    return "$bad"
}

status=0
forbid enclave-attest tokio tokio-rustls hyper hyper-util notify notify-debouncer-full \
    enclave-nsm enclave-attest-server || status=1
forbid enclave-init enclave-attest enclave-attest-server x509-cert p384 hyper notify \
    yaml_serde || status=1
if [ "$status" -eq 0 ]; then
    echo "check-deps: enclave-attest and enclave-init link only what they need"
fi
exit "$status"
