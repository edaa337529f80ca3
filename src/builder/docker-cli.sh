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
# A build that names no cache of its own also reads and writes the project's registry
# build cache when runnerx set one up (/etc/runnerx/build-cache.env).
# Every push (`docker push`, `docker buildx build --push`) ends with one
# `runnerx: pushed REPO@DIGEST` line on stderr: runnerx, on the runner host, signs what
# it names after the stage (when the project has a signing key), once the registry
# confirms it with the project's own login.
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
# build-report.awk reads the steps (and what the build reused) and the registry cache.
report() {
  local log=$1 code=$2
  awk -v placement=/etc/runnerx/placement -v ref="$cache_ref" -v def="$cache_default" \
    -f /etc/runnerx/build-report.awk "$log" >&2
  if [ "$code" != 0 ]; then
    if grep -q 'uncaught target signal' "$log"; then
      echo "runnerx: a step crashed under QEMU emulation (uncaught target signal): build that platform on a native BuildKit node ([[nodes]] in the runner's settings), cross-compile it (FROM --platform=\$BUILDPLATFORM), or pin another emulator (binfmt.image)" >&2
    elif grep -q 'exec format error' "$log"; then
      echo "runnerx: a step ran a binary of another architecture with no emulator (exec format error): check the platform's QEMU handler (runnerx doctor), build it on a native node, or cross-compile it" >&2
    fi
  fi
}

# What a build's arguments "$@" (after `build`) say, read once: its Dockerfile,
# target and context (the cache key), whether it names a cache of its own, whether it
# pushes (--push, or an output with push=true), and its own metadata file.
file="" target="" context="" own_cache="" pushes="" own_meta="" plain_push="" outputs=""
scan_build_args() {
  local a prev=""
  for a in "$@"; do
    case "$prev" in
    -f | --file) file=$a ;;
    --target) target=$a ;;
    --metadata-file) own_meta=$a ;;
    --output | -o) case "$a" in *push=true*) pushes=1 ;; esac ;;
    esac
    case "$a" in
    --cache-from | --cache-from=* | --cache-to | --cache-to=*) own_cache=1 ;;
    --push) pushes=1 plain_push=1 ;;
    --output | --output=* | -o | -o=* | --load) outputs=1 ;;
    esac
    case "$a" in
    --output=*push=true* | -o=*push=true*) pushes=1 ;;
    --metadata-file=*) own_meta=${a#--metadata-file=} ;;
    --file=*) file=${a#--file=} ;;
    --target=*) target=${a#--target=} ;;
    -*) ;;
    *) context=$a ;;
    esac
    prev=$a
  done
}

# The registry build cache flags, in the array cache_args, and its refs in cache_ref /
# cache_default; nothing when the job has no cache or the command names its own.
cache_args=()
cache_ref=""
cache_default=""
cache_flags() {
  local env=/etc/runnerx/build-cache.env
  [ -r "$env" ] && [ -z "$own_cache" ] || return 0
  # A job may opt out (its own variable: it only gives up what runnerx adds).
  [ "${RUNNERX_BUILD_CACHE:-}" = off ] && return 0
  # shellcheck source=/dev/null # written by runnerx into the builder at prepare
  . "$env"
  # One cache per Dockerfile, target and context: a project's images never evict
  # each other's.
  local key
  key=$(printf 'file=%s\ntarget=%s\ncontext=%s\n' "${file:-Dockerfile}" "$target" "${context:-.}" | sha256sum | cut -c1-12)
  local base="$RUNNERX_CACHE_REPOSITORY:p$RUNNERX_CACHE_PROJECT"
  cache_ref="$base-$RUNNERX_CACHE_REF-$key"
  cache_args=(--cache-from "type=registry,ref=$cache_ref")
  if [ -n "$RUNNERX_CACHE_DEFAULT" ]; then
    cache_default="$base-$RUNNERX_CACHE_DEFAULT-$key"
    cache_args+=(--cache-from "type=registry,ref=$cache_default")
  fi
  cache_args+=(--cache-to "type=registry,ref=$cache_ref,mode=max,image-manifest=true,oci-mediatypes=true,ignore-error=true")
}

