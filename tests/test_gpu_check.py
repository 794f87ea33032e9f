"""scripts/gpu_check.sh, the prepared GPU run, rehearsed on the CPU.

No GPU is lent to the test machines; ``MOECL_GPU_CHECK_DEVICE=cpu`` runs the same three steps at
the smallest sizes (smoke test of every architecture x method with resume, the batched-seed
benchmark, a paper-scale ``deep-methods`` run bounded by the budget) and ``--dry-run`` checks the
plan and the tools. What only a GPU can show (CUDA's deterministic kernels, the speed) is left to
the device run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def run_script(*args, **env):
    environment = {**os.environ, "PY": sys.executable, **env}
    environment.pop("MOECL_DATA", None)  # the device may have no data: the script must not need it
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=300)


def test_dry_run_prints_the_three_steps_and_runs_nothing(tmp_path):
    done = run_script("--dry-run", OUT=str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "device cuda" in lines[0] and "budget 540 s" in lines[0]
    assert "scripts/gpu_smoke.py" in lines[1] and "--device cuda" in lines[1]
    assert "--replicates 16" in lines[2] and "target loop/batched >= 8" in lines[2]
    assert "deep-methods --scale long" in lines[3]
    assert not (tmp_path / "out").exists()


def test_without_a_gpu_the_device_run_stops_in_one_line(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = run_script(OUT=str(tmp_path / "out"))
    assert done.returncode == 1
    assert "torch sees no CUDA device" in done.stdout


def test_an_unknown_device_is_refused():
    done = run_script("--dry-run", MOECL_GPU_CHECK_DEVICE="tpu")
    assert done.returncode == 2 and "MOECL_GPU_CHECK_DEVICE=tpu" in done.stderr


def test_the_cpu_rehearsal_runs_every_step(tmp_path):
    out = tmp_path / "out"
    done = run_script(OUT=str(out), MOECL_GPU_CHECK_DEVICE="cpu", MOECL_GPU_CHECK_WORK=str(tmp_path / "work"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    log = (out / "gpu_check.log").read_text()
    assert log.startswith("device:") and "== done in" in log
    cases = [json.loads(line) for line in (out / "smoke.jsonl").read_text().splitlines()]
    from moecl import deep

    assert {case["architecture"] for case in cases} == set(deep.ARCHITECTURES)
    assert {case["method"] for case in cases} == {"finetune", "replay", "joint", "gate-M2", "seed-M2"}
    assert all(case["resumed_equal"] and case["device"] == "cpu" for case in cases), cases
    assert (out / "bench_deep_replicates.txt").read_text().splitlines()[-1].startswith("loop/batched ")
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("smoke: passed")
    assert summary[1].startswith("batched seeds: loop/batched ") and "for R = 2" in summary[1]
    # the paper-scale step either finished (its results file comes back) or was stopped by the budget
    finished = list((out / "results").glob("deep-methods-long-*.npz"))
    assert (finished and summary[2].startswith("paper scale: finetune:")) or "stopped by the budget" in summary[2]
