"""Refuse bad answers before cookiecutter writes anything.

Runs before generation (cookiecutter removes the output folder when this hook fails), so a bad
answer costs one clear line on stderr and leaves nothing behind. Cookiecutter itself refuses an
answer outside its choice list; include_*, logger and python_version are checked here again for a
replayed or edited context. The package name is derived from the project name in
cookiecutter.json; it must be a valid, importable, non-shadowing identifier.
"""

import json
import keyword
import re
import sys

ANSWERS = json.loads(r"""{{ cookiecutter | jsonify }}""")  # a raw string: any name survives as data
PROJECT = ANSWERS["project"]
PACKAGE = ANSWERS["__package"]
# One include_<task> question per task in cookiecutter.json: {task: "yes" | "no"}.
TASKS = {key.removeprefix("include_"): value for key, value in ANSWERS.items() if key.startswith("include_")}
LOGGER = ANSWERS["logger"]
PYTHON = ANSWERS["python_version"]

MAX_LENGTH = 64
# cookiecutter.json's choice lists (a hook cannot read that file: it runs in the new project's folder);
# tests/test_hooks.py fails when the two drift apart.
LOGGERS = ("tensorboard", "csv", "wandb", "mlflow")
PYTHONS = ("3.11", "3.12", "3.13", "3.10")
# Importing any of these by name must keep working inside the generated project.
DEPENDENCIES = {
    "torch",
    "torchvision",
    "torchmetrics",
    "lightning",
    "pytorch_lightning",
    "lightning_fabric",
    "jsonargparse",
    "rich",
    "matplotlib",
    "numpy",
    "tensorboard",
    "wandb",
    "mlflow",
    "yaml",
    "pytest",
    "ruff",
    "setuptools",
    "pip",
    "transformers",
    "datasets",
    "tokenizers",
    "fastapi",
    "pydantic",
    "onnx",
    "onnxruntime",
    "torchao",
    "src",
    "tests",
    "test",  # the standard library's regression tests; sys.stdlib_module_names leaves it out
}


def problem() -> str | None:
    if not PROJECT.strip():
        return "project name is empty; give a name such as 'digit-classifier'"
    if len(PROJECT) > MAX_LENGTH:
        return f"project name is {len(PROJECT)} characters long; keep it to {MAX_LENGTH} or fewer"
    if "/" in PROJECT or "\\" in PROJECT or ".." in PROJECT:
        return f"project name {PROJECT!r} contains a path separator or '..'; use letters, digits, '-', '_' and spaces"
    if PROJECT.strip() != PROJECT:
        return f"project name {PROJECT!r} starts or ends with a space; remove it"
    if not PACKAGE.isascii():
        return f"project name {PROJECT!r} has non-ASCII letters; use ASCII letters, digits, '-', '_' and spaces"
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", PACKAGE):
        return (
            f"package name {PACKAGE!r} (derived from project {PROJECT!r}) is not a valid Python identifier; "
            "start the project name with a letter and use only letters, digits, '-', '_' and spaces"
        )
    if keyword.iskeyword(PACKAGE) or keyword.issoftkeyword(PACKAGE):
        return f"package name {PACKAGE!r} is a Python keyword; choose another project name"
    if PACKAGE in sys.stdlib_module_names or PACKAGE in DEPENDENCIES:
        return (
            f"package name {PACKAGE!r} would shadow the module {PACKAGE!r} of the standard library or a dependency; "
            "choose another project name"
        )
    for task, answer in TASKS.items():
        if answer not in ("yes", "no"):
            return f"include_{task} must be 'yes' or 'no', got {answer!r}"
    if "yes" not in TASKS.values():
        return "no task selected; answer 'yes' to at least one include_<task> question"
    if LOGGER not in LOGGERS:
        return f"logger must be one of {', '.join(LOGGERS)}, got {LOGGER!r}"
    if PYTHON not in PYTHONS:
        return f"python_version must be one of {', '.join(PYTHONS)}, got {PYTHON!r}"
    return None


if (message := problem()) is not None:
    print(f"ERROR: {message}", file=sys.stderr)
    sys.exit(1)
