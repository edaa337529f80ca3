#!/usr/bin/env bash
# What native BuildKit nodes ([[nodes]]) and cross-compilation buy on this host,
# measured end to end through `runnerx local` (a fresh builder per run, the CI
# template's `docker buildx build --push` into a local TLS registry):
#   1a. ci-templates/examples/hello for linux/amd64 + linux/arm64 with no nodes: the
#       builder's default docker driver, arm64 under QEMU;
#   1b. the same with two BuildKit nodes started on this host by `runnerx node --start`
#       (one linux/amd64, one linux/arm64, mTLS on loopback) as [[nodes]]. Both run on
#       this machine, so the node of the other architecture still emulates it: this
#       measures the node path, not native hardware;
#   2a. ci-templates/examples/go-cross as written (FROM --platform=$BUILDPLATFORM,
#       GOARCH=$TARGETARCH: the Go toolchain runs natively and cross-compiles);
#   2b. the same program with the toolchain under QEMU (FROM ${GO_IMAGE}, no GOARCH);
#   2c. 2a with the registry build cache (cache_repository): a changed main.go, so the
#       cache in the registry is a commit old;
#   2d. 2c's program again in a fresh builder (no local cache: another runner host),
#       so the registry cache has every step.
# The hello build's RUN loop (WORK iterations) stands in for compilation; each run
# changes WORK (hello) or main.go (Go) so it misses every cache. The multi-arch base
# images are made here with no registry pull: busybox as scripts/lib/registry.sh seeds
# it, and a Go toolchain image from this host's Debian packages (golang-1.NN-go for
# amd64 and arm64, golang-1.NN-src, libc6, busybox-static), unpacked per architecture
# with dpkg-deb (no arm64 code runs), imported and pushed by a job, joined with
# `runnerx manifest create`. Runs are interleaved (1a 1b 2a 2b, N rounds).
#
# Usage: scripts/bench-nodes.sh [--runs N | N] [--work N]
#   --runs N  rounds (or N alone); the table shows medians and every run (default 3)
#   --work N  loop iterations of the hello RUN step (default 1000000)
# Env: RUNNERX  the runnerx binary (default target/debug/runnerx, built when missing);
#               copied at start, so a rebuild during the run does not mix versions.
# Needs root (or what scripts/setup-host.sh needs), Docker, runnerx-builder:local and
# runnerx-buildkit:local (setup-host makes both). Figures on stdout, progress on
# stderr; about 8-9 minutes with 3 runs on 2 idle CPUs (the QEMU Go builds dominate).
set -euo pipefail
log() { printf '[bench-nodes] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

runs=3
work_iters=1000000
while (($#)); do
  case $1 in
    --runs) runs=${2:?--runs needs a number}; shift 2 ;;
    --work) work_iters=${2:?--work needs a number}; shift 2 ;;
    [0-9]*) runs=$1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive number, not $runs"
[[ $work_iters =~ ^[0-9]+$ ]] || die "--work must be a number, not $work_iters"

"$here/scripts/setup-host.sh"
cd "$here"
started=$(date +%s)
work="$(mktemp -d /tmp/runnerx-bench-nodes.XXXXXX)"
src_bin="${RUNNERX:-$here/target/debug/runnerx}"
if [[ -z ${RUNNERX:-} && ! -x $src_bin ]]; then
  (cd "$here" && cargo build --locked -q)
fi
[[ -x $src_bin ]] || die "no runnerx binary at $src_bin (cargo build first, or set RUNNERX)"
cp "$src_bin" "$work/runnerx"
RUNNERX="$work/runnerx"
# Pinned for the whole run under tags of its own: another build on this host may move
# runnerx-builder:local or runnerx-buildkit:local meanwhile.
builder_image="runnerx-builder:bench-nodes-$$"
buildkit_image="runnerx-buildkit:bench-nodes-$$"
docker tag runnerx-builder:local "$builder_image"
docker tag runnerx-buildkit:local "$buildkit_image"

