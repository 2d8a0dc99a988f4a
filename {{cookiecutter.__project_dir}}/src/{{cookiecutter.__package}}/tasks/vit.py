"""A Vision Transformer (ViT): attention over the patches of an image, where a CNN slides small filters.

The image is cut into square patches (configs/vit.yaml's 7x7 pixels make a 28x28 digit a 4x4 grid of 16
patches), and each patch becomes one vector, like a word of a sentence; a strided convolution does the cutting
and the projection in one step. A learned class token is put in front of the sequence, positions are added
(attention ignores order, so without them a patch would not know where it lies), and a Transformer encoder lets
every patch look at every other one from the first layer on. The class token's final vector (or the mean of all
patches) feeds a linear head.

A CNN is built to expect that nearby pixels belong together and that a stroke means the same thing wherever it
is (locality and translation equivariance); a ViT has to learn both from the data. It therefore needs more data,
or pretraining, to match a CNN of its size. `weights` starts it from a checkpoint of this project (say a ViT
trained on other classes), everything but the head; ROADMAP.md's stage 4 measures what that buys.

    python -m {{ cookiecutter.__package }} fit --config configs/vit.yaml --data.data_dir data
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from .. import ConfigError, require_positive, require_probability
from ..classification import ClassificationTask
from ..hub import load_all_but_head, weights_file
from ..optim import ParamGroup, decay_groups


def grid_positions(rows: int, cols: int, dim: int) -> torch.Tensor:
    """(rows * cols, dim) fixed positions of a grid of patches: the row's sines and cosines in the first half of the
    dimensions, the column's in the second, at wavelengths from 2*pi to 10000*2*pi (Vaswani et al.'s encoding, once
    per axis, as MAE's ViT does)."""
    quarter = dim // 4
    frequency = 10000.0 ** (-torch.arange(quarter, dtype=torch.float32) / quarter)
    row, col = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    angles = [axis.flatten().float().unsqueeze(1) * frequency for axis in (row, col)]  # 2 x (rows * cols, quarter)
    return torch.cat([wave(angle) for angle in angles for wave in (torch.sin, torch.cos)], dim=1)


class VisionTransformer(nn.Module):
    def __init__(
        self,
        *,
        input_shape: tuple[int, int, int],
        num_classes: int,
        patch_size: int = 4,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 6,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        pooling: Literal["cls", "mean"] = "cls",
        positions: Literal["learned", "sinusoidal"] = "learned",
    ) -> None:
        super().__init__()
        require_positive(
            self,
            patch_size=patch_size,
            d_model=d_model,
            nhead=nhead,
            num_layers=num_layers,
            dim_feedforward=dim_feedforward,
        )
        require_probability(self, dropout=dropout)
        channels, height, width = input_shape
        if height % patch_size or width % patch_size:
            raise ConfigError(
                f"patch_size {patch_size} does not tile the {height}x{width} images: pick a divisor of both sides "
                f"(or resize the images, --data.image_size)"
            )
        if d_model % nhead or d_model % 4:
            raise ConfigError(f"d_model ({d_model}) must be a multiple of 4 and of nhead ({nhead})")
        if pooling not in ("cls", "mean") or positions not in ("learned", "sinusoidal"):
            raise ConfigError(
                f"pooling is cls or mean (got {pooling!r}); positions learned or sinusoidal ({positions!r})"
            )
        rows, cols = height // patch_size, width // patch_size
        # One patch_size x patch_size filter per output dimension, moved a whole patch at a time: each patch's
        # pixels projected to one d_model vector, (N, C, H, W) -> (N, d_model, rows, cols).
        self.patches = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, d_model)) if pooling == "cls" else None
        tokens = rows * cols + (pooling == "cls")
        self.positions: torch.Tensor  # (tokens, d_model): a weight when learned, a buffer when fixed
        if positions == "learned":
            self.positions = nn.Parameter(torch.empty(tokens, d_model))
            nn.init.trunc_normal_(self.positions, std=0.02)  # small: the patches' own vectors lead at first
        else:
            fixed = grid_positions(rows, cols, d_model)
            if pooling == "cls":  # the class token stands nowhere on the grid: position zero
                fixed = torch.cat([torch.zeros(1, d_model), fixed])
            self.register_buffer("positions", fixed, persistent=False)
        self.dropout = nn.Dropout(dropout)
        # Pre-norm (LayerNorm before attention and feed-forward) trains stably without a long warm-up.
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, num_classes) logits."""
        x = self.patches(images).flatten(2).transpose(1, 2)  # (N, rows * cols, d_model): one vector per patch
        if self.class_token is not None:
            x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.encoder(self.dropout(x + self.positions))  # (N, tokens, d_model)
        pooled = x[:, 0] if self.class_token is not None else x.mean(dim=1)
        return self.head(pooled)


class ViTClassifier(ClassificationTask):
    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        weights: str | None = None,
        lr: float = 0.001,
        weight_decay: float = 0.05,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        **architecture: Any,
    ) -> None:
        """`architecture`: VisionTransformer's keyword arguments (`--model.patch_size 4 --model.num_layers 4`).

        Args:
            weights: a .ckpt of this project or a .pth state dict of a ViT of the same shape: every weight but the
                head's starts from it (the head is new: its classes may differ). null: random weights.
        """
        super().__init__(num_classes, lr, weight_decay, optimizer, scheduler)
        self.save_hyperparameters()
        self.model = VisionTransformer(input_shape=input_shape, num_classes=num_classes, **architecture)
        self.weights = weights
        self.example_input_array = torch.zeros(1, *input_shape)

    def setup(self, stage: str) -> None:
        """The starting weights are read when training starts, never when a checkpoint is loaded to serve."""
        if stage != "fit" or self.weights is None:
            return
        state = weights_file(self.weights, "--model.weights")
        load_all_but_head(self.model, state, lambda name: name.startswith("head."), self.weights, of="this ViT's shape")

    def parameter_groups(self) -> list[ParamGroup]:
        """Weight decay on the matrices only (optim.py)."""
        return decay_groups(self)
