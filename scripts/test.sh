#!/usr/bin/env bash
# The test command: sets the machine up (packages, Docker engine, builder and BuildKit
# images, the VM guest), runs every test against the real engine, then the VM tier
# (scripts/test-vm.sh: a fresh runner-host guest). Extra arguments go to `cargo test`.
# RUNNERX_SKIP_VM=1 skips the VM tier (for a quick local rerun; CI never sets it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup-host.sh" --tests
cd "$here"
start=$SECONDS
cargo test --locked "$@"
echo "== host tests took $((SECONDS - start))s" >&2
if [[ "${RUNNERX_SKIP_VM:-}" == 1 ]]; then
  echo "== VM tier SKIPPED (RUNNERX_SKIP_VM=1): not a full run" >&2
  exit 0
fi
start=$SECONDS
scripts/test-vm.sh
echo "== VM tier took $((SECONDS - start))s" >&2
