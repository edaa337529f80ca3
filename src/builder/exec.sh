#!/bin/bash
# runnerx exec wrapper: every command runnerx runs in a builder goes through here.
#
#   exec.sh run LEN TOKEN   a stage script: LEN bytes on stdin, never written to disk
#   exec.sh job LEN TOKEN   the same for a stage that carries the user's script: in the
#                           job's own container when prepare made one
#                           (/etc/runnerx/job-container), else as run
#   exec.sh kill TOKEN SIG  signal that script's process group
#   exec.sh ready SECS      succeed once the inner dockerd answers (one exec, many polls)
#   exec.sh binfmt NAME...  print "<name> ok|missing|disabled|nof" per QEMU handler
#   exec.sh do CMD...       run CMD as the job user (buildx set-up, cache tidying)
#
# Rootless builders (RUNNERX_UID set): docker exec enters as the builder's root, which
# must never run job code (it can write /proc/sys). The first thing done here is to
# become the unprivileged user for good: no capabilities and no_new_privs, so no file
# capability (newuidmap's) or setuid bit leads back. (Emptying the bounding set would
# need CAP_SETPCAP, which the builder does not get; no_new_privs makes it moot.)
#
# Every stage pays for each process started here: builtins where they do, and one
# chain of execs (no second pass through this script) into the namespace.
set -u
# shellcheck source=/dev/null # written by runnerx into the builder at create time
. /etc/runnerx/boot.env
uid=${RUNNERX_UID:-}
if [ -n "$uid" ] && [ -z "${RUNNERX_IN_NS:-}" ] && [ "$EUID" = 0 ]; then
  user="" gid="" home=""
  while IFS=: read -r name _ id group _ dir _; do
    if [ "$id" = "$uid" ]; then
      user=$name gid=$group home=$dir
      break
    fi
  done </etc/passwd
  export HOME="$home" USER="$user" LOGNAME="$user" XDG_RUNTIME_DIR="/run/user/$uid" \
    DOCKER_HOST="unix:///run/user/$uid/docker.sock"
  # The namespace's pid is readable by the user only: sh reads it after the drop and
  # enters (below, the same for a namespace that appears later).
  # shellcheck disable=SC2016 # expanded by that sh
  exec setpriv --reuid="$uid" --regid="$gid" --init-groups --inh-caps=-all --no-new-privs \
    /bin/sh -c 'if read -r p <"$XDG_RUNTIME_DIR/rootlesskit/child_pid" 2>/dev/null && [ -n "$p" ]; then
        export RUNNERX_IN_NS=1
        exec nsenter -U --preserve-credentials -n -m -t "$p" setpriv --bounding-set=-all --inh-caps=-all "$@"
      fi
      exec "$@"' sh bash "$0" "$@"
fi

# Rootless builders: once the inner daemons' namespace exists, everything runs in its
# user, network and mount namespace, like the daemons: the job reaches its services
# and its own published ports there, never the runner host's loopback (only 10.0.2.2
# with builder.host_loopback). Entering makes the user root of that namespace;
# emptying the bounding set before the next exec leaves it no capability there either.
ns_pid="${XDG_RUNTIME_DIR:-/nonexistent}/rootlesskit/child_pid"
if [ -n "$uid" ] && [ -z "${RUNNERX_IN_NS:-}" ] && [ -s "$ns_pid" ]; then
  read -r p <"$ns_pid"
  export RUNNERX_IN_NS=1
  exec nsenter -U --preserve-credentials -n -m -t "$p" \
    setpriv --bounding-set=-all --inh-caps=-all bash "$0" "$@"
fi

# Privileged builders: everything runs in the inner daemons' network and mount
# namespace (its published ports on localhost, its view of /etc/hosts), as root.
if [ -z "$uid" ] && [ -z "${RUNNERX_IN_NS:-}" ] && [ -s /run/runnerx/ns.pid ]; then
  read -r p </run/runnerx/ns.pid
  export RUNNERX_IN_NS=1
  exec nsenter -t "$p" -n -m bash "$0" "$@"
fi

# binfmt_misc as the inner dockerd sees it: the namespace's own instance when rootless.
in_namespace() {
  if [ -n "$uid" ] && [ -z "${RUNNERX_IN_NS:-}" ]; then
    nsenter -U --preserve-credentials -m -t "$(cat "$XDG_RUNTIME_DIR/rootlesskit/child_pid")" "$@"
  else
    "$@"
  fi
}

