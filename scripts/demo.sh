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

work="$(mktemp -d /tmp/runnerx-demo.XXXXXX)"
reg_pid=""
trap '[ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
REG="registry.test:$port"

say "certificates (runnerx certs)"
"$RUNNERX" certs ca --out "$work/pki/ca" --cn "runnerx demo CA"
"$RUNNERX" certs server --ca "$work/pki/ca" --name registry.test --name 127.0.0.1 --out "$work/pki/registry"

say "TLS registry with a password on $REG"
export REGISTRY_PASSWORD="demo-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
htpasswd -Bbn ci "$REGISTRY_PASSWORD" >"$work/htpasswd"
cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/data}}
http:
  addr: 127.0.0.1:$port
  secret: demo
  tls: {certificate: $work/pki/registry/server.crt, key: $work/pki/registry/server.key}
auth:
  htpasswd: {realm: demo, path: $work/htpasswd}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

cat >"$work/runnerx.toml" <<TOML
[builder]
image = "runnerx-builder:local"
pull_policy = "never"
extra_hosts = ["registry.test:127.0.0.1"]
platforms = ["linux/amd64", "linux/arm64"]

[[registries]]
host = "$REG"
ca_file = "$work/pki/ca/ca.crt"
username = "ci"
password_env = "REGISTRY_PASSWORD"
check_repository = "demo/hello"
TOML
export RUNNERX_CONFIG="$work/runnerx.toml"

say "runnerx doctor"
"$RUNNERX" doctor

say "seed a multi-arch base image (per-arch tags from static busybox)"
mkdir -p "$work/seed"
cp scripts/seed-base/.gitlab-ci.yml "$work/seed/"
for arch in amd64 arm64; do
  dpkg-deb -x /var/cache/runnerx/busybox/busybox-static_*_"$arch".deb "$work/x-$arch"
  cp "$work/x-$arch/bin/busybox" "$work/seed/busybox-$arch"
done
"$RUNNERX" local seed -f "$work/seed/.gitlab-ci.yml" --var "REGISTRY=$REG"
"$RUNNERX" manifest create "$REG/base/busybox:1" "$REG/base/busybox:1-amd64" "$REG/base/busybox:1-arm64"

say "build the example project for linux/amd64 + linux/arm64 (runnerx local, CI template)"
"$RUNNERX" local build -f ci-templates/examples/hello/.gitlab-ci.yml \
  --var "RUNNERX_IMAGE=$REG/demo/hello" --var "BASE_IMAGE=$REG/base/busybox:1" --var "RUNNERX_TAGS=1.0"

say "the pushed index"
"$RUNNERX" manifest inspect "$REG/demo/hello:1.0"

say "run it per platform in a builder"
"$RUNNERX" prepare --job-id "demo-$port" >/dev/null
printf 'for p in linux/amd64 linux/arm64; do echo "$p: $(docker run --rm --platform $p %s/demo/hello:1.0)"; done\n' "$REG" >"$work/run.sh"
"$RUNNERX" run --job-id "demo-$port" "$work/run.sh" build_script
"$RUNNERX" cleanup --job-id "demo-$port" 2>/dev/null
say "demo passed"
