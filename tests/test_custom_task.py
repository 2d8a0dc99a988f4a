"""The README's recipe for adding a task works: its three code blocks, dropped into a fresh bake, pass the tests."""

from __future__ import annotations

import re
import shutil
from collections import Counter

from conftest import TEMPLATE, python, run

# The generated browser test runs where a chromium and its driver are installed (.ci/run installs them), else skips.
BROWSER_TEST = {"tests/test_playground.py": 1} if shutil.which("chromedriver") else {}

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
    tests = run(python("-m", "pytest", "-v", "-p", "no:cacheprovider", "-m", "not slow", "-k", "mnist_mlp"), project)
    assert tests.returncode == 0, tests.stdout[-5000:]
    passed = Counter(line.split("::")[0] for line in tests.stdout.splitlines() if " PASSED" in line)
    assert passed == {
        "tests/test_mnist_mlp.py": 1,  # its own test
        "tests/test_cli.py": 6,  # fast_dev_run, fit/test/predict, training further after a resume, three bad values
        "tests/test_scale.py": 2,  # bf16-mixed, bf16-true
        "tests/test_export.py": 1,  # ONNX and .pt2 against eager
        "tests/test_quantize.py": 4,  # post-training, quantization-aware, int8 weights, int8 ONNX
        # served = predict_step from .ckpt, ONNX, both int8, .pt2; health; batches; bad input; fuzzed from OpenAPI
        "tests/test_serve.py": 9,
        **BROWSER_TEST,  # the playground page in a browser
    }, tests.stdout[-3000:]
