"""Helpers for the template's tests: bake with pytest-cookies, then inspect and run the baked project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[1]
QUESTIONS = json.loads((TEMPLATE / "cookiecutter.json").read_text())
TASKS = tuple(QUESTIONS["_tasks"])  # the one list of tasks: what each needs besides its own files
LOGGERS = tuple(QUESTIONS["logger"])
PACKAGE = "roadmap_project"  # derived from the default project name, roadmap-project


def answers(tasks=TASKS, logger: str = "tensorboard", **extra: str) -> dict[str, str]:
    return {**{f"include_{task}": "yes" if task in tasks else "no" for task in TASKS}, "logger": logger, **extra}


def task_subsets() -> list[tuple[str, ...]]:
    """Each task alone, all tasks, and all tasks but one: every way a task's files or a shared file can go."""
    alone = [(task,) for task in TASKS]
    all_but_one = [tuple(t for t in TASKS if t != left_out) for left_out in TASKS]
    return [*alone, TASKS, *all_but_one]


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
