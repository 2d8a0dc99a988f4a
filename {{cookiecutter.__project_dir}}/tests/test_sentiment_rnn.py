"""The RNN sentiment model: packing keeps padding out of the result, both cells work, and it learns the reviews."""

from __future__ import annotations

import pytest
import torch
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
