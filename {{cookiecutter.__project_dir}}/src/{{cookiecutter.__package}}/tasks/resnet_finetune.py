"""Fine-tuning a pretrained ResNet on your own images: transfer learning.

A network trained on a million photos (ImageNet) has learnt edges, textures and shapes in its early
layers that are useful for almost any picture. Fine-tuning keeps them: the torchvision ResNet named by
`arch` starts from pretrained `weights`, its classification head is replaced by a new one with as
many outputs as your data has classes, and training goes in two phases:

1. For the first `freeze_epochs` epochs the backbone (every layer but the head) is frozen: no
   gradients, no updates, and its batch-norm layers stay in evaluation mode. Their running means and
   variances describe the pretraining images; updated on a few small batches of new ones they would
   drift and break the features the frozen weights rely on. Only the new head learns, fast, since the
   backward pass stops at it.
2. Then the whole network trains, the backbone at `backbone_lr` (10x lower than the head's `lr` by
   default), so the pretrained features adapt to the new images without being overwritten.

Lightning's fine-tuning callback does the freezing and unfreezing (`FreezeBackbone`, which the task brings
itself). Both phases share one optimizer (AdamW unless `--model.optimizer` names another, whose learning rate is
then the head's) and one one-cycle schedule over the whole run, with a group for the backbone and one for the head.

`weights` is the name of torchvision's weights (`DEFAULT`, `IMAGENET1K_V1`, ...; downloaded once into
torch's hub cache), the path of a file (a state dict, or a checkpoint of this project: transfer from one
of your own runs), or null (from scratch: random weights hold nothing to keep, so nothing is frozen). The
data module's default preprocessing is ImageNet's, which these weights expect. `channels_last` stores
activations in the memory layout GPU convolutions prefer.

    python -m {{ cookiecutter.__package }} fit --config configs/resnet_finetune.yaml --data.dataset null --data.root photos
    python -m {{ cookiecutter.__package }} predict --config configs/resnet_finetune.yaml --ckpt_path best  # the run's photos
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from .. import ConfigError, require_positive
from ..classification import ClassificationTask
from ..hub import torchvision_weights
from ..optim import ParamGroup


def resnet(arch: str, num_classes: int) -> nn.Module:
    """torchvision's `arch` with random weights and a new head (`fc`) of `num_classes` outputs."""
    try:
        model = torchvision.models.get_model(arch, weights=None)
    except ValueError:
        raise ConfigError(f"--model.arch {arch}: torchvision has no such model (resnet18, resnet50, ...)") from None
    if not isinstance(getattr(model, "fc", None), nn.Linear):
        raise ConfigError(
            f"--model.arch {arch}: not a ResNet-like model with an `fc` head; use resnet18, resnet50, ..."
        )
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def pretrained_weights(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """The backbone's weights: from a file, or torchvision's by name (hub.py: the hub cache, or downloaded)."""
    path = Path(weights)
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin") or path.exists():
        if not path.is_file():
            raise ConfigError(f"--model.weights {weights}: no such file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "state_dict" in state:  # a checkpoint of this project: the task's `model.` weights
            state = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
        return state
    return torchvision_weights(arch, weights, option="--model.weights")


class FreezeBackbone(BaseFinetuning):
    """The backbone frozen for the first `epochs` epochs, batch norm included (its weights, and its statistics: it
    stays in evaluation mode), then trainable.

    Two departures from BaseFinetuning's usual recipe. The optimizer holds the backbone from the start, in its own
    group at `backbone_lr` (a frozen parameter gets no gradient, and the optimizer skips it), so unfreezing adds no
    group (`unfreeze_and_add_param_group`): the one-cycle schedule spans both groups over the whole run. And the
    backbone is frozen as each frozen epoch starts, not before training (`freeze_before_training`): DDP wraps the
    model after that, and syncs the gradients of only the parameters that required one then; the unfrozen
    backbone's would drift apart on each process.
    """

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        pass  # frozen in finetune_function, once DDP has wrapped the model (see above)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        assert isinstance(pl_module, ResNetClassifier)  # the task that brings this callback
        backbone = pl_module.backbone()
        frozen = epoch < self.epochs
        if frozen:
            self.freeze(backbone, train_bn=False)
        else:
            self.make_trainable(backbone)
        for module in backbone:  # frozen batch norm normalises with its pretrained statistics, not the batch's
            module.train(not frozen)


class ResNetClassifier(ClassificationTask):
    partial_backward = True  # while the backbone is frozen, only the head gets gradients

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        arch: str = "resnet18",
        weights: str | None = "DEFAULT",
        freeze_epochs: int = 1,
        lr: float = 0.001,
        backbone_lr: float = 0.0001,
        weight_decay: float = 0.0001,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        channels_last: bool = False,
    ) -> None:
        """A torchvision ResNet with a new head for the data's `num_classes`, fine-tuned in two phases.

        Args:
            arch: the torchvision ResNet (resnet18, resnet50, ...).
            weights: torchvision's weights by name (DEFAULT, IMAGENET1K_V2, ...), a .pth state dict or a .ckpt of
                this project, or null: random weights.
            freeze_epochs: the first epochs train the head alone, the backbone frozen; ignored when `weights` is
                null: random weights hold nothing to keep.
            backbone_lr: the backbone's learning rate; the head's is `lr`.
        """
        super().__init__(num_classes, lr, weight_decay, optimizer, scheduler)
        self.save_hyperparameters()
        require_positive(self, backbone_lr=backbone_lr)
        if freeze_epochs < 0:
            raise ConfigError(f"freeze_epochs must be 0 or more, got {freeze_epochs}")
        self.model = resnet(arch, num_classes)
        self.arch, self.weights, self.freeze_epochs, self.backbone_lr = arch, weights, freeze_epochs, backbone_lr
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.example_input_array = torch.zeros(1, *input_shape)

    @property
    def head(self) -> nn.Linear:
        head = self.model.fc
        assert isinstance(head, nn.Linear)  # resnet() put it there
        return head

    def backbone(self) -> list[nn.Module]:
        return [module for module in self.model.children() if module is not self.head]

    def setup(self, stage: str) -> None:
        """Pretrained weights are read when training starts, never when a checkpoint is loaded to serve."""
        if stage == "fit" and self.weights is not None:
            state = {k: v for k, v in pretrained_weights(self.arch, self.weights).items() if not k.startswith("fc.")}
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if unexpected or [key for key in missing if not key.startswith("fc.")]:
                raise ConfigError(
                    f"--model.weights {self.weights}: not weights of {self.arch} ({(missing + unexpected)[:3]} ...)"
                )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.contiguous(memory_format=self.memory_format))

    def configure_callbacks(self) -> list[Callback]:
        pretrained = self.weights is not None  # a random backbone has nothing to keep: it trains from epoch 0
        return [FreezeBackbone(self.freeze_epochs)] if self.freeze_epochs and pretrained else []

    def parameter_groups(self) -> list[ParamGroup]:
        """Two learning rates: the backbone's `backbone_lr`, and the head's, the optimizer's own (`lr` by default)."""
        backbone = [p for module in self.backbone() for p in module.parameters()]
        return [{"params": backbone, "lr": self.backbone_lr}, {"params": list(self.head.parameters())}]
