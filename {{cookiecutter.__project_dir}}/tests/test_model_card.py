"""The model card `export` writes beside its files (README.md): what the Hub parses, every number the export's own."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from conftest import QUICKEST

from {{ cookiecutter.__package }}.artifacts import import_class, load_checkpoint
from {{ cookiecutter.__package }}.export import export

hub = pytest.importorskip("huggingface_hub", reason="the card is read as the Hub reads it: huggingface_hub's ModelCard")

NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")  # 33, 1,234, 0.5, 5.96e-08
FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def recorded(metadata: dict[str, Any], file: str, column: str) -> float | None:
    """The value metadata.json records for a cell of the card's table; None for a column of words."""
    if column == "bytes":
        return metadata["files"].get(file, {}).get("bytes")
    if column in metadata["test_scores"].get(file, {}):
        return metadata["test_scores"][file][column]
    if column.startswith("max abs difference vs eager: "):
        return metadata["max_abs_difference_vs_eager"].get(file, {}).get(column.rsplit(": ", 1)[1])
    if column == "int8 share of the weights":
        return metadata["int8"]["holds"].get(file, {}).get("int8_share")
    assert column in ("file", "runs with"), column
    return None


def test_the_model_card_holds_what_export_recorded_and_the_hub_parses_it(trained, tmp_path):
    checkpoint = trained(QUICKEST)
    output = tmp_path / "export"
    export(load_checkpoint(checkpoint), output, quantize="int8")
    metadata = json.loads((output / "metadata.json").read_text())
    card = hub.ModelCard.load(output / "README.md")

    # model-index: each file's test scores, the values export recorded (a generator has none, and no model-index).
    scores = {
        f"{metric} of {file}": value for file, got in metadata["test_scores"].items() for metric, value in got.items()
    }
    assert {result.metric_name: result.metric_value for result in card.data.eval_results or []} == scores
    assert card.data.model_name == (metadata["task"] if scores else None)

    # The table: a row per file the export wrote (and the eager model's), each number the recorded one to 4 digits.
    table = [line for line in card.text.splitlines() if line.startswith("| ")]
    header = cells(table[0])
    rows = {cells(line)[0].strip("`"): dict(zip(header, cells(line), strict=True)) for line in table[2:]}
    assert set(rows) == {"eager", *metadata["files"]}
    assert {path.name for path in output.iterdir()} == {*metadata["files"], "README.md", "metadata.json"}
    assert {metric for got in metadata["test_scores"].values() for metric in got} <= set(header)
    compared = 0
    for file, row in rows.items():
        for column, cell in row.items():
            value = recorded(metadata, file, column)
            if value is None:
                assert not NUMBER.search(cell), (file, column, cell)
            else:
                assert float(cell) == pytest.approx(value, rel=5e-4, abs=0), (file, column)
                compared += 1
    differences = sum(len(got) for got in metadata["max_abs_difference_vs_eager"].values())
    assert compared == len(metadata["files"]) + len(scores) + differences + len(metadata["int8"]["holds"])

    # Elsewhere in the text (code, quotes of the code's docstrings and table aside) one number: the weights count.
    prose = FENCED.sub("", card.text)
    prose = "\n".join(line for line in prose.splitlines() if not line.startswith(("|", ">")))
    found = [int(n.replace(",", "")) for n in NUMBER.findall(re.sub(r"`[^`]*`", "", prose))]
    model = load_checkpoint(checkpoint).model
    assert found == [metadata["parameters"]] == [sum(p.numel() for p in model.parameters())]

    # The code blocks: the run's own config.yaml, and a server call on a file of the export with the example request.
    call, config = [block.split("\n", 1)[1].removesuffix("```") for block in FENCED.findall(card.text)]
    assert config == (checkpoint.parent.parent / "config.yaml").read_text()
    served = re.search(r"serve --model (\S+)", call)[1]
    assert (output / served).is_file()
    request = re.search(r"-d '(.*)'", call)[1]
    assert json.loads(request) == import_class(metadata["codec"]["class_path"]).example_request
