#!/usr/bin/env bash
# Sourced by docker/build-*-image.sh: what the image recipes share — their log line,
# the recipe-hash tag and cached-tag check, and the Debian mirror. Image content lives in each recipe
# (whose own hash tags the image); nothing here changes what goes into an image.

# log MESSAGE…: one line on stderr, prefixed with the recipe's name.
log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# recipe_tag RECIPE REPO [FILE…]: REPO:<first 12 hex of the sha256 of the recipe's
# contents, followed by the other files'>.
recipe_tag() {
  local recipe=$1 repo=$2
  shift 2
  echo "$repo:$(cat "$recipe" "$@" | sha256sum | cut -c1-12)"
}

# reuse_image TAG REPO: when TAG exists, tags it REPO:local, prints it and exits 0.
reuse_image() {
  if docker image inspect "$1" >/dev/null 2>&1; then
    log "$1 already present; tagging $2:local"
    docker tag "$1" "$2:local"
    echo "$1"
    exit 0
  fi
}

# debian_mirror: RUNNERX_DEBIAN_MIRROR, else the first Debian (not security) URI of
# this host's apt sources (deb822 first, then one-line); never a hard-coded host.
debian_mirror() {
  local mirror="${RUNNERX_DEBIAN_MIRROR:-}"
  if [[ -z "$mirror" ]]; then
    mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
              | grep -v security | head -n1 || true)"
  fi
  if [[ -z "$mirror" ]]; then
    mirror="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
              | awk '{print $2}' | grep -v security | head -n1 || true)"
  fi
  if [[ -z "$mirror" ]]; then
    log "no Debian mirror found in /etc/apt/sources*; set RUNNERX_DEBIAN_MIRROR"
    exit 1
  fi
  echo "$mirror"
}

# need_tools TOOL…: fails naming the package of the first missing one.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { log "$tool is missing: apt-get install -y $tool"; exit 1; }
  done
}
