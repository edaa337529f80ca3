#!/usr/bin/env bash
# Builds the "runner host" QEMU guest of the VM test tier from Debian packages only:
#   vmlinuz    Debian 12 (bookworm, this host's suite) kernel 6.1: the linux-image-6.1.0-*
#              package that linux-image-amd64 depends on (apt-get download + dpkg -x);
#   initrd.gz  static busybox as /init (scripts/vm/initramfs-init) and the .ko files the
#              root mount and 9p need (Debian builds virtio_blk, ext4, 9p as modules);
#   root.img   sparse 12G ext4: debootstrap --variant=minbase Debian 13 (trixie) with
#              dockerd/containerd/runc, AppArmor, the registry stand-in, git, python3…,
#              the kernel's modules, and /sbin/runnerx-guest-init (scripts/vm/) as PID 1.
# It lands in /var/cache/runnerx/vm/<12 hex of the sha256 of build-guest.sh,
# initramfs-init and runnerx-guest-init>/ (with kernel-version and packages.txt); when that
# directory exists the build is skipped. The directory is printed on stdout, logs go to
# stderr. Boot it with scripts/vm/run-guest.sh. Needs root (debootstrap, chroot, mknod).
#
# Usage: scripts/vm/build-guest.sh [--print-dir]
# Env:   RUNNERX_DEBIAN_MIRROR  override the mirror (default: this host's apt sources)
#        RUNNERX_VM_CACHE       cache root (default /var/cache/runnerx/vm)
set -euo pipefail

SUITE=trixie
PACKAGES=(
  docker.io docker-cli containerd runc iptables iproute2 ca-certificates kmod apparmor
  docker-registry apache2-utils git python3 curl jq procps util-linux busybox-static openssl
  qemu-user-static nftables dnsmasq-base
)
# Loaded by the initramfs (with their dependencies, in order): the root disk and 9p.
INITRAMFS_MODULES=(virtio_pci virtio_blk crc32c_generic ext4 9p 9pnet_virtio)
IMAGE_SIZE=12G

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/vm/vm-lib.sh
. "$here/vm-lib.sh"
out="$(vm_guest_dir)"
[[ "${1:-}" == "--print-dir" ]] && { echo "$out"; exit 0; }
if [[ -f "$out/root.img" ]]; then
  log "guest $out already built"
  echo "$out"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || { log "needs root (debootstrap, chroot)"; exit 1; }

need_packages debootstrap e2fsprogs cpio gzip
mkdir -p "$VM_CACHE"
# One build at a time per cache (a second caller waits, then finds the guest built).
exec 9>"$VM_CACHE/.lock"
flock 9
if [[ -f "$out/root.img" ]]; then
  log "guest $out built meanwhile"
  echo "$out"
  exit 0
fi
mirror="$(debian_mirror)"
work="$(mktemp -d /var/tmp/runnerx-vm-build.XXXXXX)"
tmp_out="$out.tmp.$$"
trap 'rm -rf "$work" "$tmp_out"' EXIT
root="$work/root"
total=$SECONDS

# Kernel: the version linux-image-amd64 (from this host's apt sources) depends on.
kpkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
[[ -n "$kpkg" ]] || { log "cannot resolve linux-image-amd64's kernel package (apt-get update?)"; exit 1; }
log "downloading $kpkg"
mkdir -p "$work/deb" "$work/kernel"
(cd "$work/deb" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg") \
  || { apt-get update -qq; (cd "$work/deb" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg"); }
dpkg -x "$work"/deb/"$kpkg"_*.deb "$work/kernel"
kver="${kpkg#linux-image-}"
[[ -f "$work/kernel/boot/vmlinuz-$kver" && -d "$work/kernel/lib/modules/$kver" ]] \
  || { log "$kpkg has no boot/vmlinuz-$kver or lib/modules/$kver"; exit 1; }

log "debootstrap $SUITE from $mirror (${#PACKAGES[@]} packages)"
start=$SECONDS
include="$(IFS=,; echo "${PACKAGES[*]}")"
debootstrap --variant=minbase --include="$include" "$SUITE" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  log "debootstrap failed (log tail above)"
  exit 1
}
log "debootstrap took $((SECONDS - start))s"

# The kernel's modules, under /usr/lib (trixie is merged-/usr: /lib is a symlink, which
# a plain dpkg -x into the root could replace with a directory).
mkdir -p "$root/usr/lib/modules"
cp -a "$work/kernel/lib/modules/$kver" "$root/usr/lib/modules/"
chroot "$root" depmod "$kver"

install -m 0755 "$here/runnerx-guest-init" "$root/usr/sbin/runnerx-guest-init"
echo runnerx-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 runnerx-vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/fstab"
# shellcheck disable=SC2016 # dpkg-query's format, not shell
chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$work/packages.txt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*

# Initramfs: busybox (the guest's own busybox-static) + the modules, in load order.
initramfs="$work/initramfs"
mkdir -p "$initramfs"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$root/usr/bin/busybox" "$initramfs/bin/busybox"
install -m 0755 "$here/initramfs-init" "$initramfs/init"
mknod -m 600 "$initramfs/dev/console" c 5 1
chroot "$root" modprobe -a --show-depends -S "$kver" "${INITRAMFS_MODULES[@]}" \
  | awk '$1 == "insmod" && !seen[$2]++ {print $2}' >"$work/modules.txt"
: >"$initramfs/modules"
while read -r ko; do
  cp "$root$ko" "$initramfs/lib/modules/"
  basename "$ko" >>"$initramfs/modules"
done <"$work/modules.txt"
log "initramfs modules: $(tr '\n' ' ' <"$initramfs/modules")"

mkdir -p "$tmp_out"
cp "$work/kernel/boot/vmlinuz-$kver" "$tmp_out/vmlinuz"
(cd "$initramfs" && find . | cpio -o -H newc --quiet | gzip -6) >"$tmp_out/initrd.gz"
echo "$kver" >"$tmp_out/kernel-version"
cp "$work/packages.txt" "$tmp_out/packages.txt"
start=$SECONDS
# (stdout too: mke2fs says "Creating regular file" even with -q, and stdout is the result.)
mke2fs -q -F -d "$root" -t ext4 -L runnerx-root "$tmp_out/root.img" "$IMAGE_SIZE" >&2
log "mke2fs took $((SECONDS - start))s ($(du -sh "$tmp_out/root.img" | cut -f1) used of $IMAGE_SIZE)"
mv "$tmp_out" "$out"
log "guest built in $((SECONDS - total))s: kernel $kver, $SUITE root ($(wc -l <"$out/packages.txt") packages)"
echo "$out"
