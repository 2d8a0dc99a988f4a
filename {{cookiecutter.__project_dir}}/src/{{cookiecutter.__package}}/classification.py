"""The recipe every classifier shares: loss, accuracy per stage, a confusion matrix on test, predictions.

A task subclasses `ClassificationTask` and builds `self.model` (its nn.Module); `_common_step(batch, stage)`
does the rest for train, val and test. A batch is `(*inputs, target)`:
`(images, target)` for MNIST, `(token_ids, lengths, target)` for text; the model takes the inputs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from . import ConfigError, require_positive
from .task import BestCheckpoint, Task


class OneCycle(torch.optim.lr_scheduler.OneCycleLR):
    """The one-cycle schedule (Smith, 2018) over `total_steps`: the learning rate warms up over the first 30 % of
    the steps, then anneals to almost 0, while Adam's momentum does the opposite.

    Its checkpoint keeps only the step count: a run resumed with more epochs (`fit --ckpt_path last` with a
    larger `--trainer.max_epochs`) follows the longer run's schedule from the step it has reached, so its
    learning rate rises again (a warm restart) and anneals anew. OneCycleLR itself would restore the old run's
    length and stop with an error one step past it.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        kept = {key: value for key, value in state_dict.items() if key not in ("total_steps", "_schedule_phases")}
        super().load_state_dict(kept)


class ClassificationTask(Task):
    model: torch.nn.Module
    # What `best.ckpt` keeps: the epoch with the highest validation accuracy. The lowest val_loss can come
    # epochs earlier: once a classifier grows over-confident, its loss rises while its accuracy still improves.
    best_checkpoint: BestCheckpoint = ("val_acc", "max")

    def __init__(self, num_classes: int, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__()
        require_positive(self, lr=lr)
        if weight_decay < 0:
            raise ConfigError(f"{type(self).__name__}: weight_decay must be 0 or more, got {weight_decay!r}")
        self.lr = lr
        self.weight_decay = weight_decay
        # One metric object per stage: their states must never mix (torchmetrics syncs them across ranks).
        # average="micro": the fraction of examples classified right (torchmetrics' default is per-class macro).
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, *inputs: Any) -> torch.Tensor:  # a task's own inputs: images, or token ids and lengths
        return self.model(*inputs)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) class probabilities."""
        return logits.softmax(dim=-1)

    def _common_step(self, batch: Any, stage: str) -> torch.Tensor:
        *inputs, target = batch
        logits = self(*inputs)
        loss = self.loss(logits, target)
        predicted = self.probabilities(logits).argmax(dim=-1)
        accuracy = {"train": self.train_acc, "val": self.val_acc, "test": self.test_acc}[stage]
        accuracy.update(predicted, target)  # computed once per epoch when logged, not per batch
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True, sync_dist=not on_step)
        self.log(f"{stage}_acc", accuracy, on_step=False, on_epoch=True, prog_bar=stage != "train")
        if stage == "test":
            self.test_confusion.update(predicted, target)
        return loss

    def test_confusion_matrix(self) -> torch.Tensor | None:
        # compute() is a collective under DDP: every rank takes part
        return self.test_confusion.compute() if self.test_confusion.update_called else None

    def configure_optimizers(self) -> Any:
        """AdamW with the task's `lr` and `weight_decay`, and a one-cycle schedule: warm up, then anneal to ~0."""
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        # One cycle over the whole run: needs the total number of optimizer steps, which the Trainer knows.
        schedule = OneCycle(optimizer, self.lr, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def predict(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a prediction is, for `predict`, export and serving alike: the class index and its probability."""
        confidence, predicted = self.probabilities(self(*inputs)).max(dim=-1)
        return {"prediction": predicted, "probability": confidence}
