"""The GAN: its networks fit the images, it trains and draws samples each epoch through the project's logger,
`predict` draws the same images for the same seed (and the server answers them byte for byte), and the
judge's measures behave as their definitions say."""

from __future__ import annotations

import base64
import io
{%- if cookiecutter.include_mnist_cnn == "yes" %}
import math
{%- endif %}

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from {{ cookiecutter.__package }} import ConfigError
{%- if cookiecutter.include_mnist_cnn == "yes" %}
from {{ cookiecutter.__package }}.data.mnist import MNISTDataModule
from {{ cookiecutter.__package }}.judge import Judge
{%- endif %}
from {{ cookiecutter.__package }}.runs import run_dir
from {{ cookiecutter.__package }}.serve.app import create_app
from {{ cookiecutter.__package }}.serve.settings import ServeSettings
from {{ cookiecutter.__package }}.tasks.gan import GAN, upsampling_levels

ONE_EPOCH = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]


@pytest.mark.parametrize(("side", "levels"), [(28, (2, 7)), (32, (3, 4)), (64, (4, 4))])
def test_the_generator_draws_images_of_the_datas_shape(side, levels):
    assert upsampling_levels((3, side, side)) == levels
    gan = GAN(input_shape=(3, side, side), latent_dim=16, width=8).eval()
    images = gan.predict(torch.randn(5, 16))["image"]
    assert images.shape == (5, 3, side, side) and images.min() >= 0 and images.max() <= 1
    assert gan.discriminator(images * 2 - 1).shape == (5,)


@pytest.mark.parametrize("shape", [(1, 27, 27), (1, 6, 6), (1, 28, 32)])
def test_an_image_shape_it_cannot_draw_is_refused(shape):
    with pytest.raises(ConfigError, match="square images of an even side above 7"):
        GAN(input_shape=shape)


def test_normalised_pixels_are_refused_with_what_to_set(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "gan", *ONE_EPOCH, "--data.normalize", "true")
    assert exit_info.value.code == 2
    assert "--data.normalize false" in capsys.readouterr().err


def test_samples_are_drawn_every_epoch_and_sent_to_the_logger(run_cli):
    cli = run_cli("fit", "gan", *ONE_EPOCH, "--trainer.max_epochs", "2")
    folder = run_dir(cli.trainer)
    for epoch in (0, 1):
        with Image.open(folder / "samples" / f"epoch_{epoch:03d}.png") as grid:  # 64 images, 8 per row
            assert grid.format == "PNG" and grid.size == (8 * 30 + 2, 8 * 30 + 2)
{%- if cookiecutter.logger == "tensorboard" %}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0}).Reload()
    assert [image.step for image in events.Images("samples")] == [cli.trainer.global_step // 2, cli.trainer.global_step]
{%- elif cookiecutter.logger == "wandb" %}
    cli.trainer.logger.experiment.finish()
    media = list((folder.parents[1] / "wandb" / "latest-run" / "files" / "media" / "images").glob("samples_*.png"))
    assert len(media) == 2
{%- elif cookiecutter.logger == "mlflow" %}
    logger = cli.trainer.logger
    artifacts = folder.parents[2] / "mlruns" / logger.experiment_id / logger.run_id / "artifacts" / "samples"
    assert sorted(path.name for path in artifacts.iterdir()) == ["epoch_000.png", "epoch_001.png"]
{%- else %}
    # The CSV logger takes numbers only: the grids are the files above.
    assert not list(folder.glob("*.png")) or {path.name for path in folder.glob("*.png")} == {"learning_curves.png"}
{%- endif %}
    assert (folder / "learning_curves.png").stat().st_size > 1000


def test_predict_draws_the_same_images_for_the_same_seed_and_the_server_answers_them(trained, run_cli, workdir):
    checkpoint = str(trained("gan"))
    files = []
    for _ in range(2):
        cli = run_cli(
            "predict", "gan", "--ckpt_path", checkpoint, "--model.num_samples", "3", "--model.sample_seed", "7"
        )
        folder = run_dir(cli.trainer) / "predictions"
        files.append([(folder / f"{index:04d}.png").read_bytes() for index in range(3)])
        assert (folder / "grid.png").exists() and not (folder / "0003.png").exists()
    assert files[0] == files[1]
    other = run_cli("predict", "gan", "--ckpt_path", checkpoint, "--model.num_samples", "1", "--model.sample_seed", "8")
    assert (run_dir(other.trainer) / "predictions" / "0000.png").read_bytes() != files[0][0]

    with TestClient(create_app(ServeSettings(model=checkpoint))) as client:
        served = client.post("/predict", json={"seed": 7, "count": 3}).json()["predictions"]
        first = client.post("/predict", json={"seed": 7}).json()["predictions"]  # count 1: image 0 of the seed
    assert [base64.b64decode(row["image_png"]) for row in served] == files[0]
    assert first == served[:1]
    assert Image.open(io.BytesIO(files[0][0])).size == (28, 28)
{%- if cookiecutter.include_mnist_cnn == "yes" %}


def real_digits(fake_mnist, split: str, count: int) -> torch.Tensor:
    data = MNISTDataModule(str(fake_mnist), download=False, val_size=64, normalize=False)
    data.setup()
    dataset = data.test_set if split == "test" else data.train_set
    return torch.stack([dataset[index][0] for index in range(count)])  # (count, 1, 28, 28) in [0, 1]


def test_the_judges_measures_mean_what_they_say(trained, fake_mnist):
    judge = Judge(trained("mnist_cnn"))
    digits, others = real_digits(fake_mnist, "test", 64), real_digits(fake_mnist, "train", 64)
    noise = torch.rand_like(digits)
    assert judge.fid(digits, digits) == pytest.approx(0, abs=1e-3)  # a set against itself
    assert judge.fid(digits, noise) > 5 * judge.fid(digits, others)  # noise is far from digits, digits are near
    one_image = judge.classes(digits[:1].repeat(20, 1, 1, 1))  # every sample the same: one class only
    assert one_image["class_entropy"] == pytest.approx(0.0)
    assert one_image["confident_share"] in (0.0, 1.0)
    spread = judge.classes(digits)
    assert 0 < spread["class_entropy"] <= math.log(10) + 1e-9 and 0 <= spread["confident_share"] <= 1


def test_a_judged_gan_logs_the_measures_and_keeps_its_best_images(trained, run_cli):
    judge = ["--judge", str(trained("mnist_cnn"))]
    fit = run_cli("fit", "gan", *ONE_EPOCH, *judge)
    measures = ("confident_share", "class_entropy", "classifier_fid", "real_vs_real_fid")
    assert all(math.isfinite(fit.trainer.callback_metrics[f"val_{name}"]) for name in measures)
    assert fit.trainer.checkpoint_callback.monitor == "val_classifier_fid"
    # ... and from the command line, for a generator checkpoint trained without a judge.
    tested = run_cli("test", "gan", "--ckpt_path", str(trained("gan")), *judge, "--trainer.limit_test_batches", "1")
    assert all(math.isfinite(tested.trainer.callback_metrics[f"test_{name}"]) for name in measures)


def test_a_judge_for_a_task_that_draws_nothing_is_refused_in_one_line(trained, run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "mnist_cnn", "--judge", str(trained("mnist_cnn")), *ONE_EPOCH)
    assert exit_info.value.code == 2 and "MNISTClassifier draws no images to judge" in capsys.readouterr().err
{%- endif %}
