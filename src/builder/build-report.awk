# runnerx: the build report of a finished build, from its plain BuildKit progress.
# Run by the job's `docker` wrapper (docker-cli.sh) as
#   awk -v placement=FILE -v ref=REF -v def=REF -f build-report.awk PROGRESS
# placement: runnerx's "<platform> <where>" lines; ref/def: the registry build cache
# refs the build read (empty: runnerx added no cache).
#
# Prints, per platform, where it was built, its steps, how many the build reused and
# the steps' time; then what became of the registry cache.
#
# A step counts as reused (cached) when BuildKit printed `#N CACHED`, or when the only
# work under it was pulling its layer: BuildKit takes a step from an imported cache
# lazily, and when the layer is needed (to export the image) it pulls the blobs under
# the step's own id, prints `#N sha256:… done` / `#N extracting sha256:…` and
# `#N DONE 0.1s`, and no `CACHED`. A step that really ran makes its layer itself and
# never pulls one; a FROM step pulls its base image, which is not a cached step.
# POSIX awk (mawk, busybox awk, gawk).

function record(id, plat, text) {
  if (id in step) return
  step[id] = plat
  order[++n_steps] = id
  steps[plat]++
  if (plat != "other") seen[plat] = 1
  if (text ~ /^FROM /) from[id] = 1
}

BEGIN {
  if (placement != "") {
    while ((getline line < placement) > 0) {
      split(line, f, " "); p = f[1]; sub(/^[^ ]+ /, "", line); where[p] = line
    }
  }
}

# `#7 [linux/amd64 2/3] RUN …`: a step of one platform.
/^#[0-9]+ \[linux\// {
  text = $0; sub(/^#[0-9]+ \[[^]]*\] /, "", text)
  record($1, substr($2, 2), text)
  next
}
# A node building one platform names its steps without the platform: `#7 [2/3] RUN …`.
/^#[0-9]+ \[[^]]*[0-9]+\/[0-9]+\]/ && $2 !~ /^\[(internal|auth)/ {
  text = $0; sub(/^#[0-9]+ \[[^]]*\] /, "", text)
  record($1, "other", text)
  next
}
/^#[0-9]+ DONE [0-9.]+s$/ { t = $3; sub(/s$/, "", t); secs[$1] += t; next }
/^#[0-9]+ CACHED$/ { cached_line[$1] = 1; next }
# A layer's blobs fetched under the step: `#7 sha256:<64 hex> 1.2kB / 1.2kB 0.1s done`,
# `#7 extracting sha256:<64 hex> 0.1s done`.
/^#[0-9]+ sha256:[0-9a-f]+ / || /^#[0-9]+ extracting sha256:/ { pulled[$1] = 1; next }
# Output of a step that runs: `#7 0.512 hello`.
/^#[0-9]+ [0-9]+\.[0-9]+ / { ran[$1] = 1; next }
/^#[0-9]+ ERROR: / {
  failed[$1] = 1
  msg = $0; sub(/^#[0-9]+ ERROR: /, "", msg); error[$1] = msg
  next
}
# The registry cache: what was imported, and the export.
/^#[0-9]+ importing cache manifest from / { imp[$1] = $NF; next }
/^#[0-9]+ exporting cache to registry/ { exp_id = $1; next }

END {
  total_cached = 0
  for (i = 1; i <= n_steps; i++) {
    id = order[i]
    if ((id in cached_line) || ((id in pulled) && !(id in from) && !(id in ran) && !(id in failed))) {
      cached[step[id]]++
      total_cached++
    }
    if (id in secs) time[step[id]] += secs[id]
  }
  if (n_steps > 0) {
    print "runnerx build report:"
    for (p in seen) {
      w = (p in where) ? where[p] : "this builder"
      printf "  %-14s %-40s steps %d, %d cached, %.1fs of step time\n", p, w, steps[p], cached[p] + 0, time[p] + 0
    }
    if ("other" in steps)
      printf "  %-14s %-40s steps %d, %d cached, %.1fs of step time\n", "(unnamed)", "steps named without their platform", steps["other"], cached["other"] + 0, time["other"] + 0
  }
  if (ref == "") exit
  for (id in imp) {
    r = imp[id]
    if (id in secs && !(id in failed)) got[r] = 1
    else if (id in failed) why[r] = error[id]
  }
  n = split(ref " " def, refs, " ")
  for (i = 1; i <= n; i++) {
    r = refs[i]
    if (r in got) printf "  registry cache: read %s (%d steps cached)\n", r, total_cached
    else if (r in why && why[r] ~ /not found/) printf "  registry cache: nothing read from %s: no cache there yet\n", r
    else if (r in why) printf "  registry cache: nothing read from %s: %s\n", r, why[r]
  }
  if (exp_id != "" && (exp_id in secs) && !(exp_id in failed)) printf "  registry cache: written to %s\n", ref
  else if (exp_id in failed) printf "  registry cache: not written to %s: %s\n", ref, error[exp_id]
}
