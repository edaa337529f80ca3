#!/usr/bin/env bash
# The demo: a real multi-arch build through runnerx into a local TLS registry.
#   1. set the machine up (Docker engine, builder image, static busybox debs);
#   2. make a CA and a registry certificate with `runnerx certs`, start a TLS registry
#      with a password (Debian's docker-registry) as the Harbor stand-in;
#   3. `runnerx doctor` against it;
#   4. seed a multi-arch base image: per-arch tags pushed by a job (`runnerx local`),
#      joined with `runnerx manifest create`;
#   5. build the example project (ci-templates/examples/hello) for linux/amd64 and
#      linux/arm64 through the CI template with `runnerx local`, push it, and
#   6. list the pushed index and run the image for both platforms (arm64 under QEMU).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup-host.sh"
cd "$here"
cargo build --release --locked -q
RUNNERX="$here/target/release/runnerx"
say() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

# shellcheck source=lib/registry.sh
# shellcheck source=lib/registry.sh
. "$here/scripts/lib/registry.sh"
work="$(mktemp -d /tmp/runnerx-demo.XXXXXX)"
REG_PID=""
trap '[ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$work"' EXIT

say "certificates (runnerx certs) and a TLS registry with a password"
start_registry "$work"
echo "registry $REG; CA and certificate made by runnerx certs in $work/pki"

say "the runner-host steps this host needs (README: Runner hosts)"
if docker info --format '{{json .SecurityOptions}}' | grep -q name=apparmor; then
  "$RUNNERX" host apparmor
else
  echo "the engine enforces no AppArmor: no profile needed"
fi
release="$(uname -r)"
if [[ "$(printf '%s\n6.7\n' "${release%%-*}" | sort -V | head -n1)" != 6.7 ]]; then
  "$RUNNERX" host binfmt
else
  echo "Linux $release (>= 6.7): each rootless builder registers its own QEMU handlers"
fi
# The egress policy (network.egress = "policy", the default): jobs reach what the
# settings name, never this host's own addresses or link-local ones.
"$RUNNERX" host network

say "runnerx doctor"
"$RUNNERX" doctor

say "seed a multi-arch base image (per-arch tags from static busybox, runnerx manifest create)"
seed_base

say "build the example project for linux/amd64 + linux/arm64 (runnerx local, CI template)"
"$RUNNERX" local build -f ci-templates/examples/hello/.gitlab-ci.yml \
  --var "RUNNERX_IMAGE=$REG/demo/hello" --var "BASE_IMAGE=$REG/base/busybox:1" --var "RUNNERX_TAGS=1.0"

say "the pushed index"
"$RUNNERX" manifest inspect "$REG/demo/hello:1.0"

say "run it per platform in a builder"
"$RUNNERX" prepare --job-id "demo-$REG_PID" >/dev/null
# shellcheck disable=SC2016 # expanded in the builder
printf 'for p in linux/amd64 linux/arm64; do echo "$p: $(docker run --rm --platform $p %s/demo/hello:1.0)"; done\n' "$REG" >"$work/run.sh"
"$RUNNERX" run --job-id "demo-$REG_PID" "$work/run.sh" build_script
"$RUNNERX" cleanup --job-id "demo-$REG_PID" 2>/dev/null
say "demo passed"
