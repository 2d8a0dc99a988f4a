"""The model card: `README.md` beside the exported files, in the Hugging Face format, filled from the export.

YAML metadata (tags, the Hub's task, and `model-index`: each file's test scores, which the Hub shows as evaluation
results), then what the model is, the data it learnt from, the float32 / ONNX / int8 comparison that `export`
measured, how to serve it, what it is for and where it stops, and the run's resolved config. Every number on it
is one that `export` recorded in `metadata.json`. The card goes with the files to the Hub:

    hf upload <user>/<repo> runs/<task>/version_N/export   (huggingface_hub's CLI; `hf auth login` first)
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import yaml

from .artifacts import import_class
from .outputs import ClassOutputs, ImageOutputs, Outputs, ValueOutputs

HUB_METRICS = {"test_acc": "accuracy", "test_mse": "mse"}  # DESIGN.md's metric names, as the Hub names them
# The Hub's task, from the kind of output and the kind of input (the codec's playground); none for other pairs.
PIPELINE_TAGS = {
    ("classifier", "pair"): "tabular-classification",
    ("classifier", "digit"): "image-classification",
    ("classifier", "image"): "image-classification",
    ("classifier", "text"): "text-classification",
    ("regression", "number"): "tabular-regression",
    ("generator", "generate"): "unconditional-image-generation",
}
RUNS_WITH = {  # by the file's suffix
    "eager": "torch (float32 checkpoint)",
    "onnx": "ONNX Runtime",
    "pt2": "torch.export",
    "pt": "torch (torchao)",
}


def kind_of(outputs: Outputs) -> str:
    for cls, kind in ((ClassOutputs, "classifier"), (ValueOutputs, "regression"), (ImageOutputs, "generator")):
        if isinstance(outputs, cls):
            return kind
    return type(outputs).__name__


def intended_use(kind: str, labels: list[str] | None, scored: bool) -> str:
    """What the model is for and where it stops, per kind of output: only what follows from how it was made."""
    uses = {
        "classifier": (
            f"Gives each input one of the classes it was trained on ({', '.join(f'`{n}`' for n in labels or [])}) "
            "and the probability of that class. It knows no other class: an input of another kind still gets one "
            "of them, often with a high probability."
        ),
        "regression": (
            "Predicts a number for each input, as it learnt from the data above: within the range of inputs that "
            "data covers, not beyond it, where it extrapolates."
        ),
        "generator": (
            "Draws new images like those of the data above from random noise (a seed). It draws nothing its "
            "training data did not show, and may draw images close to training ones."
        ),
    }
    use = uses.get(kind, "Predicts what its task was trained to, for inputs like the data above.")
    measured = "measured on its test split only: on other data it may do worse" if scored else "not measured here"
    return (
        f"{use} It learnt from the data above alone, and was {measured}. Nothing here measured its fairness, its "
        "robustness or its calibration: measure it on your own data before any use that affects people."
    )


def summary(module: str) -> str:
    """The first paragraph of a module's docstring, on one line: what the task's file, or the data's, says it is."""
    return " ".join((importlib.import_module(module).__doc__ or "").strip().split("\n\n")[0].split())


def comparison(metadata: dict[str, Any]) -> list[str]:
    """The export's own comparison, a row per file: its bytes, its test scores, its largest difference from the
    eager model per output, and the share of its weights that is int8 (numbers as `export` recorded them, to 4
    significant digits)."""
    scores, differences = metadata.get("test_scores", {}), metadata["max_abs_difference_vs_eager"]
    holds, files, outputs = metadata.get("int8", {}).get("holds", {}), metadata["files"], metadata["outputs"]
    metrics = list(next(iter(scores.values()), {}))
    header = ["file", "runs with", "bytes", *metrics, *(f"max abs difference vs eager: {name}" for name in outputs)]
    header += ["int8 share of the weights"] if holds else []
    rows = [header, ["---"] * len(header)]
    for name in ["eager", *files]:
        row = [f"`{name}`", RUNS_WITH.get(name.rsplit(".", 1)[-1], ""), str(files.get(name, {}).get("bytes", ""))]
        row += [f"{scores[name][metric]:.4g}" if name in scores else "" for metric in metrics]
        row += [f"{differences[name][output]:.4g}" if name in differences else "" for output in outputs]
        row += [f"{holds[name]['int8_share']:.4g}" if name in holds else ""] if holds else []
        rows.append(row)
    return ["| " + " | ".join(row) + " |" for row in rows]


