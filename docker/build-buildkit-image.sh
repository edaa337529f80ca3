#!/usr/bin/env bash
# Builds a BuildKit daemon image from Debian packages only, with no registry pull:
# buildkitd and buildctl are compiled offline from the BuildKit source tree that Debian 13
# (trixie) ships in golang-github-docker-docker-dev, with trixie's Go in GOPATH mode and
# other trixie golang-*-dev packages as dependencies, inside a debootstrapped trixie
# chroot. The runtime image is a trixie minbase rootfs with runc, the CNI plugins, the
# QEMU user emulators, git and ca-certificates; `docker import` makes it an image whose
# entrypoint is buildkitd (usable as the buildx docker-container driver image or as a
# remote BuildKit node).
#
# Patches to that source tree (all in this script, see patch_buildkit below):
#   - go-systemd: Debian installs v22 at github.com/coreos/go-systemd (no /v22 suffix);
#   - no azblob or GitHub Actions cache backends (their SDKs are not packaged);
#   - no fuse-overlayfs snapshotter (not packaged; "auto" falls back to native);
#   - stand-ins for github.com/tonistiigi/go-archvariant (amd64 level from x/sys/cpu)
#     and github.com/package-url/packageurl-go (the part of its API BuildKit uses).
#
# The image is tagged runnerx-buildkit:<hash of this recipe> and runnerx-buildkit:local.
# If the hashed tag already exists the build is skipped, so tests and CI build it
# once per machine (or once per recipe change).
#
# Usage: docker/build-buildkit-image.sh [--print-tag]
# Env:   RUNNERX_DEBIAN_MIRROR  override the mirror (default: taken from this host's
#                               apt sources, never hard-coded)
#        RUNNERX_BUILDKIT_REPO  image repository (default runnerx-buildkit)
set -euo pipefail

SUITE=trixie
# The BuildKit release vendored by Debian's docker.io 26.1.5 (the source carries no
# version of its own); the Debian package version becomes the revision.
BUILDKIT_VERSION=v0.13.2
BUILD_PACKAGES=(
  golang-go golang-golang-x-sys-dev golang-github-docker-docker-dev
  golang-github-agext-levenshtein-dev golang-github-aws-aws-sdk-go-v2-dev
  golang-github-containerd-nydus-snapshotter-dev golang-github-containerd-stargz-snapshotter-dev
  golang-github-coreos-go-systemd-dev golang-github-gofrs-flock-dev
  golang-github-google-shlex-dev golang-github-mitchellh-hashstructure-v2-dev
  golang-github-pkg-profile-dev golang-github-spdx-tools-golang-dev
  golang-github-tonistiigi-vt100-dev
)
PACKAGES=(
  runc containernetworking-plugins qemu-user-static iptables pigz
  git ca-certificates
)
# buildkit-qemu-<name> -> Debian's qemu-<binary>. The names are what BuildKit looks up
# for an emulated RUN when the host has no binfmt_misc entry (after its own arch map);
# mips64el/loongarch64 are the upstream image's spellings of mips64le/loong64.
QEMU_LINKS=(
  aarch64:aarch64 arm:arm x86_64:x86_64 i386:i386 riscv64:riscv64 s390x:s390x
  ppc64:ppc64 ppc64le:ppc64le mips64:mips64 mips64le:mips64el mips64el:mips64el
  loong64:loongarch64 loongarch64:loongarch64
)
# buildkit-cni-<plugin> -> /usr/lib/cni/<plugin>: what --oci-worker-net=bridge runs.
CNI_LINKS=(bridge loopback host-local firewall)
REPO="${RUNNERX_BUILDKIT_REPO:-runnerx-buildkit}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=docker/image-lib.sh
. "$here/image-lib.sh"
# The tag's hash covers this recipe (package lists, patches, stand-ins, image options).
tag="$(recipe_tag "$here/build-buildkit-image.sh" "$REPO")"
[[ "${1:-}" == "--print-tag" ]] && { echo "$tag"; exit 0; }
reuse_image "$tag" "$REPO"
mirror="$(debian_mirror)"
need_tools debootstrap docker chroot

