"""Bad answers are refused before anything is written: one line that says what is wrong, and no folder left."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUESTIONS, TEMPLATE, answers

sys.path.insert(0, str(TEMPLATE / "tools"))
import shadowed_modules  # noqa: E402

REFUSED = [
    ({"project": ""}, "project name is empty"),
    ({"project": "   "}, "project name is empty"),
    ({"project": "3d-vision"}, "not a valid Python identifier"),
    ({"project": "my-project!"}, "not a valid Python identifier"),
    ({"project": "class"}, "is a Python keyword"),
    ({"project": "match"}, "is a Python keyword"),
    ({"project": "torch"}, "would shadow the module 'torch'"),
    ({"project": "Lightning"}, "would shadow the module 'lightning'"),
    ({"project": "json"}, "would shadow the module 'json'"),
    ({"project": "test"}, "would shadow the module 'test'"),
    ({"project": "a/b"}, "path separator"),
    ({"project": "..evil"}, "path separator"),
    ({"project": "Café"}, "non-ASCII"),
    ({"project": "x" * 61}, "61 characters long"),
    ({"project": "x" * 300}, "300 characters long"),  # longer than a file name may be: still the hook's line
    ({"project": "_private"}, "must start with a letter and end with a letter or digit"),
    ({"project": "name-"}, "must start with a letter and end with a letter or digit"),
    ({"project": "__init__"}, "must start with a letter and end with a letter or digit"),
    ({"project": "."}, "must start with a letter and end with a letter or digit"),
    ({"project": "sympy"}, "would shadow the module 'sympy'"),  # torch's dependency
    ({"project": "Starlette"}, "would shadow the module 'starlette'"),  # FastAPI's
    ({"project": "pil"}, "would shadow the module 'pil'"),  # Pillow's PIL, on a case-insensitive file system
    ({"project": "pip"}, "would shadow the module 'pip'"),
    ({"project": "wheel"}, "would shadow the module 'wheel'"),
    ({"project": "usercustomize"}, "would shadow the module 'usercustomize'"),  # imported at start-up outside a venv
    ({"project": "PyYAML"}, "distribution name 'pyyaml'"),  # its module is yaml: installing would replace PyYAML
    ({"project": "python"}, "command name 'python'"),  # a venv's bin/python
    ({"project": "torchrun"}, "command name 'torchrun'"),  # torch's
    ({"project": 'say "hi"'}, "not a valid Python identifier"),
    (answers(tasks=()), "no task selected"),
    ({"project": "a/b/c"}, "path separator"),
]
# cookiecutter itself refuses an answer outside a choice list, before the hook runs.
OUTSIDE_CHOICES = [{"include_xor": "maybe"}, {"logger": "neptune"}, {"python_version": "2.7"}, {"license": "GPL"}]


def left_behind(tmp_path: Path) -> list[Path]:
    """What a bake left under pytest-cookies' output folders (cookies/bakeNN/)."""
    return [path for bake in (tmp_path / "cookies").iterdir() for path in bake.rglob("*")]


