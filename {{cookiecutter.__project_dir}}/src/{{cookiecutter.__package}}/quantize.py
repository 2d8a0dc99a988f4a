"""Int8 models for CPU serving, after training or during it (the scheme itself is in int8.py).

    python -m {{ cookiecutter.__package }} export --ckpt_path runs/.../best.ckpt --quantize int8             # after
    python -m {{ cookiecutter.__package }} fit --config configs/<task>.yaml \\
        --trainer.callbacks+={{ cookiecutter.__package }}.quantize.PostTrainingQuantization                  # at the end of fit
    python -m {{ cookiecutter.__package }} fit --config configs/<task>.yaml \\
        --trainer.callbacks+={{ cookiecutter.__package }}.quantize.QuantizationAwareTraining                 # during fit

`export --quantize int8` writes `model_int8.pt` (torchao int8 weights, for torch: smaller, not faster)
and `model_int8.onnx` (the exported graph with ONNX Runtime's int8 kernels: smaller and faster), the file
to serve on a CPU. Quantization-aware training inserts the same rounding into training (fake
quantization of the weights), so the model learns weights that survive it; at the end of fit the
fake-quantized layers become the int8 ones. Either callback writes `model_int8.pt` and `metadata.json`
into the run folder and prints the test split's scores (the task's: accuracy, MSE, ...) of the float and
the int8 model side by side.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from . import ConfigError
from .artifacts import Checkpoint, load_checkpoint, torch_predict, write_metadata
from .atomic import save_whole
from .data.base import SplitDataModule, data_module_of
from .data.codec import Codec
from .int8 import SCHEME, is_linear, quantize_int8, weight_share
from .runs import run_dir
from .scores import test_batches, test_scores
from .task import Task

CALIBRATION_BATCHES, CALIBRATION_BATCH_SIZE = 16, 32


def save_int8(model: Task, path: Path) -> Task:
    """Quantize a copy of the trained model and save its weights to `path`; return the int8 model."""
    int8 = quantize_int8(copy.deepcopy(model))
    save_whole({"scheme": SCHEME, "state_dict": int8.state_dict()}, path)
    return int8


def calibration_batches(codec: Codec, datamodule: SplitDataModule) -> Iterator[tuple[torch.Tensor, ...]]:
    """CALIBRATION_BATCHES batches of model inputs, for static quantization: made by the codec where it can make
    them (noise), else shuffled training batches. The same batches on every export (the shuffle is seeded, and
    the global random state left as it was)."""
    made = codec.sample_inputs(CALIBRATION_BATCHES * CALIBRATION_BATCH_SIZE)
    if made is not None:
        return zip(*(tensor.split(CALIBRATION_BATCH_SIZE) for tensor in made), strict=True)
    datamodule.setup("fit")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        batches = list(itertools.islice(datamodule.train_dataloader(), CALIBRATION_BATCHES))
    return (tuple(batch[:-1]) for batch in batches)  # (*inputs, target) -> inputs


def int8_description(model: Task, path: Path) -> dict[str, Any]:
    """metadata.json's `int8` for `model_int8.pt` (made from the float `model`): its scheme, and how much of the
    model it really makes int8."""
    return {"scheme": {path.name: SCHEME}, "holds": {path.name: weight_share(model)}}


def write_int8(checkpoint: Checkpoint, folder: Path, datamodule: SplitDataModule) -> dict[str, Any]:
    """`model_int8.pt` and its `metadata.json` in `folder`, with the test scores of both models in the metadata."""
    path = folder / "model_int8.pt"
    int8 = save_int8(checkpoint.model, path)
    files = {"eager": torch_predict(checkpoint.model), path.name: torch_predict(int8)}
    scores = test_scores(files, checkpoint.model.outputs, test_batches(checkpoint.model, datamodule))
    metadata = {**checkpoint.metadata, "int8": int8_description(checkpoint.model, path), "test_scores": scores}
    write_metadata(folder, metadata)
    print(f"int8 model: {path} (serve it with `serve --model` that path)", flush=True)
    return metadata


class PostTrainingQuantization(Callback):
    """At the end of fit: the best checkpoint's model with int8 weights, in the run folder, scored on the test split."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint, datamodule = trainer.checkpoint_callback, data_module_of(trainer)
        if not trainer.is_global_zero or not isinstance(checkpoint, ModelCheckpoint) or not checkpoint.best_model_path:
            return
        assert datamodule is not None  # the CLI's data modules are SplitDataModules
        write_int8(load_checkpoint(checkpoint.best_model_path), run_dir(trainer), datamodule)


class QuantizationAwareTraining(PostTrainingQuantization):
    """Trains with the int8 rounding of the weights in the loop, and ends fit with the int8 model.

    Before fit, every nn.Linear becomes torchao's fake-quantized linear: its forward rounds the weights to
    int8 per output channel, as `quantize_int8` will, while the gradient flows to the float weights (the
    straight-through estimator). Checkpoints keep float weights under the usual names, so `test`, `predict`
    and `export` read them as before. At the end of fit, the best checkpoint becomes `model_int8.pt`, exactly
    as with PostTrainingQuantization, but from weights that learned to live with the rounding.
    """

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.hparams.get("lora_r"):  # adapters train beside frozen weights, and are merged only at export
            raise ConfigError(
                "QuantizationAwareTraining rounds the weights that train, but LoRA trains adapters that are merged "
                "into the frozen weights only after fit: use PostTrainingQuantization, or export --quantize int8"
            )
        from torchao.quantization import quantize_  # after int8.py, which quiets torchao's import
        from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

        weights = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
        quantize_(pl_module, QATConfig(weight_config=weights, step="prepare"), filter_fn=has_channels_to_fake_quantize)


def has_channels_to_fake_quantize(module: nn.Module, name: str) -> bool:
    """A linear layer with 2 or more inputs: torchao's per-channel fake quantizer refuses nn.Linear(1, 1)."""
    return is_linear(module, name) and isinstance(module, nn.Linear) and module.in_features > 1
