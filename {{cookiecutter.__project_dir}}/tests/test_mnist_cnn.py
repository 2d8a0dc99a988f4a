"""The MNIST data module reads MNIST files (tiny fake ones here), splits them with a seed, says what is missing."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch
from conftest import PROJECT_ROOT, QUIET

from {{ cookiecutter.__package }} import ConfigError
from {{ cookiecutter.__package }}.cli import run
from {{ cookiecutter.__package }}.data.mnist import MNISTDataModule
from {{ cookiecutter.__package }}.runs import run_dir
from {{ cookiecutter.__package }}.tasks.mnist_cnn import MNISTClassifier


def test_data_module_shapes_and_seeded_split(fake_mnist):
    data = MNISTDataModule(data_dir=str(fake_mnist), download=False, val_size=56, batch_size=32)
    data.prepare_data()
    data.setup()
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (200, 56, 64)
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.min() >= 0 and labels.max() <= 9
    assert abs(images.mean()) < 3  # normalised, not raw 0..255 pixels
    other = MNISTDataModule(data_dir=str(fake_mnist), download=False, val_size=56)
    other.setup()
    assert other.val_set.indices == data.val_set.indices


def test_missing_data_says_where_to_put_the_files(tmp_path):
    data = MNISTDataModule(data_dir=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(ConfigError, match="has no MNIST files.*copy train-images-idx3-ubyte"):
        data.prepare_data()


def test_missing_data_is_refused_by_the_cli_before_training(run_cli, workdir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "mnist_cnn", "--data.data_dir", str(workdir / "empty"), "--data.download", "false")
    assert exit_info.value.code == 2
    assert "has no MNIST files" in capsys.readouterr().err


def test_a_failed_download_leaves_no_empty_folders(run_cli, workdir, capsys, no_network):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "mnist_cnn", "--data.data_dir", "data", "--data.download", "true")
    assert exit_info.value.code == 2
    assert "the download failed" in capsys.readouterr().err
    assert not (workdir / "data").exists() and not (workdir / "runs").exists()


def test_a_damaged_file_is_reported_as_damaged_not_missing(run_cli, fake_mnist, workdir, capsys):
    damaged = workdir / "damaged" / "MNIST" / "raw"
    shutil.copytree(fake_mnist / "MNIST" / "raw", damaged)
    images = damaged / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # cut short, as by a broken download
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "mnist_cnn", "--data.data_dir", str(workdir / "damaged"))
    assert exit_info.value.code == 2
    assert "are there but do not read" in capsys.readouterr().err
    assert not (workdir / "runs").exists()


def test_model_maps_images_to_class_logits():
    model = MNISTClassifier(num_classes=10, input_shape=(1, 28, 28))
    assert model(model.example_input_array).shape == (1, 10)
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_learns_the_fake_digits(run_cli):
    cli = run_cli("fit", "mnist_cnn", "--trainer.max_epochs", "3", "--data.batch_size", "32")
    assert cli.trainer.callback_metrics["val_acc"] >= 0.9


def test_fashion_mnist_is_a_data_option_with_its_own_labels_and_statistics(run_cli, fake_mnist, workdir, capsys):
    """The same files under FashionMNIST/raw: the labels and the normalisation follow the option, and the run
    carries it: `predict` and `test` of its checkpoint read Fashion-MNIST without being told again."""
    shutil.copytree(fake_mnist / "MNIST" / "raw", workdir / "fashion" / "FashionMNIST" / "raw")
    fashion = ["--data.data_dir", str(workdir / "fashion"), "--data.dataset", "FashionMNIST"]
    fit = run_cli("fit", "mnist_cnn", *fashion, "--trainer.max_epochs", "1")
    assert fit.datamodule.codec.labels[0] == "T-shirt/top" and fit.datamodule.codec.mean == pytest.approx(0.2860)
    config = ["--config", str(PROJECT_ROOT / "configs" / "mnist_cnn.yaml"), *QUIET, "--ckpt_path", "best"]
    predicted = run(["predict", *config, "--trainer.limit_predict_batches", "1"])  # no data flag: the run's
    with (run_dir(predicted.trainer) / "predictions.csv").open() as f:
        labels = {row["label"] for row in csv.DictReader(f)}
    assert labels <= set(fit.datamodule.codec.labels) and not labels & {str(digit) for digit in range(10)}
    best = Path(fit.trainer.checkpoint_callback.best_model_path).relative_to(workdir)
    assert f"--ckpt_path best: {best}" in capsys.readouterr().err  # the choice is said
    tested = run(["test", *config, "--data.batch_size", "8"])  # a flag given still overrides the run's
    assert tested.datamodule.dataset == "FashionMNIST" and tested.datamodule.batch_size == 8
    assert "from the command line: --data.batch_size 8" in capsys.readouterr().err
