"""The roadmap scripts teach what they claim: exact autograd in stage 1, a recovered line in stage 2."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROADMAP = Path(__file__).resolve().parents[1] / "roadmap"


def load(script: str) -> dict:
    """The script's globals, as `python roadmap/<script>` would define them, without running its `__main__` block."""
    return runpy.run_path(str(ROADMAP / script))


def test_stage1_autograd_gives_the_exact_derivative(capsys: pytest.CaptureFixture[str]):
    result = load("stage1_tensors.py")["main"]()
    assert result["dy_dx"] == 7.0  # d/dx (x**2 + 3x) = 2x + 3 at x = 2, exactly
    assert result["y"] == 10.0
    assert "dy/dx = 7.0" in capsys.readouterr().out


def test_stage1_shapes_and_broadcasting():
    result = load("stage1_tensors.py")["main"]()
    assert result["product_shape"] == (2, 2)
    assert result["shifted"] == [[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]  # the row added to every row
    assert result["outer_shape"] == (2, 3)
    assert result["reshaped_shape"] == (3, 2)
    assert result["column_sums"] == [5.0, 7.0, 9.0]
    assert result["as_float"] == [0.5, 1.0, 1.5]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stage2_training_loop_recovers_the_line(seed: int):
    result = load("stage2_training_loop.py")["main"](seed=seed)
    assert result["slope"] == pytest.approx(2.0, abs=0.05)  # the data is y = 2x - 1 + noise
    assert result["intercept"] == pytest.approx(-1.0, abs=0.05)
    # What is left is the noise: its variance is 0.1 ** 2 = 0.01.
    assert 0.005 < result["loss"] < 0.02