# OOM kills in the builder's memory cgroup so far (cgroup v1 or v2), into $ooms
# (builtins only: this runs twice per stage), and its limit.
count_oom_kills() {
  local f k v
  ooms=""
  for f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do
    [ -r "$f" ] || continue
    while read -r k v; do
      if [ "$k" = oom_kill ]; then
        ooms=$v
        return
      fi
    done <"$f"
  done
}
memory_limit_mib() {
  l=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null | head -n1)
  case "$l" in "" | max | 9223372036854*) echo "no" ;; *) echo "$((l / 1048576)) MiB" ;; esac
}

# Pid files of stage scripts (cancellation): in the user's runtime directory when
# rootless (the namespace's /run is its own; the runtime directory is shared).
piddir=/run/runnerx
[ -n "$uid" ] && piddir="$XDG_RUNTIME_DIR/runnerx"

cmd=${1:-}
shift || :
case "$cmd" in
run | job)
  len=$1 token=$2
  ctr=""
  if [ "$cmd" = job ] && [ -r /etc/runnerx/job-container ]; then
    read -r ctr </etc/runnerx/job-container
  fi
  mkdir -p "$piddir"
  pidf=$piddir/$token.pid
  # Proxy variables for job scripts.
  if [ -r /etc/runnerx/job.env ]; then
    set -a
    # shellcheck source=/dev/null # written by runnerx into the builder at create time
    . /etc/runnerx/job.env
    set +a
  fi
  # runnerx's docker first (a plain pull fetches every platform of builder.platforms).
  export PATH="/etc/runnerx/bin:${PATH:-/usr/local/bin:/usr/bin:/bin}"
  # The script is read through a pipe: stdin EOF is not needed (docker exec cannot
  # half-close it reliably) and no copy lands on the filesystem (it holds the job
  # token). Job control (set -m) gives it its own process group for cancellation,
  # without a setsid process.
  exec 3< <(head -c "$len")
  count_oom_kills
  before=$ooms
  set -m
  if [ -n "$ctr" ]; then
    # As gitlab-runner's docker executor: the container starts again with the script
    # on its stdin (its entrypoint, then the detected shell); its exit code is the
    # script's, and signals to this process group reach it (docker start -a proxies).
    docker start --attach --interactive "$ctr" <&3 &
  else
    bash /dev/fd/3 </dev/null &
  fi
  pid=$!
  echo "$pid" >"$pidf"
  wait "$pid"
  rc=$?
  # Emptied, not removed (no rm process): kill treats an empty file as gone.
  : >"$pidf"
  count_oom_kills
  if [ "$ooms" != "$before" ]; then
    echo "runnerx: the job ran out of memory: the builder's limit ($(memory_limit_mib), builder.memory) was reached and the kernel killed a process" >&2
  fi
  exit "$rc"
  ;;
kill)
  token=$1 sig=$2
  for _ in $(seq 1 20); do
    if [ -s "$piddir/$token.pid" ]; then
      kill "-$sig" -- "-$(cat "$piddir/$token.pid")" 2>/dev/null
      exit 0
    fi
    sleep 0.05
  done
  exit 1
  ;;
ready)
  polls=$(($1 * 10))
  for _ in $(seq 1 "$polls"); do
    docker version >/dev/null 2>&1 && exit 0
    sleep 0.1
  done
  exit 1
  ;;
binfmt)
  # shellcheck disable=SC2016 # expanded by the inner sh
  in_namespace sh -c '
    d=/proc/sys/fs/binfmt_misc
    [ -e $d/status ] || mount -t binfmt_misc binfmt_misc $d 2>/dev/null
    for a in "$@"; do f=$d/qemu-$a
      if [ ! -r "$f" ]; then echo "$a missing"
      elif ! grep -q "^enabled" "$f"; then echo "$a disabled"
      elif ! grep -q "^flags:.*F" "$f"; then echo "$a nof"
      else echo "$a ok"; fi
    done' binfmt "$@"
  ;;
do)
  exec "$@"
  ;;
*)
  echo "runnerx exec.sh: unknown command ${cmd:-(none)}" >&2
  exit 2
  ;;
esac
