"""Trained files scored on the test split, side by side: the task's own test scores, one table.

What a score is belongs to the task's kind of output (`Outputs.scores`: accuracy for a classifier, squared
error for a regression, none for a generator); this module only runs each file over the test split, averages
the per-example scores and prints them beside each other. `export` records them for every file it writes, and
the int8 callbacks of quantize.py for the float and the int8 model, in `metadata.json` under `test_scores`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from . import ConfigError
from .artifacts import Predict
from .data.base import SplitDataModule
from .outputs import Outputs
from .task import Task


def score(predict: Predict, outputs: Outputs, batches: Iterable[Any]) -> dict[str, float]:
    """The mean over all examples of each of the task's test scores, for one file's `predict`."""
    sums: dict[str, float] = {}
    count = 0
    for *inputs, target in batches:
        for name, values in outputs.scores(predict(tuple(inputs)), target).items():
            sums[name] = sums.get(name, 0.0) + values.double().sum().item()
        count += len(target)
    return {name: total / count for name, total in sums.items()}


def test_batches(model: Task, datamodule: SplitDataModule) -> list[Any] | None:
    """The test split's batches `(*inputs, target)`, or None (said) where it cannot be read here, or where the model
    does not predict from the data (a generator reads noise)."""
    if not model.reads_data():
        print(f"not scored on the test split: {type(model).__name__} does not predict from the data", flush=True)
        return None
    try:
        datamodule.setup("test")
        return list(datamodule.test_dataloader())
    except (ConfigError, OSError) as err:
        print(f"not scored: the test split cannot be read here: {err}", flush=True)
        return None


def test_scores(files: dict[str, Predict], outputs: Outputs, batches: list[Any] | None) -> dict[str, dict[str, float]]:
    """{file: {score: mean}} on the test batches, printed as one line per score; {} when there is nothing to score
    (no batches, or a kind of output without scores: a generator's)."""
    scores: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name, predict in files.items():
            scores[name] = score(predict, outputs, batches or [])
            if not scores[name]:
                if batches:
                    print(f"not scored on the test split: {type(outputs).__name__} has no test scores", flush=True)
                return {}
    for metric in next(iter(scores.values()), {}):
        shown = ", ".join(f"{name} {values[metric]:.4f}" for name, values in scores.items())
        print(f"{metric} on the test split: {shown}", flush=True)
    return scores
