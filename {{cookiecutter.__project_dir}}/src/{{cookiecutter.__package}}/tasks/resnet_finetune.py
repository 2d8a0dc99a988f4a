"""Fine-tuning a pretrained ResNet (or any torchvision classifier) on your own images: transfer learning.

A network trained on a million photos (ImageNet) has learnt edges, textures and shapes in its early
layers that are useful for almost any picture. Fine-tuning keeps them: the torchvision classifier named
by `arch` (resnet18 by default; efficientnet_b0, mobilenet_v3_small, convnext_tiny, swin_t, vit_b_16, ...)
starts from pretrained `weights`, its classification head (`fc` in a ResNet, `classifier.1` in an
EfficientNet, `heads.head` in a ViT: the layer that answers ImageNet's 1,000 classes) is replaced by a
new one with as many outputs as your data has classes, and training goes in two phases:

1. For the first `freeze_epochs` epochs the backbone (every layer but the head) is frozen: no
   gradients, no updates, and its layers compute as in evaluation (no dropout; batch norm with its
   stored statistics). Those running means and variances describe the pretraining images; updated on a
   few small batches of new ones they would drift and break the features the frozen weights rely on.
   Only the new head learns, fast, since the backward pass stops at it.
2. Then the whole network trains, the backbone at `backbone_lr` (10x lower than the head's `lr` by
   default), so the pretrained features adapt to the new images without being overwritten.

A fine-tuning callback does the freezing and unfreezing (`FreezeBackbone`, on Lightning's `BaseFinetuning`,
which the task brings itself). Both phases share one optimizer (AdamW unless `--model.optimizer` names another,
whose learning rate is then the head's) and one one-cycle schedule over the whole run, with a group for the
backbone and one for the head.

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
from torchvision.models.vision_transformer import interpolate_embeddings

from .. import ConfigError, require_positive
from ..classification import ClassificationTask
from ..hub import load_all_but_head, torchvision_weights, weights_file
from ..optim import ParamGroup

IMAGENET_CLASSES = 1000  # what torchvision's classifiers answer: the head to replace is the layer that says it
# The classifiers that are told their image size when built (their position tables depend on it).
SIZED = {"vit": "image_size", "maxvit": "input_size"}


def answers_imagenet(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return module.out_features == IMAGENET_CLASSES
    return isinstance(module, nn.Conv2d) and module.out_channels == IMAGENET_CLASSES


def classifier(arch: str, num_classes: int, image_size: int) -> tuple[nn.Module, str]:
    """torchvision's `arch` with random weights, its head replaced by one of `num_classes` outputs, and the head's
    name: `fc` in a ResNet, `classifier.1` in an EfficientNet, `heads.head` in a ViT, `head` in a Swin, ...: the last
    layer that gives the 1,000 ImageNet classes (a linear layer, or SqueezeNet's 1x1 convolution)."""
    if arch in ("googlenet", "inception_v3"):
        raise ConfigError(
            f"--model.arch {arch}: its auxiliary heads are not supported; use resnet50, efficientnet_b0, ..."
        )
    sized = SIZED.get(arch.split("_")[0])
    options = {sized: image_size if sized == "image_size" else (image_size, image_size)} if sized else {}
    try:
        model = torchvision.models.get_model(arch, weights=None, **options)
    except ValueError:
        raise ConfigError(
            f"--model.arch {arch}: torchvision has no such model (resnet18, efficientnet_b0, vit_b_16, swin_t, ...: "
            "torchvision.models.list_models())"
        ) from None
    heads = [(name, module) for name, module in model.named_modules() if answers_imagenet(module)]
    if not heads:
        raise ConfigError(f"--model.arch {arch}: not an image classifier with a 1,000-class head")
    name, old = heads[-1]
    if isinstance(old, nn.Linear):
        model.set_submodule(name, nn.Linear(old.in_features, num_classes))
    else:  # SqueezeNet's 1x1 convolution, whose class maps are averaged
        model.set_submodule(name, nn.Conv2d(old.in_channels, num_classes, kernel_size=1))
    return model, name


def pretrained_weights(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """The backbone's weights: from a file, or torchvision's by name (hub.py: the hub cache, or downloaded)."""
    if Path(weights).suffix in (".pth", ".pt", ".ckpt", ".bin") or Path(weights).exists():
        return weights_file(weights, "--model.weights")
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
        frozen = epoch < self.epochs
        for parameter in pl_module.backbone_parameters():
            parameter.requires_grad = not frozen
        # Frozen, every layer but the head computes as in evaluation: batch norm normalises with its pretrained
        # statistics (not the batch's, and leaves them as they are), dropout and stochastic depth are off.
        for layer in pl_module.backbone_layers():
            layer.train(not frozen)


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
        """A torchvision classifier with a new head for the data's `num_classes`, fine-tuned in two phases.

        Args:
            arch: the torchvision classifier (resnet18, resnet50, efficientnet_b0, convnext_tiny, swin_t, vit_b_16,
                ...); a ViT is built for the data's image size, its pretrained positions interpolated to it.
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
        self.model, self.head_name = classifier(arch, num_classes, image_size=input_shape[-1])
        self.arch, self.weights, self.freeze_epochs, self.backbone_lr = arch, weights, freeze_epochs, backbone_lr
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.example_input_array = torch.zeros(1, *input_shape)

    @property
    def head(self) -> nn.Module:
        """The new head: a linear layer (SqueezeNet's: a 1x1 convolution)."""
        return self.model.get_submodule(self.head_name)

    def in_head(self, name: str) -> bool:
        """Whether the weight or layer `name` (of `self.model`) is the new head's."""
        return name == self.head_name or name.startswith(f"{self.head_name}.")

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.model.named_parameters() if not self.in_head(name)]

    def backbone_layers(self) -> list[nn.Module]:
        """The layers (modules with no sub-modules) outside the head."""
        return [m for name, m in self.model.named_modules() if not list(m.children()) and not self.in_head(name)]

    def setup(self, stage: str) -> None:
        """Pretrained weights are read when training starts, never when a checkpoint is loaded to serve."""
        if stage != "fit" or self.weights is None:
            return
        state = pretrained_weights(self.arch, self.weights)
        if isinstance(self.model, torchvision.models.VisionTransformer):  # positions for this image size's patches
            state = interpolate_embeddings(self.model.image_size, self.model.patch_size, state)
        load_all_but_head(self.model, state, self.in_head, self.weights, of=self.arch)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.contiguous(memory_format=self.memory_format))

    def configure_callbacks(self) -> list[Callback]:
        pretrained = self.weights is not None  # a random backbone has nothing to keep: it trains from epoch 0
        return [FreezeBackbone(self.freeze_epochs)] if self.freeze_epochs and pretrained else []

    def parameter_groups(self) -> list[ParamGroup]:
        """Two learning rates: the backbone's `backbone_lr`, and the head's, the optimizer's own (`lr` by default)."""
        backbone = {"params": self.backbone_parameters(), "lr": self.backbone_lr}
        return [backbone, {"params": list(self.head.parameters())}]
