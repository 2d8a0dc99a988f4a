"""Callbacks every task shares: where a run writes, its config, learning curves, confusion matrix, predictions,
and a line per epoch when no progress bar shows the metrics.

The CLI adds them to every run, so a task only logs its metrics (`train_loss`, `val_loss`, `val_acc`, ...);
a classifier's `test_confusion_matrix()` becomes a picture, and the data's labels name its classes.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from PIL import Image

from . import ConfigError
from .data.base import data_module_of
from .plots import image_grid, plot_confusion_matrix, plot_learning_curves, save_png
from .runs import run_dir
from .task import Task


def data_labels(trainer: Trainer) -> list[str] | None:
    """The class names of the run's data, if it has any."""
    datamodule = data_module_of(trainer)
    return datamodule.labels if datamodule else None


def user_error(err: BaseException | None) -> Exception | None:
    """The user's mistake behind `err`, if any: a ConfigError (ours), or a MisconfigurationException (Lightning's).

    jsonargparse and Lightning wrap the errors raised in __init__ or setup, so the whole chain is searched.
    """
    while err is not None and not isinstance(err, (ConfigError, MisconfigurationException)):
        err = err.__cause__ or err.__context__
    return err


class NothingLeftWhenRefused(Callback):
    """A command refused for the user's mistake (bad data, an empty --text) leaves no run folder behind.

    The logger creates the run folder before the data module reads its data, so a refusal found there
    would leave an empty `runs/<task>/version_N`; it is removed when it holds nothing but the logger's and
    the config's files. A run that had saved a checkpoint keeps its folder.
    """

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        folder = run_dir(trainer)
        if not trainer.is_global_zero or user_error(exception) is None or not folder.is_dir():
            return
        leftovers = {"config.yaml", "hparams.yaml", "checkpoints"}
        files = [
            path for path in folder.iterdir() if path.name not in leftovers and not path.name.startswith("events.")
        ]
        if not files and not list(folder.glob("checkpoints/*")):
            shutil.rmtree(folder)


