"""A generative adversarial network (DCGAN) that draws handwritten digits from random noise.

Two networks play a game. The generator turns a random vector (the noise) into an image; the
discriminator looks at an image and gives the probability that it is a real one. The discriminator
learns to tell the training images from the generator's; the generator learns to fool it, and the only
thing it ever learns from is the discriminator's gradient. Neither loss falls steadily as in
classification: they pull against each other, so the pictures, not the losses, show progress (each
epoch writes `samples/epoch_<N>.png` from the same noise), and a trained classifier measures them
(judge.py: `--judge` with an `mnist_cnn` checkpoint).

DCGAN's recipe (Radford et al., 2016) keeps that game stable: transposed convolutions that double the
image side at each step, batch norm, ReLU in the generator and LeakyReLU in the discriminator, weights
drawn from N(0, 0.02), and Adam with betas (0.5, 0.999), a short memory of past gradients. Two
optimizers step in turn on every batch, which Lightning's automatic optimization does not do: the task
sets `automatic_optimization = False` and calls `manual_backward` and each optimizer's `step` itself.

A GAN's noise is continuous, MNIST's digits are not: between the noise of a 4 and of a 9 lie images that are
neither. InfoGAN (Chen et al., 2016) gives the generator a category to draw as well (`--model.categories 10`, the
default): the first 10 numbers of the noise pick one (the largest of them), the generator reads it as a learned
vector beside the noise, and a second head on the discriminator must tell from each generated image which
category it was drawn from; the generator is rewarded when it can. So each category has to look unlike the others,
and with no label given they become the digits (each epoch's samples are a row per category).

    python -m {{ cookiecutter.__package }} fit --config configs/gan.yaml
    python -m {{ cookiecutter.__package }} predict --config configs/gan.yaml --ckpt_path best --model.sample_seed 7
    python -m {{ cookiecutter.__package }} test --config configs/gan.yaml --ckpt_path best --judge <mnist_cnn best.ckpt>

`--model.conditional true` makes it class-conditional (Mirza & Osindero, 2014): both networks are also told the
class (the digit), so the generator learns to draw the one asked for. The generator reads the class as a learned
vector beside the noise; the discriminator is a projection discriminator (Miyato & Koyama, 2018): its logit gains
the dot product of the image's features with a learned vector of the class, which asks "is this a real image *of
this class*?". The number of classes comes from the data module; `predict --model.digits 7` draws 7s, and the
server reads `{"seed": 0, "count": 4, "digit": 7}`.

    python -m {{ cookiecutter.__package }} fit --config configs/gan.yaml --model.conditional true
    python -m {{ cookiecutter.__package }} predict --config configs/gan.yaml --ckpt_path best --model.digits [3,7]
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, TensorDataset

from .. import ConfigError, require_positive
from ..data.codec import Codec
from ..data.noise import ConditionalNoiseCodec, NoiseCodec
from ..outputs import ImageOutputs
from ..task import Task

FIXED_NOISE = 64  # the images drawn every epoch, and the noise the validation losses are measured on
Classes = torch.Tensor | None  # a conditional GAN's class indices (N,); None: an unconditional one
PER_CLASS = 8  # a conditional GAN's samples each epoch: a row of this many images per class, the same noise in each


class Verdict(NamedTuple):
    """What the discriminator says of images, from one pass: real or not, and (InfoGAN) which category."""

    logits: torch.Tensor  # (N,): > 0 for "real"
    category_logits: torch.Tensor | None  # (N, categories); None: built without categories


def upsampling_levels(shape: tuple[int, int, int]) -> tuple[int, int]:
    """How many times the generator doubles the image, and from which side: 28 -> (2, 7), 32 -> (3, 4)."""
    _, side, width = shape
    levels, start = 0, side
    while start > 7 and start % 2 == 0:
        levels, start = levels + 1, start // 2
    if levels == 0 or width != side:
        raise ConfigError(f"the GAN draws square images of an even side above 7 (28, 32, 64); got {side}x{width}")
    return levels, start


def moving_average(decay: float, average: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """The exponential moving average's next value, with a decay that grows to `decay` over the first steps (as
    TensorFlow's ExponentialMovingAverage does): early on the average follows the generator, not its start."""
    rate = min(decay, (1 + count.item()) / (10 + count.item()))
    return rate * average + (1 - rate) * current


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: every weight from N(0, 0.02), batch norm scales from N(1, 0.02). A conditional GAN's
    class vectors too: at N(0, 1), as large as the noise, the generator learns to read the class alone and draws one
    image per class whatever the noise (measured: after an epoch, 8 identical digits per class, 37 % of them the
    digit asked for; with N(0, 0.02), varied digits, 64 %)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """Noise (N, latent_dim) -> images (N, C, side, side) in [-1, 1]; with `num_classes`, the classes (N,) too, each
    read as a learned vector of latent_dim numbers beside the noise."""

    def __init__(self, *, latent_dim: int, image_shape: tuple[int, int, int], width: int, num_classes: int = 0) -> None:
        super().__init__()
        channels = image_shape[0]
        levels, start = upsampling_levels(image_shape)
        c = width * 2 ** (levels - 1)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        self.project = nn.Sequential(  # (N, latent_dim, + latent_dim for the class) -> (N, c, start, start)
            nn.Linear(latent_dim * (2 if num_classes else 1), c * start * start, bias=False),
            nn.Unflatten(1, (c, start, start)),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for _ in range(levels - 1):  # each doubles the side and halves the channels
            layers += [
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c // 2),
                nn.ReLU(inplace=True),
            ]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh()]  # (N, C, side, side) in [-1, 1]
        self.upsample = nn.Sequential(*layers)

    def forward(self, noise: torch.Tensor, classes: Classes = None) -> torch.Tensor:
        if self.embed is not None:
            noise = torch.cat([noise, self.embed(classes)], dim=1)
        return self.upsample(self.project(noise))


