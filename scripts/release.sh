#!/usr/bin/env bash
# Builds the release tarball: the installed tree of scripts/install.sh (bin/, libexec/enclave-engine/,
# share/ with completions, man pages and docs) under enclave-engine-<version>-x86_64-linux/, so
# that `tar -xzf … -C /usr/local --strip-components=1` installs it with no checkout.
#
#   scripts/release.sh [--out DIR] [--allow-dirty]
#
# Reproducible: the same commit gives the same SHA-256 from any checkout at any path
# (scripts/check-release-reproducible.sh shows it). SOURCE_DATE_EPOCH is the last commit's time;
# the binaries are built with every local path remapped and no build id; the archive has its
# entries sorted, every mtime at SOURCE_DATE_EPOCH, owner and group 0, normalised modes, and gzip
# stores no name or time.
#
# Output: DIR/enclave-engine-<version>-x86_64-linux.tar.gz (DIR defaults to <workspace>/dist),
# printed on the last line with its SHA-256.
# Environment: RELEASE_TARGET_DIR (default <workspace>/target/release-host), ENCLAVE_INIT_TARGET_DIR
# (see scripts/build-init.sh), CARGO_HOME, RUSTUP_HOME.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
out_dir="$ROOT/dist"
allow_dirty=""
while (($#)); do
    case "$1" in
        --out) [[ $# -ge 2 ]] || { echo "release: --out needs a directory" >&2; exit 2; }; out_dir="$2"; shift 2 ;;
        --allow-dirty) allow_dirty=1; shift ;;
        -h|--help) sed -n '6,7p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2 ;;
        *) echo "release: unknown argument: $1" >&2; exit 2 ;;
    esac
done
die() { echo "release: $*" >&2; exit 1; }

cd "$ROOT"
git rev-parse --git-dir >/dev/null 2>&1 || die "not a git checkout: the release is made from a commit"
if [[ -z "$allow_dirty" && -n "$(git status --porcelain --untracked-files=no)" ]]; then
    die "uncommitted changes: a release is made from a commit (or pass --allow-dirty for a trial)"
fi
SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)"
export SOURCE_DATE_EPOCH
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)"
[[ -n "$version" ]] || die "no version in Cargo.toml's [workspace.package]"
TARGET=x86_64-unknown-linux-gnu
name="enclave-engine-$version-x86_64-linux"

# The host tools, built like scripts/build-init.sh builds the static ones: paths remapped, no
# build id, flags only for the target (build scripts stay as they are), nothing from outside.
CARGO_HOME_DIR="$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)"
RUSTUP_HOME_DIR="$(cd "${RUSTUP_HOME:-$HOME/.rustup}" && pwd -P)"
unset CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER \
      CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS
host_target_dir="${RELEASE_TARGET_DIR:-$ROOT/target/release-host}"
(
    export CARGO_TARGET_DIR="$host_target_dir"
    RUSTFLAGS="-C link-arg=-Wl,--build-id=none"
    RUSTFLAGS+=" --remap-path-prefix=$ROOT=/enclave-engine"
    RUSTFLAGS+=" --remap-path-prefix=$CARGO_HOME_DIR=/cargo"
    RUSTFLAGS+=" --remap-path-prefix=$RUSTUP_HOME_DIR=/rustup"
    # Generated sources (build scripts' OUT_DIR) live in the target dir, wherever it is.
    RUSTFLAGS+=" --remap-path-prefix=$(mkdir -p "$CARGO_TARGET_DIR" && cd "$CARGO_TARGET_DIR" && pwd -P)=/target"
    export RUSTFLAGS
    cargo build --locked --release --target "$TARGET" \
        -p enclave-ctl -p enclave-engine -p enclave-proxy \
        --bin enclave-ctl --bin enclave-engine --bin enclave-proxy >&2
)
host_bins="$host_target_dir/$TARGET/release"
for b in enclave-ctl enclave-engine enclave-proxy; do
    for p in "$ROOT" "$CARGO_HOME_DIR" "$RUSTUP_HOME_DIR" "$HOME"; do
        if grep -qaF "$p/" "$host_bins/$b"; then die "$host_bins/$b contains the local path $p"; fi
    done
done
"$ROOT/scripts/build-init.sh" >/dev/null

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
"$ROOT/scripts/install.sh" --prefix "$stage/$name" --from "$host_bins" \
    --init-from "$ROOT/target/enclave-init" >/dev/null

mkdir -p "$out_dir"
tarball="$out_dir/$name.tar.gz"
tmp="$(mktemp "$out_dir/.$name.XXXXXX")"
if ! LC_ALL=C tar -C "$stage" --sort=name --format=gnu --mtime="@$SOURCE_DATE_EPOCH" \
        --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w' -cf - "$name" \
        | gzip -n -9 >"$tmp"; then
    rm -f "$tmp"
    die "writing the tarball failed"
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$tarball"
echo "$(sha256sum "$tarball" | cut -d' ' -f1)  $tarball"
