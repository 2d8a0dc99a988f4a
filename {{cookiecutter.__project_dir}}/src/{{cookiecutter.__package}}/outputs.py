"""What a task's predictions are, and what becomes of them: the server's answers, `predict`'s files, test scores.

A task's `predict` returns a dict of tensors, batch first; what they mean depends on the kind of task. A
classifier answers a class index and its probability, a regression a number, a generator an image, a
segmentation model a mask. Shared code does not guess which from the names of the tensors: each task names
its kind of output (`Task.outputs`, one of the classes below or one of its own), and every consumer asks it:

- `answers(outputs, labels)`: one JSON object per input, what the server answers (serve/);
- `write(outputs, stem, labels, inputs)`: what `predict` writes into the run folder (`<stem>.csv`, or files under
  `<stem>/`; callbacks.py);
- `scores(outputs, target)`: per-example test scores, averaged over the test split by `export`, which compares
  them across the float32, ONNX and int8 files (quantize.py); none for a generator.

`Outputs` itself answers each tensor's values and writes them as CSV rows, and scores nothing; a new kind of
output subclasses it, in the task's own file when no other task shares it.
"""

from __future__ import annotations

import base64
import csv
from pathlib import Path
from typing import Any, ClassVar

import torch

from .plots import image_grid, png_bytes, save_png


class Outputs:
    answers_files: ClassVar[bool] = False  # whether `answers` encodes files (PNG): the server runs it in a thread

    def answers(self, outputs: dict[str, torch.Tensor], labels: list[str] | None) -> list[dict[str, Any]]:
        """A batch of predictions -> one JSON object per input: each output's value."""
        columns = {name: tensor.tolist() for name, tensor in outputs.items()}
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]

    def write(
        self, outputs: dict[str, torch.Tensor], stem: Path, labels: list[str] | None, inputs: list[str] | None
    ) -> list[Path]:
        """`predict`'s outputs (the target beside them when the data has one) as `<stem>.csv` (stem: the run folder's
        `predictions`): a row per input, the raw `inputs` (texts given with --text) leading where there are some.
        Returns the files written."""
        header, rows = self.rows(outputs, labels)
        if inputs:
            header.insert(0, "text")
            rows = [[text, *row] for text, row in zip(inputs, rows, strict=False)]  # limit_predict_batches: fewer rows
        path = stem.with_suffix(".csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        return [path]

    def rows(self, outputs: dict[str, torch.Tensor], labels: list[str] | None) -> tuple[list[str], list[list[Any]]]:
        """The CSV's header and rows: an (N, k) output becomes k columns name_0 .. name_{k-1}."""
        header, values = [], []
        for name, tensor in outputs.items():
            column = tensor.reshape(len(tensor), -1)
            for i in range(column.shape[1]):
                header.append(f"{name}_{i}" if column.shape[1] > 1 else name)
                values.append([round(v, 6) if isinstance(v, float) else v for v in column[:, i].tolist()])
        return header, [list(row) for row in zip(*values, strict=True)]

    def scores(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Test scores of a batch, one value per example ({name: (N,)}); their means over the test split are what
        `export` records for each file. None here: a kind of output without a target to compare with."""
        return {}


class ClassOutputs(Outputs):
    """`prediction` (a class index) and `probability` (of that class) per input; answers and rows add the class's
    name (`label`) when the data names its classes. Scored by accuracy."""

    def answers(self, outputs: dict[str, torch.Tensor], labels: list[str] | None) -> list[dict[str, Any]]:
        rows = super().answers(outputs, labels)
        if labels:
            for row in rows:
                row["label"] = labels[row["prediction"]]
        return rows

    def rows(self, outputs: dict[str, torch.Tensor], labels: list[str] | None) -> tuple[list[str], list[list[Any]]]:
        header, rows = super().rows(outputs, labels)
        if labels:
            header.append("label")
            rows = [[*row, labels[index]] for row, index in zip(rows, outputs["prediction"].tolist(), strict=True)]
        return header, rows

    def write(
        self, outputs: dict[str, torch.Tensor], stem: Path, labels: list[str] | None, inputs: list[str] | None
    ) -> list[Path]:
        written = super().write(outputs, stem, labels, inputs)
        if inputs and labels:  # texts classified from the command line: show the answers too
            print(f"\n{'label':<12} {'probability':>11}  text")
            probabilities = outputs["probability"].tolist()
            for text, index, probability in zip(inputs, outputs["prediction"].tolist(), probabilities, strict=False):
                shown = text if len(text) <= 80 else text[:77] + "..."
                print(f"{labels[index]:<12} {probability:>11.3f}  {shown}")
        return written

    def scores(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"test_acc": (outputs["prediction"] == target).float()}


class ValueOutputs(Outputs):
    """`prediction`: a number (or a vector) per input, as a regression's. Scored by squared error."""

    def scores(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = outputs["prediction"].float()
        squared = (prediction - target.float().reshape(prediction.shape)) ** 2
        return {"test_mse": squared.reshape(len(squared), -1).mean(dim=1)}


class ImageOutputs(Outputs):
    """`image`: (N, C, H, W) pixels in [0, 1], as a generator's. Answered as PNG files (base64); `predict` writes
    `<stem>/0000.png ...` and `<stem>/grid.png`. Nothing to score them against."""

    answers_files = True

    def answers(self, outputs: dict[str, torch.Tensor], labels: list[str] | None) -> list[dict[str, Any]]:
        return [{"image_png": base64.b64encode(png_bytes(image)).decode()} for image in outputs["image"]]

    def write(
        self, outputs: dict[str, torch.Tensor], stem: Path, labels: list[str] | None, inputs: list[str] | None
    ) -> list[Path]:
        images = outputs["image"]
        written = [save_png(image, stem / f"{index:04d}.png") for index, image in enumerate(images)]
        written.append(save_png(image_grid(images), stem / "grid.png"))
        print(f"\n{len(images)} images in {stem}: 0000.png .. {len(images) - 1:04d}.png, and grid.png", flush=True)
        return written
