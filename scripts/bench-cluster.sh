#!/usr/bin/env bash
# LOO throughput with 1 and with 3 silo processes on this machine (Redis + Azurite + silos on
# loopback, scripts/local-cluster.sh), the same job each time, and the embedded mode (one process,
# local store) with --parallel 1 and 2 for comparison. Prints retrains/s of the retrain phase and
# the ratio of 3 silos to 1 (the reference, measured in the same run).
#   scripts/bench-cluster.sh [REMOVALS]      (default 400 cold retrains of digits logistic regression)
set -euo pipefail
cd "$(dirname "$0")/.."
removals=${1:-400}
client="dotnet src/Client/bin/Release/net10.0/influence.dll"
key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
export INFLUENCE_BLOB_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$key;BlobEndpoint=http://127.0.0.1:${BLOB_PORT:-10000}/devstoreaccount1;"

run() {
  local silos=$1 out=out/bench-cluster-$1
  ./scripts/local-cluster.sh up "$silos" > /dev/null
  trap './scripts/local-cluster.sh down > /dev/null' EXIT
  $client loo --train data/digits_train.csv --test data/digits_test.csv --l2 1e-2 --test-indices 0-4 --shards "$silos" \
    --remove "random:$removals,1" --retrain cold --out "$out" \
    --cluster redis://127.0.0.1:${REDIS_PORT:-6380} --store azblob:influence > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
  ./scripts/local-cluster.sh down > /dev/null
  trap - EXIT
  rate "$out"
}

rate() { python3 -c "import json; t=json.load(open('$1/loo_summary.json'))['timings_seconds']; print(f\"{$removals/t['retrain']:.2f} {t['retrain']:.1f} {t['total_before_report']:.1f}\")"; }

embedded() {
  local parallel=$1 out=out/bench-embedded-$1 store
  store=$(mktemp -d)
  $client loo --train data/digits_train.csv --test data/digits_test.csv --l2 1e-2 --test-indices 0-4 --shards 1 \
    --remove "random:$removals,1" --retrain cold --parallel "$parallel" --out "$out" --store "$store" > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
  rm -rf "$store"
  rate "$out"
}

read -r one one_s one_total < <(run 1)
read -r three three_s three_total < <(run 3)
printf '%-12s %12s %14s %12s\n' "silos" "retrains/s" "retrain phase" "job (s)"
printf '%-12s %12s %13ss %12s\n' "1 (ref)" "$one" "$one_s" "$one_total"
printf '%-12s %12s %13ss %12s\n' "3" "$three" "$three_s" "$three_total"
read -r e1 e1_s e1_total < <(embedded 1)
read -r e2 e2_s e2_total < <(embedded 2)
printf '%-12s %12s %13ss %12s\n' "embedded p1" "$e1" "$e1_s" "$e1_total"
printf '%-12s %12s %13ss %12s\n' "embedded p2" "$e2" "$e2_s" "$e2_total"
python3 -c "print(f'ratio 3/1: {$three/$one:.2f}')"
