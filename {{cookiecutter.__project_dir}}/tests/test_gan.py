"""The GAN: its networks fit the images, it trains and draws samples each epoch through the project's logger,
`predict` draws the same images for the same seed (and the server answers them byte for byte), a conditional GAN
draws the class asked for everywhere (predict, the exported files, the server), and the judge's measures behave as
their definitions say."""

from __future__ import annotations

import base64
import io
import math
import re

import numpy as np
import onnxruntime
import pytest
import torch
from fastapi.testclient import TestClient
from lightning.pytorch import Trainer
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from {{ cookiecutter.__package }} import ConfigError
from {{ cookiecutter.__package }}.artifacts import load_checkpoint
{%- if cookiecutter.include_mnist_cnn == "yes" %}
from {{ cookiecutter.__package }}.data.mnist import MNISTDataModule
{%- endif %}
from {{ cookiecutter.__package }}.export import export
{%- if cookiecutter.include_mnist_cnn == "yes" %}
from {{ cookiecutter.__package }}.judge import Judge
{%- endif %}
from {{ cookiecutter.__package }}.runs import run_dir
from {{ cookiecutter.__package }}.serve.app import create_app
from {{ cookiecutter.__package }}.serve.settings import ServeSettings
from {{ cookiecutter.__package }}.tasks.gan import GAN, upsampling_levels

ONE_EPOCH = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]
CONDITIONAL = ("--model.conditional", "true")


@pytest.mark.parametrize(("side", "levels"), [(28, (2, 7)), (32, (3, 4)), (64, (4, 4))])
def test_the_generator_draws_images_of_the_datas_shape(side, levels):
    assert upsampling_levels((3, side, side)) == levels
    gan = GAN(input_shape=(3, side, side), latent_dim=16, width=8, categories=4).eval()
    images = gan.predict(torch.randn(5, 16))["image"]
    assert images.shape == (5, 3, side, side) and images.min() >= 0 and images.max() <= 1
    verdict = gan.discriminator(images * 2 - 1)  # real or not, and which of the 4 categories
    assert verdict.logits.shape == (5,) and verdict.category_logits.shape == (5, 4)


@pytest.mark.parametrize("shape", [(1, 27, 27), (1, 6, 6), (1, 28, 32)])
def test_an_image_shape_it_cannot_draw_is_refused(shape):
    with pytest.raises(ConfigError, match="square images of an even side above 7"):
        GAN(input_shape=shape)


def test_the_games_levers_change_what_they_say(run_cli):
    options = ["--model.loss", "hinge", "--model.spectral_norm", "true", "--model.width", "8"]
    fit = run_cli("fit", "gan", *ONE_EPOCH, *options, "--model.generator_width", "16", "--model.d_lr", "0.0004")
    gan, layers = fit.model, fit.model.discriminator.net
    assert gan.generator.project[0].out_features == 32 * 7 * 7  # generator_width 16: 32 maps at 7x7, 16 at 14x14
    assert layers[0].out_channels == 8 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in layers)
    for layer in (layers[0], layers[-1]):  # spectrally normalised: the largest singular value is 1
        assert torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2) == pytest.approx(1.0, abs=0.05)
    assert [optimizer.param_groups[0]["lr"] for optimizer in gan.optimizers()] == [0.0004, 0.0002]  # D, G
    fake, real = torch.rand(4, 1, 28, 28) * 2 - 1, torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        gan.eval()  # in training, each forward pass refines the spectral norm's estimate: the weights move
        real_logits, fake_logits = gan.discriminator(real).logits, gan.discriminator(fake).logits
        hinge = (1 - real_logits).clamp(min=0).mean() + (1 + fake_logits).clamp(min=0).mean()
        assert gan.discriminator_loss(real_logits, fake_logits) == pytest.approx(hinge.item())
        assert gan.generator_loss(fake_logits) == pytest.approx(-fake_logits.mean().item())


def test_an_infogans_noise_picks_its_category_and_can_be_made_to_pick_another():
    gan = GAN(input_shape=(1, 28, 28), latent_dim=16, width=8, categories=4).eval()
    noise, wanted = torch.randn(6, 16), torch.tensor([0, 1, 2, 3, 0, 3])
    assert torch.equal(gan.category_of(noise), noise[:, :4].argmax(dim=1))
    moved = gan.with_category(noise, wanted)
    assert torch.equal(gan.category_of(moved), wanted)
    assert torch.equal(moved[:, :4].sort(dim=1).values, noise[:, :4].sort(dim=1).values)  # the same numbers, swapped
    assert torch.equal(moved[:, 4:], noise[:, 4:])  # the rest of the noise untouched
    with torch.no_grad():  # the generator reads the category (an embedding), not only the noise's numbers
        as_drawn = gan.predict(noise)["image"]
        gan.generator.embed.weight.add_(1.0)
        assert not torch.allclose(gan.predict(noise)["image"], as_drawn)


