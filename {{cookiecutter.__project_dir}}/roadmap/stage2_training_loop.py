"""Stage 2, neural networks: the training loop in plain PyTorch, no Lightning.

Every trainer, Lightning's included, repeats four steps: forward (the model's prediction), loss
(how wrong it is), backward (autograd computes the gradient of the loss for every parameter), and
step (the optimizer moves each parameter against its gradient). `optimizer.zero_grad()` comes
first, because PyTorch adds new gradients to the old ones. Here one nn.Linear(1, 1) learns the line
y = 2x - 1 from noisy points with SGD: its weight becomes the slope, its bias the intercept.

    python roadmap/stage2_training_loop.py
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

SLOPE, INTERCEPT = 2.0, -1.0


def main(epochs: int = 20, lr: float = 0.1, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # 2,000 noisy points on the line: x uniform in [-2, 2], noise std 0.1.
    x = torch.rand(2000, 1) * 4 - 2  # (N, 1)
    y = SLOPE * x + INTERCEPT + 0.1 * torch.randn(2000, 1)  # (N, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)

    model = nn.Linear(1, 1).to(device)  # y_hat = weight * x + bias
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)  # (B, 1) each
            optimizer.zero_grad()  # gradients accumulate across backward() calls unless cleared
            prediction = model(xb)  # forward: (B, 1)
            loss = loss_fn(prediction, yb)  # a scalar
            loss.backward()  # d loss / d weight and d loss / d bias, into .grad
            optimizer.step()  # parameter -= lr * parameter.grad
            total += loss.item() * len(xb)
        epoch_loss = total / len(loader.dataset)
        if epoch % 5 == 0 or epoch == 1:
            print(f"epoch {epoch:3d}  loss {epoch_loss:.4f}")

    slope, intercept = model.weight.item(), model.bias.item()
    print(f"learned slope {slope:.3f} (true {SLOPE}), intercept {intercept:.3f} (true {INTERCEPT})")
    return {"slope": slope, "intercept": intercept, "loss": epoch_loss}


if __name__ == "__main__":
    main()

# The same recipe in Lightning: src/{{ cookiecutter.__package }}/tasks/linear_regression.py. Its training_step is
# the forward and the loss; the Trainer does zero_grad, backward and step, and moves data to the device.
