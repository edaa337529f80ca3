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

phase "load the builder image"
docker load -q -i /mnt/images/builder.tar
docker image inspect runnerx-builder:local >/dev/null

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
# A filter that matches no test would pass silently: each must name at least one.
for t in "${tests[@]}"; do
  listed="$("$testbin" --list "$t" 2>/dev/null)"
  grep -q ': test$' <<<"$listed" || fail "no integration test matches $t"
done
# Two at a time, for the guest's two CPUs (multi-threaded TCG: one host thread each).
"$testbin" --test-threads=2 "${tests[@]}" ||
  fail "integration tests failed in the guest"

phase "nothing of any job is left"
[[ -z "$(docker ps -aq --filter label=runnerx.job)" ]] || { docker ps -a; fail "containers left"; }
[[ -z "$(docker volume ls -q --filter label=runnerx.job)" ]] || fail "volumes left"
phase "done"
