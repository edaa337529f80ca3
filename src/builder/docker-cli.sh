#!/bin/bash
# runnerx: the `docker` that job scripts find first on their PATH (/etc/runnerx/bin).
# Everything goes to the real docker CLI unchanged, except a plain `docker pull IMAGE`:
# with the containerd image store it fetches only this machine's platform, and a later
# `docker tag` + `docker push` of a multi-platform image then fails ("not all of them
# are available locally"). So the pull is followed by one pull per platform of
# builder.platforms; an image without such a platform just keeps the ones it has.
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
