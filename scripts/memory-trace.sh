#!/usr/bin/env bash
# Resident memory over time of any command, to find which step of a job sets its peak
# (/usr/bin/time -v gives only the peak):
#   scripts/memory-trace.sh OUT COMMAND ARGS...
#   e.g. scripts/memory-trace.sh /tmp/trace dotnet src/Client/bin/Release/net10.0/influence.dll score …
# runs COMMAND with its output in OUT.log and samples, every 0.25 s, the resident set of the
# largest process in COMMAND's process tree (what /usr/bin/time -v reports; under `dotnet run`
# that is the client, not the launcher) into OUT.rss ("seconds GB" per line). Prints the peak and
# ten samples across the run. The trace's clock starts at launch; a job's log times ("[ 85.8s]
# Factorizing: …") start when the job does, about half a second later.
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,10p' "$0" >&2; exit 2; }
out=$1; shift
: > "$out.rss"
"$@" > "$out.log" 2>&1 &
pid=$!
start=$(date +%s.%N)
while kill -0 "$pid" 2>/dev/null; do
  # The largest resident set among the command and its descendants, in kB.
  kb=$(ps -e -o pid=,ppid=,rss= | awk -v root="$pid" '
        { parent[$1] = $2; rss[$1] = $3 }
        END { for (p in rss) { q = p; while (q != "" && q != root && q > 1) q = parent[q]; if (q == root && rss[p] > max) max = rss[p] } print max + 0 }')
  awk -v t="$(date +%s.%N)" -v s="$start" -v kb="$kb" 'BEGIN {printf "%.2f %.3f\n", t - s, kb / 1048576}' >> "$out.rss"
  sleep 0.25
done
status=0; wait "$pid" || status=$?
awk '{ t[NR] = $1; gb[NR] = $2; if ($2 > peak) { peak = $2; at = $1 } }
     END { printf "peak %.2f GB at %.1f s\n", peak, at
           step = NR > 10 ? NR / 10 : 1; line = "samples:"
           for (i = 1; i <= NR; i += step) line = line sprintf(" %.1fs:%.2f", t[int(i)], gb[int(i)])
           print line }' "$out.rss"
exit "$status"