def test_an_infogans_category_loss_trains_the_discriminators_head_and_the_generator(run_cli):
    gan = GAN(input_shape=(1, 28, 28), latent_dim=16, width=8, categories=4)
    noise = torch.randn(8, 16)
    categories = gan.category_of(noise)
    gan.category_loss(gan.discriminator(gan.generator(noise, categories)), categories).backward()
    for weights in (gan.discriminator.read_category.weight, gan.generator.embed.weight):
        assert weights.grad is not None and weights.grad.abs().sum() > 0
    fit = run_cli("fit", "gan", *ONE_EPOCH, "--model.categories", "10", "--model.width", "8")
    assert 0 < fit.trainer.callback_metrics["train_category_loss"] < 2 * math.log(10)  # logged as it trains


def test_a_training_step_reads_each_batch_of_fakes_once_per_optimizer():
    """One pass of the discriminator answers both questions (real or not, and which category): a step runs it three
    times, on the real images, on the fakes for its own update, and on the fakes again for the generator's."""
    gan = GAN(input_shape=(1, 28, 28), latent_dim=16, width=8, categories=4)
    passes: list[int] = []
    first_layer = gan.discriminator.net[0]  # every look at the images goes through it, whichever head asks
    first_layer.register_forward_hook(lambda module, inputs, output: passes.append(len(inputs[0])))
    data = DataLoader(TensorDataset(torch.rand(6, 1, 28, 28), torch.zeros(6, dtype=torch.long)), batch_size=6)
    off = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    Trainer(accelerator="cpu", max_steps=1, **off).fit(gan, data)
    assert passes == [6, 6, 6]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"categories": 1}, "--model.categories: 0 (none) or 2 to latent_dim (64); got 1"),
        ({"categories": 65}, "--model.categories: 0 (none) or 2 to latent_dim (64); got 65"),
    ],
)
def test_a_category_count_it_cannot_draw_is_refused(options, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        GAN(input_shape=(1, 28, 28), **options)


def test_a_conditional_gan_is_told_the_class_and_keeps_no_categories():
    gan = GAN(input_shape=(1, 28, 28), num_classes=10, conditional=True, categories=10)
    assert gan.categories == 0 and gan.discriminator.read_category is None and gan.discriminator.embed is not None


def test_label_smoothing_with_the_hinge_loss_is_refused():
    with pytest.raises(ConfigError, match="real_label smooths bce's targets only"):
        GAN(input_shape=(1, 28, 28), loss="hinge", real_label=0.9)


def test_normalised_pixels_are_refused_with_what_to_set(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "gan", *ONE_EPOCH, "--data.normalize", "true")
    assert exit_info.value.code == 2
    assert "--data.normalize false" in capsys.readouterr().err


def test_samples_are_drawn_every_epoch_and_sent_to_the_logger(run_cli):
    cli = run_cli("fit", "gan", *ONE_EPOCH, "--trainer.max_epochs", "2")
    folder = run_dir(cli.trainer)
    for epoch in (0, 1):
        with Image.open(folder / "samples" / f"epoch_{epoch:03d}.png") as grid:  # a row of 8 per category (10)
            assert grid.format == "PNG" and grid.size == (8 * 30 + 2, 10 * 30 + 2)
    plain = run_cli("fit", "gan", *ONE_EPOCH, "--model.categories", "0")
    with Image.open(run_dir(plain.trainer) / "samples" / "epoch_000.png") as grid:  # no categories: 64 images
        assert grid.size == (8 * 30 + 2, 8 * 30 + 2)
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


def drawn(cli) -> list[bytes]:
    folder = run_dir(cli.trainer) / "predictions"
    return [path.read_bytes() for path in sorted(folder.glob("0*.png"))]


def test_a_conditional_gan_draws_the_digit_asked_for_in_predict_and_the_server(trained, run_cli):
    checkpoint = str(trained("gan", *CONDITIONAL))
    predict = ("predict", "gan", "--ckpt_path", checkpoint, "--model.num_samples", "3", "--model.sample_seed", "7")
    sevens = drawn(run_cli(*predict, "--model.digits", "7"))
    threes_and_sevens = drawn(run_cli(*predict, "--model.digits", "[3,7]"))
    every_class = drawn(run_cli(*predict))  # digits 0, 1, 2: every class in turn
    assert len(sevens) == 3 and threes_and_sevens[1] == sevens[1]  # image 1 of seed 7 as a 7, both times
    assert threes_and_sevens[0] != sevens[0] and every_class[0] != sevens[0]  # the same noise, another class

    with TestClient(create_app(ServeSettings(model=checkpoint))) as client:
        served = client.post("/predict", json={"seed": 7, "count": 3, "digit": 7}).json()["predictions"]
        in_turn = client.post("/predict", json={"seed": 7, "count": 3}).json()["predictions"]
        refused = client.post("/predict", json={"seed": 7, "digit": 10})
        metadata = client.get("/metadata").json()
    assert [base64.b64decode(row["image_png"]) for row in served] == sevens
    assert [base64.b64decode(row["image_png"]) for row in in_turn] == every_class
    assert refused.status_code == 422 and "draws classes 0 to 9" in refused.text
    assert metadata["labels"] == [str(digit) for digit in range(10)] and metadata["example_request"]["digit"] == 1


def test_a_conditional_gans_samples_are_a_row_per_digit_and_its_export_reads_the_digit(trained, run_cli, tmp_path):
    fit = run_cli("fit", "gan", *ONE_EPOCH, *CONDITIONAL)
    with Image.open(run_dir(fit.trainer) / "samples" / "epoch_000.png") as grid:  # 10 rows (digits) of 8
        assert grid.size == (8 * 30 + 2, 10 * 30 + 2)
    checkpoint = load_checkpoint(trained("gan", *CONDITIONAL))
    metadata = export(checkpoint, tmp_path / "export", formats=("onnx",))
    model = checkpoint.model
    assert [spec["name"] for spec in metadata["inputs"]] == ["noise", "digit"]
    noise, digits = torch.randn(3, model.hparams["latent_dim"]), torch.tensor([0, 7, 9])
    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_images,) = session.run(["image"], {"noise": noise.numpy(), "digit": digits.numpy()})
    with torch.no_grad():
        expected = model.predict(noise, digits)["image"]
        other_digits = model.predict(noise, torch.tensor([1, 2, 3]))["image"]
    np.testing.assert_allclose(onnx_images, expected.numpy(), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(expected, other_digits)  # the digit input is read


def test_digits_are_refused_for_an_unconditional_gan_and_out_of_range(trained, run_cli, capsys):
    for checkpoint, digits, message in [
        (trained("gan"), "7", "fit one: --model.conditional true"),
        (trained("gan", *CONDITIONAL), "[3,10]", "--model.digits [3, 10]: this GAN draws classes 0 to 9"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_cli("predict", "gan", "--ckpt_path", str(checkpoint), "--model.digits", digits)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with TestClient(create_app(ServeSettings(model=str(trained("gan"))))) as client:
        assert client.post("/predict", json={"seed": 0, "digit": 7}).status_code == 422  # no such field
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
    # Requested classes: the judge's own reading of each image is always right, the next class never.
    read = judge.classifier(judge.features.normalise(digits)).argmax(-1)
    assert judge.classes(digits, read) == {**spread, "requested_class_accuracy": 1.0, "min_class_accuracy": 1.0}
    wrong = judge.classes(digits, (read + 1) % 10)
    assert wrong["requested_class_accuracy"] == 0.0 and wrong["min_class_accuracy"] == 0.0
    half = torch.where(torch.arange(len(read)) % 2 == 0, read, (read + 1) % 10)
    assert judge.classes(digits, half)["requested_class_accuracy"] == pytest.approx(0.5)


def test_a_judged_gan_logs_the_measures_and_keeps_its_best_images(trained, run_cli):
    judge = ["--judge", str(trained("mnist_cnn"))]
    fit = run_cli("fit", "gan", *ONE_EPOCH, *judge)
    measures = ("confident_share", "class_entropy", "classifier_fid", "real_vs_real_fid")
    assert all(math.isfinite(fit.trainer.callback_metrics[f"val_{name}"]) for name in measures)
    assert fit.trainer.checkpoint_callback.monitor == "val_classifier_fid"
    # ... and from the command line, for a generator checkpoint trained without a judge.
    tested = run_cli("test", "gan", "--ckpt_path", str(trained("gan")), *judge, "--trainer.limit_test_batches", "1")
    assert all(math.isfinite(tested.trainer.callback_metrics[f"test_{name}"]) for name in measures)
    assert "test_requested_class_accuracy" not in tested.trainer.callback_metrics  # unconditional: nothing requested
    conditional = run_cli("fit", "gan", *ONE_EPOCH, *judge, *CONDITIONAL)
    for name in ("requested_class_accuracy", "min_class_accuracy"):
        assert 0 <= conditional.trainer.callback_metrics[f"val_{name}"] <= 1


def test_a_judge_for_a_task_that_draws_nothing_is_refused_in_one_line(trained, run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "mnist_cnn", "--judge", str(trained("mnist_cnn")), *ONE_EPOCH)
    assert exit_info.value.code == 2 and "MNISTClassifier draws no images to judge" in capsys.readouterr().err
{%- endif %}