work="$(mktemp -d /var/tmp/runnerx-buildkit.XXXXXX)"
runtime_pid=
cleanup() {
  if [[ -n "$runtime_pid" ]]; then kill "$runtime_pid" 2>/dev/null || true; wait "$runtime_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
build="$work/build"
rootfs="$work/rootfs"
out="$work/out"
mkdir -p "$out"
total=$SECONDS

# debootstrap SUITE into DIR with extra packages (comma list, may be empty); log to LOG.
bootstrap() {
  local dir="$1" include="$2" logf="$3"
  debootstrap --variant=minbase ${include:+--include="$include"} "$SUITE" "$dir" "$mirror" >"$logf" 2>&1 || {
    tail -n 30 "$logf" >&2
    log "debootstrap of $dir failed (log tail above)"
    return 1
  }
}

# The runtime rootfs is debootstrapped in the background while the binaries build.
(
  start=$SECONDS
  bootstrap "$rootfs" "$(IFS=,; echo "${PACKAGES[*]}")" "$work/runtime.log"
  log "runtime rootfs: debootstrap $SUITE (${PACKAGES[*]}) took $((SECONDS - start))s"
) &
runtime_pid=$!

log "build chroot: debootstrap $SUITE from $mirror"
start=$SECONDS
bootstrap "$build" "" "$work/build.log"
log "build chroot: debootstrap took $((SECONDS - start))s"

# apt resolves the dependencies and downloads; the Go sources need no maintainer
# scripts, so the packages are just unpacked, several at a time (3x faster than
# dpkg --install on 2 cores); /bin -> usr/bin and friends must stay symlinks.
start=$SECONDS
rm -f "$build"/var/cache/apt/archives/*.deb
{
  chroot "$build" apt-get update -q
  chroot "$build" apt-get install -y -q --no-install-recommends --download-only "${BUILD_PACKAGES[@]}"
} >"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; log "apt-get in the build chroot failed"; exit 1; }
ndebs="$(find "$build/var/cache/apt/archives" -maxdepth 1 -name '*.deb' | wc -l)"
log "build chroot: downloaded $ndebs packages in $((SECONDS - start))s"
start=$SECONDS
# shellcheck disable=SC2016 # $d expands in the chroot's sh
(cd "$build/var/cache/apt/archives" && find . -maxdepth 1 -name '*.deb' -printf '/var/cache/apt/archives/%P\n') \
  | xargs -P4 -n16 chroot "$build" sh -c \
    'for d; do dpkg-deb --fsys-tarfile "$d" | tar -x --keep-directory-symlink -C / || exit 1; done' unpack
rm -f "$build"/var/cache/apt/archives/*.deb
log "build chroot: unpacked in $((SECONDS - start))s"

# Patches and stand-ins (GOPATH /root/go comes first, so stand-ins shadow nothing real).
bk=usr/share/gocode/src/github.com/moby/buildkit
sed -i 's#github.com/coreos/go-systemd/v22/#github.com/coreos/go-systemd/#' \
  "$build/$bk/cmd/buildkitd/main.go" "$build/$bk/cmd/buildkitd/main_unix.go"
sed -i -e '\#cache/remotecache/azblob"#d' -e '\#cache/remotecache/gha"#d' \
  -e '/"gha": *gha\./d' -e '/"azblob": *azblob\./d' "$build/$bk/cmd/buildkitd/main.go"
sed -i -e '\#fuse-overlayfs-snapshotter"#d' \
  -e 's#fuseoverlayfs\.Supported(commonRoot)#errors.New("fuse-overlayfs snapshotter not built in")#' \
  -e 's#return fuseoverlayfs\.NewSnapshotter(root)#return nil, errors.New("fuse-overlayfs snapshotter not built in")#' \
  "$build/$bk/cmd/buildkitd/main_oci_worker.go"
if grep -qE 'go-systemd/v22|remotecache/(azblob|gha)"|fuseoverlayfs' \
     "$build/$bk"/cmd/buildkitd/main*.go; then
  log "a patch no longer applies to $bk/cmd/buildkitd"
  exit 1
fi

stub="$build/root/go/src/github.com"
mkdir -p "$stub/tonistiigi/go-archvariant" "$stub/package-url/packageurl-go"
cat >"$stub/tonistiigi/go-archvariant/archvariant.go" <<'GO'
// Package archvariant stands in for github.com/tonistiigi/go-archvariant (not in
// Debian): the amd64 micro-architecture level, from golang.org/x/sys/cpu.
package archvariant

import "golang.org/x/sys/cpu"

func AMD64Variant() string {
	x := cpu.X86
	switch {
	case x.HasAVX512F && x.HasAVX512BW && x.HasAVX512CD && x.HasAVX512DQ && x.HasAVX512VL &&
		x.HasAVX2 && x.HasBMI2 && x.HasFMA:
		return "v4"
	case x.HasAVX && x.HasAVX2 && x.HasBMI1 && x.HasBMI2 && x.HasFMA && x.HasOSXSAVE:
		return "v3"
	case x.HasSSE3 && x.HasSSSE3 && x.HasSSE41 && x.HasSSE42 && x.HasPOPCNT:
		return "v2"
	}
	return "v1"
}
GO
cat >"$stub/package-url/packageurl-go/packageurl.go" <<'GO'
// Package packageurl stands in for github.com/package-url/packageurl-go (not in
// Debian) with the part of its API that BuildKit uses.
package packageurl

import (
	"errors"
	"net/url"
	"strings"
)

const (
	TypeDocker = "docker"
	TypeOCI    = "oci"
)

type Qualifier struct{ Key, Value string }

type Qualifiers []Qualifier

type PackageURL struct {
	Type, Namespace, Name, Version string
	Qualifiers                     Qualifiers
	Subpath                        string
}

func NewPackageURL(typ, ns, name, version string, q Qualifiers, subpath string) *PackageURL {
	return &PackageURL{typ, ns, name, version, q, subpath}
}

func (p PackageURL) ToString() string {
	s := "pkg:" + p.Type + "/"
	for _, seg := range strings.Split(p.Namespace, "/") {
		if seg != "" {
			s += url.PathEscape(seg) + "/"
		}
	}
	s += url.PathEscape(p.Name)
	if p.Version != "" {
		s += "@" + url.PathEscape(p.Version)
	}
	for i, q := range p.Qualifiers {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		s += sep + q.Key + "=" + url.QueryEscape(q.Value)
	}
	if p.Subpath != "" {
		s += "#" + p.Subpath
	}
	return s
}

func (p PackageURL) String() string { return p.ToString() }

func FromString(s string) (PackageURL, error) {
	var p PackageURL
	if !strings.HasPrefix(s, "pkg:") {
		return p, errors.New("purl scheme is not \"pkg\": " + s)
	}
	s = strings.TrimLeft(strings.TrimPrefix(s, "pkg:"), "/")
	if i := strings.LastIndex(s, "#"); i >= 0 {
		p.Subpath, s = strings.Trim(s[i+1:], "/"), s[:i]
	}
	if i := strings.LastIndex(s, "?"); i >= 0 {
		for _, kv := range strings.Split(s[i+1:], "&") {
			k, v, _ := strings.Cut(kv, "=")
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return p, err
			}
			p.Qualifiers = append(p.Qualifiers, Qualifier{strings.ToLower(k), uv})
		}
		s = s[:i]
	}
	typ, rest, ok := strings.Cut(s, "/")
	if !ok || typ == "" {
		return p, errors.New("purl has no type: " + s)
	}
	p.Type = strings.ToLower(typ)
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		v, err := url.PathUnescape(rest[i+1:])
		if err != nil {
			return p, err
		}
		p.Version, rest = v, rest[:i]
	}
	rest = strings.Trim(rest, "/")
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		p.Namespace, rest = rest[:i], rest[i+1:]
	}
	name, err := url.PathUnescape(rest)
	if err != nil || name == "" {
		return p, errors.New("purl has no name: " + s)
	}
	p.Name = name
	return p, nil
}
GO

# Offline GOPATH build: no module proxy, no toolchain download, no cgo (static binaries).
start=$SECONDS
revision="docker.io-$(gzip -dc "$build/usr/share/doc/golang-github-docker-docker-dev/changelog.Debian.gz" \
  | sed -n '1s/^docker\.io (\([^)]*\)).*/\1/p')"
mkdir -p "$build/tmp/out"
chroot "$build" env -i PATH=/usr/bin:/bin HOME=/root GOROOT=/usr/lib/go \
  GOPATH=/root/go:/usr/share/gocode GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local \
  GOTELEMETRY=off GOCACHE=/root/.cache/go-build CGO_ENABLED=0 \
  go build -trimpath -tags 'osusergo netgo' -o /tmp/out/ \
  -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION -X github.com/moby/buildkit/version.Revision=$revision" \
  github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl \
  >"$work/go.log" 2>&1 || { tail -n 40 "$work/go.log" >&2; log "go build failed"; exit 1; }
mv "$build/tmp/out/buildkitd" "$build/tmp/out/buildctl" "$out/"
log "go build of buildkitd and buildctl ($("$out/buildctl" --version 2>/dev/null | awk '{print $3, $4}')) took $((SECONDS - start))s"
rm -rf "$build"

start=$SECONDS
rc=0
wait "$runtime_pid" || rc=$?
runtime_pid=
if ((rc != 0)); then exit 1; fi
log "waited $((SECONDS - start))s for the runtime rootfs"

start=$SECONDS
install -m 0755 "$out/buildkitd" "$out/buildctl" "$rootfs/usr/local/bin/"
# Emulators: hard links (BuildKit copies the file it finds, so a symlink would not do),
# and the emulators BuildKit has no use for are dropped (they are 2/3 of qemu-user).
keep=" "
for pair in "${QEMU_LINKS[@]}"; do
  ln -f "$rootfs/usr/bin/qemu-${pair#*:}" "$rootfs/usr/local/bin/buildkit-qemu-${pair%%:*}"
  keep+="${pair#*:} "
done
for f in "$rootfs"/usr/bin/qemu-*; do
  name="${f##*/qemu-}"
  [[ "$keep" == *" ${name%-static} "* ]] || rm -f "$f"
done
find "$rootfs/usr/bin" "$rootfs/usr/libexec" -xtype l -name '*qemu*' -delete 2>/dev/null || true
find "$rootfs/usr/libexec/qemu-binfmt" -xtype l -delete 2>/dev/null || true
for plugin in "${CNI_LINKS[@]}"; do
  ln -f "$rootfs/usr/lib/cni/$plugin" "$rootfs/usr/local/bin/buildkit-cni-$plugin"
done
mkdir -p "$rootfs/etc/buildkit" "$rootfs/var/lib/buildkit"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
chroot "$rootfs" /usr/local/bin/buildkitd --version >/dev/null 2>&1 || { log "buildkitd does not run in the rootfs"; exit 1; }
tar -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENTRYPOINT ["buildkitd"]' \
  -c 'VOLUME /var/lib/buildkit' \
  -m "runnerx buildkit ($SUITE; buildkitd $BUILDKIT_VERSION $revision; ${PACKAGES[*]})" - "$tag" >/dev/null
docker tag "$tag" "$REPO:local"
log "assembled and imported $tag in $((SECONDS - start))s ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
log "total $((SECONDS - total))s"
echo "$tag"
