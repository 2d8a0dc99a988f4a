"""Sentiment analysis with a Transformer encoder, written from its parts: is a review positive or negative?

Self-attention lets every word look at every other word of the review at once: each position asks
a question (query), every position offers a key and a value, and each word's new vector is the mix
of values whose keys answer its question best. "not" can thus reach "good" three words away in one
step, where an RNN passes it along word by word; several heads ask different questions in parallel.
Attention itself ignores order, so a sinusoidal positional encoding is added to each word vector to
say where it stands. The padding mask hides the padded positions of shorter reviews from attention,
and the mean over the real positions becomes one vector per review for the linear classifier.

Ten thousand short reviews are little data for attention learned from scratch, so the recipe
regularises hard: dropout on the word vectors, and word dropout, which hides random words as [UNK]
during training so that no single word can decide a review.

    python -m {{ cookiecutter.__package }} fit --config configs/sentiment_transformer.yaml
    python -m {{ cookiecutter.__package }} predict --config configs/sentiment_transformer.yaml --ckpt_path best --text "Dull."
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from .. import ConfigError, require_positive, require_probability
from ..classification import ClassificationTask
from ..data.text import PAD_ID, UNK_ID


def sinusoidal_positions(max_length: int, dim: int) -> torch.Tensor:
    """(max_length, dim): sines and cosines of the position at wavelengths from 2*pi to 10000*2*pi."""
    position = torch.arange(max_length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(max_length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class SentimentTransformer(nn.Module):
    def __init__(
        self,
        *,
        vocab_size: int,
        num_classes: int,
        max_length: int,
        d_model: int = 128,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 256,
        dropout: float = 0.2,
        embedding_dropout: float = 0.3,
        word_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        require_positive(self, d_model=d_model, nhead=nhead, num_layers=num_layers, dim_feedforward=dim_feedforward)
        require_probability(self, dropout=dropout, embedding_dropout=embedding_dropout, word_dropout=word_dropout)
        if d_model % nhead or d_model % 2:
            raise ConfigError(f"d_model ({d_model}) must be even and divisible by nhead ({nhead})")
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=PAD_ID)
        # Word vectors start at std 1/sqrt(d_model) and are scaled by sqrt(d_model): std 1, the scale of the
        # positions (sines in [-1, 1]). PyTorch's default std 1 times sqrt(d_model) would drown the positions,
        # and trained worse on rotten_tomatoes.
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.scale = math.sqrt(d_model)
        self.positions: torch.Tensor  # (max_length, d_model), the same for every review: a buffer, not a weight
        self.register_buffer("positions", sinusoidal_positions(max_length, d_model), persistent=False)
        self.word_dropout = word_dropout
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        # Pre-norm (LayerNorm before attention and feed-forward) trains stably without a long warm-up.
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids and (N,) lengths -> (N, num_classes) logits."""
        length = token_ids.shape[1]
        padding = torch.arange(length, device=token_ids.device) >= lengths.unsqueeze(1)  # (N, L), True at padding
        if self.training and self.word_dropout:  # hide random words as [UNK]: no single word decides the review
            hidden = (torch.rand(token_ids.shape, device=token_ids.device) < self.word_dropout) & ~padding
            token_ids = token_ids.masked_fill(hidden, UNK_ID)
        x = self.embedding_dropout(self.embedding(token_ids) * self.scale + self.positions[:length])
        x = self.encoder(x, src_key_padding_mask=padding)  # (N, L, d_model)
        real = (~padding).unsqueeze(-1).to(x.dtype)
        pooled = (x * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)  # mean over each review's own words
        return self.classifier(self.dropout(pooled))


class SentimentTransformerClassifier(ClassificationTask):
    input_names = ("token_ids", "lengths")
    variable_length = True  # attention reads any length: export keeps it free, and the server pads no further

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        max_length: int,
        lr: float = 0.001,
        weight_decay: float = 0.01,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        **architecture: Any,
    ) -> None:
        """`architecture`: SentimentTransformer's keyword arguments (`--model.num_layers 4 --model.nhead 8`)."""
        super().__init__(num_classes, lr, weight_decay, optimizer, scheduler)
        self.save_hyperparameters()
        self.model = SentimentTransformer(
            vocab_size=vocab_size, num_classes=num_classes, max_length=max_length, **architecture
        )
        self.example_input_array = (torch.ones(1, 8, dtype=torch.long), torch.tensor([8]))  # one 8-token review
