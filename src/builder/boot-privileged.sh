#!/bin/sh
# runnerx builder boot, privileged isolation: the builder's pid 1 (POSIX sh, so it
# also runs in docker:dind's busybox). Creates the builder's bridge in the host
# namespace, starts containerd and dockerd with runnerx's config, and on SIGTERM
# (docker stop) or dockerd exit stops them and deletes the bridge.
set -eu
. /etc/runnerx/boot.env
mkdir -p /run/runnerx
if [ "$RUNNERX_CGROUP_NEST" = 1 ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  # cgroup v2 with a private cgroup namespace: move ourselves to a leaf so dockerd
  # can enable controllers for its children (moby hack/dind).
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
    > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi
# Registry CAs runnerx placed in the system store: trust them for curl, git and the
# buildx client's token requests.
# Appending to the bundle is instant; the full update-ca-certificates (hash links for
# CApath users) costs ~0.6 s, so it runs in the background.
if ls /usr/local/share/ca-certificates/runnerx-*.crt >/dev/null 2>&1; then
  cat /usr/local/share/ca-certificates/runnerx-*.crt >> /etc/ssl/certs/ca-certificates.crt 2>/dev/null || :
  (update-ca-certificates >/dev/null 2>&1 || echo "runnerx: update-ca-certificates failed" >&2) &
fi
# QEMU handlers from the image (binfmt builtin/auto), before dockerd starts so its
# BuildKit sees the emulated platforms; already-registered handlers are kept.
if [ -n "$RUNNERX_BINFMT" ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || :
  for a in $RUNNERX_BINFMT; do
    [ -e "/proc/sys/fs/binfmt_misc/qemu-$a" ] && continue
    conf="/usr/lib/binfmt.d/qemu-$a.conf"
    [ -r "$conf" ] || continue
    grep -h "^:qemu-$a:" "$conf" > /proc/sys/fs/binfmt_misc/register 2>/dev/null \
      || echo "runnerx: cannot register qemu-$a from $conf" >&2
  done
fi
# A kept /var/lib/docker (per-project cache) holds the last builder's network store.
# Its stale default "bridge" network makes dockerd delete the interface named docker0
# on start (moby initBridgeDriver + default-address-pools) -- on the host network that
# is the HOST's docker0. Networks never carry over between slots anyway: drop them.
rm -f /var/lib/docker/network/files/local-kv.db
ip link show "$RUNNERX_BRIDGE" >/dev/null 2>&1 || ip link add "$RUNNERX_BRIDGE" type bridge
ip addr replace "$RUNNERX_BRIDGE_CIDR" dev "$RUNNERX_BRIDGE"
ip link set "$RUNNERX_BRIDGE" up
# containerd started here rather than by dockerd: dockerd polls the containerd it
# manages slowly (~1 s of a ~1.4 s boot). Same root and state paths as dockerd's own,
# so a kept /var/lib/docker works either way; images without containerd fall back.
ctd=""
set --
if command -v containerd >/dev/null 2>&1; then
  mkdir -p /run/containerd
  containerd --config /etc/runnerx/containerd.toml --root /var/lib/docker/containerd/daemon \
    --state /run/docker/containerd/daemon --address /run/containerd/containerd.sock &
  ctd=$!
  i=0
  while [ ! -S /run/containerd/containerd.sock ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
  [ -S /run/containerd/containerd.sock ] && set -- --containerd /run/containerd/containerd.sock
fi
dockerd --config-file /etc/runnerx/daemon.json "$@" &
pid=$!
stop_all() {
  kill -TERM "$pid" 2>/dev/null || :
  wait "$pid" 2>/dev/null || :
  if [ -n "$ctd" ]; then kill -TERM "$ctd" 2>/dev/null || :; wait "$ctd" 2>/dev/null || :; fi
  ip link del "$RUNNERX_BRIDGE" 2>/dev/null || :
}
teardown() {
  stop_all
  exit 0
}
trap teardown TERM INT
wait "$pid" || :
stop_all
echo "runnerx: dockerd exited" >&2
exit 1
