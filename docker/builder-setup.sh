#!/bin/sh
# Runs inside the builder image's root filesystem as root, after its packages are
# installed (docker/Dockerfile's RUN, or a chroot in docker/build-builder-image.sh):
# the image contract runnerx relies on, and the trim.
#
# The contract (what any builder image must give runnerx):
#   - sh, bash, getent, setpriv, nsenter, unshare, ip, rootlesskit, slirp4netns,
#     newuidmap/newgidmap, containerd, dockerd, runc, docker with buildx;
#   - the user `rootless`, uid 1000, with a home and the subordinate ids
#     100000:65536 (/etc/subuid, /etc/subgid): every job runs as it;
#   - its primary group `runnerx-net`, gid 65530: RootlessKit and slirp4netns run
#     with it in the host's network namespace, which is how the host's egress policy
#     (runnerx host network) tells builders' traffic from the host's own;
#   - newuidmap/newgidmap with file capabilities (cap_setuid / cap_setgid) instead
#     of the setuid bit, and no setuid or setgid file at all: the job user has no
#     way back to uid 0;
#   - /builds and /cache owned by 1000:65530; /etc/runnerx present;
#   - the containerd image store (multi-platform images with the docker driver);
#   - QEMU user emulators and /usr/lib/binfmt.d/qemu-<arch>.conf for builtin binfmt.
set -eu

mkdir -p /etc/docker /etc/runnerx /builds /cache
getent group runnerx-net >/dev/null || groupadd --gid 65530 runnerx-net
if id -u rootless >/dev/null 2>&1; then
  usermod --gid runnerx-net rootless
else
  useradd --uid 1000 --gid runnerx-net --create-home --shell /bin/bash rootless
fi
printf 'rootless:100000:65536\n' >/etc/subuid
printf 'rootless:100000:65536\n' >/etc/subgid
find / -xdev -type f -perm /6000 -exec chmod ug-s {} +
setcap cap_setuid=ep /usr/bin/newuidmap
setcap cap_setgid=ep /usr/bin/newgidmap
chown -R 1000:65530 /builds /cache /home/rootless
printf '{"features": {"containerd-snapshotter": true}}\n' >/etc/docker/daemon.json

# Trim: emulators only for the platforms runnerx maps (builder.platforms), no
# documentation or translations, no package caches. qemu-user-static ships ~40
# emulators of ~14 MB each.
keep=" x86_64 aarch64 arm i386 riscv64 ppc64le s390x mips64el mips64 loongarch64 "
for conf in /usr/lib/binfmt.d/qemu-*.conf; do
  [ -e "$conf" ] || continue
  arch=$(basename "$conf" .conf)
  arch=${arch#qemu-}
  case "$keep" in
    *" $arch "*) ;;
    *) rm -f "$conf" "/usr/bin/qemu-$arch" "/usr/bin/qemu-$arch-static" "/usr/libexec/qemu-binfmt/$arch-binfmt-P" ;;
  esac
done
find /usr/bin /usr/libexec/qemu-binfmt -xtype l -name "*qemu*" -delete 2>/dev/null || :
find /usr/libexec/qemu-binfmt -xtype l -delete 2>/dev/null || :
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
  /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/* /var/log/*.log
