"""Bake the template with every combination of tasks and loggers; check the files, lint and imports of each,
and run each baked project's own tests (all of them for the default project)."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import LOGGERS, PACKAGE, QUESTIONS, TASKS, TEMPLATE, answers, python, run, task_subsets
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SRC = f"src/{PACKAGE}"
ALWAYS = {
    ".cookiecutter.json",
    ".dockerignore",
    ".gitignore",
    "Dockerfile",
    "Makefile",
    ".pre-commit-config.yaml",
    ".github/workflows/ci.yml",
    ".github/workflows/lock.yml",
    "constraints.txt",
    "LICENSE",
    "README.md",
    "ROADMAP.md",
    "pyproject.toml",
    "roadmap/stage1_tensors.py",
    "roadmap/stage2_training_loop.py",
    "scripts/gpu_check.py",
    "scripts/image_check.py",
    "scripts/slurm.sh",
    "scripts/slurm_sweep.sh",
    "scripts/torchrun.sh",
    f"{SRC}/__init__.py",
    f"{SRC}/__main__.py",
    f"{SRC}/cli.py",
    f"{SRC}/callbacks.py",
    f"{SRC}/hardware.py",
    f"{SRC}/task.py",
    f"{SRC}/artifacts.py",
    f"{SRC}/atomic.py",
    f"{SRC}/model_card.py",
    f"{SRC}/export.py",
    f"{SRC}/int8.py",
    f"{SRC}/optim.py",
    f"{SRC}/outputs.py",
    f"{SRC}/runs.py",
    f"{SRC}/scores.py",
    f"{SRC}/quantize.py",
    f"{SRC}/serve/__init__.py",
    f"{SRC}/serve/app.py",
    f"{SRC}/serve/batching.py",
    f"{SRC}/serve/budget.py",
    f"{SRC}/serve/metrics.py",
    f"{SRC}/serve/errors.py",
    f"{SRC}/serve/routes.py",
    f"{SRC}/serve/schemas.py",
    f"{SRC}/serve/settings.py",
    f"{SRC}/plots.py",
    f"{SRC}/experiments/__init__.py",
    f"{SRC}/experiments/launch.py",
    f"{SRC}/experiments/repeat.py",
    f"{SRC}/experiments/space.py",
    f"{SRC}/experiments/sweep.py",
    f"{SRC}/tasks/__init__.py",
    f"{SRC}/data/__init__.py",
    f"{SRC}/data/base.py",
    f"{SRC}/data/codec.py",
    "tests/conftest.py",
    "tests/test_cli.py",
    "tests/test_optimizers.py",
    "tests/test_roadmap.py",
    "tests/test_scale.py",
    "tests/test_export.py",
    "tests/test_artifacts.py",
    "tests/test_own_data.py",
    "tests/test_model_card.py",
    "tests/test_experiments.py",
    "tests/test_serve.py",
    "tests/test_quantize.py",
    "tests/test_playground.py",
    "tests/rank_probe.py",
    f"{SRC}/serve/playground.html",
}


def shared_files() -> dict[str, set[str]]:
    """{file: the tasks that need it}: a shared file is there when any of them is (cookiecutter.json's `_tasks`)."""
    shared: dict[str, set[str]] = {}
    for task, spec in QUESTIONS["_tasks"].items():
        for path in [f"{SRC}/{module}" for module in spec.get("modules", [])] + spec.get("files", []):
            shared.setdefault(path, set()).add(task)
    return shared


SHARED = shared_files()
TEXT_TASKS = {"sentiment_rnn", "sentiment_transformer", "bert_finetune"}


def expected_files(tasks: tuple[str, ...]) -> set[str]:
    own = {
        path
        for task in tasks
        for path in (
            f"{SRC}/tasks/{task}.py",
            f"configs/{task}.yaml",
            f"tests/test_{task}.py",
            f"docs/playground/{task}.png",  # its screenshot in the README
        )
    }
    own |= {f"configs/sweeps/{task}.yaml" for task in tasks if task != "gan"}  # a GAN's best.ckpt is kept by step
    shared = {path for path, users in SHARED.items() if users & set(tasks)}
    return ALWAYS | own | shared


def files_of(project: Path) -> set[str]:
    skip = {"__pycache__", ".pytest_cache", ".ruff_cache"}
    return {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file() and not skip & set(p.parts)}


# Every task subset that can prune differently (each task alone, all, all but one) with the default logger,
# and every other logger with all tasks.
COMBINATIONS = [(tasks, "tensorboard") for tasks in task_subsets()]
COMBINATIONS += [(TASKS, logger) for logger in LOGGERS if logger != "tensorboard"]


@pytest.mark.parametrize(("tasks", "logger"), COMBINATIONS, ids=[f"{'+'.join(t)}-{lg}" for t, lg in COMBINATIONS])
def test_every_combination_bakes_a_clean_importable_project(bake, tasks, logger):
    project = bake(tasks=tasks, logger=logger)
    assert files_of(project) == expected_files(tasks)

    for path in project.rglob("*"):
        if path.is_file() and path.suffix != ".png":  # the pictures are copied as they are
            text = path.read_text(encoding="utf-8")
            assert "{{" not in text and "{%" not in text, f"unrendered Jinja in {path.relative_to(project)}"
    for task in set(TASKS) - set(tasks):  # the docs of a pruned task are gone too
        for doc in ("README.md", "ROADMAP.md"):
            assert f"configs/{task}.yaml" not in (project / doc).read_text(), f"{task} still in {doc}"

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    dependencies = " ".join(pyproject["project"]["dependencies"])
    assert pyproject["project"]["name"] == "roadmap-project"
    assert pyproject["project"]["scripts"] == {"roadmap-project": f"{PACKAGE}.cli:main"}
    assert ("torchvision" in dependencies) == bool({"mnist_cnn", "gan", "resnet_finetune", "vit"} & set(tasks))
    assert ("datasets" in dependencies) == ("tokenizers" in dependencies) == bool(TEXT_TASKS & set(tasks))
    assert ("transformers" in dependencies) == ("bert_finetune" in tasks)
    logger_package = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}.get(logger, "lightning")
    assert logger_package in dependencies
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert recorded["logger"] == logger and recorded["include_xor"] == ("yes" if "xor" in tasks else "no")

    lint = run(python("-m", "ruff", "check", "."), project)
    assert lint.returncode == 0, lint.stdout
    formatted = run(python("-m", "ruff", "format", "--check", "."), project)
    assert formatted.returncode == 0, formatted.stdout

    modules = [
        p.relative_to(project / "src").with_suffix("").as_posix().replace("/", ".")
        for p in (project / SRC).rglob("*.py")
    ]
    imported = run(
        python("-c", "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)", *modules), project
    )
    assert imported.returncode == 0, imported.stderr[-3000:]