@pytest.mark.parametrize(("context", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_bad_answer_fails_the_bake_with_its_message_and_leaves_nothing(cookies, capfd, tmp_path, context, message):
    result = cookies.bake(extra_context=context)
    assert result.exit_code != 0
    error_lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR: ")]
    assert message in error_lines[0]
    assert left_behind(tmp_path) == []


@pytest.mark.parametrize("context", OUTSIDE_CHOICES, ids=lambda c: next(iter(c)))
def test_answer_outside_its_choices_is_refused_with_the_choices_and_leaves_nothing(cookies, tmp_path, context):
    result = cookies.bake(extra_context=context)
    assert result.exit_code != 0
    assert "but the choices are" in str(result.exception)
    assert left_behind(tmp_path) == []


@pytest.mark.parametrize(
    ("project", "package"),
    [("My Project", "my_project"), ("digit-classifier", "digit_classifier"), ("Roadmap.Demo", "roadmap_demo")],
)
def test_spaces_dashes_dots_and_capitals_become_a_valid_package(bake, project, package):
    path = bake(project=project)
    assert path.name == project
    assert (path / "src" / package / "cli.py").exists()
    assert f"python -m {package} fit" in (path / "README.md").read_text()
    # Every file says the project's own names: none was left with the default project's (test_artifacts.py once was).
    texts = {file: file.read_bytes() for file in path.rglob("*") if file.is_file()}
    assert not [file for file, text in texts.items() if b"roadmap_project" in text or b"roadmap-project" in text]


def test_every_name_a_new_virtual_environment_holds_is_refused(cookies, capfd, tmp_path):
    """Derived here, apart from tools/shadowed_modules.py: what `python -m venv` puts in site-packages (modules and
    distributions) and in bin (commands), and what its interpreter imports at start-up, found or not."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    site_packages = next(venv.glob("lib/python*/site-packages"))
    modules = {path.stem for path in site_packages.iterdir() if (path / "__init__.py").exists() or path.suffix == ".py"}
    distributions = {path.name.split("-")[0] for path in site_packages.glob("*.dist-info")}
    commands = {path.name for path in (venv / "bin").iterdir() if re.fullmatch(r"[a-z][a-z0-9-]*", path.name)}
    python = venv / "bin" / "python"
    started = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True)
    tried = {line.split("|")[-1].strip().split(".")[0] for line in started.stderr.splitlines()[1:]}  # after the header
    startup = tried - set(sys.stdlib_module_names)
    assert {"pip", "pkg_resources"} <= modules | distributions and "python" in commands and "sitecustomize" in startup
    for name in sorted(modules | distributions | commands | startup):
        capfd.readouterr()
        assert cookies.bake(extra_context={"project": name}).exit_code != 0, f"{name!r} was accepted"
        assert capfd.readouterr().err.startswith("ERROR: "), name


def test_cookiecutter_command_line_prints_the_hooks_line_then_its_own_report_and_writes_nothing(tmp_path):
    """Cookiecutter reports every failed hook with its own traceback, after the hook's line: the README says so."""
    done = subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path), str(TEMPLATE), "project=pip"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode != 0
    assert lines[0].startswith("ERROR: package name 'pip' would shadow the module 'pip'")
    assert lines[1] == "ERROR: Stopping generation because pre_gen_project hook script didn't exit successfully"
    assert lines[-1] == "Hook script failed (exit status: 1)"
    assert not any("ERROR: " in line for line in lines[2:])  # the rest is cookiecutter's traceback of that exit
    assert list(tmp_path.iterdir()) == []


def test_the_hooks_choice_lists_are_cookiecutter_jsons():
    """The hook keeps its own copy of the logger and Python choices (it runs where cookiecutter.json is not)."""
    hook = ast.parse((TEMPLATE / "hooks" / "pre_gen_project.py").read_text())
    lists = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in hook.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("LOGGERS", "PYTHONS")
    }
    assert lists == {"LOGGERS": tuple(QUESTIONS["logger"]), "PYTHONS": tuple(QUESTIONS["python_version"])}


def test_the_hooks_taken_names_hold_every_name_the_locked_dependencies_and_a_new_environment_install():
    """Derived from the lock, not hand-kept: a new lock whose packages install another top-level module, distribution
    or command fails this test until tools/shadowed_modules.py is run (make lock runs it); a release upstream changes
    nothing here."""
    names, missing = shadowed_modules.taken_names()
    assert not missing, f"the environment is not requirements-dev.txt (run make): {sorted(missing)}"
    assert {"torch", "sympy", "starlette", "requests", "PIL"} <= names["MODULES"]  # the closure, not the dependencies
    assert {"pkg_resources", "sitecustomize", "usercustomize"} <= names["MODULES"]  # a new venv, its start-up
    assert {"pyyaml", "pillow", "setuptools"} <= names["DISTRIBUTIONS"] and {"torchrun", "python"} <= names["COMMANDS"]
    in_hook = shadowed_modules.names_in_hook()
    lacking = {kind: sorted(names[kind] - in_hook[kind]) for kind in names if names[kind] - in_hook[kind]}
    assert not lacking, f"hooks/pre_gen_project.py lacks {lacking}: run python tools/shadowed_modules.py"


def test_a_name_at_the_length_limit_bakes_into_a_folder_of_that_name(bake):
    assert bake(project="a" * 60).name == "a" * 60
