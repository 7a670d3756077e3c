#!/usr/bin/env bash
# Whole-dataset scale on this machine: score jobs on Fashion-MNIST from Debian's
# dataset-fashion-mnist (fetches nothing), each timed end to end with its peak memory
# (/usr/bin/time -v), its phases from summary.json, and its scoring rate beside the same-shape
# matrix product measured in the same job (summary.json scoring.ratio_to_gemm).
#   scripts/bench-scale.sh            the README's 2,000 × 10 job and 60,000 × 100 (about 6 minutes)
#   scripts/bench-scale.sh all-pairs  also all 60,000 × 10,000 pairs (top-k and per-example outputs; about 7 minutes)
#   scripts/bench-scale.sh studies    instead: mislabel detection on all 60,000 rows (data/fmnist60k_noisy_labels.csv)
#                                     and warm leave-one-out of REMOVALS random rows (default 600; REMOVALS=6000: about N min)
# Needs: apt-get install dataset-fashion-mnist time; dotnet build Influence.sln -c Release.
set -euo pipefail
cd "$(dirname "$0")/.."
fm=/usr/share/datasets/fashion-mnist
[[ -f $fm/train-images-idx3-ubyte.gz ]] || { echo "missing $fm: apt-get install dataset-fashion-mnist" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "missing /usr/bin/time: apt-get install time" >&2; exit 2; }
client="dotnet src/Client/bin/Release/net10.0/influence.dll"
[[ -f src/Client/bin/Release/net10.0/influence.dll ]] || { echo "build first: dotnet build Influence.sln -c Release" >&2; exit 2; }
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
rate = removals / t["retrain"]
print(f"warm retrains/s: {rate:.2f}; all 60,000 at that rate on this machine: {60000 / rate / 60:.0f} min")
EOF
  exit 0
fi

printf '%-18s %7s %7s %7s %8s %7s %6s %10s %10s %6s  %s\n' job "wall s" "peak GB" train prepare score self "pairs ex/s" "GEMM ex/s" ratio influence.csv
run lr-2k-x10 --train data/fmnist_train2000.csv --test data/fmnist_test1000.csv "${lr[@]}" --test-indices 0-9
run lr-60k-x100 "${fmnist[@]}" "${lr[@]}" --test-indices 0-99 --shards 4
if [[ ${1:-} == all-pairs ]]; then
  run lr-60k-x10k "${fmnist[@]}" "${lr[@]}" --test-indices 0-9999 --shards 16
fi
