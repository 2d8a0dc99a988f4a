"""The one CLI, for every config in configs/: runs, refuses bad input, resumes, writes its artifacts.

The Trainer flags that scale a run out (devices, nodes, precision, compile) are tested in test_scale.py."""

from __future__ import annotations

import csv
import json
import math
import signal
import subprocess
import sys

import pytest
import torch
from conftest import QUICKEST, TASKS, cli_args, fast_on, launch_env

from {{ cookiecutter.__package }}.callbacks import PredictionWriter
from {{ cookiecutter.__package }}.cli import artifacts, main, run
from {{ cookiecutter.__package }}.runs import run_dir

# Tasks whose training draws shuffled batches and dropout masks: what a resumed run must draw again.
DROPOUT_TASKS = [task for task in ("mnist_cnn", "sentiment_rnn", "sentiment_transformer") if task in TASKS]


def is_classifier(model) -> bool:
    return "ClassificationTask" in {cls.__name__ for cls in type(model).__mro__}


@pytest.mark.parametrize("task", TASKS)
def test_fast_dev_run_trains_and_validates(run_cli, workdir, task):
    cli = run_cli("fit", task, "--trainer.fast_dev_run", "true")
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == len(cli.trainer.optimizers)  # one batch: each optimizer stepped once
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])


@pytest.mark.parametrize("task", TASKS)
def test_fit_writes_checkpoints_config_and_curves_then_test_and_predict_read_them(run_cli, task):
    limits = ["--trainer.max_epochs", "3", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"]
    fit = run_cli("fit", task, *limits).trainer
    run_folder = run_dir(fit)
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in (run_folder / "checkpoints").iterdir()}
    # best.ckpt is the best epoch by the task's measure: highest val_acc for classifiers, lowest val_loss otherwise
    # (and for XOR, whose accuracy ties at 1.0); the latest step where nothing measures the model (a GAN unjudged).
    checkpoint = fit.checkpoint_callback
    metric, mode = fit.lightning_module.best_checkpoint
    assert checkpoint.monitor == metric
    if metric == "step":
        assert torch.load(checkpoint.best_model_path, weights_only=True)["global_step"] == fit.global_step
    else:
        curves = next(cb for cb in fit.callbacks if type(cb).__name__ == "LearningCurves")
        per_epoch = [row[metric] for row in curves.history if metric in row]
        assert len(per_epoch) == 3
        assert float(checkpoint.best_model_score) == pytest.approx({"min": min, "max": max}[mode](per_epoch))
    last = torch.load(run_folder / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, fit.global_step), "last.ckpt must hold the final epoch"
    assert (run_folder / "learning_curves.png").stat().st_size > 1000
    # The saved config reproduces the run: it parses and trains again.
    run(["fit", "--config", str(run_folder / "config.yaml"), "--trainer.fast_dev_run", "true"])

    validated = run_cli("validate", task, "--ckpt_path", "best", "--trainer.limit_val_batches", "2").trainer
    assert math.isfinite(validated.callback_metrics["val_loss"])
    tested = run_cli("test", task, "--ckpt_path", "best", "--trainer.limit_test_batches", "2").trainer
    assert "test_loss" in tested.callback_metrics
    assert (run_dir(tested) / "confusion_matrix.png").exists() == is_classifier(tested.lightning_module)

    predicted = run_cli("predict", task, "--ckpt_path", "last", "--trainer.limit_predict_batches", "1").trainer
    # What the task's kind of output writes (rows of a CSV, image or mask files), in the run folder.
    written = next(cb for cb in predicted.callbacks if isinstance(cb, PredictionWriter)).written
    assert written and all(path.is_relative_to(run_dir(predicted)) and path.stat().st_size > 0 for path in written)
    for table in (path for path in written if path.suffix == ".csv"):  # rows carry the target beside the prediction
        with table.open() as f:
            rows = list(csv.DictReader(f))
        assert rows and ("target" in rows[0]) == predicted.lightning_module.reads_data()


def test_ckpt_path_last_resumes_from_the_saved_step(run_cli, workdir):
    limits = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]
    first = run_cli("fit", QUICKEST, "--trainer.max_epochs", "2", *limits)
    batches = first.trainer.num_training_batches  # 3, or fewer where the data has fewer (a task's tiny test data)
    assert 1 < batches <= 3
    steps = batches * 2 * len(first.trainer.optimizers)  # batches x epochs x optimizer steps per batch
    assert first.trainer.global_step == steps
    resumed = run_cli("fit", QUICKEST, "--trainer.max_epochs", "4", "--ckpt_path", "last", *limits)
    curves = next(cb for cb in resumed.trainer.callbacks if type(cb).__name__ == "LearningCurves")
    assert resumed.trainer.global_step == 2 * steps
    assert min(row["step"] for row in curves.history) > steps, "the resumed run started again from step 0"


