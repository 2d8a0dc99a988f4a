"""A baked project takes the template's later fixes: `cruft update` merges a new template commit into a project
that its user changed, as the project's README (Updating from the template) and its CI say.

The template is copied, as this checkout holds it, into a git repository of its own (commit 1); a project is baked
from it and edited as a user would (a task file, the README); the template moves on (commit 2); the project updates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PACKAGE, QUESTIONS, TEMPLATE, answers, python, run

XOR_ONLY = answers(tasks=("xor",))  # the fastest project: its own tests run here
ROOT = "{{cookiecutter.__project_dir}}"  # the project, in the template
SOURCE = ROOT + "/src/{{cookiecutter.__package}}"
USER_LINE = "Our lab's fork: see docs/lab.md."
TEMPLATE_LINE = "Changed by the template's commit 2."
ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # cruft and cookiecutter, as in CI
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,  # no signing or hooks from this machine's git configuration
    "GIT_CONFIG_NOSYSTEM": "1",
}


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert not check or done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def commit(repo: Path, message: str) -> str:
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", message, cwd=repo)
    return sh("git", "rev-parse", "HEAD", cwd=repo).stdout.strip()


@pytest.fixture
def template(tmp_path) -> Path:
    """This checkout's template files, committed or not, as commit 1 of a repository of their own."""
    copy = tmp_path / "template"
    listed = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=TEMPLATE).stdout
    for name in filter(None, listed.split("\0")):
        if (TEMPLATE / name).is_file():  # not a file deleted in the work tree
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TEMPLATE / name, copy / name)
    sh("git", "init", "-q", cwd=copy)
    commit(copy, "the template at commit 1")
    return copy


def edit_as_a_user(project: Path) -> None:
    """A line under the README's title and a note in the task's docstring, committed."""
    readme = project / "README.md"
    title, rest = readme.read_text().split("\n", 1)
    readme.write_text(f"{title}\n\n{USER_LINE}\n{rest}")
    task = project / f"src/{PACKAGE}/tasks/xor.py"
    first, rest = task.read_text().split("\n", 1)
    task.write_text(f"{first} {USER_LINE}\n{rest}")
    commit(project, "the user's changes")


def appended(text: str) -> str:
    return f"{text}# {TEMPLATE_LINE}\n"


def move_the_template_on(template: Path) -> str:
    """Commit 2 changes a shared module, the README and the task file (away from the user's lines), the lock the
    post-generation hook renames, and a task the project does not have."""
    lock = f"{ROOT}/constraints/py{QUESTIONS['python_version'][0]}.txt"  # the default Python's
    changes = {
        f"{SOURCE}/runs.py": lambda text: text.replace('"""', f'"""{TEMPLATE_LINE} ', 1),
        f"{ROOT}/README.md": lambda text: f"{text}\n{TEMPLATE_LINE}\n",
        f"{SOURCE}/tasks/xor.py": appended,
        lock: appended,
        f"{SOURCE}/tasks/gan.py": appended,
    }
    for name, change in changes.items():
        path = template / name
        path.write_text(change(path.read_text()))
    return commit(template, "the template at commit 2")


def template_updates_step(project: Path) -> str:
    """The command of CI's step that runs `cruft check`, after checking that the step cannot fail the build."""
    steps = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())["jobs"]["test"]["steps"]
    (step,) = [step for step in steps if "cruft check" in step.get("run", "")]
    assert step["continue-on-error"] is True and ".cruft.json" in step["if"], step
    return step["run"]


def assert_updated(project: Path, template_commit: str) -> None:
    """The template's commit 2 is in the project, the user's lines too, with no conflict and nothing else."""
    status = sh("git", "status", "--porcelain", cwd=project).stdout
    assert not re.search(r"^(DD|AU|UD|UA|DU|AA|UU) ", status, re.MULTILINE), status
    assert not list(project.rglob("*.rej")), status
    changed = set(sh("git", "diff", "HEAD", "--name-only", cwd=project).stdout.split())
    assert changed == {
        ".cruft.json",
        "README.md",
        "constraints.txt",
        f"src/{PACKAGE}/runs.py",
        f"src/{PACKAGE}/tasks/xor.py",
    }, status
    for name in changed:
        assert "<<<<<<<" not in (project / name).read_text(), name
    readme, task = (project / "README.md").read_text(), (project / f"src/{PACKAGE}/tasks/xor.py").read_text()
    assert USER_LINE in readme and TEMPLATE_LINE in readme
    assert USER_LINE in task and TEMPLATE_LINE in task
    assert TEMPLATE_LINE in (project / f"src/{PACKAGE}/runs.py").read_text()
    assert (project / "constraints.txt").read_text().endswith(f"# {TEMPLATE_LINE}\n")  # the hook ran on both renders
    assert not (project / f"src/{PACKAGE}/tasks/gan.py").exists()
    assert json.loads((project / ".cruft.json").read_text())["commit"] == template_commit
    sh("cruft", "check", cwd=project)


def test_cruft_update_merges_a_later_template_commit_into_a_changed_project_whose_tests_pass(template, tmp_path):
    sh("cruft", "create", "--no-input", "--output-dir", str(tmp_path), "--extra-context", json.dumps(XOR_ONLY),
       str(template), cwd=tmp_path)  # fmt: skip
    project = tmp_path / "roadmap-project"
    sh("git", "init", "-q", cwd=project)
    commit(project, "baked")
    edit_as_a_user(project)
    step = template_updates_step(project)
    assert sh("bash", "-c", step, cwd=project, check=False).returncode == 0  # CI: up to date, no warning

    new = move_the_template_on(template)
    warned = sh("bash", "-c", step, cwd=project, check=False)
    assert warned.returncode != 0 and "::warning" in warned.stdout, warned.stdout  # CI: a warning on a step
    sh("cruft", "update", "--skip-apply-ask", cwd=project)  # the README's `cruft update`, without its question

    assert_updated(project, new)
    assert sh("bash", "-c", step, cwd=project, check=False).returncode == 0
    tests = run(
        python("-m", "pytest", "-q", "-x", "tests/test_xor.py::test_xor_data_is_the_truth_table_repeated",
               "tests/test_xor.py::test_default_config_reaches_100_percent_for_every_seed[0]"),
        project,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_a_plain_cookiecutter_bake_linked_as_its_readme_says_updates_the_same_way(template, tmp_path):
    baked_at = sh("git", "rev-parse", "HEAD", cwd=template).stdout.strip()
    sh("cookiecutter", "--no-input", "-o", str(tmp_path), str(template), *(f"{k}={v}" for k, v in XOR_ONLY.items()),
       cwd=tmp_path)  # fmt: skip
    project = tmp_path / "roadmap-project"
    assert not (project / ".cruft.json").exists()
    sh("git", "init", "-q", cwd=project)
    commit(project, "baked")
    edit_as_a_user(project)
    new = move_the_template_on(template)

    (link,) = [line for line in (project / "README.md").read_text().splitlines() if line.startswith("cruft link ")]
    sh("bash", "-c", link.replace("<commit>", baked_at).replace("<template>", str(template)), cwd=project)
    commit(project, "linked to the template")
    sh("cruft", "update", "--skip-apply-ask", cwd=project)

    assert_updated(project, new)
