"""Pictures of a run: learning curves from the recorded metrics, a confusion matrix, grids of images.

matplotlib is imported inside the functions so that the CLI starts without it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image


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


def png_bytes(image: torch.Tensor) -> bytes:
    """A (C, H, W) image with values in [0, 1] -> the bytes of a PNG file (grayscale or RGB)."""
    pixels = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else np.ascontiguousarray(pixels)).save(buffer, "PNG")
    return buffer.getvalue()


def image_grid(images: torch.Tensor, columns: int = 8, padding: int = 2) -> torch.Tensor:
    """(N, C, H, W) images -> one (C, H', W') image of them in rows of `columns`, on a white background."""
    count, channels, height, width = images.shape
    rows = -(-count // columns)
    grid = torch.ones(channels, rows * (height + padding) + padding, columns * (width + padding) + padding)
    for index, image in enumerate(images.detach().float().cpu()):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[:, top : top + height, left : left + width] = image
    return grid


def save_png(image: torch.Tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image))
    return path
