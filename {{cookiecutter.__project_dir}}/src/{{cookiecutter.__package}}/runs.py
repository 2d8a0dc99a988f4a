"""Where runs live: `runs/<task>/version_N/`, with `config.yaml`, `checkpoints/{best,last}.ckpt` and `export/`.

Every command that writes files writes them into a run folder, and every command that reads a trained model
finds it here: `run_dir` (the folder of the run in progress, whatever the logger), `find_checkpoint`
(`--ckpt_path best|last`: the newest such checkpoint of a task), and `export_dir` (where `export` writes, beside
the run's checkpoints).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from lightning.pytorch import Trainer

from . import ConfigError

RUNS_DIR = "runs"


def run_dir(trainer: Trainer) -> Path:
    """The folder of this run: `<save_dir>/<name>/<version>`, the parent of ModelCheckpoint's `checkpoints/`."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir or trainer.default_root_dir, str(logger.name), version)


def task_name(model_class_path: str) -> str:
    """`pkg.tasks.mnist_cnn.MNISTClassifier` -> `mnist_cnn`: one task per file under tasks/."""
    return model_class_path.rsplit(".", 2)[-2]


def find_checkpoint(
    model_class_path: str, which: Literal["best", "last"], data: dict[str, Any] | None = None, runs_dir: str = RUNS_DIR
) -> Path:
    """The newest `<which>.ckpt` under runs_dir of a run of this model on this data: `--ckpt_path best|last`.

    Every run folder holds `config.yaml` beside `checkpoints/`, which says which model it trained on which data,
    so this works whatever folder layout the logger chose. The data matches when it is the same data module
    reading the same dataset (its `dataset` argument, where it has one): `test` of a Fashion-MNIST config does
    not pick a model trained on MNIST. The choice is printed.
    """

    def same_data(theirs: dict[str, Any]) -> bool:
        if data is None:
            return True
        ours_args, their_args = data.get("init_args") or {}, theirs.get("init_args") or {}
        same_dataset = "dataset" not in ours_args or ours_args.get("dataset") == their_args.get("dataset")
        return theirs.get("class_path") == data.get("class_path") and same_dataset

    found = []
    for ckpt in Path(runs_dir).glob(f"**/checkpoints/{which}.ckpt"):
        config_file = ckpt.parent.parent / "config.yaml"
        config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
        if config.get("model", {}).get("class_path") == model_class_path and same_data(config.get("data", {})):
            found.append(ckpt)
    if not found:
        task = task_name(model_class_path)
        raise ConfigError(
            f"--ckpt_path {which}: no run of {task} on this data under {runs_dir}/ has checkpoints/{which}.ckpt; "
            f"train first with `fit --config configs/{task}.yaml`, or pass the path of a .ckpt file"
        )
    chosen = max(found, key=lambda p: p.stat().st_mtime)
    print(f"--ckpt_path {which}: {chosen}", file=sys.stderr, flush=True)
    return chosen


def export_dir(checkpoint: Path) -> Path:
    """Where `export` writes by default: `export/` beside the run's `checkpoints/`."""
    return checkpoint.resolve().parent.parent / "export"
