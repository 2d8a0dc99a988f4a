"""The README's recipe for adding a task works: its three code blocks, dropped into a fresh bake, pass the tests."""

from __future__ import annotations

import re

from conftest import TEMPLATE, python, run

# A fenced block whose first line is a comment naming the file it belongs in.
BLOCK = re.compile(r"```(?:python|yaml)\n# (?P<path>\S+)\n(?P<body>.*?)```", re.DOTALL)


def readme_files() -> dict[str, str]:
    return {m["path"]: m["body"] for m in BLOCK.finditer((TEMPLATE / "README.md").read_text())}


def test_readme_shows_one_task_file_one_config_one_test():
    paths = sorted(readme_files())
    assert paths == ["configs/mnist_mlp.yaml", "src/roadmap_project/tasks/mnist_mlp.py", "tests/test_mnist_mlp.py"]


def test_adding_a_task_as_the_readme_says_trains_and_passes_the_generic_tests(bake):
    project = bake()
    for path, body in readme_files().items():
        (project / path).write_text(body)
    lint = run(python("-m", "ruff", "check", "."), project)
    assert lint.returncode == 0, lint.stdout
    tests = run(python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-k", "mnist_mlp"), project)
    assert tests.returncode == 0, tests.stdout[-5000:]
    # its own test, plus fast_dev_run, fit/test/predict, two bad values and bf16 from tests/test_cli.py
    assert "6 passed" in tests.stdout.splitlines()[-1]
