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


def find_checkpoint(model_class_path: str, which: Literal["best", "last"], runs_dir: str = RUNS_DIR) -> Path:
    """The newest `<which>.ckpt` under runs_dir of a run of this model: `--ckpt_path best|last`.

    Every run folder holds `config.yaml` beside `checkpoints/`, which says which model it trained, so this works
    whatever folder layout the logger chose. Whatever data that run read, the checkpoint carries it (`test`,
    `predict` and `export` read the data as the run did), so the newest run is the one. The choice is printed.
    """
    found = []
    for ckpt in Path(runs_dir).glob(f"**/checkpoints/{which}.ckpt"):
        config_file = ckpt.parent.parent / "config.yaml"
        config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
        if config.get("model", {}).get("class_path") == model_class_path:
            found.append(ckpt)
    if not found:
        task = task_name(model_class_path)
        raise ConfigError(
            f"--ckpt_path {which}: no run of {task} under {runs_dir}/ has checkpoints/{which}.ckpt; "
            f"train first with `fit --config configs/{task}.yaml`, or pass the path of a .ckpt file"
        )
    chosen = max(found, key=lambda p: p.stat().st_mtime)
    print(
        f"--ckpt_path {which}: {chosen} (the newest run of {task_name(model_class_path)})", file=sys.stderr, flush=True
    )
    return chosen


def run_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint belongs to (`runs/<task>/version_N`), or the file itself when it stands alone."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint


def trained_settings(checkpoint: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `model` and `data` sections of the run that wrote `checkpoint`, as `fit` resolved them (LightningCLI
    saves both as hyperparameters, the values linked from the data to the model included)."""

    def section(saved: dict[str, Any]) -> dict[str, Any]:
        arguments = {key: value for key, value in saved.items() if not key.startswith("_")}
        return {"class_path": saved["_class_path"], "init_args": arguments}

    model, data = checkpoint["hyper_parameters"], checkpoint["datamodule_hyper_parameters"]
    return {"model": section(model), "data": section(data)}


def command_line_options(argv: list[str], sections: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """The options of these sections given in `argv`, with their values as typed (`--data.root photos` ->
    {"--data.root": "photos"}: what overrides a run's own settings), and the rest of `argv`."""
    given, rest = {}, []
    args = iter(argv)
    for arg in args:
        name, equals, value = arg.partition("=")
        if name.startswith(tuple(f"--{section}." for section in sections)):
            given[name] = value if equals else next(args, "")
        else:
            rest.append(arg)
    return given, rest


def export_dir(checkpoint: Path) -> Path:
    """Where `export` writes by default: `export/` beside the run's `checkpoints/`."""
    return checkpoint.resolve().parent.parent / "export"
