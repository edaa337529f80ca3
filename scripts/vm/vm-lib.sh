#!/usr/bin/env bash
# Sourced by scripts/vm/*.sh: docker/image-lib.sh (log, debian_mirror) plus the guest
# cache location and apt installs of missing host packages. Nothing here changes what
# goes into a guest, so it is not part of the guest's recipe hash.

vm_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/image-lib.sh
. "$vm_here/../../docker/image-lib.sh"

# The files whose content makes a guest: their hash names its cache directory.
VM_RECIPE_FILES=("$vm_here/build-guest.sh" "$vm_here/initramfs-init" "$vm_here/runnerx-guest-init")
VM_CACHE="${RUNNERX_VM_CACHE:-/var/cache/runnerx/vm}"

# vm_guest_dir: $VM_CACHE/<first 12 hex of the sha256 of the recipe files>.
vm_guest_dir() { echo "$VM_CACHE/$(cat "${VM_RECIPE_FILES[@]}" | sha256sum | cut -c1-12)"; }

# need_packages PKG…: apt-get installs the ones dpkg does not have (needs root). apt
# may replace packages to do so: bookworm's qemu-system-x86 removes a backported
# qemu-utils (nothing here uses qemu-img).
need_packages() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || { log "missing packages ${missing[*]}: run as root or apt-get install them"; exit 1; }
  log "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
