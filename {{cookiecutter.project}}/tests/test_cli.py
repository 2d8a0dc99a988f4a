"""The one CLI, for every config in configs/: runs, refuses bad input, resumes, writes its artifacts, scales."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, PROJECT_ROOT, cli_args

from {{ cookiecutter.__package }}.cli import main

TASKS = [config.stem for config in CONFIGS]
CLASSIFIERS = [task for task in TASKS if task != "linear_regression"]


def only_run(root: Path, task: str) -> Path:
    runs = sorted((root / "runs" / task).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("task", TASKS)
def test_fast_dev_run_trains_validates_and_tests(run_cli, workdir, task):
    cli = run_cli("fit", task, "--trainer.fast_dev_run", "true")
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 1
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])


@pytest.mark.parametrize("task", TASKS)
def test_fit_writes_checkpoints_config_and_curves_then_test_and_predict_read_them(run_cli, workdir, task):
    limits = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"]
    run_cli("fit", task, *limits)
    run = only_run(workdir, task)
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in (run / "checkpoints").iterdir()}
    assert (run / "learning_curves.png").stat().st_size > 1000
    # The saved config reproduces the run: it parses and trains again.
    main(["fit", "--config", str(run / "config.yaml"), "--trainer.fast_dev_run", "true"])

    cli = run_cli("test", task, "--ckpt_path", "best", "--trainer.limit_test_batches", "2")
    test_run = sorted((workdir / "runs" / task).iterdir())[-1]
    assert "test_loss" in cli.trainer.callback_metrics
    assert (test_run / "confusion_matrix.png").exists() == (task in CLASSIFIERS)

    run_cli("predict", task, "--ckpt_path", "last", "--trainer.limit_predict_batches", "1")
    predict_run = sorted((workdir / "runs" / task).iterdir())[-1]
    with (predict_run / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and {"prediction", "target"} <= set(rows[0])


def test_ckpt_path_last_resumes_from_the_saved_step(run_cli, workdir):
    task = TASKS[0]
    limits = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]
    first = run_cli("fit", task, "--trainer.max_epochs", "2", *limits)
    assert first.trainer.global_step == 6
    resumed = run_cli("fit", task, "--trainer.max_epochs", "4", "--ckpt_path", "last", *limits)
    curves = next(cb for cb in resumed.trainer.callbacks if type(cb).__name__ == "LearningCurves")
    assert resumed.trainer.global_step == 12
    assert min(row["step"] for row in curves.history) > 6, "the resumed run started again from step 0"


def test_ckpt_path_last_without_a_run_says_what_to_do(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("test", TASKS[0], "--ckpt_path", "last")
    assert exit_info.value.code == 2
    assert "train first" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option",
    ["--trainer.max_epoch", "--model.init_args.learning_rat", "--data.init_args.batchsize"],
)
def test_misspelled_option_exits_2_and_names_it(run_cli, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", TASKS[0], option, "1")
    assert exit_info.value.code == 2
    assert option.rsplit(".", 1)[-1] in capsys.readouterr().err


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--model.init_args.lr", "-0.1", "lr must be greater than 0"), ("--data.init_args.batch_size", "0", "batch_size must be greater than 0")],
)
def test_invalid_value_is_refused_before_training(run_cli, workdir, capsys, task, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", task, option, value)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (workdir / "runs").exists(), "a refused run must not leave a run folder"


def test_print_config_shows_every_hyperparameter_with_links_resolved(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", TASKS[0], "--print_config")
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path" in printed and "max_epochs" in printed and "lr:" in printed


@pytest.mark.parametrize("task", TASKS)
def test_bf16_mixed_precision_trains(run_cli, task):
    cli = run_cli("fit", task, "--trainer.fast_dev_run", "true", "--trainer.precision", "bf16-mixed")
    assert cli.trainer.precision == "bf16-mixed"
    assert math.isfinite(cli.trainer.callback_metrics["train_loss"])


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_two_process_ddp_trains_and_exits_cleanly(workdir, task_args, task):
    args = cli_args(
        "fit", task, task_args,
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--data.batch_size", "16",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.__package }}", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr
    checkpoint = torch.load(only_run(workdir, task) / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2
