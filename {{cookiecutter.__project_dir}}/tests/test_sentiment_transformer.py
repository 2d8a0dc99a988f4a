"""The Transformer sentiment model: the padding mask keeps padding out of the result, pretraining learns the words
without the labels, and it learns the reviews."""

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


def test_pretraining_learns_to_guess_hidden_words_without_reading_a_label():
    torch.manual_seed(0)
    model = SentimentTransformerClassifier(
        num_classes=2, vocab_size=50, max_length=16, dropout=0.0, embedding_dropout=0.0, pretrain_epochs=1
    )
    # A language with rules: each review counts up from its first word, so a hidden word follows from its neighbours.
    starts = torch.randint(2, 30, (64, 1))
    token_ids, lengths = starts + torch.arange(12), torch.full((64,), 12)
    impossible_labels = torch.full((64,), 99)  # a classification loss would fail on them
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def hidden_word_loss() -> float:
        torch.manual_seed(1)  # the same words hidden each time
        with torch.no_grad():
            return model.model.masked_word_loss(token_ids, lengths).item()

    before = hidden_word_loss()
    for _ in range(60):  # current_epoch 0 < pretrain_epochs: training_step pretrains
        loss = model.training_step((token_ids, lengths, impossible_labels), 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert hidden_word_loss() < 0.3 * before


def test_pretraining_needs_epochs_left_for_sentiment(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", "sentiment_transformer", "--model.pretrain_epochs", "3", "--trainer.max_epochs", "3")
    assert exit_info.value.code == 2
    assert "must be more than --model.pretrain_epochs (3)" in capsys.readouterr().err


def test_learns_the_test_reviews_after_pretraining_on_their_words(run_cli):
    run_cli("fit", "sentiment_transformer", "--model.pretrain_epochs", "2", "--trainer.max_epochs", "8")
    tested = run_cli("test", "sentiment_transformer", "--ckpt_path", "best").trainer
    assert tested.callback_metrics["test_acc"] >= 0.9
