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
  differ too, by `real_vs_real_fid`, the same distance between two equal-sized sets of real images.

Images are (N, C, H, W) with pixels in [0, 1]; the classifier reads them through its own codec's
normalisation, exactly as it read its training images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from . import ConfigError
from .artifacts import load_checkpoint
from .classification import ClassificationTask
from .data.mnist import GrayImageCodec

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
    """Pixels in [0, 1] -> what the classifier read in training: (x - mean) / std, its codec's."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


class Judge:
    """A classifier checkpoint that scores sets of images; not a submodule of the model it judges."""

    def __init__(self, checkpoint: str | Path) -> None:
        loaded = load_checkpoint(checkpoint)
        if not isinstance(loaded.model, ClassificationTask):
            raise ConfigError(f"judge {checkpoint}: a classifier's checkpoint is needed, got {loaded.metadata['task']}")
        if not isinstance(loaded.codec, GrayImageCodec):
            raise ConfigError(f"judge {checkpoint}: a classifier of images is needed, got {loaded.metadata['task']}")
        self.classifier = loaded.model.eval()
        normalise = Normalise(loaded.codec.mean, loaded.codec.std)
        self.features = PenultimateFeatures(self.classifier, normalise).eval()

    def to(self, device: torch.device) -> Judge:
        self.features.to(device)
        return self

    @torch.no_grad()
    def classes(self, images: torch.Tensor) -> dict[str, float]:
        """confident_share and class_entropy of a set of images."""
        probabilities = torch.cat([self.classifier(self.features.normalise(b)).softmax(-1) for b in batches(images)])
        confidence, predicted = probabilities.max(dim=-1)
        counts = torch.bincount(predicted, minlength=probabilities.shape[1]).double()
        share = counts / counts.sum()
        entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
        return {"confident_share": (confidence >= CONFIDENT).double().mean().item(), "class_entropy": entropy}

    @torch.no_grad()
    def fid(self, real: torch.Tensor, generated: torch.Tensor) -> float:
        """The Fréchet distance between two sets of images in the classifier's features."""
        metric = FrechetInceptionDistance(feature=self.features, normalize=True).to(real.device)
        for batch in batches(real):
            metric.update(batch, real=True)
        for batch in batches(generated):
            metric.update(batch, real=False)
        return metric.compute().item()

    def measure(self, generated: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        """Every measure of `generated` against `real` (images in [0, 1], the same count is fairest)."""
        return {**self.classes(generated), "classifier_fid": self.fid(real, generated)}


def batches(images: torch.Tensor) -> list[torch.Tensor]:
    return list(images.split(BATCH))
