"""`export`: a checkpoint -> an ONNX file and a torch.export program, each checked against the eager model.

    python -m {{ cookiecutter.__package }} export --config configs/{{ cookiecutter.__example_task }}.yaml --ckpt_path best
    python -m {{ cookiecutter.__package }} export --ckpt_path runs/.../checkpoints/best.ckpt --quantize int8

What is exported is the task's `predict` (class index and probability for a classifier, y for regression),
so an exported file answers exactly what `predict` and the server answer. Its inputs are what the codec
makes of a request (the same preprocessing as training), with a dynamic batch axis; texts are padded to
`max_length` tokens. Into --output (default: the run folder's `export/`):

    model.onnx      ONNX (the torch.onnx dynamo exporter); run it with onnxruntime
    model.pt2       a torch.export program (torch.export.load)
    model_int8.pt   with --quantize int8: int8 weights for torch on the CPU (torchao; see quantize.py)
    model_int8.onnx with --quantize int8: int8 kernels for ONNX Runtime, the fastest on a CPU (see quantize.py)
    README.md       a model card in the Hugging Face format: what the model is, its data, the comparison
                    below, how to serve it, and the run's config (model_card.py; `hf upload` publishes it)
    metadata.json   task, labels, inputs and outputs, and the codec (the preprocessing, the tokenizer
                    included), so that a server needs nothing else

Each file is checked against the eager model on the codec's example request and on a few test batches
(inputs like the ones the model is for), and the largest difference is printed; each is then scored on
the test split with the task's own scores (accuracy, MSE, ...; none for a generator), and both go into
metadata.json (`max_abs_difference_vs_eager`, `test_scores`), with what each int8 file really holds
(`int8.holds`: the share of the weights in int8, and the layers left float32). Files are written to a
temporary folder first and moved into place at the end, metadata.json last: a full disk leaves --output as it was,
and an export stopped between two moves leaves files that metadata.json does not describe, which `serve` refuses.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from torch import nn

from . import ConfigError
from .artifacts import (
    METADATA,
    Checkpoint,
    Predict,
    load_checkpoint,
    onnx_predict,
    program_predict,
    torch_predict,
    write_metadata,
)
from .atomic import not_written, write_whole
from .data.base import SplitDataModule
from .int8 import ONNX_SCHEME, onnx_weight_share, quantize_onnx
from .model_card import model_card
from .quantize import calibration_batches, int8_description, save_int8
from .runs import command_line_options, export_dir, find_checkpoint, run_of
from .scores import test_batches, test_scores
from .task import Task

Format = Literal["onnx", "pt2"]
FORMATS: tuple[Format, ...] = ("onnx", "pt2")
MAX_BATCH = 4096  # the exported batch axis allows 1 .. MAX_BATCH
CHECK_BATCHES = 3  # test batches each written file is compared on, beside the example request


class Prediction(nn.Module):
    """The task's `predict` as a module with tensor outputs in a fixed order: what is exported."""

    def __init__(self, task: Task, output_names: list[str]) -> None:
        super().__init__()
        self.task = task
        self.output_names = output_names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.task.predict(*inputs)
        return tuple(outputs[name] for name in self.output_names)


def shape_of(tensor: torch.Tensor, variable_length: bool) -> list[int | str]:
    """An input's shape for the metadata: `batch` for axis 0, and `length` for axis 1 of token ids that may vary."""
    shape: list[int | str] = ["batch", *tensor.shape[1:]]
    if variable_length and tensor.dim() > 1:
        shape[1] = "length"
    return shape


def max_difference(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: (actual[name].double() - value.double()).abs().max().item() for name, value in expected.items()}


