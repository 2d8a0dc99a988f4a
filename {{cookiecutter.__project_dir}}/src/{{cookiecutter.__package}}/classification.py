"""The recipe every classifier shares: loss, accuracy per stage, a confusion matrix on test, predictions.

A task subclasses `ClassificationTask` and builds `self.model` (its nn.Module); `_common_step(batch, stage)`
does the rest for train, val and test. A batch is `(*inputs, target)`:
`(images, target)` for MNIST, `(token_ids, lengths, target)` for text; the model takes the inputs. The logits
hold the classes on `class_axis`: the last, (N, num_classes), unless a task says otherwise (a per-pixel
classifier's (N, num_classes, H, W) sets 1), so that a prediction is one class per example, or per pixel.
The optimizer and schedule are options (optim.py): AdamW and one cycle unless the config names others.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities.types import LRSchedulerPLType, OptimizerLRScheduler
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from . import ConfigError, require_positive
from .optim import ParamGroup, fusable, one_cycle, stepped_per_batch
from .outputs import ClassOutputs
from .task import BestCheckpoint, Task


class ClassificationTask(Task):
    model: torch.nn.Module
    # What `best.ckpt` keeps: the epoch with the highest validation accuracy. The lowest val_loss can come
    # epochs earlier: once a classifier grows over-confident, its loss rises while its accuracy still improves.
    best_checkpoint: BestCheckpoint = ("val_acc", "max")
    outputs = ClassOutputs()  # a class index and its probability: answered with the label, scored by accuracy
    class_axis: ClassVar[int] = -1  # the logits' class axis: 1 for (N, num_classes, H, W) per-pixel logits

    def __init__(
        self,
        num_classes: int,
        lr: float,
        weight_decay: float = 0.0,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """`lr` and `weight_decay` are the default optimizer's; `optimizer` and `scheduler` replace the task's own
        (null keeps them), an optimizer with its own learning rate and weight decay (optim.py)."""
        super().__init__()
        require_positive(self, lr=lr)
        if weight_decay < 0:
            raise ConfigError(f"{type(self).__name__}: weight_decay must be 0 or more, got {weight_decay!r}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer, self.scheduler = optimizer, scheduler
        # One metric object per stage: their states must never mix (torchmetrics syncs them across ranks).
        # average="micro": the fraction of examples classified right (torchmetrics' default is per-class macro).
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def forward(self, *inputs: Any) -> torch.Tensor:  # a task's own inputs: images, or token ids and lengths
        return self.model(*inputs)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.movedim(self.class_axis, 1), target)  # it reads the classes on axis 1

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities, on the logits' class axis: (N, num_classes), or (N, num_classes, H, W) per pixel."""
        return logits.softmax(dim=self.class_axis)

    def _common_step(self, batch: Any, stage: str) -> torch.Tensor:
        *inputs, target = batch
        logits = self(*inputs)
        loss = self.loss(logits, target)
        predicted = self.probabilities(logits).argmax(dim=self.class_axis)  # target's shape: (N,), or (N, H, W)
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

    def parameter_groups(self) -> list[ParamGroup]:
        """What the optimizer trains, in groups with settings of their own; here one group of every parameter."""
        return [{"params": list(self.parameters())}]

    def default_optimizer(self, groups: list[ParamGroup]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay, fused=fusable(self))

    def default_schedule(self, optimizer: torch.optim.Optimizer) -> LRSchedulerPLType | None:
        # One cycle over the whole run: needs the total number of optimizer steps, which the Trainer knows.
        return one_cycle(optimizer, int(self.trainer.estimated_stepping_batches))

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """The `optimizer` given, else the task's own (AdamW with `lr` and `weight_decay`), over the task's parameter
        groups; the `scheduler` given, else the task's own (one cycle: warm up, then anneal to ~0), per batch."""
        groups = self.parameter_groups()
        optimizer = self.optimizer(groups) if self.optimizer else self.default_optimizer(groups)
        schedule = self.scheduler(optimizer) if self.scheduler else self.default_schedule(optimizer)
        return stepped_per_batch(optimizer, schedule)

    def predict(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a prediction is, for `predict`, export and serving alike: the class index and its probability, for
        each example (N,), or each pixel (N, H, W)."""
        confidence, predicted = self.probabilities(self(*inputs)).max(dim=self.class_axis)
        return {"prediction": predicted, "probability": confidence}
