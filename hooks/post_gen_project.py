"""Remove the files of the tasks that were not selected, and keep the lock of the project's Python.

The template holds every task; README, ROADMAP and pyproject rows are already pruned by Jinja
conditions in those files, so what is left is whole files. A file goes when no selected task needs
it: task code, its config and tests, and the data modules and recipes only those tasks share.
The template holds one lock per Python it offers (constraints/py<X.Y>.txt, tools/project_lock.py);
the project keeps its own Python's as constraints.txt.
"""

import json
import shutil
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | jsonify }}""")
TASKS = [key.removeprefix("include_") for key in ANSWERS if key.startswith("include_")]  # one question per task
SELECTED = {task for task in TASKS if ANSWERS[f"include_{task}"] == "yes"}
PACKAGE = f"src/{ANSWERS['__package']}"
SHARED = {
    f"{PACKAGE}/data/synthetic.py": {"linear_regression", "xor"},
    f"{PACKAGE}/data/mnist.py": {"mnist_cnn", "gan"},
    f"{PACKAGE}/data/noise.py": {"gan"},
    f"{PACKAGE}/judge.py": {"gan"},
    f"{PACKAGE}/data/images.py": {"resnet_finetune"},
    f"{PACKAGE}/data/text.py": {"sentiment_rnn", "sentiment_transformer", "bert_finetune"},
    "tests/test_text_data.py": {"sentiment_rnn", "sentiment_transformer", "bert_finetune"},
    "tests/data/reviews/train.csv": {"sentiment_rnn", "sentiment_transformer", "bert_finetune"},
    "tests/data/reviews/test.csv": {"sentiment_rnn", "sentiment_transformer", "bert_finetune"},
    f"{PACKAGE}/classification.py": {
        "xor",
        "mnist_cnn",
        "sentiment_rnn",
        "sentiment_transformer",
        "gan",
        "resnet_finetune",
        "bert_finetune",
    },
}


def needed_by() -> dict[str, set[str]]:
    own = {
        path: {task}
        for task in TASKS
        for path in (
            f"{PACKAGE}/tasks/{task}.py",
            f"configs/{task}.yaml",
            f"tests/test_{task}.py",
            f"docs/playground/{task}.png",
        )
    }
    return {**own, **SHARED}


for path, tasks in needed_by().items():
    if not tasks & SELECTED:
        Path(path).unlink()
        for folder in Path(path).parents[:-1]:  # and the folders that held only unselected files
            if any(folder.iterdir()):
                break
            folder.rmdir()


lock = Path(f"constraints/py{ANSWERS['python_version']}.txt")
if lock.exists():  # absent only while tools/project_lock.py makes the first one (tests/test_bake.py checks it is there)
    lock.rename("constraints.txt")
shutil.rmtree("constraints", ignore_errors=True)
