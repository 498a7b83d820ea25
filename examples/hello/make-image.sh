#!/usr/bin/env bash
# Make the example OCI image: a busybox-static rootfs in two layers, with umoci (no Docker).
#
#   examples/hello/make-image.sh OUT_DIR     -> OCI layout at OUT_DIR, tag `latest`
set -euo pipefail
out="${1:?usage: make-image.sh OUT_DIR}"
for tool in umoci busybox; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing (run scripts/setup.sh)" >&2; exit 1; }
done
busybox="$(command -v busybox)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
# Everything pinned (time stamps, no history) so the image, and so the EIF, is reproducible.
epoch=1970-01-01T00:00:00Z
umoci init --layout "$out"
umoci new --image "$out:latest"
pin_mtimes() { find "$1" -exec touch -h -d @0 {} +; }

# Layer 1: busybox and its applets.
umoci unpack --rootless --image "$out:latest" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,root}
cp "$busybox" "$rootfs/bin/busybox"
for applet in sh echo cat ls ps sleep uname hostname mount id env true false sha256sum nc wget httpd; do
    ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
pin_mtimes "$rootfs"
umoci repack --history.created "$epoch" --history.created_by make-image.sh --image "$out:latest" "$work/bundle" >/dev/null
rm -rf "$work/bundle"

# Layer 2: the application.
umoci unpack --rootless --image "$out:latest" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/app"
cat > "$work/bundle/rootfs/app/hello.sh" <<'SH'
#!/bin/sh
echo "hello from the enclave: $(uname -r) on $(hostname)"
while true; do sleep 3600; done
SH
chmod 0755 "$work/bundle/rootfs/app/hello.sh"
pin_mtimes "$work/bundle/rootfs"
umoci repack --history.created "$epoch" --history.created_by make-image.sh --image "$out:latest" "$work/bundle" >/dev/null

umoci config --image "$out:latest" --created "$epoch" --history.created "$epoch" --history.created_by make-image.sh \
    --config.entrypoint /app/hello.sh \
    --config.env PATH=/bin \
    --config.env GREETING=hello \
    --config.workingdir /app
umoci gc --layout "$out"
echo "example image: oci:$out:latest"
