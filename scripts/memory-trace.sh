#!/usr/bin/env bash
# Resident memory over time of any command, to find which step of a job sets its peak
# (/usr/bin/time -v gives only the peak):
#   scripts/memory-trace.sh OUT COMMAND ARGS...
# runs COMMAND with its output in OUT.log, samples its resident set every 0.25 s into OUT.rss
# ("seconds GB" per line) and prints the peak and a coarse profile. The job's log lines carry
# their own times ("[ 85.8s] Factorizing: …"), so the two can be read side by side.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,7p' "$0" >&2; exit 2; }
out=$1; shift
: > "$out.rss"
"$@" > "$out.log" 2>&1 &
pid=$!
start=$(date +%s.%N)
while kill -0 "$pid" 2>/dev/null; do
  kb=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [[ -n $kb ]] && awk -v t="$(date +%s.%N)" -v s="$start" -v kb="$kb" 'BEGIN {printf "%.2f %.3f\n", t - s, kb / 1048576}' >> "$out.rss"
  sleep 0.25
done
status=0; wait "$pid" || status=$?
awk '{ if ($2 > peak) { peak = $2; at = $1 } } NR % 40 == 1 { profile = profile sprintf("%.0fs:%.2f ", $1, $2) }
     END { printf "peak %.2f GB at %.1f s\nevery 10 s: %s\n", peak, at, profile }' "$out.rss"
exit "$status"
