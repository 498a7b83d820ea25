#!/usr/bin/env bash
# Builds the static, reproducible enclave-init binary that goes into the bootstrap ramdisk.
#
# Output: target/enclave-init/enclave-init (printed on the last line with its SHA-256).
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
cargo build --locked --release -p enclave-init --target "$TARGET" >&2

BUILT="$CARGO_TARGET_DIR/$TARGET/release/enclave-init"
OUT_DIR="$ROOT/target/enclave-init"
OUT="$OUT_DIR/enclave-init"
mkdir -p "$OUT_DIR"
install -m 0755 "$BUILT" "$OUT"

fail() { echo "build-init: $*" >&2; exit 1; }
# Static: no program interpreter, no dynamic section asking for libraries.
if LC_ALL=C readelf -lW "$OUT" | grep -q 'INTERP'; then fail "$OUT has a PT_INTERP"; fi
if LC_ALL=C readelf -dW "$OUT" 2>/dev/null | grep -q 'NEEDED'; then fail "$OUT needs shared libraries"; fi
# Reproducible: no path of this machine inside.
for p in "$ROOT" "$CARGO_HOME_DIR" "$RUSTUP_HOME_DIR" "$HOME"; do
    if grep -qaF "$p/" "$OUT"; then fail "$OUT contains the local path $p"; fi
done

SIZE=$(stat -c %s "$OUT")
echo "build-init: $(file -b "$OUT" | cut -d, -f1-2), $SIZE bytes" >&2
echo "$(sha256sum "$OUT" | cut -d' ' -f1)  $OUT"