class Discriminator(nn.Module):
    """The generator mirrored: strided convolutions halve the side; one logit per image, > 0 for "real". With
    `num_classes`, a projection discriminator: the logit adds features · (the class's learned vector). With
    `categories`, a second head reads from the same features which InfoGAN category an image was drawn from. With
    `spectral_norm`, no batch norm: `normalise_spectra` bounds each layer instead (call it once initialised)."""

    def __init__(
        self,
        *,
        image_shape: tuple[int, int, int],
        width: int,
        num_classes: int = 0,
        categories: int = 0,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        channels = image_shape[0]
        levels, start = upsampling_levels(image_shape)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c = width
        for _ in range(levels - 1):
            norm = nn.Identity() if spectral_norm else nn.BatchNorm2d(2 * c)
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=spectral_norm), norm, nn.LeakyReLU(0.2, inplace=True)]
            c *= 2
        layers += [nn.Flatten(), nn.Linear(c * start * start, 1)]  # (N, c, start, start) -> (N, 1)
        self.net = nn.Sequential(*layers)
        self.embed = nn.Embedding(num_classes, c * start * start) if num_classes else None
        self.read_category = nn.Linear(c * start * start, categories) if categories else None

    def normalise_spectra(self) -> None:
        """Spectral normalisation (Miyato et al., 2018): each layer's weight divided by its largest singular value
        (estimated by a power iteration per step), so that no layer stretches its input by more than 1. The
        discriminator then cannot grow steep enough to give the generator useless gradients."""
        for module in self.net:
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.utils.parametrizations.spectral_norm(module)

    def forward(self, images: torch.Tensor, classes: Classes = None) -> Verdict:
        features = self.net[:-1](images)  # (N, c * start * start)
        logits = self.net[-1](features).squeeze(-1)  # (N,)
        if self.embed is not None:
            logits = logits + (self.embed(classes) * features).sum(dim=1)
        return Verdict(logits, self.read_category(features) if self.read_category is not None else None)


