"""Packaging and publishing files agree with each other.

* ``environment.yml`` (Binder / repo2docker) names exactly the dependencies of
  ``pyproject.toml`` (``[project] dependencies`` plus the ``book`` extra), with the same
  version specifiers, takes torch from the CPU-only index, and installs the package
  from the repository. Both files are read here, so adding a dependency to one of
  them and not to the other fails this test.
* ``_config.yml`` carries the repository and launch-button settings the published
  book needs (the repository URL in no other file), loads sphinx-proof and
  sphinx-exercise from the ``book`` extra, and Binder opens the chapters as notebooks
  (``postBuild``: jupytext's default viewer for ``.md``);
* the workflows under ``.github/workflows`` build, test and deploy with the README's
  commands; the Pages build fetches the data sets (``data_scripts/download.py``, cached)
  first, and the tests keep the browser screenshots.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: The pyproject extras that Binder installs beside the core dependencies.
BINDER_EXTRAS = ("book",)


def normalise(name: str) -> str:
    """PEP 503 normalised project name: ``Scikit_Learn`` -> ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_by_name(lines) -> dict[str, SpecifierSet]:
    """{normalised name: specifier set} of requirement strings (duplicates are an error)."""
    found: dict[str, SpecifierSet] = {}
    for line in lines:
        requirement = Requirement(line)
        name = normalise(requirement.name)
        assert name not in found, f"{name} is listed twice"
        found[name] = requirement.specifier
    return found


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_and_pip(environment: dict) -> tuple[list[str], list[str]]:
    conda, pip = [], None
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            assert set(entry) == {"pip"}, f"unexpected mapping in dependencies: {entry}"
            assert pip is None, "environment.yml has two pip sections"
            pip = [str(line).strip() for line in entry["pip"]]
        else:
            conda.append(str(entry).strip())
    assert pip is not None, "environment.yml has no pip section"
    return conda, pip


def pip_requirement_lines(pip: list[str]) -> list[str]:
    """The pip lines that name a registry requirement (not options, not the local package)."""
    return [line for line in pip if not line.startswith("-") and not line.startswith(".")]


def binder_dependencies(pyproject: dict) -> dict[str, SpecifierSet]:
    project = pyproject["project"]
    lines = list(project["dependencies"])
    for extra in BINDER_EXTRAS:
        lines += project["optional-dependencies"][extra]
    merged: dict[str, SpecifierSet] = {}
    for line in lines:
        requirement = Requirement(line)
        name = normalise(requirement.name)
        merged[name] = merged.get(name, SpecifierSet()) & requirement.specifier
    return merged


def test_environment_names_the_dependencies_of_pyproject(pyproject, environment):
    _, pip = conda_and_pip(environment)
    in_environment = requirements_by_name(pip_requirement_lines(pip))
    in_pyproject = binder_dependencies(pyproject)
    missing = sorted(set(in_pyproject) - set(in_environment))
    extra = sorted(set(in_environment) - set(in_pyproject))
    assert not missing and not extra, (
        f"environment.yml and pyproject.toml disagree: missing from environment.yml {missing}, "
        f"not in pyproject.toml {extra}"
    )
    for name, specifier in in_pyproject.items():
        assert in_environment[name] == specifier, (
            f"{name}: environment.yml asks for '{in_environment[name]}', pyproject.toml for '{specifier}'"
        )


def test_environment_installs_the_package_from_the_repository(pyproject, environment):
    _, pip = conda_and_pip(environment)
    local = [line for line in pip if re.match(r"^(-e\s+)?\.(\[|$)", line)]
    assert len(local) == 1, f"expected one local install line such as '-e .[book]', found {local}"
    extras = re.findall(r"\[([^\]]*)\]", local[0])
    named = {normalise(e.strip()) for e in extras[0].split(",")} if extras else set()
    assert named == set(BINDER_EXTRAS), f"local install line {local[0]!r} should name the extras {BINDER_EXTRAS}"
    assert named <= set(pyproject["project"]["optional-dependencies"])


