#!/usr/bin/env bash
# The GPU check of the deep half: one command of at most 10 minutes on one H100 or H200.
#
#   bash scripts/gpu_check.sh                              # on a GPU machine; files under $OUT
#   bash scripts/gpu_check.sh --dry-run                    # prints the plan and checks the tools; runs nothing
#   MOECL_GPU_CHECK_DEVICE=cpu bash scripts/gpu_check.sh   # the same steps, tiny, on the CPU (< 60 s;
#                                                          # tests/test_gpu_check.py runs it)
#
# Everything it needs travels with the working tree (no network on the device): the package, the
# benchmarks, and tests/official_files.py, which writes small data sets in the official formats.
# Data: MOECL_DATA when it holds the data set a step needs, else generated files (step 1 always uses
# generated CIFAR-10 files, so that it needs no data) or scikit-learn's digits (step 3).
#
# Steps, each bounded by `timeout`, in a total budget of MOECL_GPU_CHECK_BUDGET seconds (default 540,
# leaving a minute of the 10 for start-up and the transfer back):
#  1. smoke (about a minute; at most 150 s): every architecture (cnn, resnet18 at width 64) x every
#     method of deep-methods' ci preset, two rounds of two batched seeds on CUDA with the default
#     deterministic settings, then the same run stopped in round 2 and resumed from its checkpoint:
#     resumed == uninterrupted, array for array (scripts/gpu_smoke.py -> smoke.jsonl).
#  2. the batched-seed benchmark (at most 180 s): benchmarks/bench_deep_replicates.py on CUDA, R = 16
#     seeds batched against 16 single-seed runs, CIFAR-shaped images, T = 6. Target: R batched seeds
#     at >= 50% of R x one plain run's images per second, i.e. loop/batched >= R/2 = 8
#     (bench_deep_replicates.txt; the verdict is in the log).
#  3. paper scale (the rest of the budget): `deep-methods --scale long` (10 seeds, T = 200, the eight
#     long methods, seeds_per_piece=10) on CUDA, on CIFAR-10 when MOECL_DATA has it (the long design
#     stored in results/ from the CPU), else on MNIST's one-vs-rest digits (likewise), else on
#     scikit-learn's digits in the split-digits stream. Stopped by `timeout` when the budget ends; its checkpoints stay in the work
#     folder, so the same command on the same machine resumes it. A finished run's results file is
#     copied to $OUT/results/.
# Step 3 keeps its results file and checkpoints in MOECL_GPU_CHECK_WORK (default /tmp/moecl-gpu-check-paper;
# not under $OUT: at width 64 a checkpoint is large).
# Output ($OUT, default a new folder under /tmp, printed): gpu_check.log (everything printed),
# smoke.jsonl, bench_deep_replicates.txt, results/*.npz, summary.txt (one line per step).
# Exit status: 0 if the smoke test passed (the benchmark target and the paper-scale run are reported,
# not required), 1 otherwise. Record the figures in benchmarks/README.md and the results in results/
# with the device named (results/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
DEVICE=${MOECL_GPU_CHECK_DEVICE:-cuda}
if [[ -x .venv/bin/python ]]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
OUT=${OUT:-}
BUDGET=${MOECL_GPU_CHECK_BUDGET:-540}
if [[ "$DEVICE" == "cpu" ]]; then  # the CPU rehearsal: the same steps at the smallest sizes
  BUDGET=${MOECL_GPU_CHECK_BUDGET:-55}
  SMOKE_ARGS=(--device cpu --tiny); SMOKE_LIMIT=40
  BENCH_ARGS=(--device cpu --replicates 2 --stream digits --rounds 2 --epochs 1 --width 4 --threads 1)
  BENCH_R=2; BENCH_LIMIT=30
  PAPER_ARGS=(--device cpu --replicates 2 --set T=10 --set T1=1 --set samples_per_round=20 --set epochs=1
              --set width=4 --set test_samples=10 --set methods=finetune,gate-M4)
elif [[ "$DEVICE" == "cuda" ]]; then
  SMOKE_ARGS=(--device cuda); SMOKE_LIMIT=150
  BENCH_ARGS=(--device cuda --replicates 16 --stream cifar-shaped --rounds 6)
  BENCH_R=16; BENCH_LIMIT=180
  PAPER_ARGS=(--device cuda --set seeds_per_piece=10)
else
  echo "gpu_check: MOECL_GPU_CHECK_DEVICE=$DEVICE is not cuda or cpu" >&2
  exit 2
fi
# Step 3's data: CIFAR-10 from MOECL_DATA, else its MNIST (one-vs-rest digits), else scikit-learn's
# digits (MOECL_DATA unset) in the split-digits stream (its 8 x 8 test set has too few images of a
# digit for the one-vs-rest stream's 50 positives per task).
PAPER_STREAM=digits
PAPER_ENV=(env -u MOECL_DATA)
if [[ -d "${MOECL_DATA:-/nonexistent}/cifar-10-batches-py" ]]; then
  PAPER_STREAM=cifar10; PAPER_ENV=(env)
elif [[ -d "${MOECL_DATA:-/nonexistent}/mnist" ]]; then
  PAPER_STREAM=digits-1v; PAPER_ENV=(env)
fi
# Step 3's results and checkpoints: kept after the script ends, so that a rerun resumes the run.
PAPER_WORK=${MOECL_GPU_CHECK_WORK:-/tmp/moecl-gpu-check-paper}

