"""The RNN sentiment model: packing keeps padding out of the result, both cells work, and it learns the reviews."""

from __future__ import annotations

import pytest
import torch
{%- if cookiecutter.include_bert_finetune == "yes" %}
from safetensors.torch import load_file
{%- endif %}
from test_text_data import assert_padding_changes_nothing

from {{ cookiecutter.__package }}.tasks.sentiment_rnn import SentimentRNNClassifier


@pytest.mark.parametrize(("cell", "bidirectional"), [("lstm", True), ("gru", False)])
def test_padding_does_not_change_the_prediction(cell, bidirectional):
    torch.manual_seed(0)
    model = SentimentRNNClassifier(num_classes=2, vocab_size=50, cell=cell, bidirectional=bidirectional)
    assert_padding_changes_nothing(model)


def test_learns_the_test_reviews(run_cli):
    run_cli("fit", "sentiment_rnn", "--trainer.max_epochs", "6")
    tested = run_cli("test", "sentiment_rnn", "--ckpt_path", "best").trainer
    assert tested.callback_metrics["test_acc"] >= 0.9
{%- if cookiecutter.include_bert_finetune == "yes" %}


def test_pretrained_word_vectors_start_the_embedding_and_stay_frozen(run_cli, tiny_bert):
    """The tiny BERT's input embeddings as word vectors, read through its own tokenizer."""
    pretrained = ["--model.embeddings", str(tiny_bert), "--model.embed_dim", "32", "--data.tokenizer", str(tiny_bert)]
    cli = run_cli("fit", "sentiment_rnn", "--trainer.max_epochs", "1", *pretrained)
    vectors = load_file(tiny_bert / "model.safetensors")["bert.embeddings.word_embeddings.weight"]
    assert torch.equal(cli.model.model.embedding.weight, vectors)  # trained an epoch, yet untouched: frozen
    assert not cli.model.model.embedding.weight.requires_grad


def test_word_vectors_of_another_width_say_which_to_set(run_cli, tiny_bert, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "sentiment_rnn", "--model.embeddings", str(tiny_bert), "--data.tokenizer", str(tiny_bert))
    assert exit_info.value.code == 2
    assert "Set --model.embed_dim 32" in capsys.readouterr().err
{%- endif %}
