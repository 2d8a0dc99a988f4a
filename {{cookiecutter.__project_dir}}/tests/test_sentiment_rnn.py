"""The RNN sentiment model: packing keeps padding out of the result, both cells work, and it learns the reviews."""

from __future__ import annotations

import pytest
import torch

from {{ cookiecutter.__package }}.tasks.sentiment_rnn import SentimentRNNClassifier


@pytest.mark.parametrize(("cell", "bidirectional"), [("lstm", True), ("gru", False)])
def test_padding_does_not_change_the_prediction(cell, bidirectional):
    torch.manual_seed(0)
    model = SentimentRNNClassifier(num_classes=2, vocab_size=50, cell=cell, bidirectional=bidirectional).eval()
    review = torch.tensor([[5, 9, 23, 7]])
    padded = torch.cat([review, torch.zeros(1, 6, dtype=torch.long)], dim=1)
    with torch.no_grad():
        alone, in_batch = model(review, torch.tensor([4])), model(padded, torch.tensor([4]))
    assert alone.shape == (1, 2)
    torch.testing.assert_close(alone, in_batch)
    assert model(*model.example_input_array).shape == (1, 2)


def test_learns_the_test_reviews(run_cli):
    run_cli("fit", "sentiment_rnn", "--trainer.max_epochs", "6")
    tested = run_cli("test", "sentiment_rnn", "--ckpt_path", "best").trainer
    assert tested.callback_metrics["test_acc"] >= 0.9
