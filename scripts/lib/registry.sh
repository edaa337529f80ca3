# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/bench.sh: a local TLS registry with a password
# (the Harbor stand-in) and a seeded multi-arch base image.
#   start_registry WORKDIR  -> sets REG (registry.test:<port>), REG_PID, RUNNERX_CONFIG
#   seed_base               -> pushes $REG/base/busybox:1 (amd64 + arm64 index)
# Needs RUNNERX (the binary), here (the repository) and scripts/setup-host.sh to have run.
# shellcheck disable=SC2034,SC2154 # REG_PID is the caller's; here is set by the caller

start_registry() {
  local work=$1 port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  REG="registry.test:$port"
  "$RUNNERX" certs ca --out "$work/pki/ca" --cn "runnerx local CA" >/dev/null
  "$RUNNERX" certs server --ca "$work/pki/ca" --name registry.test --name 127.0.0.1 --out "$work/pki/registry" >/dev/null
  REGISTRY_PASSWORD="local-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export REGISTRY_PASSWORD
  htpasswd -Bbn ci "$REGISTRY_PASSWORD" >"$work/htpasswd"
  cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/data}}
http:
  addr: 127.0.0.1:$port
  secret: local
  tls: {certificate: $work/pki/registry/server.crt, key: $work/pki/registry/server.key}
auth:
  htpasswd: {realm: local, path: $work/htpasswd}
YAML
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  REG_PID=$!
  local up=""
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  if [[ -z "$up" ]]; then
    tail -n 20 "$work/registry.log" >&2
    echo "the local registry did not answer on port $port (log tail above)" >&2
    return 1
  fi
  cat >"$work/runnerx.toml" <<TOML
[builder]
image = "runnerx-builder:local"
pull_policy = "never"
# The demo registry listens on the host's loopback: let rootless builders reach it.
host_loopback = true
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
}

seed_base() {
  local seed="$work/seed"
  mkdir -p "$seed"
  cp "$here/scripts/seed-base/.gitlab-ci.yml" "$seed/"
  for arch in amd64 arm64; do
    dpkg-deb -x /var/cache/runnerx/busybox/busybox-static_*_"$arch".deb "$work/x-$arch"
    cp "$work/x-$arch/bin/busybox" "$seed/busybox-$arch"
  done
  "$RUNNERX" local seed -f "$seed/.gitlab-ci.yml" --var "REGISTRY=$REG"
  "$RUNNERX" manifest create "$REG/base/busybox:1" "$REG/base/busybox:1-amd64" "$REG/base/busybox:1-arm64"
}