REG_PID=""
SAMPLER_PID=""
amd="bn$$-amd64"
arm="bn$$-arm64"
nodes=("$amd" "$arm")
cleanup() {
  local n
  for n in "${nodes[@]}"; do
    docker rm -f "runnerx-node-$n" >/dev/null 2>&1 || true
    docker volume rm -f "runnerx-node-$n" >/dev/null 2>&1 || true
  done
  if [[ -n $REG_PID ]]; then kill "$REG_PID" 2>/dev/null || true; fi
  if [[ -n $SAMPLER_PID ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  docker image rm "$builder_image" "$buildkit_image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=lib/registry.sh
. "$here/scripts/lib/registry.sh"
log "local TLS registry, seeded busybox base (runnerx local + manifest create)"
start_registry "$work"
seed_base >"$work/seed-busybox.log" 2>&1 || { tail -n 30 "$work/seed-busybox.log" >&2; die "seeding the busybox base failed"; }

# Settings: the registry block start_registry wrote, plus loopback names for the
# registry and both nodes; nodes.toml adds the [[nodes]] entries.
base_toml="$work/base.toml"
nodes_toml="$work/nodes.toml"
cat >"$base_toml" <<TOML
[builder]
image = "$builder_image"
pull_policy = "never"
host_loopback = true
extra_hosts = ["registry.test:127.0.0.1", "$amd.test:127.0.0.1", "$arm.test:127.0.0.1"]
platforms = ["linux/amd64", "linux/arm64"]

[[registries]]
host = "$REG"
ca_file = "$work/pki/ca/ca.crt"
username = "ci"
password_env = "REGISTRY_PASSWORD"
TOML
export RUNNERX_CONFIG="$base_toml"
# The egress policy builders run under by default; the nodes and the registry are on
# loopback (host_loopback), so every settings file below makes this same policy.
"$RUNNERX" host network >/dev/null
# The same with the registry build cache (the [[registries]] block is last).
cache_toml="$work/cache.toml"
cp "$base_toml" "$cache_toml"
echo 'cache_repository = "bench/cache"' >>"$cache_toml"

# The newest file matching a glob (several versions may sit in the cache).
newest() {
  local f
  f=$(printf '%s\n' "$@" | sort -V | tail -n 1)
  [[ -f $f ]] || die "missing $1"
  printf '%s\n' "$f"
}

# --- The Go toolchain image, amd64 + arm64, from this host's Debian packages --------
gopkg=$(apt-cache show golang-go | sed -n 's/^Depends: \(golang-1\.[0-9]*-go\).*/\1/p' | sort -V | tail -n 1)
[[ -n $gopkg ]] || die "this host's apt sources offer no golang-go (apt-cache show golang-go)"
gover=${gopkg%-go}            # golang-1.NN
goroot="/usr/lib/go-${gover#golang-}"
debs=/var/cache/runnerx/golang
if ! compgen -G "$debs/${gopkg}_*_amd64.deb" >/dev/null || ! compgen -G "$debs/${gopkg}_*_arm64.deb" >/dev/null \
  || ! compgen -G "$debs/${gover}-src_*_all.deb" >/dev/null || ! compgen -G "$debs/libc6_*_arm64.deb" >/dev/null \
  || ! compgen -G "$debs/libc6_*_amd64.deb" >/dev/null; then
  log "downloading $gopkg (amd64, arm64), ${gover}-src and libc6 into $debs"
  mkdir -p "$debs"
  (cd "$debs" && apt-get download -qq "$gopkg:amd64" "$gopkg:arm64" "${gover}-src" libc6:amd64 libc6:arm64) \
    2>"$work/apt.log" || { cat "$work/apt.log" >&2; die "apt-get download failed (is arm64 added: dpkg --add-architecture arm64; apt-get update?)"; }
fi
gosrc_deb=$(newest "$debs/${gover}-src_"*_all.deb)
goversion=$(dpkg-deb -f "$gosrc_deb" Version)
log "Go toolchain image from Debian's $gopkg $goversion"
goseed="$work/goseed"
mkdir -p "$goseed"
packing=()
for arch in amd64 arm64; do
  root="$work/go-root-$arch"
  mkdir -p "$root"
  for deb in "$(newest "$debs/${gopkg}_"*"_$arch.deb")" "$gosrc_deb" "$(newest "$debs/libc6_"*"_$arch.deb")" \
    "$(newest /var/cache/runnerx/busybox/busybox-static_*_"$arch".deb)"; do
    dpkg-deb -x "$deb" "$root"
  done
  [[ -x $root$goroot/bin/go ]] || die "$gopkg ($arch) has no $goroot/bin/go"
  ln -sf busybox "$root/bin/sh"
  mkdir -p "$root/tmp" "$root/usr/local/bin"
  chmod 1777 "$root/tmp"
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/share/locale"
  tar -C "$root" -c . | gzip -1 >"$goseed/golang-$arch.tar.gz" &
  packing+=($!)
done
for pid in "${packing[@]}"; do wait "$pid" || die "packing a Go rootfs failed"; done
rm -rf "$work"/go-root-*
# Unquoted heredoc: $REG and $goroot expand here, \$arch in the job.
cat >"$goseed/.gitlab-ci.yml" <<YAML
seed:
  script:
    - |
      set -eu
      for arch in amd64 arm64; do
        docker import --platform "linux/\$arch" \\
          --change "ENV PATH=$goroot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \\
          --change "ENV GOROOT=$goroot HOME=/tmp GOCACHE=/tmp/gocache CGO_ENABLED=0" \\
          "golang-\$arch.tar.gz" "$REG/base/golang:1-\$arch"
        docker push -q "$REG/base/golang:1-\$arch"
      done
YAML
log "pushing $REG/base/golang:1-amd64 and -arm64 (runnerx local), joining them (runnerx manifest create)"
rc=0
"$RUNNERX" local seed -f "$goseed/.gitlab-ci.yml" >"$work/seed-golang.log" 2>&1 || rc=$?
if ((rc)); then
  tail -n 30 "$work/seed-golang.log" >&2
  die "seeding the Go toolchain image failed (runnerx local exited $rc; its log ends above)"
fi
"$RUNNERX" manifest create "$REG/base/golang:1" "$REG/base/golang:1-amd64" "$REG/base/golang:1-arm64" >/dev/null
rm -rf "$goseed"

# The two Go projects: the example as written, and its Dockerfile with the build stage
# on the target platform (no --platform=$BUILDPLATFORM, no GOOS/GOARCH).
go_example=ci-templates/examples/go-cross
mkdir -p "$work/go-cross" "$work/go-qemu" "$work/go-cached"
cp "$go_example/Dockerfile" "$work/go-cross/Dockerfile"
cp "$go_example/Dockerfile" "$work/go-cached/Dockerfile"
{
  echo "# bench-nodes variant: the build stage runs on each target platform (arm64 under QEMU)."
  # shellcheck disable=SC2016 # literal Dockerfile text
  sed -e 's/^FROM --platform=\$BUILDPLATFORM /FROM /' -e 's/ GOOS=\$TARGETOS GOARCH=\$TARGETARCH//' "$go_example/Dockerfile"
} >"$work/go-qemu/Dockerfile"
if grep -v '^#' "$work/go-qemu/Dockerfile" | grep -qE 'BUILDPLATFORM|GOARCH'; then
  die "could not make the QEMU variant of $go_example/Dockerfile (it changed?)"
fi

# --- The nodes ---------------------------------------------------------------------
start_node() { # NAME PLATFORM -> appends its [[nodes]] entry to nodes.toml
  local name=$1 platform=$2 port out
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  out="$work/nodes/$name"
  "$RUNNERX" node --name "$name" --address "$name.test" --listen 127.0.0.1 --port "$port" \
    --platform "$platform" --ca "$work/nodes-ca" --out "$out" --image "$buildkit_image" --start \
    >"$out.log" 2>&1 || { tail -n 20 "$out.log" >&2; die "runnerx node $name did not start"; }
  grep -m1 "^node $name answers" "$out.log" | while read -r line; do log "$line"; done
  # The printed entry names /etc/runnerx/nodes/NAME (where an operator copies runner/).
  awk '/^\[\[nodes\]\]$/ {on = 1} on && /^$/ {exit} on' "$out.log" \
    | sed "s|/etc/runnerx/nodes/$name/|$out/runner/|" >>"$nodes_toml"
  echo >>"$nodes_toml"
}
log "two BuildKit nodes on loopback (runnerx node --start, mTLS): $amd linux/amd64, $arm linux/arm64"
"$RUNNERX" certs ca --out "$work/nodes-ca" >/dev/null
mkdir -p "$work/nodes"
cp "$base_toml" "$nodes_toml"
echo >>"$nodes_toml"
start_node "$amd" linux/amd64
start_node "$arm" linux/arm64
[[ $(grep -c '^\[\[nodes\]\]' "$nodes_toml") == 2 ]] || die "no [[nodes]] entries in the output of runnerx node"

# --- The runs -----------------------------------------------------------------------
# Other work on the host skews the figures (this project's CPUs are often shared with
# cargo builds, test suites and image builds): every 2 s a sampler notes whether cargo,
# rustc, a test binary (target/*/deps/*) or docker/build-*-image.sh runs; runs that
# overlap such a moment are marked "!".
busy="$work/busy"
: >"$busy"
(
  while :; do
    if pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null || pgrep -f '/target/[^ ]*/deps/|build-[a-z]*-image\.sh' >/dev/null; then
      date +%s >>"$busy"
    fi
    sleep 2
  done
) &
SAMPLER_PID=$!
declare -A wall build marks
seq=0
mkdir -p "$work/logs"
# timed FIGURE SETTINGS ARGS... : one `runnerx local build ARGS` with SETTINGS; records
# its wall time and the build step's own time ("build took N ms" in the job's output).
timed() {
  local fig=$1 cfg=$2 logf t0 t1 ms rc=0
  shift 2
  logf="$work/logs/$fig-$seq.log"
  log "run $round/$runs $fig (load $(cut -d' ' -f1-3 /proc/loadavg))"
  t0=$(date +%s%N)
  RUNNERX_CONFIG="$cfg" "$RUNNERX" local build "$@" >"$logf" 2>&1 || rc=$?
  if ((rc)); then
    tail -n 40 "$logf" >&2
    die "$fig failed (runnerx local exited $rc; its log ends above)"
  fi
  t1=$(date +%s%N)
  ms=$(sed -n 's/.*(build took \([0-9]*\) ms).*/\1/p' "$logf" | tail -n 1)
  [[ -n $ms ]] || { tail -n 40 "$logf" >&2; die "$fig: no 'build took' line in the job's output"; }
  # Where each platform went, as prepare logged it; nodes must have built both.
  if [[ $cfg == "$nodes_toml" ]]; then
    if ! grep -q "linux/amd64 on node $amd" "$logf" || ! grep -q "linux/arm64 on node $arm" "$logf"; then
      grep -i 'node' "$logf" | tail -n 10 >&2
      die "$fig: the platforms did not go to the nodes"
    fi
  elif grep -q ' on node ' "$logf"; then
    die "$fig: a platform went to a node in a run without nodes"
  fi
  sed -n '/^runnerx build report:/,/^[^ ]/p' "$logf" | grep '^  ' | while read -r line; do log "  $line"; done
  if awk -v a="$((t0 / 1000000000))" -v b="$((t1 / 1000000000 + 1))" '$1 >= a && $1 <= b {f = 1} END {exit !f}' "$busy"; then
    marks[$fig]+="! "
    log "  (cargo, rustc, a test binary or an image build ran on this host during this run)"
  else
    marks[$fig]+="- "
  fi
  wall[$fig]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) / 1e9}') "
  build[$fig]+="$(awk -v m="$ms" 'BEGIN {printf "%.1f", m / 1000}') "
  seq=$((seq + 1))
}
hello() { # FIGURE SETTINGS
  timed "$1" "$2" -f ci-templates/examples/hello/.gitlab-ci.yml \
    --var "RUNNERX_IMAGE=$REG/bench/hello" --var "RUNNERX_TAGS=r$seq" \
    --var "RUNNERX_BUILD_ARGS=BASE_IMAGE=$REG/base/busybox:1 WORK=$((work_iters + seq))"
}
go_build() { # FIGURE PROJECT [SETTINGS [again]]: "again" keeps the last main.go
  if [[ ${4:-} != again ]]; then
    cp "$go_example/main.go" "$work/$2/main.go"
    printf '\n// bench-nodes run %s\n' "$seq" >>"$work/$2/main.go"
  fi
  timed "$1" "${3:-$base_toml}" -f "$go_example/.gitlab-ci.yml" --project-dir "$work/$2" \
    --var "RUNNERX_IMAGE=$REG/bench/$2" --var "RUNNERX_TAGS=r$seq" --var "GO_IMAGE=$REG/base/golang:1"
}
for ((round = 1; round <= runs; round++)); do
  hello 1a "$base_toml"
  hello 1b "$nodes_toml"
  go_build 2a go-cross
  go_build 2b go-qemu
  go_build 2c go-cached "$cache_toml"
  go_build 2d go-cached "$cache_toml" again
done

# --- The table ----------------------------------------------------------------------
median() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
declare -A mw mb
host_arch=$(uname -m)
printf 'runnerx bench-nodes: medians of %d runs, seconds (host %s, %s CPUs, %s)\n' \
  "$runs" "$host_arch" "$(nproc)" "$("$RUNNERX" --version)"
printf '%-3s %-62s %6s %6s %7s   %s\n' "" "" wall build "quiet" "every run (wall/build)"
for fig in 1a 1b 2a 2b 2c 2d; do
  case $fig in
    1a) what="hello amd64+arm64, no nodes (docker driver, arm64 under QEMU)" ;;
    1b) what="hello amd64+arm64, 2 BuildKit nodes on this host (mTLS)" ;;
    2a) what="go-cross amd64+arm64, cross-compiled (as written)" ;;
    2b) what="go-cross amd64+arm64, toolchain under QEMU for arm64" ;;
    2c) what="go-cross amd64+arm64, registry cache one commit old" ;;
    2d) what="go-cross amd64+arm64, fresh builder, registry cache warm" ;;
  esac
  read -r -a ws <<<"${wall[$fig]}"
  read -r -a bs <<<"${build[$fig]}"
  read -r -a ms <<<"${marks[$fig]}"
  quiet=()
  for i in "${!ws[@]}"; do [[ ${ms[$i]} == "!" ]] || quiet+=("${ws[$i]}"); done
  mq="-"
  if ((${#quiet[@]})); then mq="$(median "${quiet[@]}")"; fi
  mw[$fig]=$(median "${ws[@]}")
  mb[$fig]=$(median "${bs[@]}")
  all=""
  for i in "${!ws[@]}"; do all+="${ws[$i]}/${bs[$i]}${ms[$i]#-}  "; done
  printf '%-3s %-62s %6s %6s %7s   %s\n' "$fig" "$what" "${mw[$fig]}" "${mb[$fig]}" "$mq" "${all%  }"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
printf 'ratios: 1b/1a wall %s, build %s; 2b/2a wall %s, build %s; 2d/2c build %s (target <= 0.30)\n' \
  "$(ratio "${mw[1b]}" "${mw[1a]}")" "$(ratio "${mb[1b]}" "${mb[1a]}")" \
  "$(ratio "${mw[2b]}" "${mw[2a]}")" "$(ratio "${mb[2b]}" "${mb[2a]}")" \
  "$(ratio "${mb[2d]}" "${mb[2c]}")"
echo "wall: \`runnerx local build\` end to end (fresh builder, copy, build + push, index check, cleanup)"
echo "quiet: median wall time of the runs not marked !; ! = cargo, rustc, a test binary or an image build ran meanwhile"
echo "build: the template's \`docker buildx build --push\` alone (its 'build took' line)"
echo "1b: both nodes run on this $host_arch host, so the node of the other architecture emulates it"
echo "    with QEMU too: this is the node path (remote BuildKit over mTLS), not native hardware"
printf '1: WORK=%d+n loop iterations; 2: Go %s (Debian %s), arm64 toolchain image made without running arm64 code\n' \
  "$work_iters" "$goversion" "$gopkg"
echo "every run but 2d misses the cache (WORK+n / a changed main.go); runs interleaved 1a 1b 2a 2b 2c 2d per round"
log "done in $(($(date +%s) - started)) s"
