#!/bin/bash
# runnerx: the `docker` that job scripts find first on their PATH (/etc/runnerx/bin).
# Everything goes to the real docker CLI unchanged, except a plain `docker pull IMAGE`:
# with the containerd image store it fetches only this machine's platform, and a later
# `docker tag` + `docker push` of a multi-platform image then fails ("not all of them
# are available locally"). So the pull is followed by one pull per platform of
# builder.platforms; an image without such a platform just keeps the ones it has.
# `docker build` / `docker buildx build` run unchanged too, their progress (stderr)
# also copied to a temporary file: at the end comes a build report per platform —
# where it was built (runnerx writes /etc/runnerx/placement at prepare), its steps'
# time and cache hits — and, when a step crashed under QEMU, one line naming the fix.
set -u
here=/etc/runnerx/bin
real=""
IFS=: read -r -a dirs <<<"${PATH:-/usr/local/bin:/usr/bin:/bin}"
for d in "${dirs[@]}"; do
  if [ "$d" != "$here" ] && [ -x "$d/docker" ]; then
    real="$d/docker"
    break
  fi
done
if [ -z "$real" ]; then
  echo "docker: command not found" >&2
  exit 127
fi
# The report of a finished build whose plain progress is in $1; $2: its exit code.
report() {
  local log=$1 code=$2
  awk -v placement=/etc/runnerx/placement '
    BEGIN {
      while ((getline line < placement) > 0) {
        split(line, f, " "); p = f[1]; sub(/^[^ ]+ /, "", line); where[p] = line
      }
    }
    /^#[0-9]+ \[linux\// {
      id = $1; plat = substr($2, 2)
      if (!(id in step)) { step[id] = plat; seen[plat] = 1; steps[plat]++ }
      next
    }
    # A node building one platform names its steps without the platform.
    /^#[0-9]+ \[[^]]*[0-9]+\/[0-9]+\]/ && $2 !~ /^\[(internal|auth)/ {
      if (!($1 in step)) { step[$1] = "other"; steps["other"]++ }
      next
    }
    /^#[0-9]+ DONE [0-9.]+s$/ { if ($1 in step) { t = $3; sub(/s$/, "", t); secs[step[$1]] += t } next }
    /^#[0-9]+ CACHED$/ { if ($1 in step) cached[step[$1]]++; next }
    END {
      n = 0
      for (p in seen) n++
      if (n == 0 && !("other" in steps)) exit
      print "runnerx build report:"
      for (p in seen) {
        w = (p in where) ? where[p] : "this builder"
        printf "  %-14s %-40s steps %d, %d cached, %.1fs of step time\n", p, w, steps[p], cached[p] + 0, secs[p] + 0
      }
      if ("other" in steps)
        printf "  %-14s %-40s steps %d, %d cached, %.1fs of step time\n", "(unnamed)", "steps named without their platform", steps["other"], cached["other"] + 0, secs["other"] + 0
    }' "$log" >&2
  if [ "$code" != 0 ]; then
    if grep -q 'uncaught target signal' "$log"; then
      echo "runnerx: a step crashed under QEMU emulation (uncaught target signal): build that platform on a native BuildKit node ([[nodes]] in the runner's settings), cross-compile it (FROM --platform=\$BUILDPLATFORM), or pin another emulator (binfmt.image)" >&2
    elif grep -q 'exec format error' "$log"; then
      echo "runnerx: a step ran a binary of another architecture with no emulator (exec format error): check the platform's QEMU handler (runnerx doctor), build it on a native node, or cross-compile it" >&2
    fi
  fi
}

is_build() {
  [ "${1:-}" = build ] || { [ "${1:-}" = buildx ] && [ "${2:-}" = build ]; }
}

if is_build "$@"; then
  log=$(mktemp "${TMPDIR:-/tmp}/runnerx-build.XXXXXX") || exec "$real" "$@"
  # stdout goes straight through (fd 3); stderr (the progress) is copied to $log.
  set -o pipefail
  { "$real" "$@" 2>&1 1>&3 3>&- | tee "$log" 1>&2 3>&-; } 3>&1
  code=$?
  report "$log" "$code"
  rm -f "$log"
  exit "$code"
fi
if [ "${1:-}" != pull ]; then
  exec "$real" "$@"
fi
for a in "${@:2}"; do
  case "$a" in
  --platform | --platform=* | -a | --all-tags) exec "$real" "$@" ;;
  esac
done
"$real" "$@" || exit
platforms=""
if [ -r /etc/runnerx/boot.env ]; then
  # shellcheck source=/dev/null # written by runnerx into the builder at create time
  platforms=$(. /etc/runnerx/boot.env && echo "${RUNNERX_PLATFORMS:-}")
fi
for p in $platforms; do
  "$real" pull -q --platform "$p" "${@:2}" >/dev/null 2>&1 || :
done
exit 0
