#!/usr/bin/env bash
# The GPU check of the deep half, for when a GPU is lent (about 5-8 minutes on one modern GPU).
#
#   bash scripts/gpu_check.sh            # MOECL_DATA must point at a folder with cifar-10-batches-py
#
# 1. The deep replicate benchmark on CUDA: R seeds batched (stacked experts, torch.vmap) against a
#    loop of single-seed runs; prints both times and the ratio (target: batched throughput at least
#    50% of R single runs, i.e. loop/batched >= R/2 ... see benchmarks/README.md).
# 2. A short CIFAR-10 `deep-methods` run with --device cuda, killed by SIGTERM part-way, rerun with
#    the same arguments (it resumes from its checkpoint), and compared with an uninterrupted run of
#    the same arguments: the two results files must hold identical arrays (deterministic CUDA
#    settings, DeepConfig.deterministic, are on by default).
# Figures are printed; record them in benchmarks/README.md. Exit status 0 only if resume == uninterrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
: "${MOECL_DATA:?set MOECL_DATA to a folder with cifar-10-batches-py}"
export MOECL_DATA
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device; nothing to check" >&2
  exit 1
fi
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== 1. deep replicate benchmark (CUDA, R = 16, CIFAR-shaped, T = 6)"
start=$(date +%s)
"$PY" benchmarks/bench_deep_replicates.py --device cuda --replicates 16 --stream cifar-shaped --rounds 6
echo "   ($(( $(date +%s) - start )) s)"

ARGS=(run deep-methods --scale long --set stream=cifar10 --device cuda --replicates 2
      --set methods=finetune,gate-M4,seed-M4 --set T=70 --no-progress)
echo "== 2. CIFAR-10 deep-methods on CUDA: uninterrupted, then interrupted + resumed"
start=$(date +%s)
"$PY" -m moecl "${ARGS[@]}" --out "$WORK/whole" > "$WORK/whole.path"
whole_s=$(( $(date +%s) - start ))
echo "   uninterrupted: ${whole_s} s"
"$PY" -m moecl "${ARGS[@]}" --out "$WORK/resumed" > /dev/null 2>&1 &
pid=$!
sleep $(( whole_s / 2 > 5 ? whole_s / 2 : 5 ))
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
echo "   interrupted after $(( whole_s / 2 )) s; temporary files left: $(find "$WORK/resumed" -name '*.tmp' | wc -l)"
start=$(date +%s)
"$PY" -m moecl "${ARGS[@]}" --out "$WORK/resumed" > "$WORK/resumed.path"
echo "   resumed to the end in $(( $(date +%s) - start )) s"
"$PY" - "$(cat "$WORK/whole.path")" "$(cat "$WORK/resumed.path")" <<'EOF'
import sys

import numpy as np

from moecl.results import load_results

(_, whole), (header, resumed) = (load_results(path) for path in sys.argv[1:3])
different = [name for name in whole if not np.array_equal(whole[name], resumed[name], equal_nan=True)]
print(f"   resumed == uninterrupted: {not different} ({len(whole)} arrays compared)")
for label, seconds in header["simulation_wall_times"].items():
    print(f"   {label}: {seconds:.1f} s for {header['replicates']} seeds x {header['rounds']} rounds "
          f"= {seconds / header['rounds']:.3f} s per round")
sys.exit(1 if different else 0)
EOF
