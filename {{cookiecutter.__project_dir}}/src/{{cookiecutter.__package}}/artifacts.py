"""Trained files, in one place: loading any file that `fit` or `export` wrote, predicting with it, and
describing it in `metadata.json` (where runs and their files live is runs.py's).

    checkpoints/*.ckpt  fit: the weights, the model's and data module's class paths and arguments (LightningCLI
                        saves them as hyperparameters), and the codec (the data module's state)
    model.onnx          export: the task's `predict` as an ONNX graph (ONNX Runtime)
    model_int8.onnx     export --quantize int8: the same graph with int8 kernels
    model_int8.pt       export --quantize int8, or the fit callbacks of quantize.py: int8 weights for torch
    model.pt2           export: a torch.export program
    metadata.json       beside the exported files: what rebuilds the model and its codec, the checks, and each
                        file's size and sha256 (a damaged file, or one of another export, is refused at load)

`load(path)` turns any of them into a `Trained`: a predict function with the task's outputs, the codec that
reads requests for it, and its metadata. Files are read with `torch.load(weights_only=True)`: no pickled
code runs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from . import ConfigError
from .atomic import write_whole
from .data.base import SplitDataModule
from .data.codec import Codec
from .int8 import quantize_int8
from .outputs import Outputs
from .runs import task_name
from .task import Task

METADATA = "metadata.json"
SUFFIXES = {".ckpt": "checkpoint", ".onnx": "onnx", ".pt": "int8", ".pt2": "pt2"}
EXPORTED = {suffix for suffix, kind in SUFFIXES.items() if kind != "checkpoint"}  # the files metadata.json describes

Predict = Callable[[tuple[torch.Tensor, ...]], dict[str, torch.Tensor]]


def import_class(class_path: str) -> Any:
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def init_arguments(saved: dict[str, Any]) -> dict[str, Any]:
    """Saved hyperparameters without the bookkeeping keys LightningCLI adds (`_class_path`, `_instantiator`)."""
    return {k: v for k, v in saved.items() if not k.startswith("_")}


def file_digest(path: Path) -> str:
    """The file's sha256, read in chunks: an exported BERT is hundreds of MB."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def build_task(metadata: dict[str, Any]) -> Task:
    return import_class(metadata["model_class"])(**metadata["model_args"])


@dataclass
class Checkpoint:
    """A checkpoint of `fit`, loaded: the model (eval mode, on the CPU), its codec, and its metadata."""

    model: Task
    codec: Codec
    metadata: dict[str, Any]

    def datamodule(self) -> SplitDataModule:
        """The data the model was trained on (for int8 calibration and scores), read through its own codec."""
        datamodule = import_class(self.metadata["data_class"])(**self.metadata["data_args"])
        datamodule.load_state_dict({"codec": self.metadata.get("data_codec", self.metadata["codec"])})
        return datamodule


