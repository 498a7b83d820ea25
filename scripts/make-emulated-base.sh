#!/usr/bin/env bash
# Make a base image for `enclave-ctl package` that runs enclaves on the emulated backend: this
# machine's QEMU (qemu-system-x86_64, the shared libraries ldd lists, its TCG accelerator module
# and the firmware the microvm machine loads), vhost-device-vsock, a static busybox for a shell
# and /etc/passwd with root. Built with umoci, no Docker; mtimes and history pinned as in
# examples/hello/make-image.sh, so the same host files give the same image.
#
#   scripts/make-emulated-base.sh OUT_DIR     -> OCI layout at OUT_DIR, tag `latest`
#
# The QEMU command line the emulated backend runs is in crates/enclave-engine/src/backend/qemu.rs
# (`-M microvm … -kernel … -initrd …`): microvm boots through bios-microvm.bin (qboot) and loads
# the kernel with the linuxboot_dma.bin (or pvh.bin) option ROM; without KVM, QEMU loads its TCG
# accelerator from a module (accel-tcg-x86_64.so on Debian).
set -euo pipefail
out="${1:?usage: make-emulated-base.sh OUT_DIR}"
die() { echo "error: $*" >&2; exit 1; }

for tool in umoci ldd qemu-system-x86_64; do
    command -v "$tool" >/dev/null || die "$tool is missing (run scripts/setup.sh)"
done
qemu="$(command -v qemu-system-x86_64)"
vsock="$(command -v vhost-device-vsock || true)"
[ -n "$vsock" ] || vsock="$HOME/.cargo/bin/vhost-device-vsock"
[ -x "$vsock" ] || die "vhost-device-vsock is missing (cargo install vhost-device-vsock --locked)"
busybox="$(command -v busybox || true)"
[ -n "$busybox" ] || die "busybox is missing (apt busybox-static)"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' || ldd "$busybox" 2>&1 | grep -q 'not a dynamic' \
    || die "$busybox is not static (apt busybox-static)"

firmware_dir=/usr/share/qemu
firmware=(bios-microvm.bin qboot.rom linuxboot_dma.bin linuxboot.bin pvh.bin kvmvapic.bin)
[ -e "$firmware_dir/bios-microvm.bin" ] || die "$firmware_dir/bios-microvm.bin is missing (apt qemu-system-x86)"
module_dir=""
for d in /usr/lib/x86_64-linux-gnu/qemu /usr/lib64/qemu /usr/lib/qemu; do
    [ -d "$d" ] && { module_dir="$d"; break; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
epoch=1970-01-01T00:00:00Z
umoci init --layout "$out"
umoci new --image "$out:latest"
umoci unpack --rootless --image "$out:latest" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"

# Merged /usr, as on Debian 12: /lib, /lib64, /bin, /sbin are links into /usr, so the paths ldd
# prints (/lib/x86_64-linux-gnu/…, /lib64/ld-linux-x86-64.so.2) land where they do on the host.
mkdir -p "$root"/usr/{bin,sbin,lib,lib64,local/bin} "$root"/{etc,tmp,root,run,var/tmp} "$root/usr/share/qemu"
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
chmod 1777 "$root/tmp" "$root/var/tmp"

# Copies a host file (following links) to the same path in the image.
put() {
    local src="$1" dest="$root$2"
    mkdir -p "$(dirname "$dest")"
    cp -L "$src" "$dest"
}
# Copies the shared libraries (and the loader) a binary needs.
put_libs() {
    ldd "$1" | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | while read -r lib; do
        [ -e "$root$lib" ] || put "$lib" "$lib"
    done
}

put "$qemu" /usr/bin/qemu-system-x86_64
put_libs "$qemu"
for f in "${firmware[@]}"; do
    [ -e "$firmware_dir/$f" ] && put "$firmware_dir/$f" "/usr/share/qemu/$f"
done
if [ -n "$module_dir" ]; then
    for m in "$module_dir"/accel-tcg-*.so; do
        [ -e "$m" ] || continue
        put "$m" "$m"
        put_libs "$m"
    done
fi
put "$vsock" /usr/local/bin/vhost-device-vsock
put_libs "$vsock"

put "$busybox" /usr/bin/busybox
for applet in sh ls cat echo ps kill sleep env id mkdir rm cp mv ln uname hostname mount df free top vi less grep; do
    ln -s busybox "$root/usr/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"

find "$root" -exec touch -h -d @0 {} +
umoci repack --history.created "$epoch" --history.created_by make-emulated-base.sh \
    --image "$out:latest" "$work/bundle" >/dev/null
umoci config --image "$out:latest" --created "$epoch" --history.created "$epoch" \
    --history.created_by make-emulated-base.sh \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.label "dev.enclave-engine.base=emulated" \
    --config.label "dev.enclave-engine.qemu=$("$qemu" --version | head -n1 | sed 's/^QEMU emulator version //')"
umoci gc --layout "$out"
echo "emulated base image: oci:$out:latest"
