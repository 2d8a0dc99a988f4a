"""The task contract: what the CLI, the callbacks, export and serving rely on, declared once.

A task is a LightningModule that subclasses `Task`. Beyond Lightning's own hooks it says:

- `predict(*inputs)`: what a prediction is, as a dict of tensors (batch first). `predict`,
  the exported files and the server all answer this, so they agree by construction;
- `outputs`: the kind of those tensors (outputs.py: a class and its probability, a number, an image, or a
  kind of the task's own), which says how they become the server's answers and `predict`'s files, and how
  `export` scores them on the test split;
- `input_names`: the names of those inputs, in order (the exported graph's input names; a task whose inputs
  depend on its settings sets them in `__init__`);
- `best_checkpoint`: which metric picks `best.ckpt`, and whether lower or higher is better (`step`
  and `max` where nothing measures the model: best.ckpt is then the latest);
- `serving_codec(data)`: the codec a served request goes through: the data's, unless the task reads
  something else (a generator reads noise);
- `for_inference()`: the model as export and serving read it, made once after its weights load: itself for most
  tasks; a model trained with adapters beside frozen weights (LoRA) merges them in;
- `finish_onnx(model)`: an optional edit of the exported ONNX graph before it is written;
- `_common_step(batch, stage)`: the loss and metrics of one batch, for train, val and test alike;
- `test_confusion_matrix()`: a classifier's confusion matrix after `test` (None for other tasks);
- `sample_images()`: pictures drawn every epoch, for a task that makes them (None for the others);
- `generate(count)`: that many images drawn from fixed noise, for a task that makes them (None for the
  others): what a judge of the pictures (judge.py, `--judge`) measures; `generated_classes(count)`: the class
  each of those was asked to be, for a class-conditional generator (None for the others);
- `partial_backward`: True when a backward pass leaves some weights without gradients (a GAN's two
  optimizers each train half of it), which DDP must be told to expect;
- `variable_length`: True when the model reads token ids of any length (a pretrained Transformer), so
  that export leaves the length axis free instead of fixing it at `max_length`.

A task whose predictions read no data (a generator) also defines Lightning's `predict_dataloader`:
`predict` then reads that instead of the data module's test split, and `reads_data()` is False.

It also sets `example_input_array` (one batch of inputs): the model summary, export and the
bfloat16 checks run it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.types import STEP_OUTPUT

from .data.codec import Codec
from .outputs import Outputs

if TYPE_CHECKING:
    import onnx  # export imports it; training never needs it


BestCheckpoint = tuple[str, Literal["min", "max"]]  # the metric that picks best.ckpt, and which way is better


class Task(LightningModule):
    best_checkpoint: BestCheckpoint = ("val_loss", "min")
    input_names: tuple[str, ...] = ("x",)
    outputs: ClassVar[Outputs] = Outputs()  # plain values in answers and CSV rows, no test score
    partial_backward: ClassVar[bool] = False
    variable_length: ClassVar[bool] = False

    def predict(self, *inputs: Any) -> dict[str, torch.Tensor]:  # each task names its own tensor inputs
        raise NotImplementedError(f"{type(self).__name__} does not say what a prediction is")

    def reads_data(self) -> bool:
        """Whether predictions are made from the data's examples (False for a generator, which defines its own
        `predict_dataloader`)."""
        return not is_overridden("predict_dataloader", self, Task)

    def serving_codec(self, data: Codec) -> Codec:
        """What reads a served request for this model: the codec of the data it was trained on."""
        return data

    def for_inference(self) -> Task:
        """The model as export, int8 and serving read it, once its weights are loaded; most tasks are that already."""
        return self

    def finish_onnx(self, model: onnx.ModelProto) -> None:
        """Edit the exported ONNX graph in place before it is written; most tasks leave it as it is."""

    def _common_step(self, batch: Any, stage: str) -> torch.Tensor:
        raise NotImplementedError

    def test_confusion_matrix(self) -> torch.Tensor | None:
        """After `test`, a classifier's (true class, predicted class) counts, which callbacks.py draws; else None."""
        return None

    def sample_images(self) -> torch.Tensor | None:
        """Images (N, C, H, W) in [0, 1] drawn from fixed inputs, which callbacks.py saves every epoch; else None."""
        return None

    def generate(self, count: int) -> torch.Tensor | None:
        """`count` images (count, C, H, W) in [0, 1], the same on every call, for a task that draws them; else None."""
        return None

    def generated_classes(self, count: int) -> torch.Tensor | None:
        """The class (count,) each of `generate(count)`'s images was drawn as, for a class-conditional generator."""
        return None

    def training_step(self, batch: Any, batch_idx: int) -> STEP_OUTPUT:
        return self._common_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._common_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._common_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """`predict` on a batch `(*inputs, target)`, with the target beside it (None: unlabelled inputs)."""
        *inputs, target = batch if isinstance(batch, (list, tuple)) else (batch, None)
        result = self.predict(*inputs)
        return result if target is None else {**result, "target": target}
