"""A model loaded once for serving, whatever the file: a checkpoint, an exported ONNX file, or an int8 model.

Each predicts what the task's `predict` returns (a dict of tensors, batch first) from the tensors that the
data module's `request_inputs` makes of a request, so every kind answers like `predict_step` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from lightning.pytorch import LightningDataModule

from .. import ConfigError
from ..artifacts import datamodule_from, file_digest, load_checkpoint, read_metadata

KINDS = {".ckpt": "checkpoint", ".onnx": "onnx", ".pt": "int8"}


class Predict(Protocol):
    def __call__(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]: ...


@dataclass
class Predictor:
    predict: Predict
    datamodule: LightningDataModule
    metadata: dict[str, Any]
    kind: str  # checkpoint, onnx or int8

    @property
    def version(self) -> str:
        return self.metadata["model_version"]


def torch_predict(model: torch.nn.Module) -> Predict:
    def predict(inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return model.predict(*inputs)

    return predict


def onnx_predict(path: Path, threads: int = 0) -> Predict:
    """ONNX Runtime on the CPU with `threads` threads per call (0: its default, one per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_names = [arg.name for arg in session.get_inputs()]
    output_names = [arg.name for arg in session.get_outputs()]

    def predict(inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        feeds = {name: tensor.numpy() for name, tensor in zip(input_names, inputs, strict=True)}
        outputs = session.run(output_names, feeds)
        return {name: torch.from_numpy(out) for name, out in zip(output_names, outputs, strict=True)}

    return predict


def load_predictor(path: str | Path, threads: int = 1) -> Predictor:
    """Load `path` by its suffix: .ckpt (from `fit`), .onnx or .pt (int8; both from `export`, beside metadata.json)."""
    path = Path(path)
    kind = KINDS.get(path.suffix)
    if kind is None:
        raise ConfigError(
            f"{path}: serve a .ckpt checkpoint, or a model.onnx, model_int8.onnx or model_int8.pt written by `export`"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    torch.set_num_threads(threads)
    if kind == "checkpoint":
        trained = load_checkpoint(path)
        return Predictor(torch_predict(trained.model), trained.datamodule, trained.metadata, kind)
    metadata = read_metadata(path)
    metadata = {**metadata, "model_version": f"{metadata['model_version']}-{kind}-{file_digest(path)}"}
    if kind == "onnx":
        return Predictor(onnx_predict(path, threads), datamodule_from(metadata), metadata, kind)
    from ..quantize import load_int8

    return Predictor(torch_predict(load_int8(path, metadata)), datamodule_from(metadata), metadata, kind)
