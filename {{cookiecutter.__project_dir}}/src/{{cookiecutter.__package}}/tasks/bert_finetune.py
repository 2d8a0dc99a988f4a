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

LoRA (`--model.lora_r 8`, with PEFT) trains far fewer weights: the pretrained ones stay frozen, and each
adapted layer W (by default the attention's query and value projections) adds a low-rank update
ΔW = (lora_alpha / r)·B·A, with A of shape (r, inputs) and B of shape (outputs, r). B starts at zero, so training
starts from the pretrained model exactly; only A, B and the head train, a few tenths of a percent of the weights,
at a learning rate about ten times a full fine-tune's (`--model.lr 5e-4`). The checkpoint keeps the frozen
weights beside the adapters, so a run still rebuilds with no network; `export` and serving merge B·A into W
once (`for_inference`), and see an ordinary model of the same size and speed.

    python -m {{ cookiecutter.__package }} fit --config configs/bert_finetune.yaml
    python -m {{ cookiecutter.__package }} predict --config configs/bert_finetune.yaml --ckpt_path best --text "A gem."
    python -m {{ cookiecutter.__package }} fit --config configs/bert_finetune.yaml --model.lora_r 8 --model.lr 5e-4
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
    model: nn.Module  # the transformers model, or LoRA's wrapper of it (`body` is the model either way)
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
        lora_r: int = 0,
        lora_alpha: float = 16.0,
        lora_dropout: float = 0.1,
        lora_targets: list[str] | None = None,
        architecture: dict[str, Any] | None = None,
    ) -> None:
        """`lora_r`: the rank of LoRA's adapters (0: every weight trains, a full fine-tune); `lora_alpha` scales
        them (alpha / r); `lora_targets`: the names of the layers to adapt (none: PEFT's choice for the model
        type, the attention's query and value for BERT). `architecture`: the model's configuration (config.json),
        filled from `model` when not given; the checkpoint keeps it, so that a trained model is rebuilt without
        the Hub."""
        super().__init__(num_classes, lr, weight_decay, optimizer, scheduler)
        if not 0 <= warmup < 1:
            raise ConfigError(f"warmup is the share of steps that warm the learning rate up, in [0, 1); got {warmup}")
        if lora_r < 0 or lora_alpha <= 0 or not 0 <= lora_dropout < 1:
            raise ConfigError(
                f"LoRA takes lora_r >= 0 (0: no adapters), lora_alpha > 0 and lora_dropout in [0, 1); got lora_r "
                f"{lora_r}, lora_alpha {lora_alpha}, lora_dropout {lora_dropout}"
            )
        self.save_hyperparameters()
        config_dict = architecture or pretrained_config(pretrained, num_classes)
        self.hparams["architecture"] = config_dict
        config = AutoConfig.for_model(config_dict["model_type"]).__class__.from_dict(config_dict)
        model = AutoModelForSequenceClassification.from_config(config)
        if pooling == "mean" and not isinstance(getattr(model, "classifier", None), nn.Linear):
            raise ConfigError(
                f"pooling mean needs a model whose head is one linear layer (BERT's); {pretrained} is not"
            )
        self.pretrained, self.pooling, self.warmup = pretrained, pooling, warmup
        self.model = self._trainable(model)  # the structure of every checkpoint of this run
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
            config=self.body.config,
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()
        try:
            loaded, report = from_hub(load, self.pretrained, "--model.pretrained")
        finally:
            transformers_logging.set_verbosity(verbosity)
        # float32 whatever the file holds, and in the mode of the model it replaces (from_pretrained's is eval)
        self.model = self._trainable(loaded.float().train(self.model.training))
        not_loaded = [*report["missing_keys"], *(key for key, *_ in report["mismatched_keys"])]
        body = sorted(key for key in not_loaded if key.startswith(f"{loaded.base_model_prefix}."))
        if body:
            shown = ", ".join(body[:3]) + (", ..." if len(body) > 3 else "")
            rank_zero_only(print)(
                f"note: --model.pretrained {self.pretrained}: {len(body)} weights of the body did not load (missing, "
                f"or of another shape) and start untrained: {shown}",
                file=sys.stderr,
            )

    def _trainable(self, model: PreTrainedModel) -> nn.Module:
        """The model as it trains: with gradient checkpointing if asked, and LoRA's adapters if `lora_r` > 0."""
        if self.hparams["gradient_checkpointing"]:  # recompute activations in the backward pass: less memory, more time
            model.gradient_checkpointing_enable()
        if not self.hparams["lora_r"]:
            return model
        from peft import LoraConfig, TaskType, get_peft_model  # only LoRA runs need PEFT

        # What trains in full beside the adapters: the head (the model's own layers outside the pretrained body), and
        # the pooler when it reads the [CLS] token (pretrained, but for another task: next-sentence prediction).
        body = model.base_model
        head = [name for name, child in model.named_children() if child is not body and list(child.parameters())]
        if self.pooling == "cls" and getattr(body, "pooler", None) is not None:
            head.append("pooler")
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=self.hparams["lora_r"],
            lora_alpha=self.hparams["lora_alpha"],
            lora_dropout=self.hparams["lora_dropout"],
            target_modules=self.hparams["lora_targets"],
            modules_to_save=head,
        )
        try:
            return get_peft_model(model, config)
        except ValueError as err:  # no default targets for this model type, or targets that match no layer
            raise ConfigError(
                f"--model.lora_targets {self.hparams['lora_targets']}: {str(err).splitlines()[0]} Name the linear "
                f"layers to adapt, e.g. '[query, value]' for BERT, '[q_lin, v_lin]' for DistilBERT"
            ) from None

    @property
    def body(self) -> PreTrainedModel:
        """The transformers model itself, under LoRA's wrapper where there is one."""
        return self.model.get_base_model() if self.adapted else self.model  # type: ignore[operator,return-value]

    @property
    def adapted(self) -> bool:
        """Whether LoRA's adapters sit beside the weights, not yet merged into them."""
        return hasattr(self.model, "merge_and_unload")

    def for_inference(self) -> BertClassifier:
        """Adapters merged into the weights they adapt (W + (alpha / r)·B·A, once): an ordinary model, as fast as
        one fine-tuned in full, for export, int8 and serving."""
        if self.adapted:
            merged = self.model.merge_and_unload(safe_merge=True)  # type: ignore[operator]
            if self.hparams["gradient_checkpointing"]:
                merged.disable_input_require_grads()  # PEFT's hook for checkpointing; inference needs no gradients
            self.model = merged
        return self

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids and (N,) lengths -> (N, num_classes) logits; padding is masked out of attention."""
        mask = (torch.arange(token_ids.shape[1], device=token_ids.device) < lengths[:, None]).long()  # (N, L)
        if self.pooling == "cls":
            return self.model(input_ids=token_ids, attention_mask=mask).logits
        body = self.body
        hidden = body.base_model(input_ids=token_ids, attention_mask=mask).last_hidden_state  # (N, L, H)
        pooled = (hidden * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)  # mean of the real tokens
        dropout, classifier = (body.get_submodule(name) for name in ("dropout", "classifier"))
        return classifier(dropout(pooled))

    def parameter_groups(self) -> list[ParamGroup]:
        """No weight decay on biases and LayerNorm weights: the vectors."""
        return decay_groups(self)

    def default_schedule(self, optimizer: torch.optim.Optimizer) -> LRSchedulerPLType | None:
        """Linear warm-up over the first `warmup` share of the steps, then linear decay to 0."""
        total = int(self.trainer.estimated_stepping_batches)
        return get_linear_schedule_with_warmup(optimizer, int(self.warmup * total), total)
