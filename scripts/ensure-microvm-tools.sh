#!/usr/bin/env bash
# Idempotently installs what the microVM sandbox backend and its guest image build need (Debian/Ubuntu, apt).
#   qemu-system-x86        the VMM (QEMU `-M microvm`, TCG or KVM)
#   linux-image-cloud-amd64 the guest kernel (virtio drivers are modules: the initramfs loads them)
#   busybox-static cpio lz4 the initramfs
#   debootstrap e2fsprogs   the guest root filesystem (ext4 image)
#   iproute2 nftables       the VMs' bridge, tap devices and egress rules (host side)
# Prints what it did. Safe to run again: installs only what is missing.
set -euo pipefail

PACKAGES=(qemu-system-x86 linux-image-cloud-amd64 busybox-static lz4 cpio debootstrap e2fsprogs iproute2 nftables)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    echo "ensure-microvm-tools: $pkg already installed"
  else
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "ensure-microvm-tools: nothing to do"
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-microvm-tools: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "ensure-microvm-tools: installing ${missing[*]}"
  start=$(date +%s)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "ensure-microvm-tools: installed ${missing[*]} in $(($(date +%s) - start)) s"
fi

kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)
echo "ensure-microvm-tools: qemu: $(qemu-system-x86_64 --version | head -n 1)"
echo "ensure-microvm-tools: guest kernel: ${kernel:-none found}"
if [ -e /dev/kvm ]; then
  echo "ensure-microvm-tools: /dev/kvm present (the backend probes whether a guest really boots under it)"
else
  echo "ensure-microvm-tools: no /dev/kvm: guests run under TCG (software emulation)"
fi
