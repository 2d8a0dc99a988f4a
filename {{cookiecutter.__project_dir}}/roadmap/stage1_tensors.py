"""Stage 1, fundamentals: tensors, shapes, broadcasting, dtype and device, and autograd.

A tensor is an n-dimensional array with a shape, a dtype and a device. Operations on tensors of
different shapes broadcast: sizes are matched from the right, and a size-1 axis stretches. Autograd
records every operation on a tensor that requires grad, so `.backward()` gives exact derivatives.

    python roadmap/stage1_tensors.py
"""

from __future__ import annotations

import torch


def main() -> dict[str, object]:
    # The same code runs on a GPU or a CPU: pick the device once, create tensors on it.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # From data, or by shape; floats default to float32.
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], device=device)  # (2, 3) float32
    ones = torch.ones(2, 3, device=device)  # (2, 3)
    print(f"a: shape {tuple(a.shape)}, dtype {a.dtype}, device {a.device}")

    # Matrix product: the inner sizes must agree and disappear.
    product = a @ ones.T  # (2, 3) @ (3, 2) -> (2, 2)
    print(f"a @ ones.T: shape {tuple(product.shape)}, values {product.tolist()}")

    # Broadcasting: (2, 3) + (3,) -> the row is added to every row; (2, 1) * (1, 3) -> an outer product.
    row = torch.tensor([10.0, 20.0, 30.0], device=device)  # (3,)
    shifted = a + row  # (2, 3)
    outer = torch.arange(2.0, device=device).unsqueeze(1) * row.unsqueeze(0)  # (2, 1) * (1, 3) -> (2, 3)
    print(f"a + row: {shifted.tolist()}")
    print(f"outer product: shape {tuple(outer.shape)}")

    # Reshaping keeps the 6 numbers in order and changes only the shape; a reduction removes an axis.
    reshaped = a.reshape(3, 2)  # (2, 3) -> (3, 2)
    column_sums = a.sum(dim=0)  # (2, 3) -> (3,)
    print(f"a.reshape(3, 2): {reshaped.tolist()}; a.sum(dim=0): {column_sums.tolist()}")

    # Integers default to int64; .to() converts dtype and device alike (tensors must share a device to meet).
    counts = torch.tensor([1, 2, 3])  # int64 on the CPU
    as_float = counts.to(device=device, dtype=torch.float32) / 2  # (3,) float32 on `device`
    print(f"{counts.dtype} -> {as_float.dtype}: {as_float.tolist()}")

    # Autograd: y = x**2 + 3x, so dy/dx = 2x + 3, which is 7 at x = 2.
    x = torch.tensor(2.0, device=device, requires_grad=True)  # a scalar, shape ()
    y = x**2 + 3 * x
    y.backward()  # fills x.grad with dy/dx
    dy_dx = x.grad.item()
    print(f"y = x**2 + 3*x at x = 2: y = {y.item()}, dy/dx = {dy_dx}")
    assert dy_dx == 7.0, dy_dx

    return {
        "device": str(device),
        "product_shape": tuple(product.shape),
        "shifted": shifted.tolist(),
        "outer_shape": tuple(outer.shape),
        "reshaped_shape": tuple(reshaped.shape),
        "column_sums": column_sums.tolist(),
        "as_float": as_float.tolist(),
        "y": y.item(),
        "dy_dx": dy_dx,
    }


if __name__ == "__main__":
    main()