def test_environment_takes_torch_from_the_cpu_index(environment):
    conda, pip = conda_and_pip(environment)
    index_lines = [line for line in pip if line.startswith("--index-url") or line.startswith("--extra-index-url")]
    assert any(line.split()[-1].rstrip("/") == CPU_INDEX for line in index_lines), (
        f"torch must come from the CPU-only index {CPU_INDEX}; index lines: {index_lines}"
    )
    conda_names = {re.split(r"[=<>!\s]", line, maxsplit=1)[0] for line in conda}
    cuda = conda_names & {"pytorch", "pytorch-gpu", "pytorch-cuda", "cudatoolkit", "cuda-version"}
    assert not cuda, f"conda packages {sorted(cuda)} would bring a CUDA torch"
    assert "torch" in requirements_by_name(pip_requirement_lines(pip))


def test_environment_python_satisfies_requires_python(pyproject, environment):
    conda, _ = conda_and_pip(environment)
    pins = [line for line in conda if re.match(r"^python\s*[=<>]", line)]
    assert len(pins) == 1, f"environment.yml should pin python once, found {pins}"
    version = re.search(r"(\d+\.\d+)", pins[0]).group(1)
    assert Version(version) in SpecifierSet(pyproject["project"]["requires-python"])


def test_the_drift_check_catches_a_missing_dependency(pyproject, environment):
    # The comparison above must notice one dependency dropped from environment.yml.
    _, pip = conda_and_pip(environment)
    lines = pip_requirement_lines(pip)
    dropped = [line for line in lines if normalise(Requirement(line).name) != "sympy"]
    assert len(dropped) == len(lines) - 1
    assert set(requirements_by_name(dropped)) != set(binder_dependencies(pyproject))


# --------------------------------------------------------------------------- book config


@pytest.fixture(scope="module")
def book_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_config_has_repository_and_buttons(book_config):
    repository = book_config["repository"]
    assert re.match(r"^https://github\.com/[^/]+/[^/]+$", repository["url"]), repository["url"]
    assert repository["branch"] == "main"
    html = book_config["html"]
    for button in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
        assert html.get(button) is True, f"_config.yml html.{button} should be true"
    launch = book_config["launch_buttons"]
    assert launch["binderhub_url"].startswith("https://")
    assert launch["notebook_interface"] in ("classic", "jupyterlab")
    # Colab opens only .ipynb files from GitHub; the chapters are MyST markdown, so a
    # Colab button would lead to an error page.
    chapters = list((ROOT / "book").glob("*.ipynb"))
    assert not launch.get("colab_url") or chapters, "a Colab button needs .ipynb chapters"


def test_config_bibliography_files_exist(book_config):
    bibfiles = book_config["bibtex_bibfiles"]
    assert bibfiles, "_config.yml names no bibtex_bibfiles"
    for name in bibfiles:
        assert (ROOT / name).is_file(), f"bibtex file {name} does not exist"


# --------------------------------------------------------------------------- workflows


def load_workflow(name: str) -> dict:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps_of(job: dict) -> list[dict]:
    return job.get("steps", [])


def test_pages_workflow_builds_with_the_readme_recipe_and_deploys():
    workflow = load_workflow("pages.yml")
    assert "push" in workflow["on"]
    jobs = workflow["jobs"]
    build_runs = [step.get("run", "") for step in steps_of(jobs["build"])]
    assert any("bash scripts/book.sh" in run for run in build_runs)
    script = (ROOT / "scripts" / "book.sh").read_text()
    assert "jupyter-book build . -W --keep-going" in script
    assert CPU_INDEX in jobs["build"]["env"]["MOECL_TORCH"]
    uses = {step.get("uses", "").split("@")[0]: step for job in jobs.values() for step in steps_of(job)}
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    assert "actions/deploy-pages" in uses
    deploy = jobs["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"
    assert workflow["concurrency"]["group"]


def test_tests_workflow_runs_the_readme_test_command():
    workflow = load_workflow("tests.yml")
    assert "push" in workflow["on"] and "pull_request" in workflow["on"]
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in steps_of(job)]
    assert any(run.strip() == "bash scripts/test.sh" for run in runs)


