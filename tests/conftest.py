"""Helpers for the template's tests: bake with pytest-cookies, then inspect and run the baked project."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]
TASKS = ("linear_regression", "xor", "mnist_cnn", "sentiment_rnn", "sentiment_transformer")
LOGGERS = ("tensorboard", "csv", "wandb", "mlflow")
PACKAGE = "roadmap_project"  # derived from the default project name, roadmap-project


def answers(tasks=TASKS, logger: str = "tensorboard", **extra: str) -> dict[str, str]:
    return {**{f"include_{task}": "yes" if task in tasks else "no" for task in TASKS}, "logger": logger, **extra}


def task_subsets() -> list[tuple[str, ...]]:
    return [subset for n in range(1, len(TASKS) + 1) for subset in itertools.combinations(TASKS, n)]


def run(args: list[str], cwd: Path, pythonpath: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a command in the baked project with this interpreter's environment; output kept for the failure message."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath or cwd / "src"), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


@pytest.fixture
def bake(cookies):
    """`bake(tasks=..., logger=...)` -> the baked project's path; fails the test if baking failed."""

    def _bake(**kwargs) -> Path:
        result = cookies.bake(extra_context=answers(**kwargs))
        assert result.exit_code == 0, result.exception
        return Path(result.project_path)

    return _bake
