#!/bin/sh
# runnerx namespace init: the inner daemons' own network and mount namespace.
# Rootless: RootlessKit's child, root of the builder's own user namespace too (the
# builder's uid 1000 outside). Privileged: unshare's child, joined to the host network
# by slirp4netns. Registers the QEMU handlers, points loopback registry names at the
# host alias, then runs containerd and dockerd. Everything here dies with the
# namespace.
set -eu
# shellcheck source=/dev/null # written by runnerx into the builder at create time
. /etc/runnerx/boot.env

if [ -n "${RUNNERX_UID:-}" ]; then
  # /etc and /run are RootlessKit copy-ups (a tmpfs of symlinks to the builder's
  # own): drop the links that would make the inner daemons share the builder's state.
  rm -f /run/docker /run/containerd /run/xtables.lock /run/runnerx
  # Go resolves /etc/ssl through the symlink awkwardly; bind the real directory.
  if [ -L /etc/ssl ]; then
    real=$(realpath /etc/ssl)
    rm -f /etc/ssl
    mkdir /etc/ssl
    mount --rbind "$real" /etc/ssl
  fi
else
  # slirp4netns configures tap0 from outside once this process exists.
  i=0
  while ! ip route show default 2>/dev/null | grep -q tap0; do
    i=$((i + 1))
    if [ $i -gt 200 ]; then
      echo "runnerx: slirp4netns did not connect the namespace (see /run/runnerx/slirp4netns.log in the builder)" >&2
      cat /run/runnerx/slirp4netns.log >&2 2>/dev/null || :
      exit 1
    fi
    sleep 0.025
  done
  # Its DNS forwarder (the builder's resolvers may be host-loopback addresses).
  { grep -v '^nameserver' /etc/resolv.conf || :; echo "nameserver 10.0.2.3"; } >"$XDG_RUNTIME_DIR/resolv.conf"
  mount --bind "$XDG_RUNTIME_DIR/resolv.conf" /etc/resolv.conf
fi

# Names the operator mapped to a loopback address (extra_hosts, e.g. a registry on
# the runner host's 127.0.0.1) mean the host; inside the namespace 127.0.0.1 is the
# namespace itself, and the host is RootlessKit's alias 10.0.2.2 (only when
# builder.host_loopback opens it; otherwise the names stay unreachable).
# The namespace gets its own /etc/hosts (Docker bind-mounts the builder's; this covers
# it in the namespace only), which prepare extends with the job's service aliases.
if [ "$RUNNERX_HOST_LOOPBACK" = 1 ]; then
  awk '$1 ~ /^127\./ { local = 0; for (i = 2; i <= NF; i++) if ($i ~ /^localhost/ || $i ~ /^ip6-/) local = 1;
       if (!local) { $1 = "10.0.2.2" } } { print }' /etc/hosts >"$XDG_RUNTIME_DIR/hosts"
else
  cat /etc/hosts >"$XDG_RUNTIME_DIR/hosts"
fi
# A docker:dind service is this namespace's own dockerd (it also listens on the
# namespace's loopback, port 2375): its aliases name 127.0.0.1 here.
if [ -n "${RUNNERX_DIND_ALIASES:-}" ]; then
  echo "127.0.0.1 $RUNNERX_DIND_ALIASES" >>"$XDG_RUNTIME_DIR/hosts"
fi
mount --bind "$XDG_RUNTIME_DIR/hosts" /etc/hosts

# QEMU handlers (binfmt builtin/auto). Since Linux 6.7 every user namespace has its
# own binfmt_misc instance: registering here changes nothing on the host. On older
# kernels the mount fails and the host's own handlers (registered with F) apply.
if [ -n "$RUNNERX_BINFMT" ]; then
  if mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; then
    for a in $RUNNERX_BINFMT; do
      [ -e "/proc/sys/fs/binfmt_misc/qemu-$a" ] && continue
      conf="/usr/lib/binfmt.d/qemu-$a.conf"
      [ -r "$conf" ] || continue
      grep -h "^:qemu-$a:" "$conf" >/proc/sys/fs/binfmt_misc/register 2>/dev/null ||
        echo "runnerx: cannot register qemu-$a from $conf" >&2
    done
  else
    echo "runnerx: this kernel has no binfmt_misc per user namespace; using the host's handlers" >&2
  fi
fi

# A kept data root holds the last builder's network store; networks never carry over
# (docs/background.md#inner-networks-and-the-hosts-docker0).
rm -f /var/lib/docker/network/files/local-kv.db

run=$XDG_RUNTIME_DIR
mkdir -p "$run/containerd"
# containerd started here rather than by dockerd: dockerd polls the containerd it
# manages slowly (~1 s of boot).
containerd --config /etc/runnerx/containerd.toml --root /var/lib/docker/containerd/daemon \
  --state "$run/docker/containerd/daemon" --address "$run/containerd/containerd.sock" &
ctd=$!
i=0
while [ ! -S "$run/containerd/containerd.sock" ] && [ $i -lt 500 ]; do
  sleep 0.01
  i=$((i + 1))
done
dockerd --config-file /etc/runnerx/daemon.json --containerd "$run/containerd/containerd.sock" &
dpid=$!
# Stops a daemon, waiting at most $2 tenths of a second: a rootless dockerd without
# cgroups can hang ~10 s on a container that ignores SIGTERM, and nothing here
# outlives the builder (whatever is left dies with its container).
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  i=0
  while kill -0 "$1" 2>/dev/null && [ $i -lt "$2" ]; do
    sleep 0.1
    i=$((i + 1))
  done
}
stop_all() {
  stop "$dpid" 30
  stop "$ctd" 10
}
trap 'stop_all; exit 0' TERM INT
wait "$dpid" || :
stop_all
echo "runnerx: dockerd exited" >&2
exit 1
