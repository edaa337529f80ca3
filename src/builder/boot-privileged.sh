#!/bin/sh
# runnerx builder boot, privileged isolation: the builder's pid 1 (POSIX sh, so it
# also runs in docker:dind's busybox). For hosts without user namespaces.
#
# The inner containerd and dockerd still get a network and mount namespace of their
# own (ns-init.sh under unshare), joined to the host network by slirp4netns: their
# bridges and iptables rules never touch the host's, so concurrent builders never
# race on the host's iptables and leave nothing behind. On SIGTERM (docker stop) it
# stops the namespace's daemons.
set -eu
# shellcheck source=/dev/null # written by runnerx into the builder at create time
. /etc/runnerx/boot.env
mkdir -p /run/runnerx
missing=
for tool in setpriv unshare nsenter slirp4netns containerd dockerd bash ip; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "runnerx: the builder image lacks what privileged builders need:$missing; build it from docker/Dockerfile" >&2
  exit 1
fi
if [ "$RUNNERX_CGROUP_NEST" = 1 ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  # cgroup v2 with a private cgroup namespace: move ourselves to a leaf so dockerd
  # can enable controllers for its children (moby hack/dind).
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
    > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || :
fi
# Registry CAs runnerx placed in the system store: trust them for curl, git and the
# buildx client's token requests. Appending to the bundle is instant; the full
# update-ca-certificates (hash links for CApath users) costs ~0.6 s, so it runs in
# the background.
if ls /usr/local/share/ca-certificates/runnerx-*.crt >/dev/null 2>&1; then
  cat /usr/local/share/ca-certificates/runnerx-*.crt >> /etc/ssl/certs/ca-certificates.crt 2>/dev/null || :
  (update-ca-certificates >/dev/null 2>&1 || echo "runnerx: update-ca-certificates failed" >&2) &
fi

# slirp4netns needs a tun device (privileged builders may create it).
mkdir -p /dev/net
[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200

# The namespace: ns-init.sh waits for slirp4netns's tap0, then starts the daemons.
export XDG_RUNTIME_DIR=/run/runnerx
unshare --net --mount --propagation slave /bin/sh /etc/runnerx/ns-init.sh &
ns=$!
# unshare(2) happens after the fork: wait until the child really is in its own
# network namespace, or slirp4netns would configure tap0 in the host's.
host_net=$(readlink /proc/self/ns/net)
i=0
while [ "$(readlink "/proc/$ns/ns/net" 2>/dev/null || echo "$host_net")" = "$host_net" ]; do
  i=$((i + 1))
  if [ $i -gt 500 ]; then
    echo "runnerx: the inner daemons' namespace did not appear" >&2
    exit 1
  fi
  sleep 0.01
done
echo "$ns" >/run/runnerx/ns.pid
loopback=--disable-host-loopback
[ "$RUNNERX_HOST_LOOPBACK" = 1 ] && loopback=
# The namespace's only way out, in the host's network namespace: it runs with the
# group the host's egress policy matches (runnerx host network).
# shellcheck disable=SC2086 # $loopback is one flag or nothing
setpriv --regid="$RUNNERX_NET_GID" --clear-groups slirp4netns --configure --mtu=65520 $loopback "$ns" tap0 >/run/runnerx/slirp4netns.log 2>&1 &
slirp=$!
teardown() {
  kill -TERM "$ns" 2>/dev/null || :
  wait "$ns" 2>/dev/null || :
  kill -TERM "$slirp" 2>/dev/null || :
  exit 0
}
trap teardown TERM INT
wait "$ns" || :
kill -TERM "$slirp" 2>/dev/null || :
echo "runnerx: the inner dockerd exited" >&2
exit 1