@dataclass
class Trained:
    """Any trained file, ready to serve: `predict` maps the codec's input tensors to the task's outputs, and
    `answers` those outputs to JSON, as the task's kind of output says."""

    predict: Predict
    codec: Codec
    metadata: dict[str, Any]
    path: Path
    kind: str  # checkpoint, onnx, int8_onnx, int8 (torchao) or pt2

    @property
    def version(self) -> str:
        return self.metadata["model_version"]

    @cached_property
    def outputs(self) -> Outputs:
        """The task's kind of output (its class declares it: no model is built to read it)."""
        return import_class(self.metadata["model_class"]).outputs

    def answers(self, outputs: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """A batch of `predict` outputs -> one JSON object per input."""
        return self.outputs.answers(outputs, self.codec.labels)


def describe(checkpoint: dict[str, Any], codec: Codec, data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The metadata of a checkpoint: what rebuilds the model, its codec (and the data's, where they differ),
    the labels, and a version name."""
    model_args, data_args = checkpoint["hyper_parameters"], checkpoint["datamodule_hyper_parameters"]
    task = task_name(model_args["_class_path"])
    epoch, step = checkpoint.get("epoch"), checkpoint.get("global_step")
    served = codec.to_dict()
    return {
        "task": task,
        "model_class": model_args["_class_path"],
        "model_args": init_arguments(model_args),
        "data_class": data_args["_class_path"],
        "data_args": init_arguments(data_args),
        "codec": served,
        **({} if data == served else {"data_codec": data}),
        "labels": codec.labels,
        "model_version": f"{task}-epoch{epoch}-step{step}-{file_digest(path)[:12]}",
        "checkpoint": str(path),
    }


def data_codec(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """The codec the data module saved in the checkpoint (Lightning keys a data module's state by its class name)."""
    class_name = checkpoint["datamodule_hyper_parameters"]["_class_path"].rsplit(".", 1)[-1]
    codec = checkpoint.get(class_name, {}).get("codec")
    if codec is None:
        raise ConfigError(f"{path} holds no codec (the data's preprocessing); it was written by an older version")
    return codec


def load_checkpoint(path: str | Path) -> Checkpoint:
    """The model (eval mode, on the CPU) and its codec from a checkpoint written by `fit`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint; give the path of a .ckpt file written by `fit`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or one that needs unpickling code
        raise ConfigError(f"{path} is not a checkpoint that loads safely (weights_only=True): {err}") from None
    for key in ("hyper_parameters", "datamodule_hyper_parameters"):
        if "_class_path" not in checkpoint.get(key, {}):
            raise ConfigError(f"{path} was not written by this project's CLI: it names no model and data module class")
    model_args = checkpoint["hyper_parameters"]
    model = import_class(model_args["_class_path"])(**init_arguments(model_args))
    model.load_state_dict(checkpoint["state_dict"])
    model = model.for_inference()
    data = data_codec(checkpoint, path)
    codec = model.serving_codec(Codec.from_dict(data))
    return Checkpoint(model.eval(), codec, describe(checkpoint, codec, data, path))


class Predicts(Protocol):
    """A torch model with the task contract's `predict`: a Task, or its int8 copy."""

    def predict(self, *inputs: Any) -> dict[str, torch.Tensor]: ...


def torch_predict(model: Predicts) -> Predict:
    def predict(inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return model.predict(*inputs)

    return predict


def padded(batch: tuple[torch.Tensor, ...], shapes: list[list[Any]]) -> tuple[torch.Tensor, ...]:
    """Each input zero-padded up to the sizes an exported graph fixes (`shapes`: a size, or a name where it is
    free). Only texts have such an axis: token ids padded to max_length for an exported RNN, with [PAD] (id 0);
    padding changes no prediction, since the lengths travel beside the ids."""
    out = []
    for tensor, shape in zip(batch, shapes, strict=True):
        gaps = [
            size - have if isinstance(size, int) else 0 for size, have in zip(shape[1:], tensor.shape[1:], strict=True)
        ]
        out.append(F.pad(tensor, [side for gap in reversed(gaps) for side in (0, gap)]) if any(gaps) else tensor)
    return tuple(out)


def onnx_predict(path: Path, threads: int = 0) -> Predict:
    """ONNX Runtime on the CPU with `threads` threads per call (0: its default, one per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_names = [arg.name for arg in session.get_inputs()]
    shapes = [arg.shape for arg in session.get_inputs()]
    output_names = [arg.name for arg in session.get_outputs()]

    def predict(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        feeds = {name: tensor.numpy() for name, tensor in zip(input_names, padded(batch, shapes), strict=True)}
        outputs = session.run(output_names, feeds)
        return {name: torch.from_numpy(out) for name, out in zip(output_names, outputs, strict=True)}

    return predict


def program_predict(path: Path, metadata: dict[str, Any]) -> Predict:
    """A torch.export program (`model.pt2`), its inputs padded as the metadata's shapes say, its outputs named."""
    program = torch.export.load(path).module()
    shapes, output_names = [spec["shape"] for spec in metadata["inputs"]], metadata["outputs"]

    def predict(inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return dict(zip(output_names, program(*padded(inputs, shapes)), strict=True))

    return predict


def load_int8(path: Path, metadata: dict[str, Any]) -> Task:
    """The int8 model saved as model_int8.pt: the task rebuilt from the metadata, quantized, then its weights loaded."""
    # quantized first: that imports torchao, whose int8 tensors the file holds; the file holds for_inference()'s weights
    model = quantize_int8(build_task(metadata).for_inference())
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["state_dict"], assign=True)
    return model.eval()


def load(path: str | Path, threads: int = 1) -> Trained:
    """Any file of `fit` or `export`, by its suffix, ready to predict with `threads` CPU threads."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix)
    if kind is None:
        raise ConfigError(
            f"{path}: give a .ckpt checkpoint, or a model.onnx, model_int8.onnx, model_int8.pt or model.pt2 from "
            "`export`"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    torch.set_num_threads(threads)
    if kind == "checkpoint":
        checkpoint = load_checkpoint(path)
        return Trained(torch_predict(checkpoint.model), checkpoint.codec, checkpoint.metadata, path, kind)
    metadata = read_metadata(path)
    digest = described_digest(path, metadata)
    metadata["model_version"] = f"{metadata['model_version']}-{path.stem}-{digest[:12]}"
    codec = Codec.from_dict(metadata["codec"])
    try:
        if kind == "onnx":
            kind = "int8_onnx" if path.name in metadata.get("int8", {}).get("scheme", {}) else "onnx"
            return Trained(onnx_predict(path, threads), codec, metadata, path, kind)
        if kind == "pt2":
            return Trained(program_predict(path, metadata), codec, metadata, path, kind)
        return Trained(torch_predict(load_int8(path, metadata)), codec, metadata, path, kind)
    except Exception as err:  # noqa: BLE001 - whatever the runtime's reason, the file is the user's to replace
        reason = (str(err).strip().splitlines() or [""])[0]
        raise ConfigError(f"{path} does not load ({type(err).__name__}: {reason}); export it again") from None


def described_digest(path: Path, metadata: dict[str, Any]) -> str:
    """The sha256 of `path`, once it is the file metadata.json describes: not cut short, not damaged, and not a
    file of another export (moved beside it, or left by an export that stopped between its files)."""
    origin = f"exported from {metadata.get('checkpoint')} of {metadata.get('task')}"
    files = metadata.get("files", {})
    described = files.get(path.name)
    if described is None:  # a file left by an earlier export, or a metadata.json of an older version
        raise ConfigError(
            f"{path}: the {METADATA} beside it describes {', '.join(files) or 'no file'}, not this one ({origin}); "
            "export again"
        )
    size = path.stat().st_size
    if size != described["bytes"]:
        raise ConfigError(
            f"{path} is {size:,} bytes, {METADATA} says {described['bytes']:,}: damaged, or not the file of that "
            f"export ({origin}); export again"
        )
    digest = file_digest(path)
    if digest != described["sha256"]:
        raise ConfigError(f"{path} is not the file {METADATA} describes ({origin}): damaged or replaced; export again")
    return digest


def read_metadata(artifact: Path) -> dict[str, Any]:
    path = artifact.parent / METADATA
    if not path.is_file():
        raise ConfigError(f"{artifact}: no {METADATA} beside it; `export` writes the two together")
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"{path} is not the JSON `export` writes ({err}): damaged; export again") from None


def write_metadata(folder: Path, metadata: dict[str, Any]) -> Path:
    """`metadata.json` in `folder`, with the size and sha256 of each model file there (what `load` checks): the one
    writer of that file, for export and the int8 callbacks alike. Written last, once those files are complete."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in EXPORTED)
    metadata["files"] = {p.name: {"bytes": p.stat().st_size, "sha256": file_digest(p)} for p in files}
    path = folder / METADATA
    write_whole(path, (json.dumps(metadata, indent=2) + "\n").encode())
    return path
