"""`export`: a checkpoint -> an ONNX file and a torch.export program, each checked against the eager model.

    python -m {{ cookiecutter.__package }} export --config configs/{{ cookiecutter.__example_task }}.yaml --ckpt_path best
    python -m {{ cookiecutter.__package }} export --ckpt_path runs/.../checkpoints/best.ckpt --quantize int8

What is exported is the task's `predict` (class index and probability for a classifier, y for regression),
so an exported file answers exactly what `predict` and the server answer. Its inputs are what the data
module's `request_inputs` makes of a request (the same preprocessing as training), with a dynamic batch
axis; texts are padded to `max_length` tokens. Into --output (default: the run folder's `export/`):

    model.onnx      ONNX (the torch.onnx dynamo exporter); run it with onnxruntime
    model.pt2       a torch.export program (torch.export.load)
    model_int8.pt   with --quantize int8: int8 weights for torch on the CPU (torchao; see quantize.py)
    model_int8.onnx with --quantize int8: int8 kernels for ONNX Runtime, the fastest on a CPU (see quantize.py)
    metadata.json   task, labels, inputs and outputs, and the preprocessing: the data module's class,
                    arguments and state (the tokenizer), so that a server needs nothing else

Each file is checked on the data module's example request against the eager model, and the largest
difference is printed. Files are written to a temporary folder first and moved into place at the end.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch import nn

from . import ConfigError
from .artifacts import METADATA, Trained, load_checkpoint
from .serve.predictor import Predict, onnx_predict, torch_predict

FORMATS = ("onnx", "pt2")
MAX_BATCH = 4096  # the exported batch axis allows 1 .. MAX_BATCH


class Prediction(nn.Module):
    """The task's `predict` as a module with tensor outputs in a fixed order: what is exported."""

    def __init__(self, task: nn.Module, output_names: list[str]) -> None:
        super().__init__()
        self.task = task
        self.output_names = output_names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.task.predict(*inputs)
        return tuple(outputs[name] for name in self.output_names)


def example_inputs(trained: Trained) -> tuple[torch.Tensor, ...]:
    """The model inputs of the data module's example request (two examples, so the batch axis stays dynamic)."""
    datamodule = trained.datamodule
    return datamodule.request_inputs(datamodule.request_model(**datamodule.example_request).items())


def input_names(trained: Trained, count: int) -> list[str]:
    """The names of the model's forward arguments (`x`, or `token_ids` and `lengths`)."""
    names = [name for name in inspect.signature(trained.model.model.forward).parameters]
    return names if len(names) == count else [f"input_{i}" for i in range(count)]


def max_difference(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: (actual[name].double() - value.double()).abs().max().item() for name, value in expected.items()}


