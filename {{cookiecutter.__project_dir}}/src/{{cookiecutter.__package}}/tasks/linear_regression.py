"""Linear regression: learn y = m·x + b from noisy points with one nn.Linear(1, 1).

The smallest complete training recipe: a model, a loss (mean squared error), an optimizer (plain
SGD), and metrics. The learned weight is the slope m and the bias is the intercept b; both are
logged every epoch as `slope` and `intercept`, so you can watch them converge to the truth set in
LineDataModule (m = 2, b = -1 by default).

    python -m {{ cookiecutter.__package }} fit --config configs/linear_regression.yaml
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn

from .. import require_positive
from ..optim import stepped_per_batch
from ..outputs import ValueOutputs
from ..task import Task


class LinearRegression(Task):
    outputs = ValueOutputs()  # y for each x: scored by squared error

    def __init__(
        self, lr: float = 0.1, optimizer: OptimizerCallable | None = None, scheduler: LRSchedulerCallable | None = None
    ) -> None:
        """`lr` is plain SGD's; `optimizer` and `scheduler` replace it, and the constant rate (optim.py)."""
        super().__init__()
        self.save_hyperparameters()
        require_positive(self, lr=lr)
        self.lr = lr
        self.optimizer, self.scheduler = optimizer, scheduler
        self.model = nn.Linear(1, 1)  # y = weight * x + bias
        self.example_input_array = torch.zeros(4, 1)  # (N, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _common_step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self(x), y)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True, sync_dist=not on_step)
        if stage != "train":
            self.log(f"{stage}_mse", loss, on_epoch=True, sync_dist=True)
        return loss

    def _log_line(self) -> None:
        self.log_dict({"slope": self.model.weight.item(), "intercept": self.model.bias.item()}, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self._log_line()

    def on_test_epoch_end(self) -> None:
        self._log_line()

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a prediction is, for `predict`, export and serving alike: y for each x."""
        return {"prediction": self(x).squeeze(-1)}

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"x": x, **self.predict(x), "target": y}  # x too: a prediction of y means little without it

    def configure_optimizers(self) -> OptimizerLRScheduler:
        parameters = list(self.parameters())
        optimizer = self.optimizer(parameters) if self.optimizer else torch.optim.SGD(parameters, lr=self.lr)
        return stepped_per_batch(optimizer, self.scheduler(optimizer) if self.scheduler else None)
