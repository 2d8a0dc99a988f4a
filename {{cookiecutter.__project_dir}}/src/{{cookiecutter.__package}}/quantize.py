"""Int8 models for CPU serving, after training or during it: torchao for torch, onnxruntime for ONNX Runtime.

    python -m {{ cookiecutter.__package }} export --ckpt_path runs/.../best.ckpt --quantize int8             # after
    python -m {{ cookiecutter.__package }} fit --config configs/<task>.yaml \\
        --trainer.callbacks+={{ cookiecutter.__package }}.quantize.PostTrainingQuantization                  # at the end of fit
    python -m {{ cookiecutter.__package }} fit --config configs/<task>.yaml \\
        --trainer.callbacks+={{ cookiecutter.__package }}.quantize.QuantizationAwareTraining                 # during fit

The scheme: every `nn.Linear` gets int8 weights, one scale per output channel (torchao's
`Int8WeightOnlyConfig`), and every `nn.Embedding` an int8 table with one scale per row (`Int8Embedding`
below); activations stay float. Convolutions, LSTM/GRU cells and attention's packed input projection
stay float32: torchao's int8 configs cover linear layers. Weight-only int8 was chosen by measurement
on the CPU: it was the fastest of torchao's int8 schemes at batch 1 and the closest to float32 (dynamic
int8 activations were 1.4-1.7x slower there), and torchao's own int8 embedding dequantizes its whole
table on every call (8x slower than float), hence the small one here.

These int8 weights make the model about 3x smaller, but not faster: torch on the CPU has no int8 kernels
that beat its float32 ones at these sizes (measured 1.1-1.4x slower at batch 1). Speed comes from
`export --quantize int8`, which also writes `model_int8.onnx`: the exported ONNX graph quantized by
onnxruntime.quantization (`quantize_onnx` below), whose int8 kernels run in ONNX Runtime. Measured on
the MNIST CNN: 0.27x the size and 0.18x the time of the float32 eager model (0.43x that of float32 ONNX).

Quantization-aware training inserts the same rounding into training (fake quantization of the
weights), so the model learns weights that survive it; at the end of fit the fake-quantized layers
become the int8 ones. Either callback writes `model_int8.pt` and `metadata.json` into the run folder
and prints the test split's accuracy (or MSE) of the float and the int8 model side by side.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from torch import nn

from . import ConfigError
from .artifacts import METADATA, Trained, instantiate, load_checkpoint
from .callbacks import run_dir
from .serve.predictor import Predict, torch_predict

# torchao registers an Enum with torch's pytree on import, which this torch logs as deprecated: chatter, not news.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
from torchao.quantization import Int8WeightOnlyConfig, quantize_  # noqa: E402
from torchao.quantization.qat import IntxFakeQuantizeConfig, QATConfig  # noqa: E402

SCHEME = "int8 weights (torchao Int8WeightOnlyConfig for nn.Linear, Int8Embedding for nn.Embedding)"


class Int8Embedding(nn.Module):
    """An embedding table in int8 with one float scale per row (symmetric); it dequantizes only the rows it reads.

    Plain tensors: it loads with `weights_only=True` and exports to ONNX as Gather and Mul.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(num_embeddings, 1))

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> Int8Embedding:
        weight = embedding.weight.detach().float()
        scale = (weight.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
        quantized = cls(embedding.num_embeddings, embedding.embedding_dim)
        quantized.weight_int8.copy_(torch.round(weight / scale).clamp(-127, 127).to(torch.int8))
        quantized.scale.copy_(scale)
        return quantized

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight_int8[ids].float() * self.scale[ids]


def swap_embeddings(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Embedding):
            setattr(module, name, Int8Embedding.from_float(child))
        else:
            swap_embeddings(child)


def is_linear(module: nn.Module, name: str) -> bool:
    # Attention's output projection (NonDynamicallyQuantizableLinear) stays float: MultiheadAttention reads its
    # weight directly, which an int8 tensor cannot stand in for.
    return type(module) is nn.Linear


def quantize_int8(model: LightningModule) -> LightningModule:
    """The model with int8 weights, in place: linear layers through torchao, embeddings through Int8Embedding."""
    quantize_(model, Int8WeightOnlyConfig(set_inductor_config=False), filter_fn=is_linear)
    swap_embeddings(model)
    return model.eval()


def save_int8(trained: Trained, path: Path) -> LightningModule:
    """Quantize a copy of the trained model and save its weights to `path`; return the int8 model."""
    int8 = quantize_int8(copy.deepcopy(trained.model))
    torch.save({"scheme": SCHEME, "state_dict": int8.state_dict()}, path)
    return int8


def load_int8(path: Path, metadata: dict[str, Any]) -> LightningModule:
    """The int8 model saved by `save_int8`: the task rebuilt from the metadata, quantized, then its weights loaded."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = quantize_int8(instantiate(metadata["model_class"], metadata["model_args"]))
    model.load_state_dict(saved["state_dict"], assign=True)
    return model.eval()


def score_on_test(predict: Predict, datamodule) -> tuple[str, float]:
    """Accuracy on the test split for a classifier, mean squared error for regression."""
    right = squared = count = 0.0
    for *inputs, target in datamodule.test_dataloader():
        outputs = predict(tuple(inputs))
        prediction = outputs["prediction"]
        right += (prediction == target).sum().item()
        squared += ((prediction.float() - target.float().reshape(prediction.shape)) ** 2).sum().item()
        count += len(target)
    return ("test_acc", right / count) if "probability" in outputs else ("test_mse", squared / count)


def compare_on_test(trained: Trained, quantized: dict[str, Predict]) -> dict[str, float]:
    """The float and the quantized models scored on the test split, printed side by side; {} if the data is not
    there. `quantized` maps a name (`int8`, `int8_onnx`) to the model's predict."""
    try:
        trained.datamodule.setup("test")
        name, before = score_on_test(torch_predict(trained.model), trained.datamodule)
    except (ConfigError, OSError) as err:
        print(f"int8: not scored, the test split cannot be read here: {err}", flush=True)
        return {}
    scores = {f"float32_{name}": before}
    scores |= {f"{model}_{name}": score_on_test(predict, trained.datamodule)[1] for model, predict in quantized.items()}
    shown = ", ".join(f"{key.removesuffix('_' + name).replace('_', ' ')} {value:.4f}" for key, value in scores.items())
    print(f"\n{name} on the test split: {shown}", flush=True)
    return scores


def write_int8(trained: Trained, folder: Path) -> dict[str, Any]:
    """`model_int8.pt` and its `metadata.json` in `folder`, with the test scores of both models in the metadata."""
    int8 = save_int8(trained, folder / "model_int8.pt")
    metadata = {
        **trained.metadata,
        "int8": {"scheme": {"model_int8.pt": SCHEME}, **compare_on_test(trained, {"int8": torch_predict(int8)})},
    }
    (folder / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"int8 model: {folder / 'model_int8.pt'} (serve it with `serve --model` that path)", flush=True)
    return metadata


ONNX_SCHEME = (
    "ONNX Runtime int8 (onnxruntime.quantization): static QDQ for graphs with convolutions (int8 weights per "
    "channel, uint8 activations calibrated on training batches), dynamic otherwise (int8 weights per channel, "
    "activations quantized on each call)"
)
CALIBRATION_BATCHES = 16


class TrainingBatches(CalibrationDataReader):
    """CALIBRATION_BATCHES shuffled training batches as ONNX Runtime feeds, for static quantization; the same
    batches on every export (the shuffle is seeded, and the global random state left as it was)."""

    def __init__(self, graph, trained: Trained) -> None:
        names = [arg.name for arg in graph.input]
        trained.datamodule.setup("fit")
        with torch.random.fork_rng():
            torch.manual_seed(0)
            batches = list(itertools.islice(trained.datamodule.train_dataloader(), CALIBRATION_BATCHES))
        # (*inputs, target) -> the graph's inputs
        self.feeds = iter([{name: t.numpy() for name, t in zip(names, batch[:-1], strict=True)} for batch in batches])

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


def quantize_onnx(source: Path, target: Path, trained: Trained) -> None:
    """`source` (an exported float ONNX file) with int8 weights and int8 kernels, for ONNX Runtime, into `target`.

    A convolution network is quantized statically: its activation ranges are measured on training batches
    once (calibration), so that convolutions run as int8 kernels. Dynamic int8 convolutions
    (ConvInteger) are slower than float32 ones in ONNX Runtime, while its dynamic MatMul, LSTM and Gather
    (embedding) kernels are fast and need no data: everything else is quantized dynamically.
    """
    import onnx

    model = onnx.load(str(source))  # read once: onnxruntime.quantization takes the loaded model too
    # onnxruntime logs a hint to run its model pre-processing first; measured on the CNN, it did not help.
    logging.disable(logging.WARNING)
    try:
        if any(node.op_type == "Conv" for node in model.graph.node):
            quantize_static(
                model,
                target,
                TrainingBatches(model.graph, trained),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
            )
        else:
            quantize_dynamic(model, target, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)


class PostTrainingQuantization(Callback):
    """At the end of fit: the best checkpoint's model with int8 weights, in the run folder, scored on the test split."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        if not trainer.is_global_zero or checkpoint is None or not checkpoint.best_model_path:
            return
        write_int8(load_checkpoint(checkpoint.best_model_path), run_dir(trainer))


class QuantizationAwareTraining(PostTrainingQuantization):
    """Trains with the int8 rounding of the weights in the loop, and ends fit with the int8 model.

    Before fit, every nn.Linear becomes torchao's fake-quantized linear: its forward rounds the weights to
    int8 per output channel, as `quantize_int8` will, while the gradient flows to the float weights (the
    straight-through estimator). Checkpoints keep float weights under the usual names, so `test`, `predict`
    and `export` read them as before. At the end of fit, the best checkpoint becomes `model_int8.pt`, exactly
    as with PostTrainingQuantization, but from weights that learned to live with the rounding.
    """

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        weights = IntxFakeQuantizeConfig(torch.int8, "per_channel", is_symmetric=True)
        quantize_(pl_module, QATConfig(weight_config=weights, step="prepare"), filter_fn=has_channels_to_fake_quantize)


def has_channels_to_fake_quantize(module: nn.Module, name: str) -> bool:
    """A linear layer with 2 or more inputs: torchao's per-channel fake quantizer refuses nn.Linear(1, 1)."""
    return is_linear(module, name) and module.in_features > 1
