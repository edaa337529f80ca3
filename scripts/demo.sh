#!/usr/bin/env bash
# The demo: sets the machine up, builds runnerx, and runs one GitLab-style job through
# it exactly as gitlab-runner's custom executor would (config → prepare → run per
# stage → cleanup, with gitlab-runner's env and bash script shape). The job builds an
# image inside its own DinD builder and runs it on the builder's own bridge.
# (The multi-arch build into a TLS registry arrives with `runnerx local`, issue 4.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup-host.sh"
cd "$here"
cargo build --release --locked -q
RUNNERX="$here/target/release/runnerx"

tmp="$(mktemp -d /tmp/custom-executor.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
job_id=$(( $(date +%s) % 100000000 ))
cat >"$tmp/runnerx.toml" <<TOML
[builder]
image = "runnerx-builder:local"
pull_policy = "never"
TOML
printf '{"id": %s, "token": "demo-token"}' "$job_id" >"$tmp/response.json"
export TMPDIR="$tmp" RUNNERX_CONFIG="$tmp/runnerx.toml" \
  BUILD_FAILURE_EXIT_CODE=1 SYSTEM_FAILURE_EXIT_CODE=2 \
  BUILD_EXIT_CODE_FILE="$tmp/build_exit_code" JOB_RESPONSE_FILE="$tmp/response.json" \
  CUSTOM_ENV_CI_JOB_ID="$job_id" CUSTOM_ENV_CI_PROJECT_DIR=/builds/demo/app

# A stage script in gitlab-runner's bash shape (shells/bash.go).
stage() {
  local name=$1 body=$2 dir="$tmp/script$RANDOM"
  mkdir -p "$dir"
  {
    printf '#!/usr/bin/env bash\n\ntrap exit 1 TERM\n\n'
    printf 'if set -o | grep pipefail > /dev/null; then set -o pipefail; fi; set -o errexit\nset +o noclobber\n'
    printf '( trap %q TERM; eval %q ) < /dev/null\nexit 0\n' 'exit 1' \
      "mkdir -p /builds/demo/app && cd /builds/demo/app
$(while IFS= read -r line; do [[ -n "$line" ]] && printf 'echo %q\n%s\n' "\$ $line" "$line"; done <<<"$body")"
  } >"$dir/script"
  chmod 700 "$dir/script"
  printf '\n\033[1;36m== run %s\033[0m\n' "$name"
  "$RUNNERX" run "$dir/script" "$name"
}

cleanup() { printf '\n\033[1;36m== cleanup\033[0m\n'; "$RUNNERX" cleanup; rm -rf "$tmp"; }
trap cleanup EXIT

printf '\033[1;36m== config\033[0m\n'; "$RUNNERX" config
printf '\n\033[1;36m== prepare\033[0m\n'; "$RUNNERX" prepare
stage prepare_script 'echo "Running on $(hostname) with $(docker version --format "docker {{.Server.Version}}")"'
stage get_sources 'git init -q . && git --version'
stage build_script '
cp /bin/busybox . && printf "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\"]\n" > Dockerfile
docker build -q -t demo/hello:1 .
docker run --rm demo/hello:1 uname -m
docker run --rm demo/hello:1 ip -4 -o addr show eth0'
stage after_script 'docker image ls demo/hello'
echo; echo "demo job $job_id passed"
