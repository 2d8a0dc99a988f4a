"""The README's recipes for adding a task work: another classifier (three files) and a new kind of output (a
segmentation U-Net, four files), dropped into a fresh bake with no other change, pass every generic test."""

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


def test_readme_shows_the_files_of_both_recipes_and_only_new_files():
    paths = sorted(readme_files())
    assert paths == [
        "configs/mnist_mlp.yaml",
        "configs/segmentation.yaml",
        "src/roadmap_project/data/shapes.py",
        "src/roadmap_project/tasks/mnist_mlp.py",
        "src/roadmap_project/tasks/segmentation.py",
        "tests/test_mnist_mlp.py",
        "tests/test_segmentation.py",
    ]


def test_adding_tasks_as_the_readme_says_trains_and_passes_the_generic_tests(bake):
    project = bake()
    for path, body in readme_files().items():
        assert not (project / path).exists(), f"{path} is not a new file"
        (project / path).write_text(body)
    lint = run(python("-m", "ruff", "check", "."), project)
    assert lint.returncode == 0, lint.stdout
    # Every generic test, the slow ones too (plain `pytest` checks some machinery on a few tasks only), but DDP's.
    selected = "(mnist_mlp or segmentation) and not ddp"
    everything = ["-m", "slow or not slow", "-k", selected]
    tests = run(python("-m", "pytest", "-v", "-p", "no:cacheprovider", *everything), project, timeout=1800)
    assert tests.returncode == 0, tests.stdout[-5000:]
    passed = Counter(  # `[gw0] [ 50%] PASSED tests/test_cli.py::test_...[mnist_mlp]`, from a pytest-xdist worker
        (
            next(word for word in line.split() if "::" in word).split("::")[0],
            "segmentation" if "segmentation" in line else "mnist_mlp",
        )
        for line in tests.stdout.splitlines()
        if " PASSED" in line
    )
    for task in ("mnist_mlp", "segmentation"):
        assert {file: count for (file, of), count in passed.items() if of == task} == {
            f"tests/test_{task}.py": 1,  # its own test
            "tests/test_cli.py": 6,  # fast_dev_run, fit/test/predict, training further after a resume, three bad values
            "tests/test_scale.py": 2,  # bf16-mixed, bf16-true
            "tests/test_export.py": 1,  # ONNX and .pt2 against eager, and each file's test scores
            "tests/test_quantize.py": 4,  # post-training, quantization-aware, int8 weights, int8 ONNX
            # served = predict_step from .ckpt, ONNX, both int8, .pt2; health; batches; bad input; fuzzed from OpenAPI
            "tests/test_serve.py": 9,
            "tests/test_optimizers.py": 1,  # another optimizer from the command line
            **BROWSER_TEST,  # the playground page in a browser
        }, (task, tests.stdout[-3000:])