def test_default_bake_installs_and_passes_its_tests(bake, tmp_path):
    project = bake()
    site = tmp_path / "site"
    installed = run(
        python("-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(project)), project
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert (site / PACKAGE / "cli.py").exists()
    # The console script works like `python -m roadmap_project`, exit code included.
    smoke = run(
        [
            str(site / "bin" / "roadmap-project"),
            "fit",
            "--config",
            "configs/xor.yaml",
            "--trainer.fast_dev_run",
            "true",
        ],
        project,
        pythonpath=site,
    )
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-3000:]
    typo = run(
        [str(site / "bin" / "roadmap-project"), "fit", "--config", "configs/xor.yaml", "--trainer.max_epoch", "1"],
        project,
        pythonpath=site,
    )
    assert typo.returncode == 2 and "max_epoch" in typo.stderr

    typed = run(python("-m", "mypy"), project, pythonpath=site)  # the task contract, checked as types
    assert typed.returncode == 0 and "Success: no issues found" in typed.stdout, typed.stdout[-5000:]

    # Plain `pytest`, as its README says: the tests that are not slow, in a worker per core; about 2 minutes on 2.
    tests = run(python("-m", "pytest", "-q", "-p", "no:cacheprovider"), project, pythonpath=site, timeout=1800)
    assert tests.returncode == 0, tests.stdout[-5000:]
    last = tests.stdout.splitlines()[-1]
    assert " passed" in last and "failed" not in last, last


@pytest.mark.slow
def test_default_bake_passes_its_slow_tests(bake):
    """What the project's CI runs on pull requests and every night besides: DDP, torchrun and SLURM launches, the
    API fuzzer, the playground in a browser (where the machine has one), each task and seed the fast run leaves out."""
    tests = run(python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow"), bake(), timeout=3600)
    assert tests.returncode == 0, tests.stdout[-5000:]
    last = tests.stdout.splitlines()[-1]
    assert " passed" in last and "failed" not in last, last


@pytest.mark.parametrize("task", TASKS)
def test_single_task_bake_runs_its_fast_dev_run(bake, task):
    project = bake(tasks=(task,))
    tests = run(python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "fast_dev_run"), project)
    assert tests.returncode == 0, tests.stdout[-5000:]
    assert "1 passed" in tests.stdout.splitlines()[-1]


@pytest.mark.parametrize("logger", [lg for lg in LOGGERS if lg != "tensorboard"])
def test_each_logger_bake_runs_fast_dev_run_and_its_logger_smoke_run(bake, logger):
    project = bake(logger=logger)
    tests = run(python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "fast_dev_run or chosen_logger"), project)
    assert tests.returncode == 0, tests.stdout[-5000:]
    assert f"{len(TASKS) + 1} passed" in tests.stdout.splitlines()[-1]


