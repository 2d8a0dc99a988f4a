"""ResNet fine-tuning: torchvision weights from the hub cache with no network (and one clear line without them),
weights from a file, the frozen phase that changes nothing in the backbone and the next one that trains it (in
every DDP process alike), and the image folder's options."""

from __future__ import annotations

import subprocess
import sys
import urllib.error

import pytest
import torch
from conftest import cli_args, launch_env
from lightning.pytorch.callbacks import BaseFinetuning
from rank_probe import read_probes

from {{ cookiecutter.__package }} import ConfigError
from {{ cookiecutter.__package }}.data.images import ImageFolderDataModule
from {{ cookiecutter.__package }}.tasks.resnet_finetune import ResNetClassifier, pretrained_weights

SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]


def test_named_weights_load_from_the_hub_cache_with_no_network(hub_weights):
    state = pretrained_weights("resnet18", "IMAGENET1K_V1")  # the file the session put where torchvision looks
    torch.testing.assert_close(state["conv1.weight"], hub_weights["conv1.weight"])


def test_named_weights_that_cannot_be_had_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError) as refused:
        pretrained_weights("resnet18", "IMAGENET1K_V1")
    message = str(refused.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message and "\n" not in message


@pytest.mark.parametrize("weights", ["IMAGENET1K_V9", "missing.pth"])
def test_unknown_weights_are_refused(weights):
    with pytest.raises(ConfigError, match=weights):
        pretrained_weights("resnet18", weights)


def test_a_checkpoint_of_this_project_is_a_source_of_weights(trained):
    checkpoint = trained("resnet_finetune")
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    state = pretrained_weights("resnet18", str(checkpoint))
    torch.testing.assert_close(state["layer1.0.conv1.weight"], saved["model.layer1.0.conv1.weight"])


def test_the_frozen_phase_changes_nothing_in_the_backbone_and_the_next_one_does(run_cli, hub_weights):
    cli = run_cli("fit", "resnet_finetune", *SHORT, "--model.freeze_epochs", "1")
    assert any(isinstance(c, BaseFinetuning) for c in cli.trainer.callbacks)  # the task brings it, with no flag
    frozen = cli.model.model.state_dict()
    for name, tensor in hub_weights.items():
        if not name.startswith("fc."):  # weights and batch-norm statistics alike, bit for bit
            assert torch.equal(frozen[name], tensor), name
    two_epochs = ["--trainer.max_epochs", "2", "--model.freeze_epochs", "1"]  # the second one unfrozen
    unfrozen = run_cli("fit", "resnet_finetune", *SHORT, *two_epochs).model.model.state_dict()
    assert not torch.equal(unfrozen["layer1.0.conv1.weight"], hub_weights["layer1.0.conv1.weight"])
    assert not torch.equal(unfrozen["bn1.running_mean"], hub_weights["bn1.running_mean"])


@pytest.mark.slow
def test_the_unfrozen_backbone_trains_alike_in_every_ddp_process(workdir, data_args, hub_weights):
    """DDP averages the gradients of the parameters that needed one when it wrapped the model, so the backbone is
    frozen after that: once unfrozen, its gradients are averaged too, and the processes keep one model."""
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    args = cli_args("fit", "resnet_finetune", data_args, *ddp, *SHORT, "--trainer.max_epochs", "2")
    command = [sys.executable, "-m", "{{ cookiecutter.__package }}", *args, "--trainer.callbacks+=rank_probe.RankProbe"]
    done = subprocess.run(command, cwd=workdir, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = (probe["weights"] for probe in read_probes(workdir))
    assert not torch.equal(first["model.layer1.0.conv1.weight"], hub_weights["layer1.0.conv1.weight"])  # it trained
    for name, tensor in first.items():
        if tensor.is_floating_point() and "running_" not in name:  # batch-norm statistics stay each process's own
            torch.testing.assert_close(second[name], tensor, msg=f"{name} differs across processes")


def test_channels_last_trains(run_cli):
    cli = run_cli("fit", "resnet_finetune", "--trainer.fast_dev_run", "true", "--model.channels_last", "true")
    assert cli.model.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_folder_is_split_with_a_seed_and_classes_and_budget_are_options(photos):
    data = ImageFolderDataModule(root=str(photos), image_size=32, resize=36, seed=3)
    data.setup("fit")
    assert data.codec.labels == ["blue", "gray", "red"]
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (48, 6, 6)  # 60 images, 10 % and 10 %
    image, label = data.train_set[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 3  # grayscale and RGBA files become RGB
    few = ImageFolderDataModule(root=str(photos), classes=["red", "blue"], per_class=2, image_size=32, resize=36)
    few.setup("fit")
    assert few.codec.labels == ["red", "blue"] and sorted(label for _, label in few.samples["train"]) == [0, 0, 1, 1]


def test_split_folders_are_used_as_they_are(tmp_path, photos):
    for split in ("train", "val", "test"):
        (tmp_path / split).symlink_to(photos, target_is_directory=True)
    data = ImageFolderDataModule(root=str(tmp_path))
    data.setup("fit")
    assert len(data.train_set) == len(data.val_set) == len(data.test_set) == 60


def test_a_folder_without_images_says_what_is_expected(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        ImageFolderDataModule(root=str(tmp_path / "missing")).setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="one sub-folder of images per class"):
        ImageFolderDataModule(root=str(tmp_path / "empty")).setup("fit")


def test_a_head_on_the_frozen_backbone_learns_the_test_images(run_cli):
    """A linear probe: every epoch frozen, so batch norm evaluates as it trained; the session's backbone is random."""
    cli = run_cli(
        "fit", "resnet_finetune", "--trainer.max_epochs", "8", "--model.freeze_epochs", "8", "--model.lr", "0.01"
    )
    tested = run_cli("test", "resnet_finetune", "--ckpt_path", cli.trainer.checkpoint_callback.best_model_path)
    assert tested.trainer.callback_metrics["test_acc"] >= 0.9


def test_every_resnet_architecture_gets_a_head_for_the_data(hub_weights):
    model = ResNetClassifier(num_classes=3, input_shape=(3, 32, 32), arch="resnet34", weights=None)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ConfigError, match="no such model"):
        ResNetClassifier(num_classes=3, input_shape=(3, 32, 32), arch="resnet7")
    with pytest.raises(ConfigError, match="not a ResNet-like model"):
        ResNetClassifier(num_classes=3, input_shape=(3, 32, 32), arch="vgg11")
