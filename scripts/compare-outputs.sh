#!/usr/bin/env bash
# Checks that a refactor left the numbers alone: builds REV (default HEAD~1) in a temporary
# worktree, runs the same jobs with it and with this tree, and prints the largest difference of
# each output relative to its largest value. Jobs: exact on digits
# (logistic regression, λ = 1e-2, 10 test points) and cg on Iris (logistic regression).
#
#   scripts/compare-outputs.sh fab89de
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:-HEAD~1}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/old" "$rev" >/dev/null
echo "building $rev and this tree"
dotnet build "$work/old/src/Client" -c Release -nologo -v quiet >/dev/null
dotnet build src/Client -c Release -nologo -v quiet >/dev/null
export INFLUENCE_STORE="$work/store"
for side in old new; do
  bin=src/Client/bin/Release/net10.0/influence.dll
  [ "$side" = old ] && bin="$work/old/$bin"
  dotnet "$bin" score --train data/digits_train.csv --test data/digits_test.csv --l2 1e-2 --test-indices 0-9 --method exact --out "$work/$side-exact" >/dev/null
  dotnet "$bin" score --train data/iris_train.csv --test data/iris_test.csv --test-indices 0-9 --method cg --out "$work/$side-cg" >/dev/null
done
python3 - "$work" <<'PY'
import csv, os, sys
work = sys.argv[1]
for job in ["exact", "cg"]:
    for name in ["influence.csv", "self_influence.csv"]:
        a, b = (os.path.join(work, f"{side}-{job}", name) for side in ("old", "new"))
        if not (os.path.exists(a) and os.path.exists(b)):
            print(f"{job:5} {name:18} not written by both"); continue
        va = [float(r[-1]) for r in list(csv.reader(open(a)))[1:]]
        vb = [float(r[-1]) for r in list(csv.reader(open(b)))[1:]]
        scale = max(abs(x) for x in va) or 1.0
        print(f"{job:5} {name:18} {len(va)} values, largest difference {max(abs(x - y) for x, y in zip(va, vb)) / scale:.2e} of the largest value")
PY