if (( DRY_RUN )); then
  echo "gpu_check (dry run): device $DEVICE, python $PY, budget ${BUDGET} s, output ${OUT:-a new folder under /tmp}"
  echo " 1. $PY scripts/gpu_smoke.py --data <generated> --out $OUT ${SMOKE_ARGS[*]}   (timeout ${SMOKE_LIMIT} s)"
  echo " 2. $PY benchmarks/bench_deep_replicates.py ${BENCH_ARGS[*]}   (timeout ${BENCH_LIMIT} s; target loop/batched >= $((BENCH_R / 2)))"
  echo " 3. ${PAPER_ENV[*]} $PY -m moecl run deep-methods --scale long --set stream=$PAPER_STREAM ${PAPER_ARGS[*]} --no-progress --out $PAPER_WORK   (the rest of the budget)"
  for tool in timeout mktemp; do command -v "$tool" > /dev/null || { echo "missing: $tool" >&2; exit 1; }; done
  for file in scripts/gpu_smoke.py benchmarks/bench_deep_replicates.py tests/official_files.py; do
    [[ -f "$file" ]] || { echo "missing: $file" >&2; exit 1; }
  done
  "$PY" -c "import torch, numpy, moecl.deep" || { echo "gpu_check: $PY cannot import torch, numpy and moecl" >&2; exit 1; }
  exit 0
fi

[[ -n "$OUT" ]] || OUT=$(mktemp -d /tmp/gpu-check.XXXXXX)
mkdir -p "$OUT/results" "$PAPER_WORK"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
STARTED=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - STARTED) )); }
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }

main() {
if [[ "$DEVICE" == "cuda" ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device (MOECL_GPU_CHECK_DEVICE=cpu rehearses on the CPU)"
  return 1
fi
"$PY" -c "
import platform, torch
name = torch.cuda.get_device_name(0) if '$DEVICE' == 'cuda' else platform.processor() or 'cpu'
print('device:', name, '| torch', torch.__version__, '| python', platform.python_version())" | tee "$OUT/device.txt"
echo "budget ${BUDGET} s; output in $OUT"

echo "== 1. smoke: every architecture x method, 2 rounds, deterministic, resumed == uninterrupted"
"$PY" -c "import sys; sys.path.insert(0, 'tests'); from official_files import write_all; write_all('$WORK/data')"
timeout "$SMOKE_LIMIT" "$PY" scripts/gpu_smoke.py --data "$WORK/data" --out "$OUT" "${SMOKE_ARGS[@]}"
smoke=$?
summary "smoke: $( ((smoke == 0)) && echo passed || echo "FAILED (exit $smoke)") after $(( $(date +%s) - STARTED )) s"

echo "== 2. batched seeds: R = $BENCH_R batched against $BENCH_R single-seed runs"
limit=$(( $(left) < BENCH_LIMIT ? $(left) : BENCH_LIMIT ))
if (( limit > 5 )); then
  timeout "$limit" "$PY" benchmarks/bench_deep_replicates.py "${BENCH_ARGS[@]}" | tee "$OUT/bench_deep_replicates.txt"
  ratio=$(sed -n 's/^loop\/batched \([0-9.]*\)x.*/\1/p' "$OUT/bench_deep_replicates.txt")
  if [[ -n "$ratio" ]]; then
    verdict=$("$PY" -c "print('met' if $ratio >= $BENCH_R / 2 else 'NOT met')")
    summary "batched seeds: loop/batched ${ratio}x for R = $BENCH_R; target >= $((BENCH_R / 2))x (50% of R plain runs' images/s): $verdict"
  else
    summary "batched seeds: no result (stopped after ${limit} s or failed)"
  fi
else
  summary "batched seeds: skipped, budget spent"
fi

echo "== 3. paper scale: deep-methods --scale long on $PAPER_STREAM, for the rest of the budget"
limit=$(left)
if (( limit > 5 )); then
  timeout "$limit" "${PAPER_ENV[@]}" "$PY" -m moecl run deep-methods --scale long --set stream="$PAPER_STREAM" \
    "${PAPER_ARGS[@]}" --no-progress --out "$PAPER_WORK" > "$WORK/paper.path"
  status=$?
  if (( status == 0 )); then
    cp "$(tail -n 1 "$WORK/paper.path")" "$OUT/results/"
    "$PY" - "$(tail -n 1 "$WORK/paper.path")" <<'EOF' | tee -a "$OUT/summary.txt"
import sys

from moecl.results import load_results

header, _ = load_results(sys.argv[1])
for label, seconds in header["simulation_wall_times"].items():
    print(f"paper scale: {label}: {seconds:.1f} s for {header['replicates']} seeds x {header['rounds']} rounds "
          f"= {seconds / header['rounds']:.3f} s per round ({header['stream']}, {header['source']})")
EOF
  else
    done=$(find "$PAPER_WORK" -name '*.safetensors' 2> /dev/null | wc -l)
    if (( status == 124 )); then
      summary "paper scale: stopped by the budget after ${limit} s; $done checkpoint files in $PAPER_WORK: the same command resumes"
    else
      summary "paper scale: FAILED (exit $status; see the log)"
    fi
  fi
else
  summary "paper scale: skipped, budget spent"
fi
echo "== done in $(( $(date +%s) - STARTED )) s; files in $OUT"
return $(( smoke == 0 ? 0 : 1 ))
}

main 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
