#!/usr/bin/env bash
# Builds the microVM guest image for the microVM sandbox backend (QEMU microvm and Firecracker):
#   OUTDIR/vmlinuz        the Debian cloud kernel (LZ4 bzImage, copied from /boot): QEMU boots it
#   OUTDIR/vmlinux        the same kernel uncompressed (ELF, extracted from vmlinuz): Firecracker boots it
#   OUTDIR/initramfs.img  busybox + the virtio modules; mounts /dev/vda and switch_roots into it
#   OUTDIR/rootfs.ext4    Debian bookworm minbase + python3 + nodejs + tini + the Terrarium guest agent
#   OUTDIR/manifest.json  kernel version, recipe hash, sizes, build times
# Usage: scripts/build-guest-image.sh OUTDIR [--base-only]
# Env: DEBIAN_MIRROR (default: first URI of /etc/apt/sources.list.d/debian.sources), GUEST_EXTRA_PACKAGES,
#      GUEST_KERNEL (default: newest /boot/vmlinuz-*-cloud-amd64), ROOTFS_HEADROOM_MB (default 128: free space
#      of the image itself; each VM's disk is grown to its own size by the backend).
# Cached by a hash of the recipe: the debootstrap base is keyed by (mirror, packages), the final image by
# (base, kernel, this script, guest agent sources). Needs root (debootstrap, chroot, mount).
set -euo pipefail

