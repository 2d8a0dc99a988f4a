"""The Vision Transformer: patches in, logits out for every pooling and kind of position; it learns the fake digits;
it starts from a checkpoint of this project (all but the head) and refuses one of another shape; and it reads an
image folder as well as MNIST, its training images shifted at random if asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from {{ cookiecutter.__package }} import ConfigError
from {{ cookiecutter.__package }}.data.mnist import MNISTDataModule, shifted
from {{ cookiecutter.__package }}.tasks.vit import VisionTransformer, ViTClassifier, grid_positions


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_images_become_class_logits(pooling, positions):
    model = VisionTransformer(
        input_shape=(1, 28, 28), num_classes=10, num_layers=2, pooling=pooling, positions=positions
    )
    assert model.patches(torch.zeros(5, 1, 28, 28)).shape == (5, 64, 7, 7)  # a 7x7 grid of 4x4-pixel patches
    assert model.positions.shape == (49 + (pooling == "cls"), 64)
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    learned = [name for name, _ in model.named_parameters() if name == "positions"]
    assert learned == (["positions"] if positions == "learned" else [])


def test_fixed_positions_tell_every_patch_apart_and_neighbours_are_closer_than_far_ones():
    table = grid_positions(7, 7, 64)
    assert table.shape == (49, 64) and len(torch.unique(table, dim=0)) == 49
    distance = torch.cdist(table, table)
    assert distance[0, 1] < distance[0, 6] and distance[0, 7] < distance[0, 42]  # along a row, and down a column


def test_a_patch_that_does_not_tile_the_image_is_refused():
    with pytest.raises(ConfigError, match="patch_size 5 does not tile the 28x28 images"):
        VisionTransformer(input_shape=(1, 28, 28), num_classes=10, patch_size=5)


def test_learns_the_fake_digits(run_cli):
    cli = run_cli("fit", "vit", "--trainer.max_epochs", "15", "--data.batch_size", "16", "--model.num_layers", "2")
    assert cli.trainer.callback_metrics["val_acc"] >= 0.9


def test_starts_from_a_checkpoint_of_this_project_all_but_the_head(trained):
    checkpoint = trained("vit")
    saved = torch.load(checkpoint, weights_only=True)
    shape = {"patch_size": saved["hyper_parameters"]["patch_size"]}  # the config's; the rest are the defaults
    task = ViTClassifier(num_classes=5, input_shape=(1, 28, 28), weights=str(checkpoint), **shape)  # a new head
    task.setup("fit")
    for name, tensor in task.model.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(tensor, saved["state_dict"][f"model.{name}"]), name
    assert task.model.head.out_features == 5


def test_weights_of_another_shape_are_refused_with_what_differs(trained):
    task = ViTClassifier(num_classes=10, input_shape=(1, 28, 28), weights=str(trained("vit")), patch_size=4)
    with pytest.raises(ConfigError, match="not weights of this ViT's shape.*size mismatch for positions"):
        task.setup("fit")


def test_reads_an_image_folder(run_cli, data_args):
    """The photos' data module in place of MNIST's: 3 colour channels at 32x32, cut into 8x8 patches."""
    folder = [
        "--data",
        "{{ cookiecutter.__package }}.data.images.ImageFolderDataModule",
        *data_args["ImageFolderDataModule"],
        "--model.patch_size",
        "8",
    ]
    cli = run_cli("fit", "vit", *folder, "--trainer.fast_dev_run", "true")
    assert cli.model.model.patches.in_channels == 3 and cli.model.model.positions.shape[0] == 1 + 4 * 4
    assert cli.model.model.head.out_features == 3  # blue, gray, red


def test_shift_moves_each_image_on_its_own_and_fills_in_the_background():
    image = torch.full((1, 1, 28, 28), -0.5)
    image[0, 0, 10, 20] = 3.0
    moved = shifted(image.expand(500, 1, 28, 28), most=2, background=-0.5)
    assert moved.shape == (500, 1, 28, 28)
    bright = (moved == 3.0).nonzero()[:, 2:]  # (row, col) of the one bright pixel of each image
    assert len(bright) == 500 and ((moved == -0.5).sum(dim=(1, 2, 3)) == 28 * 28 - 1).all()
    offsets = {(row - 10, col - 20) for row, col in bright.tolist()}
    assert offsets == {(down, across) for down in range(-2, 3) for across in range(-2, 3)}


def test_the_data_module_shifts_training_batches_only(fake_mnist):
    data = MNISTDataModule(data_dir=str(fake_mnist), download=False, val_size=56, shift=3)
    data.setup()
    images, labels = next(iter(data.val_dataloader()))
    for training, changed in ((False, False), (True, True)):
        data.trainer = SimpleNamespace(training=training)
        out, out_labels = data.on_after_batch_transfer((images, labels), 0)
        assert torch.equal(out_labels, labels) and (not torch.equal(out, images)) == changed
    with pytest.raises(ConfigError, match="shift must be between 0 and 13 pixels, got 14"):
        MNISTDataModule(data_dir=str(fake_mnist), shift=14)
