#!/usr/bin/env bash
# Whole-dataset scale on this machine: score jobs on Fashion-MNIST from Debian's
# dataset-fashion-mnist (fetches nothing), each timed end to end with its peak memory
# (/usr/bin/time -v), its phases from summary.json, and its scoring rate beside the same-shape
# matrix product measured in the same job (summary.json scoring.ratio_to_gemm).
#   scripts/bench-scale.sh            the 2,000-row subset × 10 test points, and 60,000 × 100 (about 3 minutes)
#   scripts/bench-scale.sh all-pairs  also all 60,000 × 10,000 pairs (top-k and per-example outputs; about 7 minutes)
#   scripts/bench-scale.sh cluster    instead: the 60,000 × 100 job on 3 silo processes (Redis, Azurite), checked
#                                     against the embedded run's files, with its store traffic
#   scripts/bench-scale.sh mlp        instead: the MLP 784-256-10 on all 60,000 × 10,000 pairs with TRAK (k = 1024, about
#                                     8 minutes) and EK-FAC at query rank 32 (about 10 minutes); MLP_METHODS="ekfac" runs one
#   scripts/bench-scale.sh studies    instead: mislabel detection on all 60,000 rows (data/fmnist60k_noisy_labels.csv)
#                                     and warm leave-one-out of REMOVALS random rows (default 600, about 9 minutes with the
#                                     mislabel run; REMOVALS=6000 adds about 8 minutes of retrains)
# Needs: apt-get install dataset-fashion-mnist time; dotnet build Influence.sln -c Release; for
# 'cluster', scripts/install-test-tools.sh (Redis, Azurite) and curl. INFLUENCE_BIN=DIR runs a copy of
# the client's build output instead (so a long run does not hold the build directory).
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in ''|all-pairs|cluster|mlp|studies) ;; *) sed -n '2,17p' "$0" >&2; echo "unknown mode '$1'" >&2; exit 2 ;; esac
fm=/usr/share/datasets/fashion-mnist
[[ -f $fm/train-images-idx3-ubyte.gz ]] || { echo "missing $fm: apt-get install dataset-fashion-mnist" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "missing /usr/bin/time: apt-get install time" >&2; exit 2; }
bin=${INFLUENCE_BIN:-src/Client/bin/Release/net10.0}
client="dotnet $bin/influence.dll"
[[ -f $bin/influence.dll ]] || { echo "build first: dotnet build Influence.sln -c Release (no $bin/influence.dll)" >&2; exit 2; }
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
mkdir -p out

# run NAME ARGS...: one score job; prints its row.
run() {
  local name=$1; shift
  local out=out/bench-scale-$name
  rm -rf "$out"
  /usr/bin/time -v $client score "$@" --store "$store" --out "$out" > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
  python3 - "$name" "$out" <<'EOF'
import json, re, sys
name, out = sys.argv[1], sys.argv[2]
log = open(out + ".log").read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", log).group(1).split(":")
wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", log).group(1)) / 2**20
s = json.load(open(out + "/summary.json"))
t, sc = s["timings_seconds"], s["scoring"]
f = lambda v, fmt: format(v, fmt) if v is not None else "-"
print(f"{name:<18} {wall:7.1f} {peak:7.2f} {t['train']:7.1f} {t['prepare']:8.1f} {t['score']:7.1f} {sc['self_influence_seconds']:6.1f} "
      f"{f(sc['pairs_examples_per_second'], '10,.0f')} {f(sc['gemm_examples_per_second'], '10,.0f')} {f(sc['ratio_to_gemm'], '6.2f')}  {s['influence_csv']}")
# Where the time outside the arithmetic goes: the coordinator's steps (exact method), and the process outside the job.
d = s["method"]["details"]
steps = [f"{label} {d[key]:.2f} s" for label, key in [("partials read", "partials_read_seconds"), ("factorisation", "factorization_seconds"),
         ("eigenvalues", "eigenvalues_seconds"), ("factor write", "factor_write_seconds")] if d.get(key) is not None]
products = f" ({d['eigenvalue_products']} Krylov products)" if "eigenvalue_products" in d else ""
done = re.search(r"Done in ([0-9.]+) s", log)
outside = f"outside the job (process and silo start, outputs, report.html): {wall - float(done.group(1)):.1f} s" if done else ""
print(f"{'':<18} prepare: {', '.join(steps)}{products}; {outside}")
EOF
}

