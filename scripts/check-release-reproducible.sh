#!/usr/bin/env bash
# Checks that scripts/release.sh gives the same tarball, byte for byte, from two clones of the
# repository at different paths, each building in its own target directories. Exits non-zero if
# the SHA-256 differ (then diffoscope on the two tarballs, kept with KEEP=1, says where).
#
# Usage: scripts/check-release-reproducible.sh [WORKDIR]   (WORKDIR defaults to a new temp dir)
# The clones are of the last commit: commit first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
A="$WORK/a"
B="$WORK/clone-b-at-another-depth/ws"
cleanup() { [ -n "${KEEP:-}" ] || rm -rf "$A" "$WORK/clone-b-at-another-depth"; }
trap cleanup EXIT
rm -rf "$A" "$B"
git clone -q --no-hardlinks "$ROOT" "$A"
git clone -q --no-hardlinks "$ROOT" "$B"

hash_of() {
    # release.sh prints "<sha256>  <path>" on its last line; a umask other than the usual one
    # for the second clone shows that the modes in the archive do not depend on it.
    (umask "$2" && env -u RELEASE_TARGET_DIR -u ENCLAVE_INIT_TARGET_DIR -u CARGO_TARGET_DIR \
        "$1/scripts/release.sh" --out "$1/dist") | tail -n1 | cut -d' ' -f1
}
HA=$(hash_of "$A" 022)
HB=$(hash_of "$B" 077)
echo "clone A ($A): $HA"
echo "clone B ($B): $HB"
if [ -z "$HA" ] || [ "$HA" != "$HB" ]; then
    echo "check-release-reproducible: the tarballs differ between the two clones" >&2
    exit 1
fi
echo "check-release-reproducible: identical ($HA)"
