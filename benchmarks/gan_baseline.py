"""The baseline of benchmarks/gan.py: the classic fully-connected GAN, trained by the project's own GAN recipe.

The generator and the discriminator are the multilayer perceptrons of the original GAN paper as Lightning's
own GAN example writes them (hidden layers of 128 to 1024 units, LeakyReLU 0.2, batch norm in the generator,
latent size 100), with PyTorch's default initialisation. Everything else is the DCGAN task's: the same
two-optimizer training step, Adam 2e-4 with beta1 0.5, the same data, judge and checkpoints, so the
benchmark compares architectures only. The benchmark runs it through the project's CLI:

    --config configs/gan.yaml --model.class_path gan_baseline.MLPGAN   (benchmarks/ on PYTHONPATH)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from roadmap_project import ConfigError
from roadmap_project.tasks.gan import GAN, Verdict  # the default bake's package, as the benchmark bakes it
from torch import nn


class Unconditional(nn.Sequential):
    """A generator called the way the GAN task calls its own: with the images' classes too (None here)."""

    def forward(self, inputs: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(inputs)


class Judging(nn.Sequential):
    """A discriminator called the way the GAN task calls its own, answering as its own does: a Verdict."""

    def forward(self, images: torch.Tensor, classes: torch.Tensor | None = None) -> Verdict:
        return Verdict(super().forward(images), None)


def mlp_generator(latent_dim: int, image_shape: tuple[int, int, int]) -> nn.Module:
    def block(n_in: int, n_out: int, normalize: bool = True) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
        if normalize:
            layers.append(nn.BatchNorm1d(n_out, 0.8))
        return [*layers, nn.LeakyReLU(0.2, inplace=True)]

    return Unconditional(
        *block(latent_dim, 128, normalize=False),
        *block(128, 256),
        *block(256, 512),
        *block(512, 1024),
        nn.Linear(1024, math.prod(image_shape)),
        nn.Tanh(),
        nn.Unflatten(1, image_shape),
    )


def mlp_discriminator(image_shape: tuple[int, int, int]) -> nn.Module:
    return Judging(
        nn.Flatten(),
        nn.Linear(math.prod(image_shape), 512),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(512, 256),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Linear(256, 1),
        nn.Flatten(0),  # (N,) logits
    )


class MLPGAN(GAN):
    """The project's GAN task with the MLP networks in place of the DCGAN ones."""

    def __init__(self, input_shape: tuple[int, int, int], latent_dim: int = 100, **options: Any) -> None:
        super().__init__(input_shape, latent_dim=latent_dim, **options)
        if self.num_classes or self.categories:
            raise ConfigError("the MLP baseline is the plain GAN: --model.conditional false --model.categories 0")
        self.generator = mlp_generator(latent_dim, tuple(input_shape))
        self.discriminator = mlp_discriminator(tuple(input_shape))