# timed NAME COMMAND ARGS...: any command, timed; prints its wall time and peak memory.
timed() {
  local name=$1; shift
  local out=out/bench-scale-$name
  rm -rf "$out"
  /usr/bin/time -v $client "$@" --store "$store" --out "$out" > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
  python3 - "$out.log" <<'EOF'
import re, sys
log = open(sys.argv[1]).read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", log).group(1).split(":")
wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", log).group(1)) / 2**20
print(f"wall {wall:.1f} s, peak {peak:.2f} GB")
EOF
}

lr=(--model logreg --l2 1e-3 --dtype float64 --method exact --pixel-scale 255)
fmnist=(--train $fm/train-images-idx3-ubyte.gz --test $fm/t10k-images-idx3-ubyte.gz)
if [[ ${1:-} == mlp ]]; then
  # The MLP 784-256-10 (tanh, float32, 203,530 parameters; Adam, 5 epochs) with TRAK (k = 1024)
  # on all 60,000 × 10,000 pairs: time, peak memory and summary.json's scoring rates.
  mlp=(--pixel-scale 255 --model mlp --hidden 256 --activation tanh --l2 1e-2 --weight-decay-on all --dtype float32
       --optimizer adam --lr 1e-3 --epochs 5 --train-batch 256)
  for method in ${MLP_METHODS:-trak ekfac}; do
    case $method in
      trak) args=(--method trak --projection-dim 1024) ;;
      ekfac) args=(--method ekfac --query-rank 32) ;;
      *) echo "MLP_METHODS: '$method' is not trak or ekfac" >&2; exit 2 ;;
    esac
    echo "== MLP, $method: 60,000 × 10,000"
    timed mlp-$method-60k-x10k score "${fmnist[@]}" "${mlp[@]}" "${args[@]}" --test-indices 0-9999 --shards 16
    python3 -c "import json; s=json.load(open('out/bench-scale-mlp-$method-60k-x10k/summary.json')); print('timings (s):', {k: round(v, 1) for k, v in s['timings_seconds'].items()}); sc=s['scoring']; print(f\"scoring {sc['pairs_examples_per_second']:,.0f} examples/s against 10,000 queries, same-shape GEMM {sc['gemm_examples_per_second']:,.0f}/s\")"
  done
  exit 0
fi

if [[ ${1:-} == studies ]]; then
  removals=${REMOVALS:-600}
  echo "== mislabel: all 60,000 rows, 6,000 labels changed"
  timed mislabel-60k mislabel "${fmnist[@]}" "${lr[@]}" --labels data/fmnist60k_noisy_labels.csv
  grep -E '^\| ' out/bench-scale-mislabel-60k/mislabel.md | head -8
  echo "== loo: $removals random rows of 60,000, warm retrains, test points 0-9"
  timed loo-60k loo "${fmnist[@]}" "${lr[@]}" --test-indices 0-9 --remove "random:$removals,0" --retrain warm
  python3 - "$removals" out/bench-scale-loo-60k/loo_summary.json <<'EOF'
import json, sys
removals, s = int(sys.argv[1]), json.load(open(sys.argv[2]))
t = s["timings_seconds"]
print("timings (s):", {k: round(v, 1) for k, v in t.items()})
# The steady rate, from each retrain's share of its unit's time: the retrain phase also loads the
# data and builds the retrainer's H⁻¹ (about 50 s at 60,000 rows), which a longer run pays once.
import csv, statistics
per = statistics.median(float(r["seconds"]) for r in csv.DictReader(open(sys.argv[2].replace("loo_summary.json", "retrains.csv"))))
print(f"retrain phase {t['retrain']:.1f} s for {removals}; steady {1 / per:.1f} retrains/s (median {per:.3f} s each); all 60,000 at that rate: {60000 * per / 60:.0f} min after the setup")
EOF
  exit 0
