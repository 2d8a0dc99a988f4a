"""Measuring generated images with a trained classifier of the same project, instead of by eye.

Given a classifier checkpoint (`mnist_cnn`'s, say) and a set of generated images:

- `confident_share`: the share of images it classifies with probability >= 0.9: images that look like
  one class, not a blur between two;
- `class_entropy`: the entropy of its histogram of predicted classes, in nats; ln(number of classes)
  (2.303 for ten digits) when every class is drawn equally often, 0 when one class is drawn always
  (mode collapse);
- `classifier_fid`: the Fréchet distance between real and generated images in the classifier's
  penultimate-layer features (torchmetrics' FrechetInceptionDistance with the classifier as its feature
  extractor, so no Inception weights are downloaded). Its floor is not 0: two samples of real images
  differ too, by `real_vs_real_fid`, the same distance between two equal-sized sets of real images;
- for a class-conditional generator (`Task.generated_classes`), `requested_class_accuracy`: the share of images
  it classifies as the class they were drawn as, and `min_class_accuracy`: that share for the worst class.

Images are (N, C, H, W) with pixels in [0, 1], of any size and channel count: they are resized to the
classifier's input (its `example_input_array`), converted to its channels, and normalised with its own
codec's mean and std, as it read its training images.

`ImageJudge` is the callback a run is given for this (`--judge <classifier checkpoint>` on the command line,
for any task that draws images: `Task.generate`): at every validation and test epoch it measures as many
generated images as the epoch had real ones, and logs `<stage>_confident_share`, `<stage>_class_entropy`,
`<stage>_classifier_fid` and `<stage>_real_vs_real_fid` (the real images against as many training images),
and for a conditional generator `<stage>_requested_class_accuracy` and `<stage>_min_class_accuracy`.
`best.ckpt` then keeps the epoch of the lowest `val_classifier_fid`. The task knows nothing of it: the
classifier is a trained file, which only the deployment side of the package loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from . import ConfigError
from .artifacts import load_checkpoint
from .classification import ClassificationTask
from .data.base import data_module_of
from .task import BestCheckpoint, Task

CONFIDENT = 0.9
BATCH = 500


class PenultimateFeatures(nn.Module):
    """A classifier as a feature extractor: the input of its last linear layer (N, num_features)."""

    def __init__(self, classifier: ClassificationTask, normalise: nn.Module) -> None:
        super().__init__()
        linear = [module for module in classifier.modules() if isinstance(module, nn.Linear)]
        if not linear:
            raise ConfigError(f"{type(classifier).__name__} has no linear layer whose inputs could be its features")
        self.classifier, self.normalise, self.last = classifier, normalise, linear[-1]
        self.num_features = self.last.in_features  # read by FrechetInceptionDistance

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        hook = self.last.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            self.classifier(self.normalise(images))
        finally:
            hook.remove()
        return captured[0].flatten(1)


class Normalise(nn.Module):
    """Pixels in [0, 1] of any size -> what the classifier read in training: its (C, H, W), its codec's
    (x - mean) / std (one value, or one per channel)."""

    def __init__(self, shape: tuple[int, ...], mean: float | list[float], std: float | list[float]) -> None:
        super().__init__()
        self.channels, self.size = shape[0], tuple(shape[1:])
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.channels:  # gray <-> colour: the mean of the channels, repeated
            images = images.mean(dim=1, keepdim=True).expand(-1, self.channels, -1, -1)
        if tuple(images.shape[2:]) != self.size:
            images = F.interpolate(images, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return (images - self.mean) / self.std


class Judge:
    """A classifier checkpoint that scores sets of images; not a submodule of the model it judges."""

    def __init__(self, checkpoint: str | Path) -> None:
        loaded = load_checkpoint(checkpoint)
        example = loaded.model.example_input_array
        mean, std = getattr(loaded.codec, "mean", None), getattr(loaded.codec, "std", None)
        if not isinstance(loaded.model, ClassificationTask) or not isinstance(example, torch.Tensor):
            raise ConfigError(f"judge {checkpoint}: a classifier's checkpoint is needed, got {loaded.metadata['task']}")
        if example.dim() != 4 or mean is None or std is None:
            raise ConfigError(f"judge {checkpoint}: a classifier of images is needed, got {loaded.metadata['task']}")
        self.classifier = loaded.model.eval()
        normalise = Normalise(tuple(example.shape[1:]), mean, std)
        self.features = PenultimateFeatures(self.classifier, normalise).eval()

    def to(self, device: torch.device) -> Judge:
        self.features.to(device)
        return self

    @torch.no_grad()
    def classes(self, images: torch.Tensor, requested: torch.Tensor | None = None) -> dict[str, float]:
        """confident_share and class_entropy of a set of images; with the class each was `requested` as,
        requested_class_accuracy and min_class_accuracy."""
        probabilities = torch.cat([self.classifier(self.features.normalise(b)).softmax(-1) for b in batches(images)])
        confidence, predicted = probabilities.max(dim=-1)
        counts = torch.bincount(predicted, minlength=probabilities.shape[1]).double()
        share = counts / counts.sum()
        entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
        measures = {"confident_share": (confidence >= CONFIDENT).double().mean().item(), "class_entropy": entropy}
        if requested is not None:
            right = (predicted == requested.to(predicted.device)).double()
            per_class = [right[requested == c].mean().item() for c in requested.unique()]
            measures |= {"requested_class_accuracy": right.mean().item(), "min_class_accuracy": min(per_class)}
        return measures

    @torch.no_grad()
    def fid(self, real: torch.Tensor, generated: torch.Tensor) -> float:
        """The Fréchet distance between two sets of images in the classifier's features."""
        metric = FrechetInceptionDistance(feature=self.features, normalize=True).to(real.device)
        for batch in batches(real):
            metric.update(batch, real=True)
        for batch in batches(generated):
            metric.update(batch, real=False)
        return metric.compute().item()

    def measure(
        self, generated: torch.Tensor, real: torch.Tensor, requested: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Every measure of `generated` against `real` (images in [0, 1], the same count is fairest)."""
        return {**self.classes(generated, requested), "classifier_fid": self.fid(real, generated)}


def batches(images: torch.Tensor) -> list[torch.Tensor]:
    return list(images.split(BATCH))


class ImageJudge(Callback):
    """Measures the images a task draws (`Task.generate`) against the epoch's real images, at validation and test."""

    best_checkpoint: BestCheckpoint = ("val_classifier_fid", "min")  # what best.ckpt keeps in a judged run

    def __init__(self, checkpoint: str | Path) -> None:
        self.judge = Judge(checkpoint)
        self.real: list[torch.Tensor] = []

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not isinstance(pl_module, Task) or not is_overridden("generate", pl_module, Task):  # asked, not run
            raise ConfigError(f"--judge: {type(pl_module).__name__} draws no images to judge")

    on_test_start = on_fit_start

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: int
    ) -> None:
        if not trainer.sanity_checking:
            self.real.append(batch[0].float())  # the data's images, pixels in [0, 1]

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: int
    ) -> None:
        self.real.append(batch[0].float())

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.measure(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.measure(trainer, pl_module, "test")

    def measure(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """The judge's measures of as many generated images as the epoch had real ones, logged as `<stage>_*`."""
        if not self.real or not isinstance(pl_module, Task):
            return
        real, self.real = torch.cat(self.real), []
        generated = pl_module.generate(len(real))
        assert generated is not None  # checked when the run started
        judge = self.judge.to(pl_module.device)
        measures = judge.measure(generated.float(), real, pl_module.generated_classes(len(real)))
        measures["real_vs_real_fid"] = judge.fid(real, training_images(trainer, len(real)).to(real))
        pl_module.log_dict({f"{stage}_{name}": value for name, value in measures.items()}, sync_dist=True)


def training_images(trainer: Trainer, count: int) -> torch.Tensor:
    """The first `count` training images: the judge's second set of real images."""
    datamodule = data_module_of(trainer)
    if datamodule is None:
        raise ConfigError("the judge compares with training images: run the task with its data module")
    if not hasattr(datamodule, "train_set"):  # a `test` run: the training split is not read yet
        datamodule.setup("fit")
    return torch.stack([datamodule.train_set[i][0] for i in range(min(count, len(datamodule.train_set)))])