def model_card(metadata: dict[str, Any], config: str | None) -> str:
    """The card's text for an export's `metadata` (with its `files`), and the run's `config.yaml` (None: the
    checkpoint was not in a run folder)."""
    task, model_class, data_class = metadata["task"], import_class(metadata["model_class"]), metadata["data_class"]
    codec = import_class(metadata["codec"]["class_path"])
    kind = kind_of(model_class.outputs)
    tag = PIPELINE_TAGS.get((kind, codec.playground))
    scores = metadata.get("test_scores", {})
    front: dict[str, Any] = {"tags": ["pytorch", "pytorch-lightning", "onnx", task]}
    if tag:
        front["pipeline_tag"] = tag
    if scores:
        metrics = [
            {"type": HUB_METRICS.get(metric, metric), "name": f"{metric} of {file}", "value": value}
            for file, values in scores.items()
            for metric, value in values.items()
        ]
        dataset = {"type": data_class, "name": data_class.rsplit(".", 1)[-1], "split": "test"}
        result = {"task": {"type": tag or task, "name": kind}, "dataset": dataset, "metrics": metrics}
        front["model-index"] = [{"name": task, "results": [result]}]
    labels = metadata["labels"]
    inputs = ", ".join(
        f"`{spec['name']}` (`{spec['dtype']}`, shape `{json.dumps(spec['shape'])}`)" for spec in metadata["inputs"]
    )
    served = "model_int8.onnx" if "model_int8.onnx" in metadata["files"] else next(iter(metadata["files"]))
    request = json.dumps(codec.example_request, separators=(",", ":")).replace("'", "'\\''")
    if scores:
        scored = (
            "`export` scored each file on the test split with the task's own scores (the mean over its examples): "
            "these are this card's test metrics (`test` logs its own to the run's logger, which the card does not "
            "read), the `eager` row the checkpoint's."
        )
    else:
        why = "a generator has none" if kind == "generator" else "the test split could not be read where it ran"
        scored = f"`export` recorded no test scores: {why}."
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {task}",
        "",
        f"The `{task}` task of `{{ cookiecutter.__package }}` ({kind}), exported by `{{ cookiecutter.__package }} "
        f"export` from `{metadata['checkpoint']}` (`{metadata['model_version']}`).",
        "",
        "## Model",
        "",
        f"> {summary(model_class.__module__)}",
        "",
        f"- Architecture: `{metadata['model_class']}`, with `{json.dumps(metadata['model_args'])}`",
        f"- Weights: {metadata['parameters']:,} parameters",
        f"- Inputs: {inputs}; outputs: {', '.join(f'`{name}`' for name in metadata['outputs'])}",
        "",
        "## Data",
        "",
        f"> {summary(data_class.rsplit('.', 1)[0])}",
        "",
        f"- Data module: `{data_class}`, with `{json.dumps(metadata['data_args'])}`",
        "- Splits: the data module makes the train, validation and test splits as its arguments say; `fit` trained "
        "on the train split and validated on the validation split",
        f"- Labels: {', '.join(f'`{label}`' for label in labels) if labels else 'none (the outputs are not classes)'}",
        "",
        "## Test results and the exported files",
        "",
        f"{scored} Each file's largest difference from the eager model was measured on the example request and a "
        "few test batches. `metadata.json` holds all of these, and each file's size and sha256, which `serve` checks.",
        "",
        *comparison(metadata),
        "",
        "## How to call the server",
        "",
        "With `{{ cookiecutter.__package }}` installed, in this folder (any of the files above serves, with "
        "`metadata.json` beside it):",
        "",
        "```bash",
        f"python -m {{ cookiecutter.__package }} serve --model {served}",
        f"curl -s http://127.0.0.1:8000/predict -H 'content-type: application/json' -d '{request}'",
        "```",
        "",
        '`POST /predict` answers `{"predictions": [...], "model_version": ...}`; `GET /docs` has its schema.',
        "",
        "## Intended use and limits",
        "",
        intended_use(kind, labels, bool(scores)),
        "",
        "## Config",
        "",
    ]
    if config is None:
        lines.append("The checkpoint was not in a run folder: no `config.yaml`; the arguments above are the run's.")
    else:
        lines += ["The run's resolved config (`config.yaml`, as `fit` wrote it):", "", "```yaml", config.rstrip()]
        lines.append("```")
    return "\n".join(lines) + "\n"
