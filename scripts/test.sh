#!/usr/bin/env bash
# The test command: sets the machine up (packages, Docker engine, builder image) and
# runs every test against the real engine. Extra arguments go to `cargo test`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup-host.sh" --tests
cd "$here"
exec cargo test --locked "$@"
