#!/usr/bin/env bash
# The VM tier's guest side: runs as root in a fresh runner-host guest (Debian's Linux
# 6.1, cgroup v2, AppArmor enforced, trixie's docker engine with real --privileged),
# started by scripts/test-vm.sh with the repository mounted at its host path.
#   1. what a new runner host does before its host steps: prepare fails with one
#      line naming `runnerx host apparmor`, then `runnerx host network` (the egress
#      policy is the default), then (Linux < 6.7) `runnerx host binfmt`;
#   2. the README's host steps, checked (idempotent, profile enforced, policy loaded,
#      handlers with F);
#   3. the integration tests that depend on the host, from the same test binary the
#      development host ran: AppArmor confinement and the profile, a rootless
#      multi-arch build and push to a TLS registry with an arm64 run, the escape
#      probes, the host state identical around a busy rootless and a busy privileged
#      (real --privileged) job, services, a kept cache, memory limits on cgroup v2;
#      every test ends with cleanup, and nothing of any job may be left.
# Prints "== [guest +Ns] phase" lines, which scripts/test-vm.sh sums up.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
share=/mnt/share
t0=$SECONDS
phase() { echo "== [guest +$((SECONDS - t0))s] $*"; }
fail() { echo "VM TIER FAILED: $*"; exit 1; }
RUNNERX="$repo/target/debug/runnerx"
testbin="$(cat "$share/testbin")"
export SYSTEM_FAILURE_EXIT_CODE=2 BUILD_FAILURE_EXIT_CODE=1

phase "the host: $(uname -r), $(stat -fc %T /sys/fs/cgroup), lsm $(cat /sys/kernel/security/lsm), docker $(docker version --format '{{.Server.Version}}')"
[[ "$(stat -fc %T /sys/fs/cgroup)" == cgroup2fs ]] || fail "the guest is not on cgroup v2"
grep -q apparmor /sys/kernel/security/lsm || fail "AppArmor is not an active LSM in the guest"
docker info --format '{{json .SecurityOptions}}' | grep -q name=apparmor || fail "the guest's engine does not enforce AppArmor"

# The host steps and their failures before them need no builder image (prepare
# fails before it looks at one): loading it (~2 min here) overlaps them.
phase "load the builder image (in the background, during the host steps)"
docker load -q -i /mnt/images/builder.tar >/tmp/builder-load.log 2>&1 &
loading=$!

mkdir -p /etc/runnerx
printf '[builder]\nimage = "runnerx-builder:local"\npull_policy = "never"\n' >/etc/runnerx/runnerx.toml

# prepare_fails JOB TEXT: a manual prepare exits 2 (system failure) with TEXT in its
# last line, and cleanup leaves nothing of the job.
prepare_fails() {
  local out rc=0
  out="$("$RUNNERX" prepare --job-id "$1" 2>&1)" || rc=$?
  echo "$out" | tail -n 3
  [[ $rc -eq 2 ]] || fail "prepare $1 exited $rc, not 2"
  echo "$out" | tail -n 1 | grep -qF "$2" || fail "prepare $1 did not name: $2"
  "$RUNNERX" cleanup --job-id "$1" >/dev/null 2>&1 || :
  [[ -z "$(docker ps -aq --filter "label=runnerx.job=$1")" ]] || fail "job $1 left a container"
}

phase "before the host steps: no AppArmor profile"
prepare_fails vm-apparmor "runnerx host apparmor"
"$RUNNERX" doctor 2>&1 | grep -F apparmor || :

phase "runnerx host apparmor (twice: idempotent)"
"$RUNNERX" host apparmor
"$RUNNERX" host apparmor
grep -qx 'runnerx-builder (enforce)' /sys/kernel/security/apparmor/profiles || fail "runnerx-builder is not enforced"
[[ -f /etc/apparmor.d/runnerx-builder ]] || fail "the profile is not kept in /etc/apparmor.d"

phase "before runnerx host network: the egress policy is the default"
prepare_fails vm-network "runnerx host network"

phase "runnerx host network (twice: idempotent)"
"$RUNNERX" host network
"$RUNNERX" host network
nft list table inet runnerx >/dev/null || fail "the egress policy's table is not loaded"

phase "Linux < 6.7 before runnerx host binfmt: multi-arch needs the host's handlers"
prepare_fails vm-binfmt "runnerx host binfmt"

phase "runnerx host binfmt (twice: idempotent)"
"$RUNNERX" host binfmt
"$RUNNERX" host binfmt
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || fail "qemu-aarch64 is not registered with F"
"$RUNNERX" doctor 2>&1 | grep -E 'apparmor|binfmt|isolation' || :

phase "the builder image is loaded"
wait "$loading" || { cat /tmp/builder-load.log; fail "docker load of the builder image failed"; }
docker image inspect runnerx-builder:local >/dev/null

phase "integration tests on this host"
tests=(
  hosts::
  network::
  isolation::hostile_job_cannot_change_the_host
  isolation::busy_
  pipelines::services_are_reachable_by_alias_and_a_silent_one_is_reported_with_its_log
  cache::second_job_of_a_project_reuses_layers_and_gc_prunes_old_caches
  faults::job_over_the_memory_limit_is_a_build_failure_naming_the_limit
)
# A filter that matches no test would pass silently: each must name at least one
# (libtest filters by substring; one listing, as each start of the binary costs ~10 s
# here).
listed="$("$testbin" --list 2>/dev/null | sed -n 's/: test$//p')"
for t in "${tests[@]}"; do
  grep -qF -- "$t" <<<"$listed" || fail "no integration test matches $t"
done
# Each line of libtest's output gets the guest's clock, and each job's wait for the
# egress policy is written to a timeline: where the tier's time goes.
export RUNNERX_TEST_TIMELINE=/tmp/runnerx-policy-timeline
rm -f "$RUNNERX_TEST_TIMELINE"
run_tests() {
  "$testbin" "$@" 2>&1 | while IFS= read -r line; do echo "[+$((SECONDS - t0))s] $line"; done
}
# The egress test loads and removes the policy itself, so no other job may run
# meanwhile: alone first (it runs its own two jobs at once), then the rest two at a
# time, for the guest's two CPUs (multi-threaded TCG: one host thread each).
egress=network::the_egress_policy_keeps_jobs_from_the_host_and_link_local_but_not_from_what_is_named
grep -qxF -- "$egress" <<<"$listed" || fail "no integration test is named $egress"
run_tests --exact "$egress" || fail "integration tests failed in the guest"
run_tests --test-threads=2 --skip "$egress" "${tests[@]}" ||
  fail "integration tests failed in the guest"
echo "-- the egress policy's timeline (seconds since the first lease):"
cat "$RUNNERX_TEST_TIMELINE" 2>/dev/null || echo "(no job took a lease)"

phase "nothing of any job is left"
[[ -z "$(docker ps -aq --filter label=runnerx.job)" ]] || { docker ps -a; fail "containers left"; }
[[ -z "$(docker volume ls -q --filter label=runnerx.job)" ]] || fail "volumes left"
phase "done"