def export(
    checkpoint: Checkpoint, output: Path, formats: tuple[Format, ...] = FORMATS, quantize: str | None = None
) -> dict[str, Any]:
    """Write the requested files and metadata.json into `output`; return the metadata (with the checks)."""
    model = checkpoint.model
    inputs = checkpoint.codec.example_inputs()
    datamodule = checkpoint.datamodule()  # the training data: the test split, and int8 calibration batches
    batches = test_batches(model, datamodule)
    # The example request, a batch of one, and a few test batches: inputs like the ones the model is for.
    checks = [inputs, tuple(t[:1] for t in inputs), *(tuple(batch[:-1]) for batch in (batches or [])[:CHECK_BATCHES])]
    with torch.no_grad():
        eager = [model.predict(*batch) for batch in checks]  # what every written file must answer
    expected = eager[0]
    program = Prediction(model, list(expected)).eval()
    names = list(model.input_names)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    axes = [{0: batch} for _ in inputs]
    if model.variable_length:  # token ids of any length up to the example's (max_length): axis 1 stays free
        length = torch.export.Dim("length", min=2, max=max(t.shape[1] for t in inputs if t.dim() > 1))
        axes = [{**axis, 1: length} if t.dim() > 1 else axis for axis, t in zip(axes, inputs, strict=True)]
    dynamic_shapes = {"inputs": tuple(axes)}  # by the name of forward's *inputs
    metadata = {
        **checkpoint.metadata,
        "inputs": [
            {"name": name, "dtype": str(tensor.dtype), "shape": shape_of(tensor, model.variable_length)}
            for name, tensor in zip(names, inputs, strict=True)
        ],
        "outputs": list(expected),
        "parameters": sum(p.numel() for p in model.parameters()),  # the model card's weights count
        "max_abs_difference_vs_eager": {},
    }
    files = {"eager": torch_predict(model)}  # each written file's predict, scored on the test split at the end
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(output)
    try:
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}-{os.getpid()}-") as tmp:
            staging = Path(tmp)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the exporters' progress and deprecation chatter
                exported = torch.export.export(program, inputs, dynamic_shapes=dynamic_shapes)
            if "pt2" in formats:
                buffer = io.BytesIO()  # into a file, torch reports a full disk as a RuntimeError, not an OSError
                torch.export.save(exported, buffer)
                write_whole(staging / "model.pt2", buffer.getvalue())
                files["model.pt2"] = program_predict(staging / "model.pt2", metadata)
            if "onnx" in formats:
                write_onnx(exported, staging / "model.onnx", names, list(expected), model)
                files["model.onnx"] = onnx_predict(staging / "model.onnx")
            if quantize:
                metadata["int8"], int8_files = write_int8_files(checkpoint, staging, datamodule)
                files |= int8_files
            for name, predict in files.items():
                if name != "eager":
                    check(metadata, name, checks, eager, predict)
            metadata["test_scores"] = test_scores(files, model.outputs, batches)
            write_metadata(staging, metadata)
            config = run_of(Path(metadata["checkpoint"])) / "config.yaml"  # the run's resolved config
            card = model_card(metadata, config.read_text() if config.is_file() else None)
            write_whole(staging / "README.md", card.encode())  # moved with the model files
            output.mkdir(exist_ok=True)
            for path in sorted(staging.iterdir(), key=lambda path: path.name == METADATA):  # metadata.json last
                os.replace(path, output / path.name)
    except OSError as err:  # a full disk while staging: the staging folder is removed, and `output` is as it was
        raise not_written(output / Path(err.filename).name if err.filename else output, err) from None
    return metadata


def remove_abandoned_staging(output: Path) -> None:
    """Remove the staging folders `.<output>-<pid>-*` of earlier exports whose process is gone (killed before it
    could clean up), so that they do not pile up beside the export; a running export's folder is left alone."""
    for folder in output.parent.glob(f".{output.name}-*-*"):
        pid = folder.name.removeprefix(f".{output.name}-").split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: asks whether the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True


def write_onnx(
    exported: torch.export.ExportedProgram, path: Path, inputs: list[str], outputs: list[str], task: Task
) -> None:
    """The ONNX file of `exported`, its constants folded, and the task's `finish_onnx` edits applied."""
    import onnxscript.optimizer

    with warnings.catch_warnings(), open(os.devnull, "w") as quiet:
        warnings.simplefilter("ignore")
        stdout, sys.stdout = sys.stdout, quiet  # the ONNX exporter prints its steps
        try:
            program = torch.onnx.export(exported, (), dynamo=True, input_names=inputs, output_names=outputs)
        finally:
            sys.stdout = stdout
    assert program is not None  # dynamo=True always returns the program
    # Fold every constant, however large: the LSTM's weights, reordered for ONNX, become plain initializers
    # that int8 quantization can reach (the exporter's own pass folds only small tensors).
    model = onnxscript.optimizer.optimize(program.model_proto, input_size_limit=2**62, output_size_limit=2**62)
    task.finish_onnx(model)
    write_whole(path, model.SerializeToString())


def write_int8_files(
    checkpoint: Checkpoint, staging: Path, datamodule: SplitDataModule
) -> tuple[dict[str, Any], dict[str, Predict]]:
    """model_int8.pt (torchao, for torch) and, beside model.onnx, model_int8.onnx (for ONNX Runtime): metadata.json's
    `int8` (each file's scheme, and the share of the weights it really makes int8), and each file's predict."""
    path = staging / "model_int8.pt"
    files = {path.name: torch_predict(save_int8(checkpoint.model, path))}
    description = int8_description(checkpoint.model, path)
    if (staging / "model.onnx").exists():
        try:
            calibration = calibration_batches(checkpoint.codec, datamodule)
        except (ConfigError, OSError) as err:  # static quantization needs training batches to calibrate on
            print(f"model_int8.onnx: not written, its calibration data cannot be read here: {err}", flush=True)
        else:
            quantize_onnx(staging / "model.onnx", staging / "model_int8.onnx", calibration)
            files["model_int8.onnx"] = onnx_predict(staging / "model_int8.onnx")
            description["scheme"]["model_int8.onnx"] = ONNX_SCHEME
            description["holds"]["model_int8.onnx"] = onnx_weight_share(staging / "model_int8.onnx")
    return description, files


