#!/bin/sh
# runnerx builder boot, rootless isolation: the builder's pid 1, run as the
# container's root with only CHOWN, MKNOD, SETUID and SETGID.
#
# It prepares what the unprivileged user needs (its runtime dir, /dev/net/tun, the
# data root, the CA bundle), then starts RootlessKit as that user: containerd and
# dockerd run in their own user, mount and network namespace (ns-init.sh), so their
# bridges, iptables and binfmt handlers never touch the runner host. On SIGTERM
# (docker stop) it stops RootlessKit, which takes the whole namespace with it.
# POSIX sh: it also runs in docker:dind's busybox.
set -eu
# shellcheck source=/dev/null # written by runnerx into the builder at create time
. /etc/runnerx/boot.env
missing=
for tool in getent setpriv nsenter rootlesskit slirp4netns newuidmap newgidmap containerd dockerd bash; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "runnerx: the builder image lacks what rootless builders need:$missing; build it from docker/Dockerfile, or set builder.isolation = \"privileged\"" >&2
  exit 1
fi
uid=$RUNNERX_UID
entry=$(getent passwd "$uid" || :)
user=$(echo "$entry" | cut -d: -f1)
gid=$(echo "$entry" | cut -d: -f4)
home=$(echo "$entry" | cut -d: -f6)
if [ -z "$home" ]; then
  echo "runnerx: the builder image has no user with uid $uid (see docker/Dockerfile)" >&2
  exit 1
fi
# RootlessKit and slirp4netns run in the host's network namespace with the user's
# primary group (real, effective and saved: nothing can drop it), which the host's
# egress policy matches. Whatever this runner's network.egress says: a builder
# without the group would pass by a policy loaded on this host.
if [ "$gid" != "$RUNNERX_NET_GID" ]; then
  echo "runnerx: the builder image's user $user has primary group $gid, not runnerx-net (gid $RUNNERX_NET_GID), which the image contract (docker/builder-setup.sh) requires and the host's egress policy matches; build the image from docker/Dockerfile" >&2
  exit 1
fi
run=/run/user/$uid
mkdir -p "$run" /run/runnerx
# chmod before chown: without CAP_FOWNER root may only chmod what it owns.
# /run/runnerx holds the pid files of the user's stage scripts (cancellation).
chmod 700 "$run" /run/runnerx
chown "$uid:$gid" "$run" /run/runnerx

# slirp4netns needs a tun device inside the namespace; Docker's default device rules
# allow creating c 10:200, and only the user opens it.
mkdir -p /dev/net
[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200
chmod 600 /dev/net/tun
chown "$uid:$gid" /dev/net/tun

# The data root (the job's volume or a kept project cache) belongs to the user, who
# is root inside the namespace. A cache last used by a privileged builder holds
# root-owned files the namespace cannot map: runnerx gives such a builder a fresh
# volume (it labels caches with their isolation), so only the top directory is chowned.
chown "$uid:$gid" /var/lib/docker
for d in /builds /cache; do
  [ -d "$d" ] && chown "$uid:$gid" "$d"
done

# Registry CAs runnerx placed in the system store: curl, git and the buildx client's
# token requests trust them. Appending to the bundle is instant; the full
# update-ca-certificates (hash links for CApath users) runs in the background.
if ls /usr/local/share/ca-certificates/runnerx-*.crt >/dev/null 2>&1; then
  cat /usr/local/share/ca-certificates/runnerx-*.crt >>/etc/ssl/certs/ca-certificates.crt 2>/dev/null || :
  (update-ca-certificates >/dev/null 2>&1 || echo "runnerx: update-ca-certificates failed" >&2) &
fi

# The buildx client (the user) reads client keys for docker-container builders.
# (Files in the user's home arrive owned by the user.)
if [ -d /etc/buildkit ]; then chown -R "$uid:$gid" /etc/buildkit; fi

loopback=--disable-host-loopback
[ "$RUNNERX_HOST_LOOPBACK" = 1 ] && loopback=
# Published ports: "none" keeps them in the namespace (the job reaches them at its own
# 127.0.0.1); "builtin" (builder.publish_ports = "all") also listens on the host.

# setpriv, not su: no PAM, no setuid helper, and the user keeps no capability.
# shellcheck disable=SC2086 # $loopback is one flag or nothing
setpriv --reuid="$uid" --regid="$gid" --init-groups --inh-caps=-all \
  env HOME="$home" XDG_RUNTIME_DIR="$run" USER="$user" \
  rootlesskit \
  --state-dir="$run/rootlesskit" \
  --net=slirp4netns --mtu=65520 \
  --slirp4netns-sandbox=auto --slirp4netns-seccomp=auto \
  $loopback \
  --port-driver="$RUNNERX_PORT_DRIVER" \
  --copy-up=/etc --copy-up=/run \
  --propagation=rslave \
  /bin/sh /etc/runnerx/ns-init.sh &
pid=$!
teardown() {
  # RootlessKit runs as the user, and this root has no CAP_KILL: signal it as the user.
  # It passes SIGTERM to ns-init.sh, which stops dockerd and containerd.
  setpriv --reuid="$uid" --regid="$gid" --init-groups kill -TERM "$pid" 2>/dev/null || :
  wait "$pid" 2>/dev/null || :
  exit 0
}
trap teardown TERM INT
wait "$pid" || :
echo "runnerx: rootlesskit (and the inner dockerd) exited" >&2
exit 1
