"""The README's own-data recipes, as a user runs them: `fit` with data flags, then `test`, `predict`, `export` and
`serve` given the config and `--ckpt_path best` only. The run carries its data settings: none is typed twice.

Slow: each is a whole recipe, fit to a served answer, of what the per-task tests check one step at a time."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, QUIET, TASKS
from fastapi.testclient import TestClient

from {{ cookiecutter.__package }}.cli import RoadmapCLI, run
from {{ cookiecutter.__package }}.export import main as export_main
from {{ cookiecutter.__package }}.runs import run_dir
from {{ cookiecutter.__package }}.serve.app import create_app
from {{ cookiecutter.__package }}.serve.settings import ServeSettings

pytestmark = pytest.mark.slow
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2"]
REVIEWS = PROJECT_ROOT / "tests" / "data" / "reviews"  # the test reviews, where the project has a text task
TEXT_TASK = next((task for task in ("sentiment_rnn", "sentiment_transformer") if task in TASKS), "sentiment_rnn")


def command(subcommand: str, task: str, *args: str) -> list[str]:
    if task not in TASKS:
        pytest.skip(f"this project was generated without {task}")
    return [subcommand, "--config", str(PROJECT_ROOT / "configs" / f"{task}.yaml"), *QUIET, *args]


def after_fit(task: str, *predict_args: str) -> tuple[RoadmapCLI, RoadmapCLI, dict]:
    """`test`, `predict` and `export` of the newest run, each given the config and `--ckpt_path best` only, then the
    exported ONNX model served: the test and predict CLIs, and the server's answer to its own example request."""
    tested = run(command("test", task, "--ckpt_path", "best", "--trainer.limit_test_batches", "2"))
    predicted = run(
        command("predict", task, "--ckpt_path", "best", "--trainer.limit_predict_batches", "1", *predict_args)
    )
    export_main(["--config", str(PROJECT_ROOT / "configs" / f"{task}.yaml"), "--ckpt_path", "best"])
    model = next(Path("runs", task).glob("*/export/model.onnx"))
    with TestClient(create_app(ServeSettings(model=model))) as client:
        example = client.get("/metadata").json()["example_request"]
        response = client.post("/predict", json=example)
    assert response.status_code == 200, response.text
    return tested, predicted, response.json()


def test_own_images_from_fit_to_a_served_answer(workdir, request, capsys):
    fit = command("fit", "resnet_finetune")  # skips where the project has no such task, before its fixtures
    photos = request.getfixturevalue("photos")
    data = ["--data.dataset", "null", "--data.root", str(photos), "--data.image_size", "32", "--data.resize", "36"]
    fitted = run([*fit, *data, "--data.batch_size", "8", *SHORT])
    tested, predicted, served = after_fit("resnet_finetune")
    for cli in (tested, predicted):  # the run's folder and sizes, not the config's CIFAR-10 at 224 pixels
        assert cli.datamodule.root == photos and cli.datamodule.codec.image_size == 32
    assert tested.trainer.callback_metrics["test_acc"] >= 0  # it ran on the photos' test split
    assert {answer["label"] for answer in served["predictions"]} <= {"blue", "gray", "red"}
    note = capsys.readouterr().err
    assert f"test: the model and data settings of {run_dir(fitted.trainer).relative_to(workdir)}" in note


def write_reviews(folder: Path) -> dict[str, str]:
    """The test reviews as a user's CSV: other column names, and labels written as words."""
    files = {}
    for split in ("train", "test"):
        with (REVIEWS / f"{split}.csv").open(newline="", encoding="utf-8") as f:
            rows = [
                {"review": row["text"], "sentiment": ("neg", "pos")[int(row["label"])]} for row in csv.DictReader(f)
            ]
        files[split] = str(folder / f"my_{split}.csv")
        with open(files[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["review", "sentiment"])
            writer.writeheader()
            writer.writerows(rows)
    return files


def text_data(files: dict[str, str]) -> list[str]:
    data_files = "{" + ", ".join(f"{split}: {path}" for split, path in files.items()) + "}"
    return ["--data.dataset", "null", "--data.data_files", data_files, "--data.text_column", "review"]


def test_own_texts_with_word_labels_from_fit_to_a_served_answer(workdir):
    fit = command("fit", TEXT_TASK)
    files = write_reviews(workdir)
    labels = ["--data.label_column", "sentiment", "--data.labels", "[neg, pos]", "--data.vocab_size", "200"]
    run([*fit, *text_data(files), *labels, "--data.batch_size", "16", *SHORT])
    tested, predicted, served = after_fit(TEXT_TASK, "--text", "A gem of a film.")
    assert tested.datamodule.data_files == files and tested.datamodule.label_names == ["neg", "pos"]
    assert predicted.datamodule.texts_to_predict == ["A gem of a film."]
    assert {answer["label"] for answer in served["predictions"]} <= {"neg", "pos"}


def test_bert_from_a_local_folder_tests_predicts_exports_and_serves_without_it(workdir, request, monkeypatch):
    fit = command("fit", "bert_finetune")
    folder = shutil.copytree(request.getfixturevalue("tiny_bert"), workdir / "my_bert")
    model = ["--model.pretrained", str(folder), "--data.tokenizer", str(folder), "--data.max_length", "32"]
    labels = ["--data.label_column", "sentiment", "--data.labels", "[neg, pos]", "--data.batch_size", "16"]
    run([*fit, *text_data(write_reviews(workdir)), *model, *labels, *SHORT])
    shutil.rmtree(folder)  # the checkpoint holds the architecture and the tokenizer
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and nothing may come from the Hub either
    tested, predicted, served = after_fit("bert_finetune", "--text", "What a ride.")
    assert predicted.datamodule.tokenizer == str(folder) and tested.datamodule.max_length == 32  # the run's
    assert predicted.trainer.predict_loop.predictions and {a["label"] for a in served["predictions"]} <= {"neg", "pos"}