fi

if [[ ${1:-} == cluster ]]; then
  # The 60,000 × 100 job on 3 silo processes with Redis and Azurite on loopback (scripts/local-cluster.sh),
  # against the embedded run's output (run 'scripts/bench-scale.sh' first): the same numbers, and the
  # store traffic from the silos' influence_store_*_bytes_total counters.
  [[ -f out/bench-scale-lr-60k-x100/influence.csv ]] || { echo "run scripts/bench-scale.sh first (the embedded reference)" >&2; exit 2; }
  silos=${SILOS:-3}
  key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
  export INFLUENCE_BLOB_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$key;BlobEndpoint=http://127.0.0.1:${BLOB_PORT:-10000}/devstoreaccount1;"
  trap './scripts/local-cluster.sh down > /dev/null; rm -rf "$store"' EXIT # also after a failed start
  ./scripts/local-cluster.sh up "$silos" > /dev/null
  traffic() { for k in $(seq 0 $((silos - 1))); do curl -s "http://127.0.0.1:$((9400 + k))/metrics"; done |
    awk '/^influence_store_read_bytes_total/ {r += $NF} /^influence_store_written_bytes_total/ {w += $NF} END {printf "%.0f %.0f\n", r, w}'; }
  read -r read0 written0 < <(traffic)
  out=out/bench-scale-lr-60k-x100-cluster
  rm -rf "$out"
  /usr/bin/time -v $client score "${fmnist[@]}" "${lr[@]}" --test-indices 0-99 --shards $((2 * silos)) \
    --cluster redis://127.0.0.1:${REDIS_PORT:-6380} --store azblob:influence --out "$out" > "$out.log" 2>&1 || { tail -20 "$out.log"; exit 1; }
  read -r read1 written1 < <(traffic)
  python3 - "$out" out/bench-scale-lr-60k-x100 "$((read1 - read0))" "$((written1 - written0))" <<'EOF'
import csv, json, re, sys
out, ref, read, written = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
log = open(out + ".log").read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", log).group(1).split(":")
wall = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
t = json.load(open(out + "/summary.json"))["timings_seconds"]
def column(path, name): return [float(r[name]) for r in csv.DictReader(open(path))]
for f, col in [("influence.csv", "influence"), ("self_influence.csv", "self_influence")]:
    a, b = column(f"{out}/{f}", col), column(f"{ref}/{f}", col)
    assert len(a) == len(b), f"{f}: {len(a)} rows against {len(b)}"
    print(f"{f}: largest difference from the embedded run {max(abs(x - y) for x, y in zip(a, b)) / max(abs(y) for y in b):.1e} of its largest value")
print(f"wall {wall:.1f} s (train {t['train']:.1f}, prepare {t['prepare']:.1f}, score {t['score']:.1f}); "
      f"store traffic: {written / 1e6:,.0f} MB written, {read / 1e6:,.0f} MB read")
EOF
  exit 0
fi

printf '%-18s %7s %7s %7s %8s %7s %6s %10s %10s %6s  %s\n' job "wall s" "peak GB" train prepare score self "pairs ex/s" "GEMM ex/s" ratio influence.csv
run lr-2k-x10 --train data/fmnist_train2000.csv --test data/fmnist_test1000.csv "${lr[@]}" --test-indices 0-9
run lr-60k-x100 "${fmnist[@]}" "${lr[@]}" --test-indices 0-99 --shards 4
if [[ ${1:-} == all-pairs ]]; then
  run lr-60k-x10k "${fmnist[@]}" "${lr[@]}" --test-indices 0-9999 --shards 16
fi