@pytest.mark.parametrize("task", fast_on("xor", "gan"))
def test_training_further_after_a_resume_follows_the_longer_schedule(run_cli, task):
    """`fit --ckpt_path last` with more epochs than the first run: the learning-rate schedule was planned for the
    first run's steps, and must not end in an error one step past them."""
    limits = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    first = run_cli("fit", task, "--trainer.max_epochs", "1", *limits).trainer
    further = run_cli("fit", task, "--trainer.max_epochs", "3", "--ckpt_path", "last", *limits).trainer
    assert (further.current_epoch, further.global_step) == (3, 3 * first.global_step)


@pytest.mark.slow
@pytest.mark.skipif(not DROPOUT_TASKS, reason="no task here trains with dropout and shuffled batches")
def test_a_run_killed_and_resumed_ends_with_the_weights_of_the_run_it_replaces(workdir, data_args):
    """kill -9 at the start of epoch 2, `fit --ckpt_path last`: the same final weights, bit for bit, as one run."""
    task = DROPOUT_TASKS[0]
    limits = ["--trainer.max_epochs", "4", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]

    def fit(folder: str, *extra: str) -> subprocess.CompletedProcess:
        (workdir / folder).mkdir(exist_ok=True)
        command = [sys.executable, "-m", "{{ cookiecutter.__package }}", *cli_args("fit", task, data_args, *limits, *extra)]
        return subprocess.run(
            command, cwd=workdir / folder, env=launch_env(), capture_output=True, text=True, timeout=600
        )

    assert fit("whole").returncode == 0
    assert fit("crashed", "--trainer.callbacks+=rank_probe.KillAtEpochStart").returncode == -signal.SIGKILL
    resumed = fit("crashed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole, crashed = (
        torch.load(max(workdir.glob(f"{folder}/runs/**/last.ckpt"), key=lambda p: p.stat().st_mtime), weights_only=True)
        for folder in ("whole", "crashed")
    )
    assert crashed["global_step"] == whole["global_step"]
    for name, tensor in whole["state_dict"].items():
        assert torch.equal(crashed["state_dict"][name], tensor), name


@pytest.mark.parametrize(("contents", "message"), [(None, "no such file"), (b"not a checkpoint", "does not load")])
def test_a_missing_or_damaged_checkpoint_is_refused_in_one_line(run_cli, workdir, capsys, contents, message):
    path = workdir / "model.ckpt"
    if contents is not None:
        path.write_bytes(contents)
    with pytest.raises(SystemExit) as exit_info:
        run_cli("test", QUICKEST, "--ckpt_path", str(path))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (workdir / "runs").exists(), "a refused command must not leave a run folder"


@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_a_checkpoint_of_another_task_is_refused_in_one_line_naming_both(trained, run_cli, workdir, capsys, subcommand):
    others = [task for task in TASKS if task != QUICKEST]
    if not others:
        pytest.skip("this project has one task: no checkpoint of another to give")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(subcommand, others[0], "--ckpt_path", str(trained(QUICKEST)))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"is a checkpoint of {QUICKEST}" in error and f"this config's task is {others[0]}" in error
    assert "Traceback" not in error and not (workdir / "runs").exists()


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_without_a_checkpoint_is_refused_unless_asked_for(run_cli, workdir, capsys, subcommand):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(subcommand, QUICKEST)
    assert exit_info.value.code == 2 and f"`{subcommand}` needs a trained model" in capsys.readouterr().err
    assert not (workdir / "runs").exists()
    untrained = run_cli(subcommand, QUICKEST, "--ckpt_path", "none", "--trainer.fast_dev_run", "true")
    assert untrained.trainer.state.finished  # the untrained model, when that is what is asked for


def test_export_reads_the_data_as_its_run_did_and_a_data_flag_overrides_it(trained, workdir, capsys, monkeypatch):
    """export of a run, with a data option on its command line (it crashed on any): the run's settings, the option
    over them, said in one line and recorded in metadata.json; a model option is refused, since the model is trained."""
    checkpoint = trained(QUICKEST)
    saved = torch.load(checkpoint, weights_only=True, mmap=True)["datamodule_hyper_parameters"]
    monkeypatch.setattr("sys.argv", ["prog", "export", "--ckpt_path", str(checkpoint), "--output", "out"])
    sys.argv += ["--data.batch_size", "3"]
    main()
    metadata = json.loads((workdir / "out" / "metadata.json").read_text())
    assert metadata["data_args"] == {**{k: v for k, v in saved.items() if not k.startswith("_")}, "batch_size": 3}
    assert "but for --data.batch_size 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        sys.argv[-4:] = ["--output", "again", "--model.lr", "0.5"]
        main()
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--model.lr: export writes the model as `fit` trained it" in error
    assert not (workdir / "again").exists()