class SaveConfigToRunDir(SaveConfigCallback):
    """Writes the resolved config as `config.yaml` beside the run's checkpoints, whatever the logger."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            path = run_dir(trainer) / self.config_filename
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, path, skip_none=False, overwrite=True, multifile=self.multifile)
        self.already_saved = True


class LearningCurves(Callback):
    """Records the training losses every `log_every_n_steps` and every `val_*` metric each epoch; plots them after fit.

    The training losses are what `training_step` returns: its loss as `train_loss`, and when it returns a dict,
    every other scalar in it as `train_<key>` (a GAN's `d_loss` becomes `train_d_loss`).
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        every = trainer.log_every_n_steps  # type: ignore[attr-defined]  # set by Lightning at start, undeclared
        if not trainer.is_global_zero or trainer.global_step % every or outputs is None:
            return
        losses = outputs if isinstance(outputs, dict) else {"loss": outputs}
        scalars = {
            key: value for key, value in losses.items() if isinstance(value, torch.Tensor) and value.numel() == 1
        }
        row = {"train_loss" if key == "loss" else f"train_{key}": float(value) for key, value in scalars.items()}
        self.history.append({"step": trainer.global_step, **row})

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:  # after epoch-end logging
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_") and v.numel() == 1}
        if metrics:
            self.history.append({"step": trainer.global_step, **metrics})

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and self.history:
            plot_learning_curves(self.history, run_dir(trainer) / "learning_curves.png")


class EpochLines(Callback):
    """With the progress bar off (`--trainer.enable_progress_bar false`), one line per epoch: its number and the
    metrics logged in it, as the bar would have shown them (validation's only in an epoch that validated).

        epoch 2: train_acc 0.9531 · train_loss 0.2104 · val_acc 1 · val_loss 0.1873
    """

    def __init__(self) -> None:
        self.validated = -1  # the last epoch that validated

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validated = trainer.current_epoch

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        validated = self.validated == trainer.current_epoch  # else val_* are an earlier epoch's
        metrics = sorted(trainer.callback_metrics.items())
        shown = [
            f"{name} {float(value):.4g}"
            for name, value in metrics
            if value.numel() == 1 and (validated or not name.startswith("val_"))
        ]
        print(f"epoch {trainer.current_epoch}: {' · '.join(shown)}", flush=True)


class RandomState(Callback):
    """Keeps the random generators' states (torch, NumPy, Python) in every checkpoint, and restores them on resume.

    The shuffling of each epoch and the dropout masks are drawn from them. Lightning restores the weights, the
    optimizer and the schedule, not these, so a resumed run would draw other batches and masks than the run
    it continues; with them, resuming from an epoch's end on a CPU gives the uninterrupted run's weights,
    bit for bit. (Under DDP the checkpoint holds rank 0's states, which every rank then takes.)
    """

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        kind, keys, position, has_gauss, gauss = cast(tuple, np.random.get_state())
        checkpoint["random_state"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [kind, keys.tolist(), position, has_gauss, gauss],  # plain values: it loads with weights_only
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("random_state")
        if state is None:  # written before this callback existed
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        kind, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
        random.setstate(state["python"])


class SameBuffersOnEveryRank(Callback):
    """Under DDP, every rank takes global rank 0's buffers (BatchNorm's running statistics) before it validates or
    tests. Each rank updates its own on its own batches, so without this the ranks would evaluate slightly different
    models, and none of them exactly the one that rank 0 saves."""

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.take_rank_zeros_buffers(trainer, pl_module)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.take_rank_zeros_buffers(trainer, pl_module)

    @staticmethod
    def take_rank_zeros_buffers(trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.world_size > 1:
            for buffer in pl_module.buffers():
                torch.distributed.broadcast(buffer, src=0)


class ConfusionMatrixPlot(Callback):
    """After `test`, draws a classifier's confusion matrix as a PNG."""

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        matrix = pl_module.test_confusion_matrix() if isinstance(pl_module, Task) else None  # on every rank
        if matrix is not None and trainer.is_global_zero:
            matrix = matrix.cpu()
            labels = data_labels(trainer) or [str(i) for i in range(len(matrix))]
            plot_confusion_matrix(matrix, labels, run_dir(trainer) / "confusion_matrix.png")


class PredictionWriter(BasePredictionWriter):
    """Writes what `predict_step` returns (a dict of tensors, batch first) into the run folder, as the task's kind
    of output says (`Task.outputs`: `predictions.csv`, or image files under `predictions/`, ...). The data's labels
    name the classes, and texts given with `predict --text` lead their rows."""

    def __init__(self) -> None:
        super().__init__(write_interval="epoch")
        self.written: list[Path] = []  # the files of the last `predict`

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions, batch_indices) -> None:
        self.written = []
        if not predictions or not isinstance(pl_module, Task):
            return
        suffix = f"_rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        outputs = {key: torch.cat([p[key] for p in predictions]) for key in predictions[0]}
        datamodule = data_module_of(trainer)
        # Under DDP each rank holds a share of the inputs, and the texts are not split with them.
        inputs = datamodule.shown_inputs() if datamodule and trainer.world_size == 1 else None
        stem = run_dir(trainer) / f"predictions{suffix}"
        self.written = pl_module.outputs.write(outputs, stem, data_labels(trainer), inputs)


class ImageSamples(Callback):
    """After every validation epoch, the images a task draws from fixed inputs (`Task.sample_images`, a generator's),
    as one grid in `samples/epoch_<N>.png`, sent to the run's logger too: the same inputs each epoch, so the
    pictures show what training changed."""

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not isinstance(pl_module, Task):
            return
        images = pl_module.sample_images()
        if images is not None:
            path = save_png(image_grid(images), run_dir(trainer) / "samples" / f"epoch_{trainer.current_epoch:03d}.png")
            log_image(trainer, "samples", path)


def log_image(trainer: Trainer, key: str, path: Path) -> None:
    """A PNG file to whichever logger the run uses, through that logger's own API; the CSV logger keeps the file."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)  # (3, H, W) uint8
            logger.experiment.add_image(key, pixels, trainer.global_step)
        elif isinstance(logger, WandbLogger):
            logger.log_image(key, images=[str(path)], step=trainer.global_step)
        elif isinstance(logger, MLFlowLogger) and logger.run_id:
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=key)


class StepTimer(Callback):
    """The wall time at the end of every training step, synchronised with the GPU: for throughput checks.

    `--trainer.callbacks+={{ cookiecutter.__package }}.callbacks.StepTimer`; scripts/gpu_check.py reads `steps_per_second`.
    """

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.times.append(time.perf_counter())

    def steps_per_second(self, skip: int = 0) -> float:
        """Steps per second after the first `skip` steps (warm-up, compilation)."""
        times = self.times[skip:]
        return (len(times) - 1) / (times[-1] - times[0])
