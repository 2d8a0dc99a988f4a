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
into the run folder and prints the test split's accuracy (or MSE) of the float and the int8 model side
by side.
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
from .artifacts import Checkpoint, Predict, load_checkpoint, torch_predict, write_metadata
from .callbacks import run_dir
from .data.base import SplitDataModule, data_module_of
from .data.codec import Codec
from .int8 import SCHEME, is_linear, quantize_int8
from .task import Task

CALIBRATION_BATCHES, CALIBRATION_BATCH_SIZE = 16, 32


def save_int8(model: Task, path: Path) -> Task:
    """Quantize a copy of the trained model and save its weights to `path`; return the int8 model."""
    int8 = quantize_int8(copy.deepcopy(model))
    torch.save({"scheme": SCHEME, "state_dict": int8.state_dict()}, path)
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


def score_on_test(predict: Predict, datamodule: SplitDataModule) -> tuple[str, float]:
    """Accuracy on the test split for a classifier, mean squared error for regression."""
    right = squared = count = 0.0
    classifier = False
    for *inputs, target in datamodule.test_dataloader():
        outputs = predict(tuple(inputs))
        prediction = outputs["prediction"]
        classifier = "probability" in outputs
        right += (prediction == target).sum().item()
        squared += ((prediction.float() - target.float().reshape(prediction.shape)) ** 2).sum().item()
        count += len(target)
    return ("test_acc", right / count) if classifier else ("test_mse", squared / count)


def compare_on_test(model: Task, quantized: dict[str, Predict], datamodule: SplitDataModule) -> dict[str, float]:
    """The float and the quantized models scored on the test split, printed side by side; {} if the data is not
    there, or if the model does not predict from it (a generator). `quantized` maps a name (`int8`,
    `int8_onnx`) to the model's predict."""
    if not model.reads_data():
        print("int8: not scored on the test split, which this model does not read", flush=True)
        return {}
    try:
        datamodule.setup("test")
        name, before = score_on_test(torch_predict(model), datamodule)
    except (ConfigError, OSError) as err:
        print(f"int8: not scored, the test split cannot be read here: {err}", flush=True)
        return {}
    scores = {f"float32_{name}": before}
    scores |= {f"{kind}_{name}": score_on_test(predict, datamodule)[1] for kind, predict in quantized.items()}
    shown = ", ".join(f"{key.removesuffix('_' + name).replace('_', ' ')} {value:.4f}" for key, value in scores.items())
    print(f"\n{name} on the test split: {shown}", flush=True)
    return scores


def write_int8(checkpoint: Checkpoint, folder: Path, datamodule: SplitDataModule) -> dict[str, Any]:
    """`model_int8.pt` and its `metadata.json` in `folder`, with the test scores of both models in the metadata."""
    int8 = save_int8(checkpoint.model, folder / "model_int8.pt")
    scores = compare_on_test(checkpoint.model, {"int8": torch_predict(int8)}, datamodule)
    metadata = {**checkpoint.metadata, "int8": {"scheme": {"model_int8.pt": SCHEME}, **scores}}
    write_metadata(folder, metadata)
    print(f"int8 model: {folder / 'model_int8.pt'} (serve it with `serve --model` that path)", flush=True)
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
        from torchao.quantization import quantize_  # after int8.py, which quiets torchao's import
        from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig

        weights = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
        quantize_(pl_module, QATConfig(weight_config=weights, step="prepare"), filter_fn=has_channels_to_fake_quantize)


def has_channels_to_fake_quantize(module: nn.Module, name: str) -> bool:
    """A linear layer with 2 or more inputs: torchao's per-channel fake quantizer refuses nn.Linear(1, 1)."""
    return is_linear(module, name) and isinstance(module, nn.Linear) and module.in_features > 1