def test_ckpt_path_last_without_a_run_says_what_to_do(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("test", QUICKEST, "--ckpt_path", "last")
    assert exit_info.value.code == 2
    assert "train first" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option",
    ["--trainer.max_epoch", "--model.init_args.learning_rat", "--model.lrr", "--data.init_args.batchsize"],
)
def test_misspelled_option_exits_2_and_names_it_in_two_lines(run_cli, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", QUICKEST, option, "1")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert option.rsplit(".", 1)[-1] in error[0] and len(error) <= 2, error


@pytest.mark.parametrize("task", fast_on("xor", "resnet_finetune"))
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--model.init_args.lr", "-0.1", "lr must be greater than 0"),
        ("--model.lr", "-1e-3", "lr must be greater than 0"),  # argparse would take -1e-3 for an option
        ("--data.init_args.batch_size", "0", "batch_size must be greater than 0"),
    ],
)
def test_invalid_value_is_refused_before_training(run_cli, workdir, capsys, task, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", task, option, value)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(workdir.glob("runs/**/*.*")), "a refused run must not leave files behind"


def test_print_config_shows_every_hyperparameter_with_links_resolved(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", QUICKEST, "--print_config")
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path" in printed and "max_epochs" in printed and "lr:" in printed


def test_the_chosen_logger_records_the_metrics(run_cli, workdir):
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    cli = run_cli("fit", QUICKEST, *limits, "--trainer.log_every_n_steps", "1")
    logger = cli.trainer.logger
    assert type(logger).__name__ == "{{ cookiecutter.__logger_class.rsplit('.', 1)[-1] }}"
{%- if cookiecutter.logger == "tensorboard" %}
    assert list(run_dir(cli.trainer).glob("events.out.tfevents.*"))
{%- elif cookiecutter.logger == "csv" %}
    with (run_dir(cli.trainer) / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert any(row.get("val_loss") for row in rows) and any(row.get("train_loss") for row in rows)
{%- elif cookiecutter.logger == "wandb" %}
    run_files = (run_dir(cli.trainer).parents[1] / "wandb" / "latest-run").resolve()  # offline-run-<time>-<id>
    logger.experiment.finish()
    assert run_files.name.startswith("offline-run-") and (run_files / f"run-{logger.version}.wandb").exists()
{%- elif cookiecutter.logger == "mlflow" %}
    metrics = workdir / "runs" / "mlruns" / logger.experiment_id / logger.run_id / "metrics"
    assert (metrics / "val_loss").exists() and (metrics / "train_loss").exists()
{%- endif %}


@pytest.mark.slow  # three processes of their own
def test_a_run_without_progress_bar_prints_its_epochs_and_nothing_to_ignore(workdir, data_args):
    """What a user reads in the console, from `python -m`: a line per epoch with its metrics (validation's in the
    epochs that validate), where the files went; no Lightning adverts, no warning about checkpoint state that
    `test` and `predict` do not need."""

    def console(subcommand: str, *args: str) -> str:
        command = [sys.executable, "-m", "{{ cookiecutter.__package }}", *cli_args(subcommand, QUICKEST, data_args, *args)]
        done = subprocess.run(command, cwd=workdir, env=launch_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout + done.stderr

    limits = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    fit = console("fit", "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "2", *limits)
    epochs = [line for line in fit.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 0", "epoch 1"]
    assert "train_loss " in epochs[0] and "val_loss" not in epochs[0]  # epoch 0 did not validate
    assert "train_loss " in epochs[1] and "val_loss " in epochs[1]
    printed = fit + console("test", "--ckpt_path", "best") + console("predict", "--ckpt_path", "best")
    for noise in ("Tip:", "litlogger", "litmodels", "TPU available: False", "dirpath has changed", "Be aware that"):
        assert noise not in printed
    assert f"predict: run folder runs/{QUICKEST}/version_2" in printed


def test_the_report_names_the_checkpoints_and_counts_the_pictures_of_other_folders(tmp_path):
    files = ["config.yaml", "events.out.tfevents.1", "checkpoints/best.ckpt", "checkpoints/last.ckpt"]
    files += ["samples/epoch_000.png", "samples/epoch_001.png", "predictions/0000.png", "predictions/grid.png"]
    files += ["metrics/val_loss"]  # a logger's own folder (MLflow's), of no file a user opens
    for name in files:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    listed = ["checkpoints/best.ckpt", "checkpoints/last.ckpt", "config.yaml", "predictions/ (2 files)"]
    assert artifacts(tmp_path) == [*listed, "samples/ (2 files)"]
