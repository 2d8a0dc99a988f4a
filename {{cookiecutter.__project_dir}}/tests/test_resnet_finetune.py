"""ResNet fine-tuning: torchvision weights from the hub cache with no network (and one clear line without them),
weights from a file, the frozen phase that changes nothing in the backbone and the next one that trains it (in
every DDP process alike), and the image folder's options."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import cli_args, launch_env, make_photos
from lightning.pytorch.callbacks import BaseFinetuning
from PIL import Image
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


def test_a_backbone_with_random_weights_is_never_frozen(run_cli):
    """Freezing keeps what pretraining learnt; random weights hold nothing to keep, so they train from epoch 0."""
    cli = run_cli("fit", "resnet_finetune", *SHORT, "--model.weights", "null", "--model.freeze_epochs", "1")
    assert all(p.requires_grad for p in cli.model.backbone_parameters())  # in epoch 0, the last
    assert cli.model.model.bn1.running_mean.abs().sum() > 0  # batch norm trained too: it starts at zeros


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


HEADS = {
    "resnet18": "fc",
    "mobilenet_v3_small": "classifier.3",
    "efficientnet_b0": "classifier.1",
    "convnext_tiny": "classifier.2",
    "swin_t": "head",
    "vit_b_16": "heads.head",
    "densenet121": "classifier",
    "squeezenet1_1": "classifier.1",  # a 1x1 convolution, not a linear layer
}


@pytest.mark.parametrize("arch", HEADS)
def test_every_torchvision_classifier_gets_a_new_head_for_the_data(arch):
    task = ResNetClassifier(num_classes=3, input_shape=(3, 32, 32), arch=arch, weights=None)
    assert task.head_name == HEADS[arch]
    head = task.model.get_submodule(task.head_name)
    assert getattr(head, "out_features", getattr(head, "out_channels", None)) == 3
    assert task(torch.zeros(2, 3, 32, 32)).shape == (2, 3)  # a ViT built for 32x32 images, not its 224
    backbone, (_, head_group) = task.backbone_parameters(), task.parameter_groups()
    assert len(backbone) + len(head_group["params"]) == len(list(task.parameters()))
    assert {id(p) for p in head_group["params"]} == {id(p) for p in head.parameters()}


@pytest.mark.parametrize(
    ("arch", "refusal"),
    [
        ("resnet7", "no such model"),
        ("inception_v3", "auxiliary heads are not supported"),
        ("raft_small", "not an image classifier"),
    ],
)
def test_what_is_not_a_torchvision_classifier_is_refused(arch, refusal):
    with pytest.raises(ConfigError, match=refusal):
        ResNetClassifier(num_classes=3, input_shape=(3, 32, 32), arch=arch)


def test_a_classifier_with_a_nested_head_keeps_its_frozen_backbone_bit_for_bit(run_cli, workdir):
    """MobileNet's head is `classifier.3`, behind a dropout: the frozen epoch leaves every other weight and every
    batch-norm statistic as the file had them, and the next epoch trains them."""
    torch.manual_seed(0)
    source = ResNetClassifier(num_classes=1000, input_shape=(3, 32, 32), arch="mobilenet_v3_small", weights=None)
    torch.save(source.model.state_dict(), workdir / "mobilenet.pth")
    options = ["--model.arch", "mobilenet_v3_small", "--model.weights", str(workdir / "mobilenet.pth"), *SHORT]
    frozen = run_cli("fit", "resnet_finetune", *options, "--model.freeze_epochs", "1").model.model.state_dict()
    for name, tensor in source.model.state_dict().items():
        if not name.startswith("classifier.3."):
            assert torch.equal(frozen[name], tensor), name
    assert not torch.equal(frozen["classifier.3.weight"][:3], source.model.classifier[3].weight[:3])
    unfrozen = run_cli("fit", "resnet_finetune", *options, "--trainer.max_epochs", "2").model.model.state_dict()
    assert not torch.equal(unfrozen["features.0.0.weight"], source.model.features[0][0].weight)


@pytest.mark.slow
def test_a_vit_starts_from_weights_made_for_224_pixels_at_the_data_s_size(workdir):
    """torchvision's ViT-B/16 weights hold positions for 14x14 patches of a 224-pixel image; at 32 pixels there are
    2x2, and the positions are interpolated to them."""
    torch.manual_seed(0)
    state = torchvision.models.vit_b_16().state_dict()
    torch.save(state, workdir / "vit_b_16.pth")
    task = ResNetClassifier(
        num_classes=3, input_shape=(3, 32, 32), arch="vit_b_16", weights=str(workdir / "vit_b_16.pth")
    )
    task.setup("fit")
    loaded = task.model.state_dict()
    assert loaded["encoder.pos_embedding"].shape == (1, 1 + 2 * 2, 768)
    torch.testing.assert_close(loaded["encoder.pos_embedding"][:, 0], state["encoder.pos_embedding"][:, 0])  # class
    assert torch.equal(
        loaded["encoder.layers.encoder_layer_0.mlp.0.weight"], state["encoder.layers.encoder_layer_0.mlp.0.weight"]
    )


def with_bad_files(root: Path) -> Path:
    """The 60 test photos and three files that are no images: an empty one, a JPEG cut in half (which PIL's
    `verify()` passes) and a text file named .jpg."""
    make_photos(root)
    (root / "red" / "empty.jpg").write_bytes(b"")
    whole = (root / "red" / "1.jpg").read_bytes()
    (root / "red" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "blue" / "notes.jpg").write_text("not a picture\n")
    return root


def test_files_that_are_no_images_are_all_named_before_training(run_cli, workdir, capsys):
    photos = with_bad_files(workdir / "photos")
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "resnet_finetune", "--data.root", str(photos), "--trainer.fast_dev_run", "true")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "3 of 63 image files do not read" in error and "--data.skip_bad_images true" in error
    for name, why in (("empty.jpg", "an empty file"), ("cut.jpg", "cut short"), ("notes.jpg", "not an image")):
        assert name in error and why in error
    assert not (workdir / "runs").exists(), "a refused run must not leave a run folder"


def test_bad_files_are_skipped_when_asked_saying_how_many(run_cli, workdir):
    photos = with_bad_files(workdir / "photos")
    skip = ["--data.root", str(photos), "--data.skip_bad_images", "true", "--trainer.fast_dev_run", "true"]
    with pytest.warns(UserWarning, match="skipped 3 of 63 image files"):
        cli = run_cli("fit", "resnet_finetune", *skip)
    kept = [Path(path).name for rows in cli.datamodule.samples.values() for path, _ in rows]
    assert len(kept) == 60 and not {"empty.jpg", "cut.jpg", "notes.jpg"} & set(kept)


def test_many_bad_files_are_counted_and_all_listed_in_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the list is written
    photos = make_photos(tmp_path / "photos")
    for i in range(7):
        (photos / "gray" / f"empty{i}.png").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"7 of 67 .* and 2 more \(all listed in ") as refused:
        ImageFolderDataModule(root=str(photos)).setup("fit")
    listing = str(refused.value).split("all listed in ")[1].split(")")[0]
    assert len(Path(listing).read_text().splitlines()) == 7


def test_one_class_is_refused_in_one_line(run_cli, workdir, capsys):
    cats = workdir / "photos" / "cats"
    cats.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (20, 20), (i * 50, 0, 0)).save(cats / f"{i}.png")
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "resnet_finetune", "--data.root", str(workdir / "photos"))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].endswith("photos has one class folder (cats); a classifier needs at least 2")
    assert "Traceback" not in "\n".join(error) and not (workdir / "runs").exists()
    with pytest.raises(ConfigError, match="a classifier needs at least 2 classes"):
        ImageFolderDataModule(classes=["red"])


def test_a_torchvision_dataset_that_does_not_download_is_refused_in_one_line(run_cli, workdir, capsys, no_network):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "resnet_finetune", "--data.dataset", "CIFAR10", "--data.root", "data")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert "--data.dataset CIFAR10: not in data, and it could not be downloaded (URLError: " in error
    assert "copy the files torchvision.datasets.CIFAR10 downloads into data" in error
    assert "--data.root <a folder" in error and not (workdir / "runs").exists()