OUTDIR=${1:?usage: build-guest-image.sh OUTDIR [--base-only]}
BASE_ONLY=${2:-}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUTDIR/cache"
OUTDIR=$(cd "$OUTDIR" && pwd)
T0=$(date +%s.%N)
log() { printf '[build-guest-image %6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }

if [ "$(id -u)" -ne 0 ]; then echo "build-guest-image: must run as root (debootstrap, chroot)" >&2; exit 1; fi
for tool in debootstrap mkfs.ext4 cpio busybox lz4; do
  command -v "$tool" >/dev/null || { echo "build-guest-image: missing $tool: run scripts/ensure-microvm-tools.sh" >&2; exit 1; }
done

MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES="python3 nodejs tini ca-certificates procps ${GUEST_EXTRA_PACKAGES:-}"
KERNEL=${GUEST_KERNEL:-$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)}
[ -f "$KERNEL" ] || { echo "build-guest-image: no cloud kernel in /boot: run scripts/ensure-microvm-tools.sh" >&2; exit 1; }
KVER=${KERNEL#*/vmlinuz-}
# Small on purpose: the backend grows each VM's copy to the image plus its writable disk size (online, resize2fs).
HEADROOM_MB=${ROOTFS_HEADROOM_MB:-128}

# ---- stage 1: the debootstrap base (slow, cached on mirror + packages) ----
BASE_HASH=$(printf 'v1|%s|%s' "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-16)
BASE_TAR="$OUTDIR/cache/base-$BASE_HASH.tar"
if [ -f "$BASE_TAR" ]; then
  log "base root filesystem cached ($BASE_TAR)"
else
  WORK=$(mktemp -d "$OUTDIR/cache/base-XXXX")
  cleanup_base() { umount "$WORK/root/proc" 2>/dev/null || true; rm -rf "$WORK"; }
  trap cleanup_base EXIT
  log "debootstrap --variant=minbase bookworm from $MIRROR"
  debootstrap --variant=minbase bookworm "$WORK/root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
  log "installing $PACKAGES"
  mount -t proc proc "$WORK/root/proc"
  chroot "$WORK/root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null" ||
    { echo "build-guest-image: apt-get install failed" >&2; exit 1; }
  chroot "$WORK/root" apt-get clean
  umount "$WORK/root/proc"
  rm -rf "$WORK/root/var/lib/apt/lists/"* "$WORK/root/var/cache/apt/"*.bin
  log "packing the base ($(du -sh "$WORK/root" | cut -f1))"
  tar -C "$WORK/root" --numeric-owner -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$WORK"
  trap - EXIT
  log "base root filesystem ready"
fi
[ "$BASE_ONLY" = "--base-only" ] && exit 0

# ---- stage 2: compile the guest agent ----
AGENT_DIR="$REPO/packages/guest-agent"
log "compiling the guest agent"
rm -rf "$AGENT_DIR/dist"
"$REPO/node_modules/.bin/tsc" -p "$AGENT_DIR/tsconfig.json"
AGENT_MAIN=dist/guest-agent/src/main.js
[ -f "$AGENT_DIR/$AGENT_MAIN" ] || { echo "build-guest-image: $AGENT_MAIN was not produced" >&2; exit 1; }

RECIPE_HASH=$( (
  echo "$BASE_HASH $KVER"
  sha256sum "$KERNEL" "${BASH_SOURCE[0]}" | cut -d' ' -f1
  find "$AGENT_DIR/dist" -type f -name '*.js' | sort | xargs sha256sum | cut -d' ' -f1
  sha256sum "$AGENT_DIR/vsock-bridge.py" | cut -d' ' -f1
) | sha256sum | cut -c1-16)
if [ -f "$OUTDIR/manifest.json" ] && grep -q "\"recipeHash\": \"$RECIPE_HASH\"" "$OUTDIR/manifest.json" &&
  [ -f "$OUTDIR/rootfs.ext4" ] && [ -f "$OUTDIR/initramfs.img" ] && [ -f "$OUTDIR/vmlinuz" ] && [ -f "$OUTDIR/vmlinux" ]; then
  log "guest image up to date (recipe $RECIPE_HASH)"
  exit 0
fi

WORK=$(mktemp -d "$OUTDIR/cache/image-XXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- stage 3: kernel + initramfs ----
log "kernel $KVER"
cp "$KERNEL" "$WORK/vmlinuz"
# Firecracker boots only an uncompressed ELF kernel: the bzImage's payload is an LZ4 (legacy frame) stream; find its
# magic (02 21 4c 18) and decompress from there (lz4 stops at the end of the stream; trailing bytes are ignored).
LZ4_AT=$(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$KERNEL" | head -n 1 | cut -d: -f1 || true)
if [ -n "$LZ4_AT" ]; then tail -c +$((LZ4_AT + 1)) "$KERNEL" | lz4 -dc >"$WORK/vmlinux" 2>/dev/null || true; fi
if [ "$(head -c 4 "$WORK/vmlinux" 2>/dev/null | od -An -c | tr -d ' ')" != '177ELF' ]; then
  echo "build-guest-image: cannot extract an ELF vmlinux from $KERNEL (not an LZ4 bzImage?)" >&2
  exit 1
fi
INIT="$WORK/initramfs"
mkdir -p "$INIT"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$(command -v busybox)" "$INIT/bin/busybox"
for applet in sh mount umount mkdir insmod switch_root sleep cat echo ls grep; do ln -s busybox "$INIT/bin/$applet"; done
# vsock: the guest agent's transport under Firecracker (harmless without the device, as under QEMU).
MODULES="virtio_ring virtio virtio_mmio virtio_blk virtio_console failover net_failover virtio_net vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport"
for m in $MODULES; do
  f=$(find "/lib/modules/$KVER/kernel" -name "$m.ko*" | head -n 1)
  [ -n "$f" ] || { echo "build-guest-image: module $m not found for $KVER" >&2; exit 1; }
  case "$f" in
    *.ko.xz) xz -dc "$f" >"$INIT/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -dcq "$f" >"$INIT/lib/modules/$m.ko" ;;
    *) cp "$f" "$INIT/lib/modules/$m.ko" ;;
  esac
done
cat >"$INIT/init" <<INITEOF
#!/bin/sh
# Terrarium microVM initramfs: load the virtio modules, mount the root disk, hand over to /sbin/terrarium-init.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
if grep -q terrarium.probe /proc/cmdline; then
  # Accelerator probe (QemuMicrovmBackend): prove the kernel reached userspace, then power off.
  echo TERRARIUM_PROBE_OK >/dev/ttyS0
  echo o >/proc/sysrq-trigger
fi
for m in $MODULES; do insmod /lib/modules/\$m.ko 2>/dev/null; done
i=0
while [ ! -b /dev/vda ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i + 1)); done
if ! mount -t ext4 -o rw,noatime /dev/vda /newroot; then
  echo "terrarium initramfs: cannot mount /dev/vda" >&2
  ls /dev >&2
  echo o > /proc/sysrq-trigger
fi
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /sbin/terrarium-init
INITEOF
chmod +x "$INIT/init"
(cd "$INIT" && find . | cpio -o -H newc --quiet | lz4 -l -9 -q >"$WORK/initramfs.img")

# ---- stage 4: the root filesystem with the guest agent ----
log "root filesystem: unpacking the base"
ROOT="$WORK/root"
mkdir -p "$ROOT"
tar -C "$ROOT" --numeric-owner -xf "$BASE_TAR"
mkdir -p "$ROOT/opt/terrarium-agent"
cp -r "$AGENT_DIR/dist/." "$ROOT/opt/terrarium-agent/"
# The agent configures the VM's NIC with busybox `ip` (minbase has no iproute2; a static busybox adds ~2 MB).
mkdir -p "$ROOT/opt/terrarium-agent/bin"
cp "$(command -v busybox)" "$ROOT/opt/terrarium-agent/bin/busybox"
echo '{"type":"module"}' >"$ROOT/opt/terrarium-agent/package.json"
install -m 755 "$AGENT_DIR/vsock-bridge.py" "$ROOT/opt/terrarium-agent/vsock-bridge.py"
cat >"$ROOT/sbin/terrarium-init" <<INITEOF
#!/bin/sh
# PID 1 of a Terrarium microVM: mount the basics, find the agent's virtio-serial port, run the guest agent under tini.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm /run
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
hostname "\$(cat /etc/hostname 2>/dev/null || echo terrarium)"
PORT_NAME=\${TERRARIUM_AGENT_PORT_NAME:-org.terrarium.agent}
for d in /sys/class/virtio-ports/*; do
  if [ "\$(cat "\$d/name" 2>/dev/null)" = "\$PORT_NAME" ]; then export TERRARIUM_AGENT_DEVICE=/dev/\${d##*/}; fi
