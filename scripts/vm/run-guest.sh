#!/usr/bin/env bash
# Runs one command as root in a fresh "runner host" QEMU guest (scripts/vm/build-guest.sh,
# built first if its cache directory is missing): Linux 6.1, cgroup v2, AppArmor with
# profiles loaded, containerd + dockerd running. Every run boots a throw-away sparse copy
# of the cached root.img, so nothing survives between runs except what the command
# writes into a share.
#
# Usage: scripts/vm/run-guest.sh [--mem MiB] [--smp N] [--timeout SECONDS]
#                                [--share HOSTDIR:GUESTDIR]... -- COMMAND [ARG]...
#   --share    a host directory mounted read-write (9p, virtio) at GUESTDIR in the guest,
#              which may be the same path; repeatable; the command runs in the first
#              share's GUESTDIR (else /root). Host dirs are created when missing.
#   --mem      guest memory in MiB (default 6144; TCG allocates it lazily)
#   --smp      guest CPUs (default 2: multi-threaded TCG, see scripts/vm/README.md)
#   --timeout  seconds for the whole run, boot included (default 1800)
# The serial console (kernel, init, the command's stdout+stderr) streams to stdout; the
# phase timings (boot to docker ready, command, total) go to stderr at the end.
# Exit status: the command's; 124 when the run timed out, 125 when the guest never
# reported one (crash, init failure) — with one line saying which, and the logs (console,
# dockerd, containerd) kept in a directory it names. Acceleration is TCG only: where
# /dev/kvm is a nested-virtualization module, KVM guests hang or crawl.
# Env: RUNNERX_VM_CACHE (guest cache root), RUNNERX_DEBIAN_MIRROR (for the build).
set -euo pipefail

mem=6144
smp=2
timeout=1800
shares=()
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/vm/vm-lib.sh
. "$here/vm-lib.sh"

usage() { sed -n '8,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case "$1" in
    --mem) mem="${2:?--mem needs MiB}"; shift 2 ;;
    --smp) smp="${2:?--smp needs a count}"; shift 2 ;;
    --timeout) timeout="${2:?--timeout needs seconds}"; shift 2 ;;
    --share) shares+=("${2:?--share needs HOSTDIR:GUESTDIR}"); shift 2 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) log "unknown argument $1"; usage ;;
  esac
done
(($#)) || { log "no command after --"; usage; }
[[ "$mem$smp$timeout" =~ ^[0-9]+$ ]] || { log "--mem, --smp and --timeout take numbers"; exit 2; }

dir="$("$here/build-guest.sh")"
need_packages qemu-system-x86

tmp="$(mktemp -d /var/tmp/runnerx-vm.XXXXXX)"
qpid=""
trap '[[ -n "$qpid" ]] && kill "$qpid" 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ctl="$tmp/ctl"
mkdir -p "$ctl"

# Share 0 is this script's control directory: the command script goes in, exit-code and
# (on failure) the daemons' logs come out; the user's shares stay clean.
guest_ctl=/run/runnerx-ctl
virtfs=(-virtfs "local,path=$ctl,mount_tag=sh0,security_model=none,multidevs=remap")
share_param="sh0:$guest_ctl"
cwd=""
n=0
for s in "${shares[@]}"; do
  n=$((n + 1))
  host="${s%%:*}" guest="${s#*:}"
  [[ "$s" == *:* && -n "$host" && "$guest" == /* ]] || { log "--share $s: want HOSTDIR:/GUESTDIR"; exit 2; }
  [[ "$s" != *[,[:space:]]* ]] || { log "--share $s: no commas or spaces in paths"; exit 2; }
  mkdir -p "$host"
  virtfs+=(-virtfs "local,path=$(cd "$host" && pwd),mount_tag=sh$n,security_model=none,multidevs=remap")
  share_param+=",sh$n:$guest"
  [[ -n "$cwd" ]] || cwd="$guest"
done
{ echo '#!/bin/bash'; printf 'exec'; printf ' %q' "$@"; echo; } >"$ctl/cmd"
chmod 0755 "$ctl/cmd"

# A fresh sparse copy per run (~1-3 s): nothing a run writes survives it.
cp --sparse=always "$dir/root.img" "$tmp/root.img"
append="console=ttyS0 panic=-1 quiet random.trust_cpu=on runnerx.shares=$share_param runnerx.cmd=$guest_ctl/cmd"
[[ -z "$cwd" ]] || append+=" runnerx.cwd=$cwd"
log "booting $(cat "$dir/kernel-version") (${mem} MiB, $smp CPU, TCG) from $dir"

mkfifo "$tmp/console"
start=$EPOCHREALTIME
timeout -k 10 "$timeout" qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$smp" \
  -kernel "$dir/vmlinuz" -initrd "$dir/initrd.gz" -append "$append" \
  -drive "file=$tmp/root.img,if=virtio,format=raw" \
  -nic user,model=virtio-net-pci "${virtfs[@]}" \
  -nographic -no-reboot </dev/null >"$tmp/console" &
qpid=$!

# The console to stdout (without the serial line's \r) and to console.log; the init's
# `runnerx-guest: <uptime> <event>` lines are timed on arrival.
declare -A at=() uptime_at=()
exec 8>"$ctl/console.log"
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line%$'\r'}"
  printf '%s\n' "$line"
  printf '%s\n' "$line" >&8
  if [[ "$line" =~ ^runnerx-guest:\ ([0-9.]+)\ (docker\ ready|command\ start|command\ exit) ]]; then
    at[${BASH_REMATCH[2]}]=$EPOCHREALTIME
    uptime_at[${BASH_REMATCH[2]}]=${BASH_REMATCH[1]}
  fi
done <"$tmp/console"
exec 8>&-
qrc=0
wait "$qpid" || qrc=$?
qpid=""
end=$EPOCHREALTIME

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
timing=""
if [[ -n "${at[docker ready]:-}" ]]; then
  timing+="boot to docker ready $(secs "$start" "${at[docker ready]}")s (guest uptime ${uptime_at[docker ready]}s), "
fi
if [[ -n "${at[command start]:-}" && -n "${at[command exit]:-}" ]]; then
  # By the guest's clock: the exit line can wait for the command's output to drain.
  timing+="command $(secs "${uptime_at[command start]}" "${uptime_at[command exit]}")s, "
fi
timing+="total $(secs "$start" "$end")s"
log "timings: $timing"

keep_logs() {
  local keep
  keep="$(mktemp -d /var/tmp/runnerx-vm-logs.XXXXXX)"
  cp -a "$ctl"/. "$keep/"
  rm -f "$keep/cmd"
  echo "$keep"
}
if [[ -f "$ctl/exit-code" ]]; then
  rc="$(cat "$ctl/exit-code")"
  ((rc == 0)) || log "guest command exited $rc (logs kept in $(keep_logs))"
  exit "$rc"
fi
if ((qrc == 124 || qrc == 137)); then
  log "guest timed out after ${timeout}s without reporting an exit code (logs kept in $(keep_logs))"
  exit 124
fi
if [[ -f "$ctl/init-error" ]]; then
  log "guest init failed: $(head -n1 "$ctl/init-error") (logs kept in $(keep_logs))"
else
  log "guest stopped without reporting an exit code (QEMU status $qrc; see the console above; logs kept in $(keep_logs))"
fi
exit 125
