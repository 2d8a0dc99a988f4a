{%- set classification = "yes" in (cookiecutter.include_xor, cookiecutter.include_mnist_cnn, cookiecutter.include_sentiment_rnn, cookiecutter.include_sentiment_transformer, cookiecutter.include_resnet_finetune, cookiecutter.include_gan, cookiecutter.include_bert_finetune, cookiecutter.include_vit) -%}
"""The optimizer and the schedule are options: one named on the command line or in the config is the one that
trains, schedules step per batch, a resumed run keeps them; the defaults are each task's recipe as it was written
before they became options; weight decay spares vectors (BERT's biases and LayerNorm weights); and a classifier
whose classes are on another axis (per pixel) gets the right loss, accuracy and predictions."""

from __future__ import annotations

import pytest
import torch
{%- if classification %}
import torch.nn.functional as F
{%- endif %}
from conftest import AUTOMATIC, fast_on
{%- if classification %}
from lightning.pytorch import Trainer
{%- endif %}
from torch import nn
{%- if classification %}
from torch.utils.data import DataLoader, TensorDataset
{%- endif %}

{% if classification -%}
from {{ cookiecutter.__package }}.classification import ClassificationTask
{% endif -%}
from {{ cookiecutter.__package }}.optim import OneCycle, decay_groups
{%- if cookiecutter.include_bert_finetune == "yes" %}
from {{ cookiecutter.__package }}.tasks.bert_finetune import BertClassifier
{%- endif %}

# The quickest task that Lightning's automatic optimization trains (a GAN steps its own two optimizers).
TASK = AUTOMATIC[0] if AUTOMATIC else None
ADAMW = [task for task in AUTOMATIC if task not in ("xor", "linear_regression")]  # the quickest first
needs_a_task = pytest.mark.skipif(TASK is None, reason="no task here takes an optimizer option")
THREE_BATCHES = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]
SGD = ["--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "0.05", "--model.optimizer.momentum", "0.9"]


@needs_a_task
def test_an_optimizer_and_a_schedule_named_on_the_command_line_are_the_ones_that_train(run_cli):
    halving = ["--model.scheduler", "torch.optim.lr_scheduler.StepLR", "--model.scheduler.step_size", "1"]
    cli = run_cli("fit", TASK, *THREE_BATCHES, *SGD, *halving, "--model.scheduler.gamma", "0.5")
    (optimizer,) = cli.trainer.optimizers
    assert type(optimizer) is torch.optim.SGD
    assert all(group["momentum"] == 0.9 for group in optimizer.param_groups)
    assert optimizer.state and all("momentum_buffer" in state for state in optimizer.state.values())  # SGD stepped
    (config,) = cli.trainer.lr_scheduler_configs
    assert type(config.scheduler) is torch.optim.lr_scheduler.StepLR and config.interval == "step"
    # The group that takes the optimizer's own rate (a backbone's group keeps the task's): halved after each batch.
    steps = cli.trainer.global_step
    assert steps > 1 and optimizer.param_groups[-1]["lr"] == pytest.approx(0.05 * 0.5**steps)


@needs_a_task
def test_the_config_names_them_by_class_path_and_a_resumed_run_keeps_them(run_cli, workdir):
    override = workdir / "adagrad.yaml"
    override.write_text(
        "model:\n"
        "  init_args:\n"
        "    optimizer:\n"
        "      class_path: torch.optim.Adagrad\n"
        "      init_args: {lr: 0.02, lr_decay: 0.001}\n"
        "    scheduler:\n"
        "      class_path: torch.optim.lr_scheduler.ConstantLR\n"
        "      init_args: {factor: 0.5, total_iters: 2}\n"
    )
    first = run_cli("fit", TASK, *THREE_BATCHES, "--config", str(override)).trainer
    (optimizer,) = first.optimizers
    assert type(optimizer) is torch.optim.Adagrad and optimizer.param_groups[-1]["lr_decay"] == 0.001
    assert first.global_step >= 2 and optimizer.param_groups[-1]["lr"] == pytest.approx(0.02)  # halved for 2 batches
    more = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1"]
    resumed = run_cli("fit", TASK, *more, "--ckpt_path", "last").trainer  # the config override not repeated
    (optimizer,) = resumed.optimizers
    assert type(optimizer) is torch.optim.Adagrad and resumed.global_step == 2 * first.global_step
    assert type(resumed.lr_scheduler_configs[0].scheduler) is torch.optim.lr_scheduler.ConstantLR


@needs_a_task
def test_reduce_on_plateau_waits_for_the_validation_loss_once_per_epoch(run_cli):
    plateau = ["--model.scheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau", "--model.scheduler.patience", "0"]
    cli = run_cli("fit", TASK, *THREE_BATCHES, *SGD, *plateau)
    (config,) = cli.trainer.lr_scheduler_configs
    assert (config.interval, config.monitor) == ("epoch", "val_loss")
    assert config.scheduler.best == pytest.approx(float(cli.trainer.callback_metrics["val_loss"]))  # it read it


ONE_CYCLE = [task for task in AUTOMATIC if task not in ("xor", "linear_regression", "bert_finetune")]


@pytest.mark.skipif(not ONE_CYCLE, reason="no task here has a one-cycle schedule")
def test_the_one_cycle_schedule_peaks_at_the_given_optimizers_rate_and_steps_per_batch(run_cli):
    cli = run_cli("fit", ONE_CYCLE[0], *THREE_BATCHES, *SGD)
    (optimizer,) = cli.trainer.optimizers
    (config,) = cli.trainer.lr_scheduler_configs
    assert type(optimizer) is torch.optim.SGD and type(config.scheduler) is OneCycle and config.interval == "step"
    head = optimizer.param_groups[-1]  # the group that takes the optimizer's rate
    steps = cli.trainer.global_step
    assert head["max_lr"] == 0.05 and steps > 1 and config.scheduler.last_epoch == steps  # stepped after every batch
    alone = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.05, momentum=0.9)
    reference = torch.optim.lr_scheduler.OneCycleLR(alone, 0.05, int(cli.trainer.estimated_stepping_batches))
    for _ in range(steps):
        alone.step()
        reference.step()
    assert head["lr"] == pytest.approx(alone.param_groups[0]["lr"])
    assert head["momentum"] == pytest.approx(alone.param_groups[0]["momentum"])  # the momentum cycles too


