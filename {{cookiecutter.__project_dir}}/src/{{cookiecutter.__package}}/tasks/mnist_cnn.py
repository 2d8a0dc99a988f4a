"""A convolutional network that reads handwritten digits (MNIST).

Convolutions share one small filter across the whole image, so a stroke is recognised wherever it
appears; pooling halves the resolution so deeper filters see larger parts of the digit. Batch
normalisation keeps each layer's inputs well scaled, dropout fights over-fitting, and a one-cycle
learning-rate schedule (warm up, then anneal) gets there in a few epochs.

    python -m {{ cookiecutter.__package }} fit --config configs/mnist_cnn.yaml --data.data_dir data
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from .. import require_positive, require_probability
from ..classification import ClassificationTask


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions then 2x2 max-pooling: (N, c_in, H, W) -> (N, c_out, H/2, W/2)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class MNISTCNN(nn.Module):
    def __init__(
        self, *, input_shape: tuple[int, int, int], num_classes: int, width: int = 32, dropout: float = 0.3
    ) -> None:
        super().__init__()
        require_positive(self, width=width)
        require_probability(self, dropout=dropout)
        channels, height, width_px = input_shape
        self.features = nn.Sequential(conv_block(channels, width), conv_block(width, 2 * width))
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 2w, H/4, W/4) -> (N, 2w * H/4 * W/4)
            nn.Dropout(dropout),
            nn.Linear(2 * width * (height // 4) * (width_px // 4), 128),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # (N, C, H, W) -> (N, num_classes) logits


class MNISTClassifier(ClassificationTask):
    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        lr: float = 0.003,
        weight_decay: float = 0.0001,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        **architecture: Any,
    ) -> None:
        """`architecture`: MNISTCNN's keyword arguments (`--model.width 64 --model.dropout 0.2`)."""
        super().__init__(num_classes, lr, weight_decay, optimizer, scheduler)
        self.save_hyperparameters()
        self.model = MNISTCNN(input_shape=input_shape, num_classes=num_classes, **architecture)
        self.example_input_array = torch.zeros(1, *input_shape)
