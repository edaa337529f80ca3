#!/usr/bin/env bash
# Makes this machine ready for runnerx's tests and demo, idempotently:
#   1. apt packages: docker.io (engine), debootstrap (builder image), iproute2, git and
#      python3 (the GitLab stand-in of the tests), nftables (`runnerx host network`,
#      the egress policy every builder runs under by default),
#      docker-registry + apache2-utils (TLS registry stand-in), curl, jq;
#   2. a running Docker engine (started by hand: these machines have no systemd);
#   3. the DinD builder image runnerx-builder:local (docker/build-builder-image.sh:
#      docker/Dockerfile on a debootstrapped Debian base);
#   4. with --tests only: what the tests need beyond the demo — the BuildKit image
#      runnerx-buildkit:local (docker/build-buildkit-image.sh: nodes and the
#      docker-container driver), apparmor_parser (the builder profile compiles),
#      dnsmasq-base (a resolver the egress policy's DNS test makes) and
#      qemu-user-static (`runnerx host binfmt` for privileged builders), and the VM
#      tier's runner-host guest (scripts/vm/build-guest.sh).
# Images are skipped when the image for the current recipe already exists.
# Needs root (or sudo) for steps 1-2 when they are not done yet.
set -euo pipefail
tests=0
[[ "${1:-}" == "--tests" ]] && tests=1
log() { printf '[setup-host] %s\n' "$*" >&2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

packages=(docker.io debootstrap iproute2 iptables nftables docker-registry apache2-utils curl jq ca-certificates shellcheck git python3)
# The runner-host steps' tools (README "Runner hosts"): apparmor_parser where AppArmor
# is on, the host's QEMU emulators where builders need the host's handlers (Linux < 6.7).
kernel="$(uname -r)"
old_kernel=0
[[ "$(printf '%s\n6.7\n' "${kernel%%-*}" | sort -V | head -n1)" == 6.7 ]] || old_kernel=1
if ((tests)) || [[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" == Y ]]; then
  packages+=(apparmor)
fi
if ((tests || old_kernel)); then
  packages+=(qemu-user-static)
fi
# The VM tier's emulator (scripts/vm/run-guest.sh would install it too, later).
((tests)) && packages+=(qemu-system-x86 dnsmasq-base)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  # env, not a prefix: sudo would drop a prefixed variable.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [[ -n "${DOCKER_HOST:-}" ]]; then
    log "DOCKER_HOST=$DOCKER_HOST does not answer"; exit 1
  fi
  log "starting dockerd"
  $SUDO sh -c 'nohup dockerd --host unix:///var/run/docker.sock >/var/log/runnerx-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -n 20 /var/log/runnerx-dockerd.log >&2; log "dockerd did not come up"; exit 1; }
fi
log "docker engine $(docker version --format '{{.Server.Version}}')"

# Static busybox for amd64 and arm64: the seed of multi-arch base images in tests and
# the demo (no container registry is reachable).
cache=/var/cache/runnerx/busybox
if ! ls "$cache"/busybox-static_*_arm64.deb >/dev/null 2>&1 || ! ls "$cache"/busybox-static_*_amd64.deb >/dev/null 2>&1; then
  log "downloading busybox-static for amd64 and arm64"
  $SUDO mkdir -p "$cache"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -qq
  fi
  (cd "$cache" && $SUDO apt-get download -qq busybox-static:amd64 busybox-static:arm64 2>/dev/null) \
    || { $SUDO apt-get update -qq; (cd "$cache" && $SUDO apt-get download -qq busybox-static:amd64 busybox-static:arm64); }
fi

tag="$("$here/docker/build-builder-image.sh")"
log "builder image ready: $tag"
if ((tests)); then
  tag="$("$here/docker/build-buildkit-image.sh")"
  log "buildkit image ready: $tag"
  guest="$("$here/scripts/vm/build-guest.sh")"
  log "VM tier guest ready: $guest"
fi