def todays_recipe(task: str, model: nn.Module, total_steps: int):
    """The optimizer and schedule each task wrote in its `configure_optimizers` before they became options; AdamW
    since fused (one kernel over every weight), which the CPU runs too."""
    if task == "xor":
        return torch.optim.Adam(model.parameters(), lr=model.lr), None
    if task == "linear_regression":
        return torch.optim.SGD(model.parameters(), lr=model.lr), None
    if task == "bert_finetune":
        from transformers import get_linear_schedule_with_warmup

        decayed, not_decayed = [], []
        for name, parameter in model.model.named_parameters():
            (not_decayed if name.endswith("bias") or "LayerNorm" in name else decayed).append(parameter)
        groups = [{"params": decayed, "weight_decay": model.weight_decay}, {"params": not_decayed, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=model.lr, fused=True)
        return optimizer, get_linear_schedule_with_warmup(optimizer, int(model.warmup * total_steps), total_steps)
    if task == "resnet_finetune":
        backbone = [p for name, p in model.model.named_parameters() if not name.startswith("fc.")]
        head = list(model.model.fc.parameters())
        groups = [{"params": backbone, "lr": model.backbone_lr}, {"params": head, "lr": model.lr}]
        optimizer = torch.optim.AdamW(groups, weight_decay=model.weight_decay, fused=True)
        return optimizer, OneCycle(optimizer, [model.backbone_lr, model.lr], total_steps)
    if task == "vit":  # weight decay on matrices only
        decayed = [p for p in model.parameters() if p.dim() >= 2]
        groups = [{"params": decayed}, {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=model.lr, weight_decay=model.weight_decay, fused=True)
        return optimizer, OneCycle(optimizer, model.lr, total_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=model.lr, weight_decay=model.weight_decay, fused=True)
    return optimizer, OneCycle(optimizer, model.lr, total_steps)


def settings(optimizer: torch.optim.Optimizer) -> list[dict]:
    """Each group's parameters (by identity) and settings."""
    return [{**group, "params": [id(p) for p in group["params"]]} for group in optimizer.param_groups]


# One task of each recipe: the others share the AdamW and one-cycle default with mnist_cnn.
@pytest.mark.parametrize(
    "task", fast_on("xor", "linear_regression", "mnist_cnn", "resnet_finetune", "bert_finetune", "vit", among=AUTOMATIC)
)
def test_the_default_is_the_recipe_each_task_had(run_cli, task):
    cli = run_cli("fit", task, *THREE_BATCHES)
    configured = cli.model.configure_optimizers()  # afresh, on the trained model, as fit began
    optimizer, schedule = (configured, None) if isinstance(configured, torch.optim.Optimizer) else configured.values()
    total = int(cli.trainer.estimated_stepping_batches)
    expected, expected_schedule = todays_recipe(task, cli.model, total)
    assert type(optimizer) is type(expected) and settings(optimizer) == settings(expected)
    if expected_schedule is None:
        assert schedule is None and not cli.trainer.lr_scheduler_configs
        return
    assert schedule["interval"] == "step" and cli.trainer.lr_scheduler_configs[0].interval == "step"
    for _ in range(total):  # the same learning rates (and momenta), step after step
        for scheduler in (schedule["scheduler"], expected_schedule):
            scheduler.optimizer.step()
            scheduler.step()
        assert settings(optimizer) == settings(expected)


@pytest.mark.skipif(not ADAMW, reason="no task here trains with the classifiers' AdamW (xor: Adam; linear: SGD)")
def test_adamw_is_fused_unless_mixed_precision_clips_the_gradients(run_cli):
    """Lightning refuses a fused step (it unscales gradients inside) when mixed precision clips them."""
    plain = run_cli("fit", ADAMW[0], *THREE_BATCHES).model.configure_optimizers()
    clipped = ["--trainer.precision", "bf16-mixed", "--trainer.gradient_clip_val", "1.0"]
    cli = run_cli("fit", ADAMW[0], *THREE_BATCHES, *clipped)
    optimizers = [plain, cli.model.configure_optimizers()]
    fused = [(o if isinstance(o, torch.optim.Optimizer) else o["optimizer"]).defaults["fused"] for o in optimizers]
    assert fused == [True, False]
    assert torch.isfinite(cli.trainer.callback_metrics["train_loss"])


def test_weight_decay_goes_to_matrices_and_kernels_not_to_vectors():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Conv1d(4, 4, 3), nn.BatchNorm1d(4), nn.LayerNorm(2), nn.Linear(2, 3))
    decayed, not_decayed = decay_groups(model)
    assert [p.shape for p in decayed["params"]] == [(10, 4), (4, 4, 3), (3, 2)] and "weight_decay" not in decayed
    assert [p.shape for p in not_decayed["params"]] == [(4,)] * 3 + [(2,), (2,), (3,)]
    assert not_decayed["weight_decay"] == 0.0
    only_matrices = decay_groups(nn.Linear(2, 3, bias=False))
    assert len(only_matrices) == 1  # no empty group
{%- if cookiecutter.include_bert_finetune == "yes" %}


def test_decay_by_shape_spares_the_weights_that_berts_names_did(tiny_bert):
    model = BertClassifier(num_classes=2, pretrained=str(tiny_bert))
    by_name = {True: set(), False: set()}  # decayed or not, as bert_finetune.py chose them by name before
    for name, parameter in model.model.named_parameters():
        by_name[not (name.endswith("bias") or "LayerNorm" in name)].add(parameter)
    decayed, not_decayed = model.parameter_groups()
    assert set(decayed["params"]) == by_name[True] and set(not_decayed["params"]) == by_name[False]
    assert len(decayed["params"]) + len(not_decayed["params"]) == len(list(model.parameters()))
    assert {p.dim() for p in by_name[False]} == {1} and len(by_name[False]) > 10  # every bias and LayerNorm
{%- endif %}
{%- if cookiecutter.include_resnet_finetune == "yes" %}


def test_a_given_optimizers_rate_is_the_heads_and_the_backbone_keeps_its_own(run_cli):
    cli = run_cli("fit", "resnet_finetune", "--trainer.fast_dev_run", "true", *SGD, "--model.backbone_lr", "0.002")
    backbone, head = cli.trainer.optimizers[0].param_groups
    assert (backbone["max_lr"], head["max_lr"]) == (0.002, 0.05)
    assert {id(p) for p in head["params"]} == {id(p) for p in cli.model.head.parameters()}
{%- endif %}
{%- if classification %}


class PixelClassifier(ClassificationTask):
    """Colours each pixel of an image by its class: (N, 3, H, W) -> (N, num_classes, H, W) logits."""

    class_axis = 1

    def __init__(self, num_classes: int = 3, lr: float = 0.05) -> None:
        super().__init__(num_classes, lr)
        self.model = nn.Conv2d(3, num_classes, 1)  # one linear map of each pixel's colour


class TokenTagger(ClassificationTask):
    """A class for each token: (N, L) ids -> (N, L, num_classes) logits, classes last."""

    def __init__(self, num_classes: int = 3, lr: float = 0.05) -> None:
        super().__init__(num_classes, lr)
        self.model = nn.Embedding(10, num_classes)


def pixels(n: int = 32) -> TensorDataset:
    """Images of 3 colours in 4x5 patches; a pixel's class is its brightest channel."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 4, 5, generator=generator)
    return TensorDataset(images, images.argmax(dim=1))  # (N, 3, 4, 5), (N, 4, 5)


def tokens(n: int = 32) -> TensorDataset:
    ids = torch.randint(0, 10, (n, 6), generator=torch.Generator().manual_seed(0))
    return TensorDataset(ids, ids % 3)  # (N, 6), (N, 6)


def quiet_trainer(**options) -> Trainer:
    off = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return Trainer(accelerator="cpu", **off, **options)


@pytest.mark.parametrize(
    ("model", "data", "predicted_shape"),
    [(PixelClassifier, pixels, (32, 4, 5)), (TokenTagger, tokens, (32, 6))],
    ids=["classes_on_axis_1", "classes_last_for_each_token"],
)
def test_a_prediction_for_each_pixel_or_token_with_its_loss_and_accuracy(model, data, predicted_shape):
    torch.manual_seed(0)
    task, dataset = model(), data()
    inputs, target = dataset.tensors
    with torch.no_grad():
        logits = task(inputs)
        prediction = task.predict(inputs)
    per_class = logits.movedim(task.class_axis, 1)  # F.cross_entropy wants (N, C, ...)
    assert prediction["prediction"].shape == prediction["probability"].shape == predicted_shape == target.shape
    assert torch.equal(prediction["prediction"], per_class.argmax(dim=1))
    torch.testing.assert_close(prediction["probability"], per_class.softmax(dim=1).amax(dim=1))
    (metrics,) = quiet_trainer().validate(task, DataLoader(dataset, batch_size=8), verbose=False)
    right = (prediction["prediction"] == target).float().mean().item()
    assert metrics["val_acc"] == pytest.approx(right)  # the share of pixels (tokens), not of images
    assert metrics["val_loss"] == pytest.approx(F.cross_entropy(per_class, target).item(), rel=1e-5)
    quiet_trainer(max_epochs=30).fit(task, DataLoader(dataset, batch_size=8, shuffle=True))
    (metrics,) = quiet_trainer().validate(task, DataLoader(dataset, batch_size=8), verbose=False)
    assert metrics["val_acc"] >= 0.9
{%- endif %}
