"""The one command line for every task, built on LightningCLI.

    python -m {{ cookiecutter.__package }} fit  --config configs/xor.yaml
    python -m {{ cookiecutter.__package }} test --config configs/xor.yaml --ckpt_path best

A config names the task's LightningModule and LightningDataModule by ``class_path``; every
``__init__`` argument of both, and of the Trainer, becomes a typed option (``--print_config`` shows
them all). Values that come from the data (``num_classes``, ``input_shape``) are linked from the
data module to the model, so they are never typed twice. Scaling out and mixed precision are plain
Trainer flags: ``--trainer.devices 2 --trainer.strategy ddp --trainer.precision bf16-mixed``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from jsonargparse import Namespace
from lightning.pytorch import Callback, LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from . import ConfigError
from .callbacks import ConfusionMatrixPlot, LearningCurves, PredictionWriter, SaveConfigToRunDir

RUNS_DIR = "runs"
# The experiment logger chosen when the project was generated; `--trainer.logger` overrides it.
LOGGER_CLASS = "{{ cookiecutter.__logger_class }}"
# Values a data module knows and a model needs; each link applies where the model takes the argument.
LINKED_FROM_DATA = ("num_classes", "input_shape")


def task_name(model_class_path: str) -> str:
    """`pkg.tasks.mnist_cnn.MNISTClassifier` -> `mnist_cnn`: one task per file under tasks/."""
    return model_class_path.rsplit(".", 2)[-2]


def latest_checkpoint(task: str, which: str, runs_dir: str = RUNS_DIR) -> str:
    """The newest `<runs_dir>/<task>/*/checkpoints/<which>.ckpt`, for `--ckpt_path last|best`."""
    found = sorted(Path(runs_dir, task).glob(f"*/checkpoints/{which}.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(
            f"--ckpt_path {which}: no {which}.ckpt under {Path(runs_dir, task)}/*/checkpoints; "
            f"train first with `fit --config configs/{task}.yaml`, or pass the path of a .ckpt file"
        )
    return str(found[-1])


class RoadmapCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in LINKED_FROM_DATA:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        task = task_name(config.model.class_path)
        if config.trainer.logger is None:  # not set in the config or on the command line
            config.trainer.logger = Namespace(class_path=LOGGER_CLASS, init_args=Namespace(**logger_args(task)))
        if config.get("ckpt_path") in ("last", "best"):
            config.ckpt_path = latest_checkpoint(task, config.ckpt_path)
        self.trainer_defaults["callbacks"] = default_callbacks(config.trainer)


def default_callbacks(trainer: Namespace) -> list[Callback]:
    """What every run gets; `--trainer.enable_checkpointing false` and `--trainer.enable_progress_bar false` are honoured."""
    callbacks: list[Callback] = [LearningCurves(), ConfusionMatrixPlot(), PredictionWriter()]
    if trainer.enable_checkpointing is not False:
        # best.ckpt (lowest val_loss, which every task logs) and last.ckpt, in the run's checkpoints/ folder.
        callbacks.append(ModelCheckpoint(monitor="val_loss", mode="min", filename="best", save_last=True))
    if trainer.enable_progress_bar is not False:
        callbacks.append(RichProgressBar())
    return callbacks


def logger_args(task: str) -> dict:
    """Where the chosen logger writes: runs/<task>/<version>/ holds logs, checkpoints and config.yaml."""
{%- if cookiecutter.logger == "tensorboard" or cookiecutter.logger == "csv" %}
    return {"save_dir": RUNS_DIR, "name": task}
{%- elif cookiecutter.logger == "wandb" %}
    import os

    import wandb

    if not os.environ.get("WANDB_API_KEY") and not wandb.Api().api_key:
        os.environ.setdefault("WANDB_MODE", "offline")  # not logged in: keep the run on disk, `wandb sync` later
    return {"save_dir": RUNS_DIR, "project": task}
{%- elif cookiecutter.logger == "mlflow" %}
    # A local file store under runs/; checkpoints land in the MLflow run's own folder.
    return {"save_dir": f"{RUNS_DIR}/mlruns", "experiment_name": task}
{%- endif %}


def user_error(err: BaseException | None) -> ConfigError | None:
    """The ConfigError behind `err`, if any: jsonargparse and Lightning wrap the errors raised in __init__ or setup."""
    while err is not None and not isinstance(err, ConfigError):
        err = err.__cause__ or err.__context__
    return err


def main(args: list[str] | None = None) -> RoadmapCLI:
    """Parse `args` (default: sys.argv), run the subcommand, and return the CLI (its trainer, model, data)."""
    try:
        return RoadmapCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveConfigToRunDir,
            seed_everything_default=42,
            args=args,
            auto_configure_optimizers=False,
            parser_kwargs={"allow_abbrev": False},  # a misspelled option is an error, not a guess
        )
    except Exception as err:
        problem = user_error(err)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        # Without this a DDP worker can die at exit with "terminate called without an active exception".
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
