#!/usr/bin/env bash
# Checks that scripts/build-init.sh gives the same enclave-init, enclave-attest and nsm-probe bytes from two copies of the
# workspace at different paths (each with its own target dir). Exits non-zero if they differ.
#
# Usage: scripts/check-init-reproducible.sh [WORKDIR]   (WORKDIR defaults to a new temp dir)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
cleanup() { [ -n "${KEEP:-}" ] || rm -rf "$WORK/a" "$WORK/copy-b-at-another-depth"; }
trap cleanup EXIT

copy() {
    mkdir -p "$1"
    # Sources only: no build output, no VCS metadata.
    tar -C "$ROOT" --exclude=./target --exclude=./fuzz/target --exclude=./.git -cf - . \
        | tar -C "$1" -xf -
}

A="$WORK/a"
B="$WORK/copy-b-at-another-depth/ws"
copy "$A"
copy "$B"

hash_of() {
    # The script prints "<sha256>  <path>" for each binary on its last three lines.
    "$1/scripts/build-init.sh" | tail -n3 | cut -d' ' -f1 | paste -sd' ' -
}
HA=$(hash_of "$A")
HB=$(hash_of "$B")
echo "copy A ($A): $HA"
echo "copy B ($B): $HB"
if [ "$HA" != "$HB" ]; then
    echo "check-init-reproducible: the binaries differ between the two builds" >&2
    exit 1
fi
echo "check-init-reproducible: identical ($HA)"
