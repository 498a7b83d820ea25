#!/usr/bin/env bash
# Builds the static, reproducible binaries that go into the bootstrap ramdisk: enclave-init
# (always) and enclave-attest (the attestation server, in images whose spec enables it); and
# nsm-probe, the program the Nitro self-test (scripts/nitro-selftest.sh, `enclave-ctl selftest`)
# runs in its probe enclave: an application of AWS's NSM API crate, with its own lock file.
#
# Output: target/enclave-init/{enclave-init,enclave-attest,nsm-probe}, printed on the last three
# lines with their SHA-256.
# The same sources give the same bytes wherever the workspace, CARGO_HOME and the rustup
# toolchain live: every path that could end up in the binary is remapped, the build id is
# dropped, and the binary is checked for leftovers.
#
# Environment: ENCLAVE_INIT_TARGET_DIR (default <workspace>/target/init), CARGO_HOME,
# RUSTUP_HOME (defaults ~/.cargo, ~/.rustup).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TARGET=x86_64-unknown-linux-gnu
CARGO_HOME_DIR="$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)"
RUSTUP_HOME_DIR="$(cd "${RUSTUP_HOME:-$HOME/.rustup}" && pwd -P)"
export CARGO_TARGET_DIR="${ENCLAVE_INIT_TARGET_DIR:-$ROOT/target/init}"

# A separate target dir: these flags would otherwise invalidate the workspace's normal build.
# Flags given through --target apply to enclave-init and its dependencies only, not to build
# scripts and proc macros (which must stay dynamic).
RUSTFLAGS="-C target-feature=+crt-static"
RUSTFLAGS+=" -C link-arg=-Wl,--build-id=none"
RUSTFLAGS+=" --remap-path-prefix=$ROOT=/enclave-engine"
RUSTFLAGS+=" --remap-path-prefix=$CARGO_HOME_DIR=/cargo"
RUSTFLAGS+=" --remap-path-prefix=$RUSTUP_HOME_DIR=/rustup"
export RUSTFLAGS
# Anything else that would change the flags or the compiler behind our back.
unset CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER \
      CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}"

cd "$ROOT"
# Two builds, not one: cargo unifies the features of the packages it builds together, and the
# attestation server's enclave-nsm has `emulated` (for its host-only `--source emulated`), which
# would then be compiled into PID 1 too.
cargo build --locked --release -p enclave-init --bin enclave-init --target "$TARGET" >&2
cargo build --locked --release -p enclave-attest-server --bin enclave-attest --target "$TARGET" >&2
# Its own workspace (the NSM API crate's nix 0.26 stays out of the main lock file).
cargo build --locked --release --manifest-path crates/enclave-nsm/tests/nsm-probe/Cargo.toml \
    --target "$TARGET" >&2

OUT_DIR="$ROOT/target/enclave-init"
mkdir -p "$OUT_DIR"
fail() { echo "build-init: $*" >&2; exit 1; }
bins=(enclave-init enclave-attest nsm-probe)
for bin in "${bins[@]}"; do
    OUT="$OUT_DIR/$bin"
    install -m 0755 "$CARGO_TARGET_DIR/$TARGET/release/$bin" "$OUT"
    # Static: no program interpreter, no dynamic section asking for libraries.
    if LC_ALL=C readelf -lW "$OUT" | grep -q 'INTERP'; then fail "$OUT has a PT_INTERP"; fi
    if LC_ALL=C readelf -dW "$OUT" 2>/dev/null | grep -q 'NEEDED'; then fail "$OUT needs shared libraries"; fi
    # Reproducible: no path of this machine inside.
    for p in "$ROOT" "$CARGO_HOME_DIR" "$RUSTUP_HOME_DIR" "$HOME"; do
        if grep -qaF "$p/" "$OUT"; then fail "$OUT contains the local path $p"; fi
    done
    echo "build-init: $bin: $(file -b "$OUT" | cut -d, -f1-2), $(stat -c %s "$OUT") bytes" >&2
done
for bin in "${bins[@]}"; do
    echo "$(sha256sum "$OUT_DIR/$bin" | cut -d' ' -f1)  $OUT_DIR/$bin"
done
