#!/usr/bin/env bash
# The fast tier: unit tests (pure specs, settings, snapshots, parsers) and the
# integration tests that need no Docker engine (protocol output, settings errors,
# templates, docs citations, import cycles). Needs only cargo; no set-up, no root.
# scripts/test.sh runs everything, against the real engine.
set -euo pipefail
cd "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo test --locked --lib "$@"
cargo test --locked --test integration -- protocol:: templates:: docs:: structure:: "$@"