# REF without its tag (the registry's port stays).
repository_of() {
  local ref=${1%@*} last
  last=${ref##*/}
  case "$last" in
  *:*) echo "${ref%:*}" ;;
  *) echo "$ref" ;;
  esac
}

# A pushing build's metadata file, where runnerx reads what it pushed: ours unless
# the command names its own.
meta=""
meta_flags() {
  if [ -z "$own_meta" ] && [ -n "$pushes" ]; then
    meta=$(mktemp "${TMPDIR:-/tmp}/runnerx-meta.XXXXXX") || meta=""
  fi
}

# The pushes of a finished build: its metadata's digest under each name it pushed.
report_pushes() {
  local file=${own_meta:-$meta} digest names name
  [ -n "$pushes" ] && [ -s "$file" ] || return 0
  digest=$(sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$file" | head -n1)
  names=$(sed -n 's/.*"image.name": *"\([^"]*\)".*/\1/p' "$file" | head -n1)
  [ -n "$digest" ] || return 0
  printf '%s\n' "$names" | tr ',' '\n' | while read -r name; do
    [ -n "$name" ] && repository_of "$name"
  done | sort -u | while read -r repo; do
    echo "runnerx: pushed $repo@$digest" >&2
  done
}

is_build() {
  [ "${1:-}" = build ] || { [ "${1:-}" = buildx ] && [ "${2:-}" = build ]; }
}

if is_build "$@"; then
  words=1
  [ "$1" = buildx ] && words=2
  scan_build_args "${@:words+1}"
  cache_flags
  meta_flags
  extra=("${cache_args[@]}")
  [ -n "$meta" ] && extra+=(--metadata-file "$meta")
  args=("${@:words+1}")
  if [ -n "$plain_push" ] && [ -z "$outputs" ]; then
    # A plain --push, as one push: buildx before 0.21 on the docker driver with the
    # containerd image store pushes twice (BuildKit's exporter pushes, then buildx asks
    # dockerd to push the same tag again, which PUTs every platform's manifest under
    # the tag concurrently: against a registry that writes tags non-atomically, such
    # as distribution's filesystem storage under Harbor, that second push fails with
    # HTTP 500 "invalid checksum digest format" now and then, and can leave the tag on
    # one platform). An image output whose push is given empty is a push to BuildKit
    # and not to buildx's second push (it checks for a non-empty value).
    for i in "${!args[@]}"; do
      [ "${args[$i]}" = --push ] && args[i]="--output=type=image,push="
    done
  fi
  set -- "${@:1:words}" "${extra[@]}" "${args[@]}"
  log=$(mktemp "${TMPDIR:-/tmp}/runnerx-build.XXXXXX") || exec "$real" "$@"
  # stdout goes straight through (fd 3); stderr (the progress) is copied to $log.
  set -o pipefail
  { "$real" "$@" 2>&1 1>&3 3>&- | tee "$log" 1>&2 3>&-; } 3>&1
  code=$?
  report "$log" "$code"
  report_pushes
  [ -n "$meta" ] && rm -f "$meta"
  rm -f "$log"
  exit "$code"
fi
if [ "${1:-}" = push ]; then
  ref="" quiet="" args=()
  for a in "${@:2}"; do
    case "$a" in
    -q | --quiet) quiet=1 ;;
    -*) args+=("$a") ;;
    *)
      ref=$a
      args+=("$a")
      ;;
    esac
  done
  log=$(mktemp "${TMPDIR:-/tmp}/runnerx-push.XXXXXX") || exec "$real" "$@"
  set -o pipefail
  # Quiet pushes print no digest: push verbosely into the log, print what -q prints.
  if [ -n "$quiet" ]; then
    "$real" push "${args[@]}" >"$log" && echo "$ref"
  else
    "$real" push "${args[@]}" | tee "$log"
  fi
  code=$?
  # "<tag>: digest: sha256:… size: …", one per tag pushed.
  sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' "$log" | sort -u | while read -r digest; do
    echo "runnerx: pushed $(repository_of "$ref")@$digest" >&2
  done
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
