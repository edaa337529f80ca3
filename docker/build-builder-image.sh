#!/usr/bin/env bash
# Builds the runnerx builder image from docker/Dockerfile with no registry pull: the
# Dockerfile's base (debian:trixie-slim) is made here with debootstrap (minbase
# trixie) and tagged runnerx-base:trixie, then `docker build` installs the packages
# of docker/builder-packages.txt from the Debian mirror, exactly as a production build
# does. What users build is what the tests use.
#
# The image is tagged runnerx-builder:<hash of the recipe>, runnerx-builder:local (the
# tests') and runnerx-builder:latest (builder.image's default).
# If the hashed tag already exists the build is skipped, so tests and CI build it
# once per machine (or once per recipe change).
#
# Usage: docker/build-builder-image.sh [--print-tag]
# Env:   RUNNERX_DEBIAN_MIRROR  override the mirror (default: taken from this host's
#                               apt sources, never hard-coded)
#        RUNNERX_BUILDER_REPO   image repository (default runnerx-builder)
set -euo pipefail

SUITE=trixie
BASE=runnerx-base:$SUITE
REPO="${RUNNERX_BUILDER_REPO:-runnerx-builder}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/image-lib.sh
. "$here/image-lib.sh"
# The tag's hash covers the whole recipe: this script, the Dockerfile, the package
# list and the set-up script.
tag="$(recipe_tag "$here/build-builder-image.sh" "$REPO" "$here/Dockerfile" \
  "$here/builder-packages.txt" "$here/builder-setup.sh")"
[[ "${1:-}" == "--print-tag" ]] && { echo "$tag"; exit 0; }
docker image inspect "$tag" >/dev/null 2>&1 && docker tag "$tag" "$REPO:latest"
reuse_image "$tag" "$REPO"
need_tools debootstrap docker

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  mirror="$(debian_mirror)"
  work="$(mktemp -d /var/tmp/runnerx-rootfs.XXXXXX)"
  trap 'rm -rf "$work"' EXIT
  log "debootstrap $SUITE (minbase) from $mirror as $BASE"
  start=$SECONDS
  debootstrap --variant=minbase "$SUITE" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    log "debootstrap failed (log tail above)"
    exit 1
  }
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | docker import -m "debootstrap $SUITE minbase" - "$BASE" >/dev/null
  log "base $BASE made in $((SECONDS - start))s"
fi

start=$SECONDS
build_log="$(mktemp /var/tmp/runnerx-build.XXXXXX)"
# The classic builder: it works with every engine version (no buildx needed).
if ! DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE=$BASE" -t "$tag" "$here" >"$build_log" 2>&1; then
  tail -n 30 "$build_log" >&2
  rm -f "$build_log"
  log "docker build failed (log tail above)"
  exit 1
fi
rm -f "$build_log"
docker tag "$tag" "$REPO:local"
docker tag "$tag" "$REPO:latest"
log "built $tag in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
echo "$tag"