def test_pages_workflow_fetches_the_data_sets_before_building():
    workflow = load_workflow("pages.yml")
    steps = steps_of(workflow["jobs"]["build"])
    runs = [step.get("run", "") for step in steps]
    fetch = next(k for k, run in enumerate(runs) if "data_scripts/download.py" in run)
    build = next(k for k, run in enumerate(runs) if "bash scripts/book.sh" in run)
    assert fetch < build, "the data sets must be fetched before the book is built"
    # Every data set named is one download.py knows, and the deep chapters' three are there.
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("moecl_download_script", ROOT / "data_scripts" / "download.py")
    download = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = download  # dataclasses look their module up
    spec.loader.exec_module(download)
    named = set(re.findall(r"--dataset\s+(\S+)", runs[fetch]))
    assert named <= set(download.DATASETS) and {"mnist", "cifar10", "tiny-imagenet"} <= named
    assert '--data-dir "$MOECL_DATA"' in runs[fetch]
    # The folder is the cached one and the book reads it ($MOECL_DATA, set for later steps).
    setting = next(run for run in runs[:fetch] if "MOECL_DATA=" in run)
    folder = re.search(r"MOECL_DATA=\$HOME/(\S+?)\"", setting).group(1)
    cache = next(k for k, step in enumerate(steps) if step.get("uses", "").startswith("actions/cache@"))
    assert cache < fetch and steps[cache]["with"]["path"] == f"~/{folder}"
    assert "data_scripts/download.py" in steps[cache]["with"]["key"]


def test_tests_workflow_keeps_the_screenshots():
    workflow = load_workflow("tests.yml")
    uploads = [step for job in workflow["jobs"].values() for step in steps_of(job)
               if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert any(step["with"]["path"].rstrip("/") == "_build/browser" and step.get("if") == "always()" for step in uploads)


# --------------------------------------------------------------------------- extensions, Binder, one URL


def test_config_loads_sphinx_proof_and_sphinx_exercise_from_the_book_extra(book_config, pyproject):
    extensions = book_config["sphinx"]["extra_extensions"]
    assert {"sphinx_proof", "sphinx_exercise"} <= set(extensions)
    book = {normalise(Requirement(line).name) for line in pyproject["project"]["optional-dependencies"]["book"]}
    for extension in extensions:
        assert normalise(extension.split(".")[0]) in book, f"{extension} is not installed by the book extra"


def test_binder_opens_the_chapters_as_notebooks(environment):
    # repo2docker reads only binder/ (or .binder/) when such a folder exists: it would
    # hide environment.yml and postBuild at the root.
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists()
    post_build = ROOT / "postBuild"
    assert post_build.is_file() and post_build.stat().st_mode & 0o111, "postBuild must be executable"
    text = post_build.read_text()
    assert text.startswith("#!")
    commands = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    viewer = [line for line in commands if line.startswith("jupytext-config set-default-viewer")]
    assert viewer and {"markdown", "myst"} <= set(viewer[0].split()[2:])
    _, pip = conda_and_pip(environment)
    assert "jupytext" in requirements_by_name(pip_requirement_lines(pip))


def test_the_repository_url_is_one_setting(book_config):
    import subprocess

    url = book_config["repository"]["url"]
    try:
        tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    naming = []
    for name in tracked:
        path = ROOT / name
        if name == "_config.yml" or not path.is_file() or path.suffix in {".npz", ".png", ".gz", ".zip"}:
            continue
        try:
            if url in path.read_text():
                naming.append(name)
        except (UnicodeDecodeError, OSError):
            continue
    assert not naming, f"{naming} name the repository URL {url}; it belongs in _config.yml only"