def check(metadata: dict, name: str, batches, eager: list[dict[str, torch.Tensor]], run: Callable) -> None:
    """Run the written file on each batch of inputs; record and print its largest difference from the eager model's
    outputs on them (`eager`, in the same order)."""
    with torch.no_grad():
        differences = [max_difference(expected, run(inputs)) for inputs, expected in zip(batches, eager, strict=True)]
    worst = {key: max(d[key] for d in differences) for key in differences[0]}
    if not all(math.isfinite(value) for value in worst.values()):
        raise RuntimeError(f"{name} gives outputs that are not finite where the eager model's are")
    metadata["max_abs_difference_vs_eager"][name] = worst
    shown = ", ".join(f"{key} {value:.2g}" for key, value in worst.items())
    count = len(batches) - 2  # after the example request and the batch of one
    tests = f" and {count} test batch{'es' if count > 1 else ''}" if count else ""
    print(f"{name}: max |{name} - eager| on the example request, one example{tests}: {shown}")


def parser() -> ArgumentParser:
    """`export`'s options, parsed like the training subcommands' (jsonargparse): --help, --config, exit 2 on typos."""
    parser = ArgumentParser(prog="{{ cookiecutter.__package }} export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="configs/<task>.yaml: whose runs best/last search")
    parser.add_argument("--ckpt_path", type=str, required=True, help="a .ckpt file, or best/last (with --config)")
    parser.add_argument("--output", type=Path | None, default=None, help="folder for the files (default: <run>/export)")
    parser.add_argument("--format", type=Format | list[Format], default=list(FORMATS), help="what to write")
    parser.add_argument("--quantize", type=Literal["int8"] | None, default=None, help="also write int8 models")
    # The other sections of a task's config (or of a run's config.yaml) are read for the model's class only.
    for section in ("model", "data", "trainer", "seed_everything", "compile", "judge", "text", "text_file"):
        parser.add_argument(f"--{section}", type=Any, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str]) -> None:
    """`export`: the model as its run trained it, read with that run's data settings (the data is read for the test
    scores and the int8 calibration); a `--data.*` option given here overrides one, a `--model.*` option is refused."""
    given, rest = command_line_options(argv, ("model", "data"))
    model_options = [name for name in given if name.startswith("--model.")]
    if model_options:
        raise ConfigError(f"{model_options[0]}: export writes the model as `fit` trained it; to change it, train again")
    args = parser().parse_args(rest)
    checkpoint_path = Path(args.ckpt_path)
    if args.ckpt_path in ("best", "last"):
        if args.model is None:
            raise ConfigError(
                f"--ckpt_path {args.ckpt_path} needs --config configs/<task>.yaml to know which task's runs to search"
            )
        checkpoint_path = find_checkpoint(args.model["class_path"], args.ckpt_path)
    checkpoint = load_checkpoint(checkpoint_path)
    if given:
        shown = ", ".join(f"{name} {value}" for name, value in given.items())
        for name, value in given.items():
            argument = name.removeprefix("--data.").removeprefix("init_args.")
            checkpoint.metadata["data_args"][argument] = yaml.safe_load(value)
        print(f"note: export reads the data as {run_of(checkpoint_path)} did, but for {shown}", file=sys.stderr)
    output = args.output or export_dir(checkpoint_path)
    formats = tuple([args.format] if isinstance(args.format, str) else args.format)
    metadata = export(checkpoint, output, formats, args.quantize)
    print(f"\nexport: {checkpoint.metadata['task']} from {checkpoint_path} into {output}")
    holds = metadata.get("int8", {}).get("holds", {})
    for path in sorted(output.iterdir()):
        note = ""
        if path.name in holds:  # what an int8 file really holds: a convolution network's torchao file stays float32
            note = f"  int8: {holds[path.name]['int8_share']:.0%} of the weights"
            if holds[path.name].get("float32_layers"):
                note += f" (float32: {', '.join(holds[path.name]['float32_layers'])})"
        print(f"  {path.name:16} {path.stat().st_size / 1024:10.1f} KiB{note}")