class GAN(Task):
    input_names: tuple[str, ...] = ("noise",)
    outputs = ImageOutputs()
    partial_backward = True  # the discriminator's step leaves the generator without gradients, and back

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int = 0,
        conditional: bool = False,
        categories: int = 0,
        latent_dim: int = 64,
        width: int = 64,
        generator_width: int | None = None,
        lr: float = 0.0002,
        d_lr: float | None = None,
        betas: tuple[float, float] = (0.5, 0.999),
        loss: Literal["bce", "hinge"] = "bce",
        spectral_norm: bool = False,
        real_label: float = 1.0,
        ema: float = 0.0,
        num_samples: int = 64,
        sample_seed: int = 0,
        digits: int | list[int] | None = None,
    ) -> None:
        """`conditional`: draw the class asked for (`num_classes` of them, the data module's). `width`: the
        discriminator's first feature maps, doubled at each level; the generator mirrors it (128 maps at 7x7 for
        MNIST's 28x28 from width 64), or mirrors `generator_width` instead (its capacity alone). `lr`: both
        networks' learning rate, or the generator's when `d_lr` gives the discriminator its own (TTUR, two
        time-scales). `loss`: "bce", the non-saturating loss of the original GAN, or "hinge" (the discriminator
        pushes real logits above 1 and fakes below -1; the generator raises its fakes' logits). `spectral_norm`:
        the discriminator's layers spectrally normalised, in place of its batch norm. `real_label`: bce's target
        for real images (0.9: one-sided label smoothing, which keeps the discriminator from growing
        over-confident). `ema`: draw with an exponential moving average of the generator's weights (decay per step,
        0.999; 0: the generator itself), which smooths out the game's oscillation.
        `categories`: InfoGAN's categorical code (0: none), read from the noise (an unconditional GAN's: a conditional
        one is told the class instead).
        `num_samples`, `sample_seed` and `digits`: what `predict` draws (the same seed gives the same images; a
        conditional GAN draws the class in `digits`, or each of a list in turn; every class when none are given).
        These are options of a run, not of the model: they stay out of its checkpoint, whose saved hyperparameters
        would otherwise override them when `--ckpt_path` is given."""
        super().__init__()
        self.save_hyperparameters(ignore=["num_samples", "sample_seed", "digits"])
        require_positive(self, latent_dim=latent_dim, width=width, lr=lr, num_samples=num_samples)
        optional = {"generator_width": generator_width, "d_lr": d_lr}
        require_positive(self, **{name: value for name, value in optional.items() if value is not None})
        if loss not in ("bce", "hinge") or (real_label != 1 and loss == "hinge"):
            raise ConfigError(f"--model.loss bce or hinge (real_label smooths bce's targets only); got {loss}")
        if conditional and num_classes < 2:
            raise ConfigError(f"a conditional GAN needs data of at least 2 classes; its data module has {num_classes}")
        self.num_classes = num_classes if conditional else 0
        self.categories = 0 if conditional else categories  # a conditional GAN is told the class instead
        if self.categories and not 1 < self.categories <= latent_dim:
            raise ConfigError(f"--model.categories: 0 (none) or 2 to latent_dim ({latent_dim}); got {categories}")
        self.automatic_optimization = False  # two optimizers, stepped in turn by training_step
        self.generator = Generator(
            latent_dim=latent_dim,
            image_shape=input_shape,
            width=generator_width or width,
            num_classes=self.num_classes or self.categories,
        )
        self.discriminator = Discriminator(
            image_shape=input_shape,
            width=width,
            num_classes=self.num_classes,
            categories=self.categories,
            spectral_norm=spectral_norm,
        )
        self.apply(dcgan_init)
        if not 0 < real_label <= 1 or not 0 <= ema < 1:
            raise ConfigError(f"need 0 < real_label <= 1 and 0 <= ema < 1, got real_label={real_label}, ema={ema}")
        self.averaged = None
        if ema:  # follows the generator: no optimizer, no gradient
            self.averaged = AveragedModel(self.generator, avg_fn=partial(moving_average, ema), use_buffers=True)
            self.averaged.requires_grad_(False)
        if spectral_norm:  # once the weights are drawn: it divides them from now on
            self.discriminator.normalise_spectra()
        self.lr, self.d_lr, self.betas, self.real_label, self.ema = lr, d_lr or lr, betas, real_label, ema
        self.loss = loss
        self.num_samples, self.sample_seed = num_samples, sample_seed
        self.digits = [digits] if isinstance(digits, int) else digits
        self.codec = NoiseCodec(latent_dim=latent_dim)
        if self.num_classes:
            self.codec = ConditionalNoiseCodec(latent_dim=latent_dim, num_classes=self.num_classes)
            self.input_names = ("noise", "digit")
        fixed = self.codec.sample_inputs(FIXED_NOISE)  # (noise,), or (noise, classes): every class in turn
        self.fixed_noise: torch.Tensor
        self.fixed_classes: Classes
        self.register_buffer("fixed_noise", fixed[0], persistent=False)
        self.register_buffer("fixed_classes", fixed[1] if self.num_classes else None, persistent=False)
        self.example_input_array = tuple(t[:2] for t in fixed) if self.num_classes else fixed[0][:2]
        # Nothing here measures the pictures, so best.ckpt is the latest (a run given a judge keeps its best FID).
        self.best_checkpoint = ("step", "max")

    def category_of(self, noise: torch.Tensor) -> torch.Tensor:
        """InfoGAN's category of each noise vector: which of its first `categories` numbers is the largest."""
        return noise[:, : self.categories].argmax(dim=1)

    def with_category(self, noise: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """The noise (N, latent_dim) made to pick `categories` (N,): in each row, the largest of the first `categories`
        numbers swaps places with the one at the category's place (the noise stays a draw of the same distribution)."""
        noise, rows = noise.clone(), torch.arange(len(noise), device=noise.device)
        top = self.category_of(noise)
        noise[rows, top], noise[rows, categories] = noise[rows, categories], noise[rows, top]
        return noise

    def forward(self, noise: torch.Tensor, classes: Classes = None) -> torch.Tensor:
        """The images the task draws: the averaged generator's with `ema`, else the generator's."""
        if self.categories:
            classes = self.category_of(noise)
        return self.averaged(noise, classes) if self.averaged is not None else self.generator(noise, classes)

    def predict(self, noise: torch.Tensor, classes: Classes = None) -> dict[str, torch.Tensor]:
        """Images (N, C, H, W) with pixels in [0, 1], drawn from noise (N, latent_dim) (and, conditional, of the
        classes (N,))."""
        return {"image": (self(noise, classes) + 1) / 2}

    def serving_codec(self, data: Codec) -> Codec:
        """A generator reads noise, not the data's images (and the class names of the data, conditional)."""
        return dataclasses.replace(self.codec, labels=data.labels) if self.num_classes else self.codec

    def _classes(self, batch: Any) -> torch.Tensor | None:
        """The batch's labels: the classes a conditional GAN draws its fakes of too (None: unconditional)."""
        return batch[1] if self.num_classes else None

    def _real(self, batch: Any) -> torch.Tensor:
        """The batch's images scaled to [-1, 1], the generator's range."""
        images = batch[0]
        if images.min() < -0.01 or images.max() > 1.01:
            raise ConfigError("the GAN reads pixels in [0, 1]: give its data module --data.normalize false")
        return images * 2 - 1

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Real images labelled 1, generated ones 0; or the hinge loss. From the discriminator's logits of each."""
        if self.loss == "hinge":
            return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        real_loss = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.real_label))
        return real_loss + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))

    def generator_loss(self, logits: torch.Tensor) -> torch.Tensor:
        """The non-saturating loss: -log D(G(z)), large gradients even while the discriminator wins (hinge: the
        logits' mean, negated). From the discriminator's logits of the fakes."""
        if self.loss == "hinge":
            return -logits.mean()
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def category_loss(self, verdict: Verdict, categories: torch.Tensor) -> torch.Tensor:
        """InfoGAN's term: how badly the discriminator's head read back the category each fake was drawn from."""
        assert verdict.category_logits is not None, "a discriminator built without categories has no head to read them"
        return F.cross_entropy(verdict.category_logits, categories)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        real, classes = self._real(batch), self._classes(batch)
        optimizers = self.optimizers()
        assert isinstance(optimizers, list)  # configure_optimizers returns two
        d_optimizer, g_optimizer = optimizers
        noise = torch.randn(len(real), self.codec.latent_dim, device=self.device, dtype=self.fixed_noise.dtype)
        categories = self.category_of(noise) if self.categories else None
        fake = self.generator(noise, classes if categories is None else categories)  # not its average
        # 1. The discriminator, on real images and on the generator's (detached: no generator gradient here).
        self.toggle_optimizer(d_optimizer)
        real_logits = self.discriminator(real, classes).logits
        fake_verdict = self.discriminator(fake.detach(), classes)  # one pass: real or not, and the category
        d_loss = self.discriminator_loss(real_logits, fake_verdict.logits)
        if categories is not None:  # InfoGAN: the head learns to read each fake's category (a guess: ln categories)
            category_loss = self.category_loss(fake_verdict, categories)
            self.log("train_category_loss", category_loss)
            d_loss = d_loss + category_loss
        d_optimizer.zero_grad()
        self.manual_backward(d_loss)
        d_optimizer.step()
        self.untoggle_optimizer(d_optimizer)
        # 2. The generator, through the discriminator it has just faced.
        self.toggle_optimizer(g_optimizer)
        fake_verdict = self.discriminator(fake, classes)  # again: the discriminator has moved, and now G learns
        g_loss = self.generator_loss(fake_verdict.logits)
        if categories is not None:
            g_loss = g_loss + self.category_loss(fake_verdict, categories)
        g_optimizer.zero_grad()
        self.manual_backward(g_loss)
        g_optimizer.step()
        self.untoggle_optimizer(g_optimizer)
        if self.averaged is not None:
            self.averaged.update_parameters(self.generator)
        self.log("train_loss", g_loss, prog_bar=True)  # the task's loss is the generator's: it is what is kept
        self.log("train_d_loss", d_loss, prog_bar=True)
        return {"loss": g_loss.detach(), "d_loss": d_loss.detach()}  # both drawn in learning_curves.png

    def _common_step(self, batch: Any, stage: str) -> torch.Tensor:
        """The discriminator's loss on this batch's real images and on the fixed noise's images."""
        real, fixed = self._real(batch), self(self.fixed_noise, self.fixed_classes)
        real_logits = self.discriminator(real, self._classes(batch)).logits
        d_loss = self.discriminator_loss(real_logits, self.discriminator(fixed, self.fixed_classes).logits)
        self.log(f"{stage}_d_loss", d_loss, sync_dist=True)
        return d_loss

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _epoch_end(self, stage: str) -> None:
        """The generator's loss on the fixed noise."""
        fixed = self(self.fixed_noise, self.fixed_classes)
        loss = self.generator_loss(self.discriminator(fixed, self.fixed_classes).logits)
        self.log(f"{stage}_loss", loss, prog_bar=True, sync_dist=True)

    @torch.no_grad()
    def generate(self, count: int, seed: int = 0) -> torch.Tensor:
        """`count` images (pixels in [0, 1]) from the noise of `seed`, the same on every call (a conditional GAN's:
        every class in turn, `generated_classes`)."""
        inputs = [t.to(self.device) for t in self.codec.encode([(seed, index, None) for index in range(count)])]
        chunks = zip(*(t.split(500) for t in inputs), strict=True)
        return torch.cat([self.predict(*chunk)["image"].float() for chunk in chunks])

    def generated_classes(self, count: int) -> torch.Tensor | None:
        """The class each of `generate(count)`'s images was drawn as: every class in turn (None: unconditional)."""
        return torch.arange(count) % self.num_classes if self.num_classes else None

    @property
    def sample_rows(self) -> int:
        """The rows of `sample_images`: one per class (conditional) or per category (InfoGAN); 0: no rows, 64 images."""
        return self.num_classes or self.categories

    def sample_images(self) -> torch.Tensor:
        """The fixed noise's images, drawn every epoch by callbacks.ImageSamples; a conditional GAN's are a row per
        class, and an InfoGAN's a row per category, the same noise in each row: the classes down, the noise's styles
        across."""
        rows = self.sample_rows
        if not rows:
            return self.predict(self.fixed_noise)["image"]
        noise = self.fixed_noise[:PER_CLASS].repeat(rows, 1)
        classes = torch.arange(rows, device=self.device).repeat_interleave(PER_CLASS)
        if self.categories:
            return self.predict(self.with_category(noise, classes))["image"]
        return self.predict(noise, classes)["image"]

    def predict_dataloader(self) -> DataLoader:
        """`predict` draws `num_samples` images from `sample_seed`, whatever the data module holds (conditional: of
        the classes in `digits` in turn)."""
        if self.digits is not None and not self.num_classes:
            raise ConfigError(
                "--model.digits picks the classes of a conditional GAN; fit one: --model.conditional true"
            )
        if self.digits is not None and (not self.digits or not all(0 <= d < self.num_classes for d in self.digits)):
            raise ConfigError(f"--model.digits {self.digits}: this GAN draws classes 0 to {self.num_classes - 1}")
        digits: list[int | None] = [*self.digits] if self.digits else [None]
        items = [(self.sample_seed, index, digits[index % len(digits)]) for index in range(self.num_samples)]
        return DataLoader(TensorDataset(*self.codec.encode(items)), batch_size=FIXED_NOISE)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        return self.predict(*batch)  # (noise,) or (noise, classes)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.betas[0], self.betas[1])
        return [
            torch.optim.Adam(self.discriminator.parameters(), lr=self.d_lr, betas=betas),
            torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=betas),
        ]