@pytest.mark.parametrize("version", QUESTIONS["python_version"])
def test_the_project_keeps_the_lock_of_its_python_and_it_pins_every_requirement(bake, version):
    """constraints.txt is resolved for the project's Python, and pins each package pyproject.toml can ask for: a
    dependency added to the template without `make lock` fails here, not on a user's machine."""
    project = bake(python_version=version)
    lock = (project / "constraints.txt").read_text()
    assert f"autogenerated by pip-compile with Python {version}" in lock
    pinned = set(pins(lock))
    table = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    requirements = [*table["dependencies"], *(r for extra in table["optional-dependencies"].values() for r in extra)]
    unpinned = {canonicalize_name(Requirement(r).name) for r in requirements} - pinned
    assert not unpinned, f"constraints.txt does not pin {sorted(unpinned)}: run make lock"
    assert not (project / "constraints").exists()
    tested = pins((TEMPLATE / "requirements-dev.txt").read_text())
    project_pins = pins(lock)
    assert project_pins["torch"] == tested["torch"], "projects get the torch the template was tested with"
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":  # the Python make test runs on
        differ = {name: (v, tested[name]) for name, v in project_pins.items() if tested.get(name, v) != v}
        assert not differ, f"the project's lock is not what make test ran on: {differ}"


def pins(lock: str) -> dict[str, str]:
    return {canonicalize_name(name): v for name, v in re.findall(r"^([\w.-]+)==(\S+)", lock, re.MULTILINE)}


def test_the_list_of_tasks_is_the_questions_and_each_task_has_its_files_and_docs(bake):
    """Adding a task to the template: cookiecutter.json's `_tasks` and an include_<task> question, then its own
    files (task, config, test, playground screenshot) and its rows in README and ROADMAP; this says what is missing."""
    questions = {key.removeprefix("include_") for key in QUESTIONS if key.startswith("include_")}
    assert set(TASKS) == questions
    project = bake()
    files = files_of(project)
    for task in TASKS:
        own = {f"{SRC}/tasks/{task}.py", f"configs/{task}.yaml", f"tests/test_{task}.py", f"docs/playground/{task}.png"}
        assert own <= files, f"{task} lacks {sorted(own - files)}"
        assert f"| `{task}` |" in (project / "README.md").read_text(), f"README.md's task table has no row for {task}"
        assert f"configs/{task}.yaml" in (project / "ROADMAP.md").read_text(), f"ROADMAP.md has no stage for {task}"


def test_answers_helper_matches_cookiecutter_json():
    """The tests bake with the same keys the template asks for."""
    context = json.loads((Path(__file__).parents[1] / "cookiecutter.json").read_text())
    assert set(answers()) <= set(context)


def test_the_generated_gitignore_ignores_none_of_the_generated_files(bake):
    """`git add .` in a new project must take every file: an unanchored `data/` once hid src/<package>/data/."""
    project = bake()
    assert run(["git", "init", "-q"], project).returncode == 0
    ignored = run(["git", "check-ignore", "--no-index", *sorted(files_of(project))], project)
    assert ignored.returncode == 1 and ignored.stdout == "", f"ignored by .gitignore:\n{ignored.stdout}"
