#!/usr/bin/env bash
# Fetch the guest kernel of the `emulated` kernel profile into the cache, in the same shape as
# nitro-cli's blobs directory (bzImage, bzImage.config, cmdline) plus a modules/ directory.
#
#   scripts/fetch-kernel.sh [DEST]     (default: ${XDG_CACHE_HOME:-~/.cache}/enclave-engine/kernel/emulated)
#
# Idempotent: does nothing when DEST already holds the pinned kernel.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=kernel.env
. "$here/kernel.env"
dest="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/enclave-engine/kernel/emulated}"

if [[ -f "$dest/package" && "$(cat "$dest/package")" == "$KERNEL_PACKAGE" \
      && -f "$dest/modules/netfilter" && -f "$dest/modules/xtables" \
      && -f "$dest/modules/cuse.ko" ]]; then
    echo "kernel: $KERNEL_PACKAGE already in $dest"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "kernel: downloading $KERNEL_PACKAGE"
if ! (cd "$work" && apt-get download "$KERNEL_PACKAGE" >/dev/null 2>"$work/apt.err"); then
    # The package lists may be stale on a fresh machine.
    apt-get update -qq >/dev/null
    (cd "$work" && apt-get download "$KERNEL_PACKAGE" >/dev/null 2>"$work/apt.err") || {
        cat "$work/apt.err" >&2
        echo "error: could not download $KERNEL_PACKAGE with apt-get" >&2
        exit 1
    }
fi
dpkg-deb -x "$work"/*.deb "$work/x"
release="${KERNEL_PACKAGE#linux-image-}"

stage="$dest.tmp.$$"
rm -rf "$stage"
mkdir -p "$stage/modules"
cp "$work/x/boot/vmlinuz-$release" "$stage/bzImage"
cp "$work/x/boot/config-$release" "$stage/bzImage.config"
# The emulated profile's default command line: serial console, no PCI (microvm), reboot on
# panic, like Nitro's. The virtio-mmio devices are added by QEMU's microvm at run time.
echo "console=ttyS0 reboot=k panic=1 pci=off random.trust_cpu=on" > "$stage/cmdline"
for m in $KERNEL_MODULES $KERNEL_NETFILTER_MODULES $KERNEL_XTABLES_MODULES; do
    ko="$(find "$work/x/lib/modules/$release" -name "$m.ko" -print -quit)"
    [[ -n "$ko" ]] || { echo "error: module $m.ko not in $KERNEL_PACKAGE" >&2; exit 1; }
    cp "$ko" "$stage/modules/$m.ko"
done
echo "$KERNEL_MODULES" | tr ' ' '\n' > "$stage/modules/order"
echo "$KERNEL_NETFILTER_MODULES" | tr ' ' '\n' > "$stage/modules/netfilter"
echo "$KERNEL_XTABLES_MODULES" | tr ' ' '\n' > "$stage/modules/xtables"
echo "$KERNEL_PACKAGE" > "$stage/package"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$stage" "$dest"
echo "kernel: $KERNEL_PACKAGE ready in $dest"
