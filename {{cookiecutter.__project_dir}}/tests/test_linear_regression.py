"""Linear regression recovers the line it was trained on; its data module is seeded and split."""

from __future__ import annotations

import pytest
import torch

from {{ cookiecutter.__package }}.data.synthetic import LineDataModule


def test_default_config_recovers_slope_and_intercept_within_0_01(run_cli):
    cli = run_cli("fit", "linear_regression")
    model = cli.model.model
    truth = cli.datamodule.hparams
    assert model.weight.item() == pytest.approx(truth.slope, abs=0.01)
    assert model.bias.item() == pytest.approx(truth.intercept, abs=0.01)
    # ... and logs them under the names the README promises.
    assert cli.trainer.callback_metrics["slope"] == pytest.approx(model.weight.item())
    assert cli.trainer.callback_metrics["intercept"] == pytest.approx(model.bias.item())


@pytest.mark.slow  # the default line is learned in every test run
@pytest.mark.parametrize("seed", [1, 2])
def test_other_lines_and_seeds_are_learned_too(run_cli, seed):
    line = ["--data.slope", "-3.5", "--data.intercept", "0.25", "--data.seed", str(seed)]
    cli = run_cli("fit", "linear_regression", *line)
    assert cli.model.model.weight.item() == pytest.approx(-3.5, abs=0.01)
    assert cli.model.model.bias.item() == pytest.approx(0.25, abs=0.01)


def test_line_data_is_seeded_split_and_on_the_line():
    data = LineDataModule(num_samples=1000, val_fraction=0.1, test_fraction=0.2, noise_std=0.0, seed=3)
    data.setup()
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (700, 100, 200)
    x, y = data.train_set.tensors
    assert x.shape == y.shape == (700, 1)
    torch.testing.assert_close(y, 2.0 * x - 1.0)
    again = LineDataModule(num_samples=1000, val_fraction=0.1, test_fraction=0.2, noise_std=0.0, seed=3)
    again.setup()
    torch.testing.assert_close(again.train_set.tensors[0], x)
