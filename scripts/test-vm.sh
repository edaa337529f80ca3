#!/usr/bin/env bash
# The VM tier: runnerx on a fresh runner host. Boots a QEMU guest built from Debian
# packages (scripts/vm/build-guest.sh: Debian 12's Linux 6.1, cgroup v2, AppArmor with
# profiles loaded, trixie's docker engine with real --privileged), from a throw-away
# overlay, so nothing an earlier run left can make a test pass. The repository is
# mounted at its own path (the runnerx binary and the integration-test binary built
# here run there), the builder image and the busybox seeds come in over 9p, and
# scripts/vm/guest-tests.sh does the README's host steps and runs the host-dependent
# tests. Prints where the time went.
#
# Usage: scripts/test-vm.sh   (after scripts/setup-host.sh --tests; root)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
t0=$SECONDS
say() { printf '[test-vm +%ss] %s\n' "$((SECONDS - t0))" "$*" >&2; }

guest="$(scripts/vm/build-guest.sh)"
say "guest ready: $guest"

# The binaries the guest runs: runnerx and the integration-test binary.
testbin="$(cargo test --locked --no-run --test integration --message-format=json 2>/dev/null |
  jq -r 'select(.executable != null and .target.name == "integration") | .executable' | tail -n 1)"
[[ -x "$testbin" ]] || { say "could not build the integration-test binary"; exit 1; }
cargo build --locked -q
say "binaries built: $testbin"

# The builder image as a tar, cached by image id (docker save takes ~10 s).
images=/var/cache/runnerx/vm/images
id="$(docker image inspect -f '{{.Id}}' runnerx-builder:local | cut -d: -f2 | cut -c1-12)"
mkdir -p "$images"
if [[ ! -f "$images/builder-$id.tar" ]]; then
  rm -f "$images"/builder-*.tar
  docker save -o "$images/builder-$id.tar.part" runnerx-builder:local
  mv "$images/builder-$id.tar.part" "$images/builder-$id.tar"
fi
ln -sf "builder-$id.tar" "$images/builder.tar"
say "builder image saved ($(du -m "$images/builder-$id.tar" | cut -f1) MB)"

share="$(mktemp -d /var/tmp/runnerx-vm-share.XXXXXX)"
trap 'rm -rf "$share"' EXIT
echo "$testbin" >"$share/testbin"
rc=0
# The guest's 13 tests take 830-940 s after ~100-180 s of set-up here (the guest's
# speed follows the host's load: TCG); 2400 s leaves room for a slower or busier host.
scripts/vm/run-guest.sh --mem 6144 --smp 2 --timeout 2400 \
  --share "$share:/mnt/share" \
  --share "$here:$here" \
  --share "$images:/mnt/images" \
  --share /var/cache/runnerx/busybox:/var/cache/runnerx/busybox \
  -- "$here/scripts/vm/guest-tests.sh" 2>&1 | tee "$share/console.log" || rc=$?
say "where the guest's time went:"
grep -a '^== \[guest' "$share/console.log" >&2 || :
grep -a 'timings:' "$share/console.log" >&2 || :
say "VM tier finished with exit code $rc"
exit "$rc"
