"""Reading what training wrote, for export and serving: a model and its preprocessing, from a checkpoint or
from the metadata that `export` writes beside an ONNX or int8 file.

A checkpoint of this project's CLI holds all of it: the model's and the data module's class paths and
arguments (LightningCLI saves them as hyperparameters), the weights, and the data module's state (the text
tokenizer). Files are read with `torch.load(weights_only=True)`: no pickled code runs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule

from . import ConfigError

METADATA = "metadata.json"  # written by `export` beside model.onnx, model.pt2 and the int8 files


def import_class(class_path: str) -> type:
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def init_arguments(saved: dict[str, Any]) -> dict[str, Any]:
    """Saved hyperparameters without the bookkeeping keys LightningCLI adds (`_class_path`, `_instantiator`)."""
    return {k: v for k, v in saved.items() if not k.startswith("_")}


def instantiate(class_path: str, arguments: dict[str, Any]) -> Any:
    return import_class(class_path)(**init_arguments(arguments))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@dataclass
class Trained:
    """A trained model with what it needs around it: its data module (preprocessing, labels) and a description."""

    model: LightningModule
    datamodule: LightningDataModule
    metadata: dict[str, Any]

    @property
    def task(self) -> str:
        return self.metadata["task"]


def describe(checkpoint: dict[str, Any], datamodule: LightningDataModule, source: Path) -> dict[str, Any]:
    """The metadata of a trained model: what rebuilds its preprocessing, its labels, and a version name."""
    model_args, data_args = checkpoint["hyper_parameters"], checkpoint["datamodule_hyper_parameters"]
    task = model_args["_class_path"].rsplit(".", 2)[-2]
    epoch, step = checkpoint.get("epoch"), checkpoint.get("global_step")
    return {
        "task": task,
        "model_class": model_args["_class_path"],
        "model_args": init_arguments(model_args),
        "data_class": data_args["_class_path"],
        "data_args": init_arguments(data_args),
        "data_state": datamodule.state_dict(),
        "labels": list(getattr(datamodule, "labels", None) or []) or None,
        "model_version": f"{task}-epoch{epoch}-step{step}-{file_digest(source)}",
        "checkpoint": str(source),
    }


def load_checkpoint(path: str | Path) -> Trained:
    """The model (eval mode, on the CPU) and its data module from a checkpoint written by `fit`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such checkpoint; give the path of a .ckpt file written by `fit`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or one that needs unpickling code
        raise ConfigError(f"{path} is not a checkpoint that loads safely (weights_only=True): {err}") from None
    model_args = checkpoint.get("hyper_parameters", {})
    data_args = checkpoint.get("datamodule_hyper_parameters", {})
    if "_class_path" not in model_args or "_class_path" not in data_args:
        raise ConfigError(f"{path} was not written by this project's CLI: it names no model and data module class")
    model = instantiate(model_args["_class_path"], model_args)
    model.load_state_dict(checkpoint["state_dict"])
    datamodule = instantiate(data_args["_class_path"], data_args)
    data_state = checkpoint.get(type(datamodule).__qualname__, {})
    if data_state:
        datamodule.load_state_dict(data_state)
    return Trained(model.eval(), datamodule, describe(checkpoint, datamodule, path))


def read_metadata(artifact: Path) -> dict[str, Any]:
    path = artifact.parent / METADATA
    if not path.is_file():
        raise ConfigError(f"{artifact}: no {METADATA} beside it; `export` writes the two together")
    return json.loads(path.read_text())


def datamodule_from(metadata: dict[str, Any]) -> LightningDataModule:
    """The data module an exported model was trained with, with its state (the tokenizer): its preprocessing."""
    datamodule = instantiate(metadata["data_class"], metadata["data_args"])
    if metadata["data_state"]:
        datamodule.load_state_dict(metadata["data_state"])
    return datamodule
