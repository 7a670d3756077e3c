#!/usr/bin/env bash
# Runs every test of the solution: unit and oracle tests (Core), in-process multi-silo cluster
# tests (Grains), the `influence` command line as a user runs it (Client), and real servers and
# processes on loopback (Cluster: Redis, Azurite, Prometheus, silo processes, helm).
# Installs those servers and tools first where missing (scripts/install-test-tools.sh).
# Prints a closing line "N passed, N failed" and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")"

if ! command -v dotnet >/dev/null 2>&1; then
  echo "error: the .NET SDK (dotnet) is not on PATH; install the SDK named in global.json" >&2
  exit 2
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
./scripts/install-test-tools.sh || { echo "error: could not install the test servers and tools" >&2; exit 1; }
# Artifacts of CLI tests go to a throwaway store, never the user's.
export INFLUENCE_STORE="${INFLUENCE_STORE:-$(mktemp -d)}"

dotnet build Influence.sln -c Release -nologo -v quiet || { echo "error: build failed" >&2; exit 1; }

log=$(mktemp)
# One test project at a time: the cluster tests start several processes, and 2 cores shared with
# another project's jobs make timings (and timeouts) meaningless.
dotnet test Influence.sln -c Release --no-build -nologo -m:1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

passed=$(grep -Eo 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -Eo 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
echo "$passed passed, $failed failed"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then exit 1; fi
