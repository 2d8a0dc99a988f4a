"""The optimizer and the learning-rate schedule of a task, as options: Lightning's dependency injection.

A task takes `optimizer` and `scheduler` in `__init__`, typed `OptimizerCallable` and `LRSchedulerCallable`; the
CLI builds either from the config like any class (`class_path` and `init_args`, or `--model.optimizer <class>`),
and the task calls it with its parameter groups, then with the optimizer. Left out (null), the task keeps its own
recipe: AdamW with the task's `lr` and `weight_decay` and a one-cycle schedule, for most classifiers. An optimizer
given brings its own learning rate and weight decay, while the task still decides the parameter groups (which
weights decay, a backbone's own learning rate), and its one-cycle schedule peaks at each group's learning rate.
Every schedule steps once per optimizer step, so its lengths count batches (`T_max`, `step_size`, `total_iters`);
ReduceLROnPlateau, which waits for the validation loss to stop falling, steps once per epoch.

    python -m {{ cookiecutter.__package }} fit --config configs/mnist_cnn.yaml \\
        --model.optimizer torch.optim.SGD --model.optimizer.lr 0.05 --model.optimizer.momentum 0.9 \\
        --model.scheduler torch.optim.lr_scheduler.CosineAnnealingLR --model.scheduler.T_max 300
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.utilities.types import (
    LRSchedulerConfigType,
    LRSchedulerPLType,
    OptimizerLRScheduler,
    OptimizerLRSchedulerConfig,
)
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

ParamGroup = dict[str, Any]  # {"params": [...], and settings of its own: "lr", "weight_decay", ...}


def decay_groups(module: nn.Module) -> list[ParamGroup]:
    """Weight decay on matrices and convolution kernels only (nanoGPT's rule, `p.dim() >= 2`), for any model.

    Those weights multiply the inputs, and decay keeps them small. Biases and normalisation scales (vectors)
    only shift and rescale; pulled toward 0 they would fight the normalisation. The first group takes the
    optimizer's weight decay, the second none. A frozen parameter stays in its group: it gets no gradient, and
    the optimizer skips it until it is unfrozen.
    """
    parameters = list(module.parameters())
    decayed = [p for p in parameters if p.dim() >= 2]
    not_decayed = [p for p in parameters if p.dim() < 2]
    groups: list[ParamGroup] = [{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def fusable(task: LightningModule) -> bool:
    """Whether torch's fused Adam(W) can step `task`'s weights: one kernel over all of them, where torch's default
    on a CPU loops over the weights one by one (for MiniLM's 22.7 M weights on 2 cores, 17 ms a step against 85 ms:
    1.07x the training samples/s, benchmarks/finetune_peers.py). It needs float weights on a CPU or a CUDA GPU;
    and Lightning refuses it under mixed precision when gradients are clipped, since the fused step unscales
    gradients only inside itself."""
    trainer = task.trainer
    clipped = bool(trainer.gradient_clip_val) and isinstance(trainer.precision_plugin, MixedPrecision)
    on_fused_devices = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in task.parameters())
    return on_fused_devices and not clipped


class OneCycle(torch.optim.lr_scheduler.OneCycleLR):
    """The one-cycle schedule (Smith, 2018) over `total_steps`: the learning rate warms up over the first 30 % of
    the steps, then anneals to almost 0, while the momentum (Adam's beta1) does the opposite.

    Its checkpoint keeps only the step count: a run resumed with more epochs (`fit --ckpt_path last` with a
    larger `--trainer.max_epochs`) follows the longer run's schedule from the step it has reached, so its
    learning rate rises again (a warm restart) and anneals anew. OneCycleLR itself would restore the old run's
    length and stop with an error one step past it.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        kept = {key: value for key, value in state_dict.items() if key not in ("total_steps", "_schedule_phases")}
        super().load_state_dict(kept)


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int) -> OneCycle:
    """One cycle over the run, peaking at each group's learning rate (the optimizer's, or a group's own); the
    momentum cycles too where the optimizer has one (SGD's momentum, Adam's beta1), else the rate alone."""
    peaks = [group["lr"] for group in optimizer.param_groups]
    has_momentum = "momentum" in optimizer.defaults or "betas" in optimizer.defaults
    return OneCycle(optimizer, peaks, total_steps, cycle_momentum=has_momentum)


def stepped_per_batch(optimizer: torch.optim.Optimizer, schedule: LRSchedulerPLType | None) -> OptimizerLRScheduler:
    """What `configure_optimizers` returns: the optimizer, and its schedule stepped after every optimizer step
    (ReduceLROnPlateau after every epoch, on `val_loss`)."""
    if schedule is None:
        return optimizer
    config = LRSchedulerConfigType(scheduler=schedule, interval="step")
    if isinstance(schedule, ReduceLROnPlateau):  # it waits for the validation loss, which comes once per epoch
        config["interval"], config["monitor"] = "epoch", "val_loss"
    return OptimizerLRSchedulerConfig(optimizer=optimizer, lr_scheduler=config)
