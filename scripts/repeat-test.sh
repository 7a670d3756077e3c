#!/usr/bin/env bash
# Runs one test (a dotnet test filter) several times in a row with CPU-bound processes beside it,
# to show whether it depends on timing. Needs a Release build (dotnet build Influence.sln -c Release)
# and, for cluster tests, scripts/install-test-tools.sh.
#
#   scripts/repeat-test.sh FILTER [RUNS=20] [BURNERS=2]
#   scripts/repeat-test.sh MetricsTests 20 2     # the metrics test, 20 runs, one busy process per core
set -uo pipefail
cd "$(dirname "$0")/.."
filter=${1:?usage: scripts/repeat-test.sh FILTER [RUNS] [BURNERS]}
runs=${2:-20}
burners=${3:-2}
pids=()
for _ in $(seq 1 "$burners"); do sha256sum /dev/zero & pids+=($!); done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
passed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if dotnet test Influence.sln -c Release --no-build --filter "FullyQualifiedName~$filter" > "/tmp/repeat-test-$i.log" 2>&1; then
    r=pass; passed=$((passed + 1))
  else
    r="FAIL (log: /tmp/repeat-test-$i.log)"
  fi
  echo "run $i: $r, $(( $(date +%s) - start )) s"
done
echo "$passed of $runs runs passed with $burners CPU-bound processes beside them"
[ "$passed" -eq "$runs" ]
