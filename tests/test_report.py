"""moecl.report: stored runs, (mean, se) at an index, z-scores of differences, gathered checks."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from moecl import report
from moecl.metrics import Z95
from moecl.results import ResultsFileError, make_header, save_results, summarise


def _store(folder, name="toy", scale="paper", seed=0, R=50, T=30, rng_seed=1):
    rng = np.random.default_rng(rng_seed)
    values = rng.normal(1.0, 0.5, size=(R, T))
    arrays = {"rounds": np.arange(1, T + 1), **summarise(values, "A/generalization"), **summarise(values[:, 0], "A/T1")}
    header = make_header(name, scale, seed, R, wall_time=12.3, rounds=T)
    save_results(folder / report.stored_name(name, scale, seed), header, arrays)
    return values


# --------------------------------------------------------------------------- stored runs


def test_load_stored_reads_the_file_by_experiment_name(tmp_path, capsys):
    values = _store(tmp_path)
    header, arrays = report.load_stored("toy", folder=tmp_path)
    assert header["experiment"] == "toy" and header["replicates"] == 50
    assert np.allclose(arrays["A/generalization/mean"], values.mean(axis=0))
    assert capsys.readouterr().out == ""


def test_load_stored_missing_says_how_to_create_it_in_one_line(tmp_path, capsys):
    assert report.load_stored("drift", folder=tmp_path) is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert "create it with: python -m moecl run drift --scale paper --out results" in out
    assert str(tmp_path) not in out and "/" not in out.replace("--out results", "")  # no filesystem path
    assert report.load_stored("drift", seed=3, folder=tmp_path, quiet=True) is None
    assert capsys.readouterr().out == ""
    assert report.create_command("drift", seed=3) == "python -m moecl run drift --scale paper --seed 3 --out results"


def test_load_stored_rejects_a_damaged_file(tmp_path):
    (tmp_path / report.stored_name("bad")).write_bytes(b"not a zip")
    with pytest.raises(ResultsFileError):
        report.load_stored("bad", folder=tmp_path)


def test_stored_name_matches_the_command_line(tmp_path):
    from moecl.cli import result_path

    for name, scale, seed in [("drift", "paper", 0), ("regime-map", "ci", 7)]:
        assert result_path(tmp_path, name, scale, seed) == os.path.join(str(tmp_path), report.stored_name(name, scale, seed))


def test_results_folder_environment_and_checkout(tmp_path, monkeypatch):
    monkeypatch.setenv(report.RESULTS_ENV, str(tmp_path / "elsewhere"))
    assert report.results_folder() == tmp_path / "elsewhere"
    monkeypatch.delenv(report.RESULTS_ENV)
    (tmp_path / "results").mkdir()
    (tmp_path / "moecl").mkdir()
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")  # chapters run in book/
    assert report.results_folder() == tmp_path / "results"


def test_the_repository_results_load_by_name():
    # The stored full runs of the repository are found from the book/ folder.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "from moecl import report; s = report.load_stored('drift'); print(s is not None and report.describe(s))"
    out = subprocess.run([sys.executable, "-c", code], cwd=os.path.join(root, "book"), capture_output=True,
                         text=True, env={**os.environ, report.RESULTS_ENV: ""}, check=True).stdout
    assert out.startswith("drift (paper scale), R = ") and ", T = " in out and "created 20" in out


def test_describe_is_one_line(tmp_path):
    _store(tmp_path)
    line = report.describe(report.load_stored("toy", folder=tmp_path))
    assert line.startswith("toy (paper scale), R = 50, T = 30, seed 0, 12 s, moecl ")
    assert "\n" not in line


# --------------------------------------------------------------------------- numbers


def test_at_reads_a_round_or_a_scalar(tmp_path):
    values = _store(tmp_path)
    _, arrays = report.load_stored("toy", folder=tmp_path)
    mean, se = report.at(arrays, "A/generalization")
    assert mean == pytest.approx(values[:, -1].mean())
    assert se == pytest.approx(values[:, -1].std(ddof=1) / math.sqrt(50))
    assert report.at(arrays, "A/generalization", 4)[0] == pytest.approx(values[:, 4].mean())
    assert report.at(arrays, "A/T1")[0] == pytest.approx(values[:, 0].mean())
    with pytest.raises(KeyError, match="A/generalization"):
        report.at(arrays, "B/generalization")


def test_z_diff_and_its_hand_written_forms():
    a, b = (1.0, 0.3), (0.2, 0.4)
    assert report.z_diff(a, b) == pytest.approx(0.8 / 0.5)
    assert report.z_diff(b, a) == pytest.approx(-1.6)
    assert report.z_diff(a, b) == pytest.approx((a[0] - b[0]) / np.hypot(a[1], b[1]))
    with pytest.raises(ValueError):
        report.z_diff((1.0, 0.0), (0.0, 0.0))


def test_difference_of_independent_samples():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 1.0, 0.5])
    gap, z = report.difference(a, b)
    se = math.hypot(a.std(ddof=1) / 2, b.std(ddof=1) / math.sqrt(3))
    assert gap == pytest.approx(2.5 - 0.5) and z == pytest.approx(2.0 / se)


def test_paired_uses_the_spread_of_the_differences():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=40) * 10  # common randomness, cancelled by pairing
    a, b = shared + 1.0 + 0.1 * rng.normal(size=40), shared + 0.1 * rng.normal(size=40)
    mean, se, z = report.paired(a, b)
    assert mean == pytest.approx(np.mean(a - b)) and se == pytest.approx(np.std(a - b, ddof=1) / math.sqrt(40))
    assert z == pytest.approx(mean / se) and z > 20
    assert abs(report.difference(a, b)[1]) < 3  # unpaired, the shared spread hides the effect
    with pytest.raises(ValueError):
        report.paired(np.ones(4), np.zeros(4))


# --------------------------------------------------------------------------- checks


def test_checks_print_one_summary_when_all_hold(capsys):
    checks = report.Checks("termination")
    assert checks.that(4.2 > 3, "termination lowers forgetting", z=4.2)
    assert checks.that(np.array([True, True]), "every seed agrees")
    assert checks.done() is None  # a cell ending in checks.done() shows only the summary
    out = capsys.readouterr().out
    assert " ".join(out.split()) == "termination: 2 checks passed: termination lowers forgetting; every seed agrees"
    assert all(len(line) <= report.LINE_WIDTH for line in out.splitlines())


def test_checks_wrap_at_a_given_width(capsys):
    checks = report.Checks("a section with a long name", width=40)
    for k in range(6):
        checks.that(True, f"claim number {k} holds on every seed")
    checks.done()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 3 and all(len(line) <= 40 for line in lines)
    assert report.Checks("default").width == report.LINE_WIDTH


def test_checks_name_every_failed_claim_with_its_values(capsys):
    checks = report.Checks("gate")
    checks.that(True, "holds")
    assert not checks.that(1.2 > 3, "routing beats random", z=1.2)
    checks.that(np.array([True, False]), "every pool", value=np.array([0.4, -0.1]))
    checks.that(0.1 < 0.05, "small", value=(0.1, 0.02))
    assert checks.failed == ["routing beats random", "every pool", "small"]
    with pytest.raises(AssertionError) as error:
        checks.done()
    text = str(error.value)
    assert "gate: 3 of 4 checks failed" in text
    assert "routing beats random (z = 1.2)" in text
    assert "every pool (value = [ 0.4, -0.1])" in text
    assert "small (value = 0.1 ± 0.02)" in text
    assert "holds" not in text
    assert capsys.readouterr().out == ""


def test_checks_context_manager_and_misuse():
    with report.Checks("ok") as checks:
        checks.that(True, "fine")
    with pytest.raises(AssertionError, match="1 of 1 checks failed"):
        with report.Checks("bad") as checks:
            checks.that(False, "wrong")
    with pytest.raises(AssertionError, match="no checks"):
        report.Checks("empty").done()
    with pytest.raises(TypeError):
        report.Checks("x").that("yes", "a string is no condition")
    with pytest.raises(ValueError):
        report.Checks("x").that(np.array([]), "empty")


def test_report_is_light():
    # Chapters import it next to numpy; it must not pull in torch or matplotlib.
    code = "import sys, moecl.report; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_z95_band_constant():
    assert Z95 == pytest.approx(1.959964, abs=1e-6)


# --------------------------------------------------------------------------- tables


def test_table_is_a_markdown_table():
    rows = [{"method": "SEED, $M = 4$", "accuracy": 0.912345, "z": 4.2, "seeds": 3},
            {"method": "a|b", "accuracy": 0.5, "z": -1.0, "seeds": 10}]
    text = report.table(rows, formats={"z": "{:+.1f}"})._repr_markdown_()
    assert text.splitlines() == [
        "| method | accuracy | z | seeds |",
        "|:---|---:|---:|---:|",
        "| SEED, $M = 4$ | 0.9123 | +4.2 | 3 |",
        "| a\\|b | 0.5 | -1.0 | 10 |",
    ]
    by_position = report.table([("x", 1.0)], columns=["name", "value"], formats={"value": lambda v: f"{v:.2f}"})
    assert str(by_position).splitlines()[-1] == "| x | 1.00 |"
    with pytest.raises(ValueError):
        report.table([("x", 1.0)])
    with pytest.raises(ValueError):
        report.table([("x",)], columns=["a", "b"])
    with pytest.raises(ValueError):
        report.table([])


def test_book_renders_markdown_outputs_as_myst():
    import yaml

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "_config.yml")) as f:
        config = yaml.safe_load(f)
    assert config["sphinx"]["config"]["nb_render_markdown_format"] == "myst"  # tables and math in report.table


# --------------------------------------------------------------------------- data sources


@pytest.mark.parametrize("source, shown", [
    ("MNIST from /work/data/mnist", "MNIST (official files)"),
    ("MNIST from ~/data/mnist", "MNIST (official files)"),
    ("CIFAR-10 from /d/cifar-10-batches-py (1 of 5 training batches: data_batch_1)",
     "CIFAR-10 (official files; 1 of 5 training batches: data_batch_1)"),
    ("Tiny ImageNet from /d/tiny-imagenet-200 (2000 train / 1000 val images, 20 of 20 classes), average-pooled 2x2",
     "Tiny ImageNet (official files; 2000 train / 1000 val images, 20 of 20 classes), average-pooled 2x2"),
    ("scikit-learn digits (8x8, UCI optdigits) (fallback: MNIST not found in /root/.cache/moecl)",
     "scikit-learn digits (8x8, UCI optdigits) (fallback: MNIST not found in the data directory)"),
    ("scikit-learn digits (8x8, UCI optdigits)", "scikit-learn digits (8x8, UCI optdigits)"),
])
def test_data_source_names_the_data_without_its_folder(source, shown):
    assert report.data_source(source) == shown
    assert "/d/" not in report.data_source(source) and "/root" not in report.data_source(source)


def test_t_interval_is_wider_than_the_normal_one_for_few_seeds():
    values = np.array([1.0, 2.0, 4.0])
    mean, half = report.t_interval(values)
    assert mean == pytest.approx(7 / 3)
    assert half == pytest.approx(4.302653 * values.std(ddof=1) / math.sqrt(3), rel=1e-6)
    means, halves = report.t_interval(np.array([[1.0, 5.0], [3.0, 5.0]]))  # per column
    np.testing.assert_allclose(means, [2.0, 5.0])
    assert halves[1] == 0 and halves[0] > Z95 * 1.0
    with pytest.raises(ValueError, match="at least 2 values"):
        report.t_interval([1.0])


def test_load_long_runs_finds_each_stream_by_name(tmp_path):
    for name in ("deep-methods-long-seed0-stream=digits-1v.npz",
                 "deep-methods-long-seed0-R5-stream=cifar10-T=80.npz",
                 "deep-methods-long-seed0-stream=digits-1vx.npz",       # another stream's name
                 "deep-methods-ci-seed0-stream=cifar10.npz"):          # not a long run
        save_results(tmp_path / name, make_header("deep-methods", "long", 0, 2, wall_time=1.0, rounds=3, tag=name),
                     {"x": np.zeros(2)})
    found = report.load_long_runs(folder=tmp_path)
    assert sorted(found) == ["cifar10", "digits-1v"]
    assert found["digits-1v"][0]["tag"] == "deep-methods-long-seed0-stream=digits-1v.npz"
    assert found["cifar10"][0]["tag"] == "deep-methods-long-seed0-R5-stream=cifar10-T=80.npz"
    assert report.load_long_runs(("tiny-imagenet",), folder=tmp_path) == {}


def test_paired_verdict_settles_the_sign_only_when_the_interval_excludes_zero():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    mean, half, sign = report.paired_verdict(a + 1.0, a)       # every seed +1: settled above
    assert (mean, half, sign) == (1.0, 0.0, 1)
    mean, half, sign = report.paired_verdict(a, a + np.array([0.5, 0.4, 0.6, 0.5]))
    assert sign == -1 and mean == pytest.approx(-0.5) and 0 < half < 0.5
    mean, half, sign = report.paired_verdict(a, a + np.array([1.0, -1.0, 1.0, -1.0]))  # mean 0
    assert sign == 0 and half > 0
    expected = report.t_interval(np.array([0.3, -0.1, 0.4]))
    assert report.paired_verdict([0.3, -0.1, 0.4], [0.0, 0.0, 0.0])[:2] == pytest.approx(expected)
