"""Pictures of a run: learning curves from the recorded metrics, and a confusion matrix.

matplotlib is imported inside the functions so that the CLI starts without it.
"""

from __future__ import annotations

from pathlib import Path

import torch


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Losses on the left panel, every other metric (accuracy, mse, ...) on the right; x is the global step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k for row in history for k in row if k != "step"})
    losses = [n for n in names if n.endswith("_loss")]
    others = [n for n in names if n not in losses]
    fig, axes = plt.subplots(1, 2 if others else 1, figsize=(11 if others else 6, 4), squeeze=False)
    for ax, group in zip(axes[0], [losses, others], strict=False):
        for name in group:
            points = [(row["step"], row[name]) for row in history if name in row]
            ax.plot(*zip(*points, strict=True), marker="o" if len(points) < 30 else None, markersize=3, label=name)
        ax.set_xlabel("step")
        ax.legend()
        ax.grid(alpha=0.3)
    axes[0][0].set_yscale("log" if all(row.get(n, 1) > 0 for row in history for n in losses) else "linear")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion_matrix(matrix: torch.Tensor, labels: list[str], path: Path) -> Path:
    """Rows are true classes, columns predicted ones; each cell shows its count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2
    for i in range(n):
        for j in range(n):
            value = int(matrix[i, j])
            ax.text(
                j, i, str(value), ha="center", va="center", fontsize=8, color="white" if value > threshold else "black"
            )
    accuracy = matrix.diag().sum() / matrix.sum().clamp(min=1)
    ax.set_title(f"test accuracy {accuracy:.2%}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