def export(trained: Trained, output: Path, formats: tuple[str, ...] = FORMATS, quantize: str | None = None) -> dict:
    """Write the requested files and metadata.json into `output`; return the metadata (with the checks)."""
    inputs = example_inputs(trained)
    checks = (inputs, tuple(t[:1] for t in inputs))  # the example batch, and a batch of one
    with torch.no_grad():
        eager = [trained.model.predict(*batch) for batch in checks]  # what every written file must answer
    expected = eager[0]
    program = Prediction(trained.model, list(expected)).eval()
    names = input_names(trained, len(inputs))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic_shapes = {"inputs": tuple({0: batch} for _ in inputs)}  # by the name of forward's *inputs
    metadata = {
        **trained.metadata,
        "inputs": [
            {"name": name, "dtype": str(tensor.dtype), "shape": ["batch", *tensor.shape[1:]]}
            for name, tensor in zip(names, inputs, strict=True)
        ],
        "outputs": list(expected),
        "max_abs_difference_vs_eager": {},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}-") as tmp:
        staging = Path(tmp)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporters' progress and deprecation chatter
            exported = torch.export.export(program, inputs, dynamic_shapes=dynamic_shapes)
        if "pt2" in formats:
            torch.export.save(exported, staging / "model.pt2")
            loaded = torch.export.load(staging / "model.pt2").module()
            check(metadata, "model.pt2", checks, eager, lambda x: dict(zip(expected, loaded(*x), strict=True)))
        if "onnx" in formats:
            write_onnx(exported, staging / "model.onnx", names, list(expected), trained.model)
            check(metadata, "model.onnx", checks, eager, onnx_predict(staging / "model.onnx"))
        if quantize:
            metadata["int8"] = write_int8_files(trained, staging, formats, checks, eager, metadata)
        (staging / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
        output.mkdir(exist_ok=True)
        for path in staging.iterdir():
            os.replace(path, output / path.name)
    return metadata


def write_onnx(exported: torch.export.ExportedProgram, path: Path, inputs: list[str], outputs: list[str], task) -> None:
    """The ONNX file of `exported`, its constants folded; a task with a `finish_onnx(model_proto)` method edits the
    graph before it is written (the RNN hands its lengths to ONNX's LSTM)."""
    import onnx
    import onnxscript.optimizer

    with warnings.catch_warnings(), open(os.devnull, "w") as quiet:
        warnings.simplefilter("ignore")
        stdout, sys.stdout = sys.stdout, quiet  # the ONNX exporter prints its steps
        try:
            program = torch.onnx.export(exported, (), dynamo=True, input_names=inputs, output_names=outputs)
        finally:
            sys.stdout = stdout
    # Fold every constant, however large: the LSTM's weights, reordered for ONNX, become plain initializers
    # that int8 quantization can reach (the exporter's own pass folds only small tensors).
    model = onnxscript.optimizer.optimize(program.model_proto, input_size_limit=2**62, output_size_limit=2**62)
    if hasattr(task, "finish_onnx"):
        task.finish_onnx(model)
    onnx.save(model, path)


def write_int8_files(trained: Trained, staging: Path, formats, checks, eager, metadata: dict) -> dict:
    """model_int8.pt (torchao, for torch) and, beside model.onnx, model_int8.onnx (for ONNX Runtime); each checked
    against the eager model, and both scored on the test split beside the float model."""
    from .quantize import ONNX_SCHEME, SCHEME, compare_on_test, quantize_onnx, save_int8

    int8 = torch_predict(save_int8(trained, staging / "model_int8.pt"))
    check(metadata, "model_int8.pt", checks, eager, int8)
    scored, schemes = {"int8": int8}, {"model_int8.pt": SCHEME}
    if "onnx" in formats:
        try:
            quantize_onnx(staging / "model.onnx", staging / "model_int8.onnx", trained)
        except (ConfigError, OSError) as err:  # static quantization needs training batches to calibrate on
            print(f"model_int8.onnx: not written, its calibration data cannot be read here: {err}", flush=True)
        else:
            int8_onnx = onnx_predict(staging / "model_int8.onnx")
            check(metadata, "model_int8.onnx", checks, eager, int8_onnx)
            scored["int8_onnx"] = padded_to(metadata["inputs"], int8_onnx)  # scored on test batches, padded per batch
            schemes["model_int8.onnx"] = ONNX_SCHEME
    return {"scheme": schemes, **compare_on_test(trained, scored)}


def padded_to(inputs: list[dict], predict: Predict) -> Predict:
    """`predict` fed with batches zero-padded up to the exported graph's fixed sizes (`inputs`, from the metadata).

    Only texts have such an axis: token ids, fixed at the data module's max_length where an exported RNN needs
    it, padded with [PAD], whose id is 0. Padding changes no prediction (the lengths travel beside the ids).
    """

    def predict_padded(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        padded = []
        for tensor, spec in zip(batch, inputs, strict=True):
            gaps = [size - have for size, have in zip(spec["shape"][1:], tensor.shape[1:], strict=True)]
            padded.append(torch.nn.functional.pad(tensor, [side for gap in reversed(gaps) for side in (0, gap)]))
        return predict(tuple(padded))

    return predict_padded


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
    print(f"{name}: max |{name} - eager| on the example request and on one example: {shown}")


def checkpoint_path(ckpt_path: str, config: str | None) -> Path:
    """A .ckpt path, or `best`/`last`: the newest of that name among the runs of the config's task."""
    if ckpt_path not in ("best", "last"):
        return Path(ckpt_path)
    if config is None:
        raise ConfigError(
            f"--ckpt_path {ckpt_path} needs --config configs/<task>.yaml to know which task's runs to search"
        )
    from .cli import latest_checkpoint

    model_class = yaml.safe_load(Path(config).read_text())["model"]["class_path"]
    return Path(latest_checkpoint(model_class, ckpt_path))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="{{ cookiecutter.__package }} export",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--ckpt_path", required=True, help="a .ckpt file, or best/last (with --config)")
    parser.add_argument("--config", help="configs/<task>.yaml: which task's runs best/last search")
    parser.add_argument("--output", type=Path, help="folder for the files (default: <run folder>/export)")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS), help="what to write")
    parser.add_argument("--quantize", choices=["int8"], help="also write an int8 model for CPU serving")
    args = parser.parse_args(argv)
    checkpoint = checkpoint_path(args.ckpt_path, args.config)
    trained = load_checkpoint(checkpoint)
    output = args.output or checkpoint.resolve().parent.parent / "export"
    export(trained, output, tuple(args.format), args.quantize)
    print(f"\nexport: {trained.task} from {checkpoint} into {output}")
    for path in sorted(output.iterdir()):
        print(f"  {path.name:16} {path.stat().st_size / 1024:10.1f} KiB")
