#!/usr/bin/env bash
# The benchmark: sets the machine up, starts a local TLS registry with a seeded
# multi-arch base image (as the demo does), and runs `runnerx bench` (release build),
# which prints medians and the targets they meet or miss. Extra args go to the bench.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup-host.sh"
cd "$here"
cargo build --release --locked -q
RUNNERX="$here/target/release/runnerx"
# shellcheck source=lib/registry.sh
# shellcheck source=lib/registry.sh
. "$here/scripts/lib/registry.sh"
work="$(mktemp -d /tmp/runnerx-bench.XXXXXX)"
REG_PID=""
trap '[ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$work"' EXIT
start_registry "$work"
# The egress policy builders run under by default (README: Runner hosts).
"$RUNNERX" host network >/dev/null
seed_base >/dev/null 2>&1
# The registry build cache for the bench's fresh-builder figures (the [[registries]]
# block is the settings file's last).
echo 'cache_repository = "demo/cache"' >>"$RUNNERX_CONFIG"
# A signing key: every example push is signed and attested (the signing figure).
"$RUNNERX" certs signing-key --out "$work/signing" >/dev/null
echo "signing_key_file = \"$work/signing/cosign.key\"" >>"$RUNNERX_CONFIG"
"$RUNNERX" bench --base-image "$REG/base/busybox:1" --push-to "$REG/demo/hello" "$@"
