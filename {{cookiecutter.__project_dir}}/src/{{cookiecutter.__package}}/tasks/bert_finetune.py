"""Fine-tuning a pretrained BERT for text classification, with Hugging Face transformers.

BERT read billions of words before you start: masked-word prediction taught it what words mean in
their context. Fine-tuning keeps all of that and adds a small classification head on top; then every
weight trains on your labelled texts for a few epochs. The learning rate is small (2e-5, a hundred
times below a network trained from scratch): the pretrained weights are already good, and large steps
would wash out what they know before the head has learnt anything. The rate warms up linearly over
the first `warmup` share of the steps, while the new head's gradients are still large and random,
then decays linearly to zero. Weight decay spares biases and LayerNorm weights, as in BERT's recipe: here by
shape (optim.py's `decay_groups`: matrices decay, vectors do not), which picks the same weights in any model.

`pretrained` is a Hub name (downloaded once into the Hugging Face cache) or a folder written by
`save_pretrained`; the data module reads text with the same model's tokenizer (`--data.tokenizer`, set
to the same name in the config). The architecture's configuration is kept in the checkpoint, so
`predict`, `export` and `serve` rebuild the model with no network; the pretrained weights are read
when `fit` starts. `pooling: mean` averages the last layer over the real tokens instead of reading
the [CLS] token (sentence-embedding models such as MiniLM were trained that way).

    python -m {{ cookiecutter.__package }} fit --config configs/bert_finetune.yaml
    python -m {{ cookiecutter.__package }} predict --config configs/bert_finetune.yaml --ckpt_path best --text "A gem."
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.types import LRSchedulerPLType
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    get_linear_schedule_with_warmup,
)
from transformers.utils import logging as transformers_logging

from .. import ConfigError
from ..classification import ClassificationTask
from ..hub import from_hub
from ..optim import ParamGroup, decay_groups


def pretrained_config(name: str, num_classes: int) -> dict[str, Any]:
    load = functools.partial(AutoConfig.from_pretrained, num_labels=num_classes)
    return from_hub(load, name, "--model.pretrained").to_dict()


class BertClassifier(ClassificationTask):
    model: PreTrainedModel
    input_names = ("token_ids", "lengths")
    variable_length = True  # export keeps the text length free: a served batch is padded to its own longest text

    def __init__(
        self,
        num_classes: int,
        pretrained: str = "google-bert/bert-base-uncased",
        pooling: Literal["cls", "mean"] = "cls",
        lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup: float = 0.1,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        gradient_checkpointing: bool = False,
        architecture: dict[str, Any] | None = None,
    ) -> None:
        """`architecture`: the model's configuration (config.json), filled from `model` when not given; the
        checkpoint keeps it, so that a trained model is rebuilt without the Hub."""
        super().__init__(num_classes, lr, weight_decay, optimizer, scheduler)
        if not 0 <= warmup < 1:
            raise ConfigError(f"warmup is the share of steps that warm the learning rate up, in [0, 1); got {warmup}")
        self.save_hyperparameters()
        config_dict = architecture or pretrained_config(pretrained, num_classes)
        self.hparams["architecture"] = config_dict
        config = AutoConfig.for_model(config_dict["model_type"]).__class__.from_dict(config_dict)
        self.model = AutoModelForSequenceClassification.from_config(config)
        if pooling == "mean" and not isinstance(getattr(self.model, "classifier", None), nn.Linear):
            raise ConfigError(
                f"pooling mean needs a model whose head is one linear layer (BERT's); {pretrained} is not"
            )
        if gradient_checkpointing:  # recompute activations in the backward pass: less memory, more time
            self.model.gradient_checkpointing_enable()
        self.pretrained, self.pooling, self.warmup = pretrained, pooling, warmup
        self.example_input_array = (torch.ones(1, 8, dtype=torch.long), torch.tensor([8]))  # one 8-token text

    def setup(self, stage: str) -> None:
        """The pretrained weights, read when training starts (never when a trained model is loaded to serve).

        The new head starts random, as fine-tuning wants (a pretrained head of other classes too): transformers'
        load report, which lists it, is silenced; a weight of the body that does not load is said in one line.
        """
        if stage != "fit":
            return
        load = functools.partial(
            AutoModelForSequenceClassification.from_pretrained,
            config=self.model.config,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            loaded, report = from_hub(load, self.pretrained, "--model.pretrained")
        finally:
            transformers_logging.set_verbosity(verbosity)
        self.model.load_state_dict(loaded.state_dict())
        not_loaded = [*report["missing_keys"], *(key for key, *_ in report["mismatched_keys"])]
        body = sorted(key for key in not_loaded if key.startswith(f"{loaded.base_model_prefix}."))
        if body:
            shown = ", ".join(body[:3]) + (", ..." if len(body) > 3 else "")
            rank_zero_only(print)(
                f"note: --model.pretrained {self.pretrained}: {len(body)} weights of the body did not load (missing, "
                f"or of another shape) and start untrained: {shown}",
                file=sys.stderr,
            )

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids and (N,) lengths -> (N, num_classes) logits; padding is masked out of attention."""
        mask = (torch.arange(token_ids.shape[1], device=token_ids.device) < lengths[:, None]).long()  # (N, L)
        if self.pooling == "cls":
            return self.model(input_ids=token_ids, attention_mask=mask).logits
        hidden = self.model.base_model(input_ids=token_ids, attention_mask=mask).last_hidden_state  # (N, L, H)
        pooled = (hidden * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)  # mean of the real tokens
        dropout, classifier = (self.model.get_submodule(name) for name in ("dropout", "classifier"))
        return classifier(dropout(pooled))

    def parameter_groups(self) -> list[ParamGroup]:
        """No weight decay on biases and LayerNorm weights: the vectors."""
        return decay_groups(self)

    def default_schedule(self, optimizer: torch.optim.Optimizer) -> LRSchedulerPLType | None:
        """Linear warm-up over the first `warmup` share of the steps, then linear decay to 0."""
        total = int(self.trainer.estimated_stepping_batches)
        return get_linear_schedule_with_warmup(optimizer, int(self.warmup * total), total)
