#!/usr/bin/env bash
# Builds the runnerx DinD builder image from Debian packages, with no registry pull:
# debootstrap a Debian 13 (trixie) rootfs with dockerd, the docker CLI with buildx,
# bash, git, iproute2, the QEMU user emulators and what rootless builders need
# (rootlesskit, slirp4netns, uidmap, the user `rootless`), then `docker import` it.
#
# The image is tagged runnerx-builder:<hash of this recipe> and runnerx-builder:local.
# If the hashed tag already exists the build is skipped, so tests and CI build it
# once per machine (or once per recipe change).
#
# Usage: docker/build-builder-image.sh [--print-tag]
# Env:   RUNNERX_DEBIAN_MIRROR  override the mirror (default: taken from this host's
#                               apt sources, never hard-coded)
#        RUNNERX_BUILDER_REPO   image repository (default runnerx-builder)
set -euo pipefail

SUITE=trixie
PACKAGES=(
  docker.io docker-cli docker-buildx containerd runc tini
  iptables iproute2 ca-certificates
  bash git git-lfs curl jq procps util-linux
  qemu-user-static binfmt-support busybox-static
  rootlesskit slirp4netns passt uidmap libcap2-bin
)
REPO="${RUNNERX_BUILDER_REPO:-runnerx-builder}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/image-lib.sh
. "$here/image-lib.sh"
# The tag's hash covers this recipe (package list, suite, import options).
tag="$(recipe_tag "$here/build-builder-image.sh" "$REPO")"
[[ "${1:-}" == "--print-tag" ]] && { echo "$tag"; exit 0; }
reuse_image "$tag" "$REPO"
mirror="$(debian_mirror)"
need_tools debootstrap docker

work="$(mktemp -d /var/tmp/runnerx-rootfs.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

log "debootstrap $SUITE from $mirror (${#PACKAGES[@]} packages)"
start=$SECONDS
include="$(IFS=,; echo "${PACKAGES[*]}")"
debootstrap --variant=minbase --include="$include" "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  log "debootstrap failed (log tail above)"
  exit 1
}
log "debootstrap took $((SECONDS - start))s"

# Builder defaults: the containerd image store (multi-platform with the docker driver),
# a place for runnerx's files, and no apt caches in the image.
mkdir -p "$rootfs/etc/docker" "$rootfs/etc/runnerx" "$rootfs/builds" "$rootfs/cache"

# Rootless isolation: the unprivileged user every job runs as (uid 1000) with a
# subordinate id range for its user namespace, and no setuid path back to uid 0.
# newuidmap/newgidmap get file capabilities instead of their setuid bit: setuid-root
# helpers need CAP_SYS_ADMIN in the builder, which it does not have.
chroot "$rootfs" useradd --uid 1000 --user-group --create-home --shell /bin/bash rootless
printf 'rootless:100000:65536\n' >"$rootfs/etc/subuid"
printf 'rootless:100000:65536\n' >"$rootfs/etc/subgid"
find "$rootfs" -xdev -type f -perm /6000 -exec chmod ug-s {} +
chroot "$rootfs" setcap cap_setuid=ep /usr/bin/newuidmap
chroot "$rootfs" setcap cap_setgid=ep /usr/bin/newgidmap
chown -R 1000:1000 "$rootfs/builds" "$rootfs/cache" "$rootfs/home/rootless"
cat >"$rootfs/etc/docker/daemon.json" <<'JSON'
{"features": {"containerd-snapshotter": true}}
JSON
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

start=$SECONDS
tar --xattrs --xattrs-include=security.capability -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENTRYPOINT ["dockerd"]' \
  -c 'VOLUME /var/lib/docker' \
  -m "runnerx builder ($SUITE; ${PACKAGES[*]})" - "$tag" >/dev/null
docker tag "$tag" "$REPO:local"
log "imported $tag in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
echo "$tag"
