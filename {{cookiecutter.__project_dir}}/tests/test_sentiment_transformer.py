"""The Transformer sentiment model: the padding mask keeps padding out of the result, and it learns the reviews."""

from __future__ import annotations

import pytest
import torch
from test_text_data import assert_padding_changes_nothing

from {{ cookiecutter.__package }} import ConfigError
from {{ cookiecutter.__package }}.tasks.sentiment_transformer import SentimentTransformerClassifier


def test_padding_does_not_change_the_prediction():
    torch.manual_seed(0)
    assert_padding_changes_nothing(SentimentTransformerClassifier(num_classes=2, vocab_size=50, max_length=16))


def test_word_order_matters():
    """Positions are encoded: the same words in another order give another result."""
    torch.manual_seed(0)
    model = SentimentTransformerClassifier(num_classes=2, vocab_size=50, max_length=16, dropout=0.0).eval()
    with torch.no_grad():
        forward = model(torch.tensor([[5, 9, 23, 7]]), torch.tensor([4]))
        backward = model(torch.tensor([[7, 23, 9, 5]]), torch.tensor([4]))
    assert not torch.allclose(forward, backward)


def test_heads_must_divide_the_model_width():
    with pytest.raises(ConfigError, match="divisible by nhead"):
        SentimentTransformerClassifier(num_classes=2, vocab_size=50, max_length=16, d_model=100, nhead=3)


def test_learns_the_test_reviews(run_cli):
    run_cli("fit", "sentiment_transformer", "--trainer.max_epochs", "6")
    tested = run_cli("test", "sentiment_transformer", "--ckpt_path", "best").trainer
    assert tested.callback_metrics["test_acc"] >= 0.9
