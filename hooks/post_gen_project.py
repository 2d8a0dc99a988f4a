"""Remove the files of the tasks that were not selected, and keep the lock of the project's Python.

The template holds every task; README, ROADMAP and pyproject rows are already pruned by Jinja
conditions in those files, so what is left is whole files. A file goes when no selected task needs
it: task code, its config, tests and screenshot, and the modules and files that only those tasks
share, as cookiecutter.json's `_tasks` lists them.
The template holds one lock per Python it offers (constraints/py<X.Y>.txt, tools/project_lock.py);
the project keeps its own Python's as constraints.txt.
"""

import json
import shutil
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | jsonify }}""")
# cookiecutter.json's one list of tasks: {task: {"modules": [shared package modules], "files": [shared files]}}.
TASKS = ANSWERS["_tasks"]
SELECTED = {task for task in TASKS if ANSWERS[f"include_{task}"] == "yes"}
PACKAGE = f"src/{ANSWERS['__package']}"


def needed_by() -> dict[str, set[str]]:
    """Every file that belongs to some tasks: each task's own, and what it shares with others."""
    needs: dict[str, set[str]] = {}
    for task, spec in TASKS.items():
        own = [f"{PACKAGE}/tasks/{task}.py", f"tests/test_{task}.py", f"docs/playground/{task}.png"]
        own += [f"configs/{task}.yaml", f"configs/sweeps/{task}.yaml"]  # its config, and its space for `sweep`
        shared = [f"{PACKAGE}/{module}" for module in spec.get("modules", [])] + spec.get("files", [])
        for path in own + shared:
            needs.setdefault(path, set()).add(task)
    return needs


for path, tasks in needed_by().items():
    if not tasks & SELECTED:
        Path(path).unlink(missing_ok=True)  # a file already gone is not an error
        for folder in Path(path).parents[:-1]:  # and the folders that held only unselected files
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()

lock = Path(f"constraints/py{ANSWERS['python_version']}.txt")
if lock.exists():  # absent only while tools/project_lock.py makes the first one (tests/test_bake.py checks it is there)
    lock.rename("constraints.txt")
shutil.rmtree("constraints", ignore_errors=True)
