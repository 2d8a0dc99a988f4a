"""Sentiment analysis with a recurrent network: is a movie review positive or negative?

Each word id becomes a learned vector (the embedding). A recurrent network then reads the review one
word at a time and carries a hidden state from each word to the next: the state after "not" changes
how "good" is read, which a bag of words cannot do. An LSTM or GRU gates that state, so it can keep
what matters over dozens of words without the gradient vanishing on the way back. Run bidirectionally,
a second RNN reads the review from the end, so every position sees both its left and its right
context. The outputs at every word are max-pooled into one vector (the strongest evidence for each
feature, wherever in the review it was) and a linear layer turns that into class scores.

Reviews differ in length; a batch is padded to its longest review. Packing the padded batch
(`pack_padded_sequence`) makes the RNN stop at each review's own end, so padding never enters the state.
`torch.export` cannot trace packing, so an exported model computes the same numbers another way
(`run_each_direction`).

    python -m {{ cookiecutter.__package }} fit --config configs/sentiment_rnn.yaml
    python -m {{ cookiecutter.__package }} predict --config configs/sentiment_rnn.yaml --ckpt_path best --text "A gem."
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .. import ConfigError, require_positive, require_probability
from ..classification import ClassificationTask
from ..data.text import PAD_ID
from ..hub import from_hub

if TYPE_CHECKING:
    import onnx

RNN_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # per layer and direction, as nn.LSTM/nn.GRU name them


class SentimentRNN(nn.Module):
    embedding: nn.Embedding

    @property
    def embedding_table(self) -> torch.Tensor:
        """The word vectors, (vocab_size, embed_dim): learnt, or pretrained (SentimentRNNClassifier's `embeddings`)."""
        return self.embedding.weight

    def __init__(
        self,
        *,
        vocab_size: int,
        num_classes: int,
        embed_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: Literal["lstm", "gru"] = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        require_positive(self, embed_dim=embed_dim, hidden_size=hidden_size, num_layers=num_layers)
        require_probability(self, dropout=dropout)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        # Small initial word vectors (std 0.1, not PyTorch's 1) with heavy dropout on them: the model then
        # peaks within a few epochs, and higher on rotten_tomatoes (README: Benchmarks).
        nn.init.normal_(self.embedding.weight, std=0.1)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # between stacked layers
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, token_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N, L) token ids and (N,) lengths -> (N, num_classes) logits."""
        embedded = self.dropout(self.embedding(token_ids))  # (N, L, embed_dim)
        if torch.compiler.is_exporting():  # torch.export (ONNX, .pt2) cannot trace packing
            outputs = run_each_direction(self.rnn, embedded, lengths)
        else:
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            outputs, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=token_ids.shape[1])
        # (N, L, H * directions), with -inf where a review has ended, so max-pooling never picks padding.
        padding = torch.arange(token_ids.shape[1], device=token_ids.device) >= lengths[:, None]
        pooled = outputs.masked_fill(padding[..., None], float("-inf")).max(dim=1).values
        return self.classifier(self.dropout(pooled))


def pretrained_embeddings(name: str) -> torch.Tensor:
    """The input embedding table (vocab_size, width) of a pretrained transformers model."""
    try:
        from transformers import AutoModel
    except ImportError:
        raise ConfigError("--model.embeddings needs transformers: pip install -e '.[pretrained]'") from None
    model = from_hub(AutoModel.from_pretrained, name, "--model.embeddings")
    return model.get_input_embeddings().weight.detach().clone()


def run_each_direction(rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """What `rnn` computes on a packed batch, computed on the padded batch instead, as export needs.

    Each direction of each layer runs as a one-layer, one-way RNN with that direction's weights. The
    backward one reads every sequence reversed within its own length, so the padding at the end never
    reaches a real position's state. Outputs at padded positions are meaningless: the caller masks them.
    """
    steps = torch.arange(inputs.shape[1], device=inputs.device)
    mirror = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (N, L)

    def reverse(x: torch.Tensor) -> torch.Tensor:
        return x.gather(1, mirror[..., None].expand_as(x))

    cell = nn.LSTM if isinstance(rnn, nn.LSTM) else nn.GRU
    for layer in range(rnn.num_layers):
        directions = []
        for suffix in ("", "_reverse")[: 1 + rnn.bidirectional]:
            weights = {f"{name}_l0": getattr(rnn, f"{name}_l{layer}{suffix}") for name in RNN_WEIGHTS}
            with torch.device("meta"):  # a shell: functional_call runs it with the weights above
                one_way = cell(inputs.shape[-1], rnn.hidden_size, batch_first=True)
            outputs, _ = torch.func.functional_call(one_way, weights, (reverse(inputs) if suffix else inputs,))
            directions.append(reverse(outputs) if suffix else outputs)
        inputs = torch.cat(directions, dim=-1)
    return inputs


class SentimentRNNClassifier(ClassificationTask):
    model: SentimentRNN
    input_names = ("token_ids", "lengths")

    def __init__(
        self,
        num_classes: int,
        vocab_size: int,
        lr: float = 0.004,
        weight_decay: float = 0.01,
        optimizer: OptimizerCallable | None = None,
        scheduler: LRSchedulerCallable | None = None,
        embeddings: str | None = None,
        freeze_embeddings: bool = True,
        **architecture: Any,
    ) -> None:
        """`architecture`: SentimentRNN's keyword arguments (`--model.hidden_size 256 --model.cell gru`).

        `embeddings`: a pretrained model (a Hub name or a folder, as `from_pretrained` reads it) whose input
        embeddings become the word vectors, the classic "GloVe" step; the data must then read text with that
        model's tokenizer (`--data.tokenizer`, the same name), and `embed_dim` be its width (384 for MiniLM).
        `freeze_embeddings` keeps them as they are; false fine-tunes them with the rest.
        """
        super().__init__(num_classes, lr, weight_decay, optimizer, scheduler)
        self.save_hyperparameters()
        self.model = SentimentRNN(vocab_size=vocab_size, num_classes=num_classes, **architecture)
        self.embeddings, self.freeze_embeddings = embeddings, freeze_embeddings
        self.example_input_array = (torch.ones(1, 8, dtype=torch.long), torch.tensor([8]))  # one 8-token review

    def setup(self, stage: str) -> None:
        """Pretrained word vectors, read when training starts (a trained model keeps its own in its checkpoint)."""
        if stage == "fit" and self.embeddings is not None:
            vectors, table = pretrained_embeddings(self.embeddings), self.model.embedding_table
            if vectors.shape != table.shape:
                raise ConfigError(
                    f"--model.embeddings {self.embeddings} holds {vectors.shape[0]} vectors of {vectors.shape[1]} "
                    f"values; the model has {table.shape[0]} of {table.shape[1]}. "
                    f"Set --model.embed_dim {vectors.shape[1]} and --data.tokenizer {self.embeddings}"
                )
            with torch.no_grad():
                table.copy_(vectors)
        self.model.embedding_table.requires_grad_(not (self.embeddings and self.freeze_embeddings))

    def finish_onnx(self, model: onnx.ModelProto) -> None:
        """Give every LSTM/GRU node of the exported ONNX graph the reviews' lengths (its `sequence_lens` input).

        torch.export fixes an RNN's time axis, so the exported model reads reviews padded to max_length; told
        the lengths, ONNX Runtime stops each review at its last word instead of stepping through the padding
        (without them, the exported model takes longer than the eager one on short reviews). Both
        directions read each review from its first position (the backward one reversed within its length),
        so the lengths are right for every node.
        """
        from onnx import TensorProto, helper  # export's business: training never imports onnx

        recurrent = [node for node in model.graph.node if node.op_type in ("LSTM", "GRU")]
        if not recurrent:
            return
        lengths = model.graph.input[self.input_names.index("lengths")].name
        model.graph.node.insert(0, helper.make_node("Cast", [lengths], ["lengths_int32"], to=TensorProto.INT32))
        for node in recurrent:
            node.input.extend([""] * (5 - len(node.input)))  # X, W, R, B, sequence_lens
            node.input[4] = "lengths_int32"