done
# Firecracker: no virtio-serial port; the host reaches the agent over vsock on the port it put on the command line.
VSOCK_PORT=\$(sed -n 's/.*terrarium\.vsock_port=\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -z "\${TERRARIUM_AGENT_DEVICE:-}" ] && [ -n "\$VSOCK_PORT" ]; then export TERRARIUM_AGENT_VSOCK_PORT=\$VSOCK_PORT; fi
export PORT=\${PORT:-8080}
echo "terrarium-init: starting the guest agent on \${TERRARIUM_AGENT_DEVICE:-vsock port \${TERRARIUM_AGENT_VSOCK_PORT:-<none>}}" >/dev/console
exec /usr/bin/tini -s -- /usr/bin/node /opt/terrarium-agent/${AGENT_MAIN#dist/}
INITEOF
chmod 755 "$ROOT/sbin/terrarium-init"
echo terrarium >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost terrarium\n::1 localhost\n' >"$ROOT/etc/hosts"
USED_MB=$(du -sm "$ROOT" | cut -f1)
SIZE_MB=$((USED_MB + HEADROOM_MB))
log "root filesystem: mkfs.ext4 ${SIZE_MB} MiB (${USED_MB} MiB used)"
# -m 0: no blocks reserved for root (a VM's disk is all the sandbox's; df then shows what it can really use).
# -T default: 4 KiB blocks even though the image is small (mkfs would pick 1 KiB blocks, slow for the large disks
# VMs grow it to).
mkfs.ext4 -q -F -m 0 -T default -L terrarium-root -d "$ROOT" "$WORK/rootfs.ext4" "${SIZE_MB}M"
rm -rf "$ROOT"

mv "$WORK/vmlinuz" "$OUTDIR/vmlinuz"
mv "$WORK/vmlinux" "$OUTDIR/vmlinux"
mv "$WORK/initramfs.img" "$OUTDIR/initramfs.img"
mv "$WORK/rootfs.ext4" "$OUTDIR/rootfs.ext4"
cat >"$OUTDIR/manifest.json" <<JSON
{
  "recipeHash": "$RECIPE_HASH",
  "baseHash": "$BASE_HASH",
  "kernelVersion": "$KVER",
  "mirror": "$MIRROR",
  "packages": "$PACKAGES",
  "agentMain": "/opt/terrarium-agent/${AGENT_MAIN#dist/}",
  "rootfsSizeMb": $SIZE_MB,
  "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
JSON
log "guest image ready in $OUTDIR (recipe $RECIPE_HASH)"
