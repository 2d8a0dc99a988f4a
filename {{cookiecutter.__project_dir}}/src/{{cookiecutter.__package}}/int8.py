"""What int8 means here, for torch (torchao) and for ONNX Runtime (onnxruntime.quantization).

For torch, every `nn.Linear` gets int8 weights, one scale per output channel (torchao's
`Int8WeightOnlyConfig`), and every `nn.Embedding` an int8 table with one scale per row
(`Int8Embedding` below); activations stay float. Convolutions, LSTM/GRU cells and attention's packed
input projection stay float32: torchao's int8 configs cover linear layers. Weight-only int8 was
chosen by measurement on the CPU: the fastest of torchao's int8 schemes at batch 1 and the closest to
float32, and torchao's own int8 embedding dequantizes its whole table on every call, hence the small
one here. It makes a model about 3x smaller, not faster: torch has no int8 CPU kernels that beat its
float32 ones at these sizes.

For ONNX Runtime, `quantize_onnx` rewrites an exported float graph with int8 weights and int8
kernels, which do run faster on a CPU. `quantize.py` says when either is applied (after training,
during it, or by `export`); `artifacts.py` loads the files.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:
    import onnx

# torchao and onnxruntime.quantization take a second to import; they are imported where they are used, so
# that training, which loads trained files through artifacts.py, never pays for them.
# torchao registers an Enum with torch's pytree on import, which this torch logs as deprecated: chatter, not news.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

M = TypeVar("M", bound=nn.Module)

SCHEME = "int8 weights (torchao Int8WeightOnlyConfig for nn.Linear, Int8Embedding for nn.Embedding)"
ONNX_SCHEME = (
    "ONNX Runtime int8 (onnxruntime.quantization): static QDQ for convolution networks (int8 weights per "
    "channel, uint8 activations calibrated on training batches), dynamic otherwise, attention included (int8 "
    "weights per channel, activations quantized on each call)"
)


class Int8Embedding(nn.Module):
    """An embedding table in int8 with one float scale per row (symmetric); it dequantizes only the rows it reads.

    Plain tensors: it loads with `weights_only=True` and exports to ONNX as Gather and Mul.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.weight_int8: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(num_embeddings, 1))

    @classmethod
    def from_float(cls, embedding: nn.Embedding) -> Int8Embedding:
        weight = embedding.weight.detach().float()
        scale = (weight.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
        quantized = cls(embedding.num_embeddings, embedding.embedding_dim)
        quantized.weight_int8.copy_(torch.round(weight / scale).clamp(-127, 127).to(torch.int8))
        quantized.scale.copy_(scale)
        return quantized

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight_int8[ids].float() * self.scale[ids]


def swap_embeddings(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Embedding):
            setattr(module, name, Int8Embedding.from_float(child))
        else:
            swap_embeddings(child)


def is_linear(module: nn.Module, name: str) -> bool:
    # Attention's output projection (NonDynamicallyQuantizableLinear) stays float: MultiheadAttention reads its
    # weight directly, which an int8 tensor cannot stand in for.
    return type(module) is nn.Linear


def weight_share(model: nn.Module) -> dict[str, Any]:
    """What `quantize_int8` makes int8 of this float model: the share of its weight elements (matrices and
    kernels: parameters of 2 dimensions or more) in layers it quantizes, and the kinds of layer left float32. A
    model of convolutions only gets nothing: its `model_int8.pt` holds float32 weights under an int8 name."""
    quantized = total = 0
    left: set[str] = set()
    for name, module in model.named_modules():
        size = sum(p.numel() for p in module.parameters(recurse=False) if p.dim() >= 2)
        total += size
        if is_linear(module, name) or isinstance(module, nn.Embedding):
            quantized += size
        elif size:
            left.add(type(module).__name__)
    return {"int8_share": quantized / total if total else 0.0, "float32_layers": sorted(left)}


def onnx_weight_share(path: Path) -> dict[str, Any]:
    """The same for an ONNX file: the share of its weight elements (initializers of 2 dimensions or more) stored
    as 8-bit integers."""
    import onnx

    quantized = total = 0
    for initializer in onnx.load(str(path), load_external_data=False).graph.initializer:
        if len(initializer.dims) < 2:
            continue
        size = math.prod(initializer.dims)
        total += size
        quantized += size if initializer.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) else 0
    return {"int8_share": quantized / total if total else 0.0}


def quantize_int8(model: M) -> M:
    """The model with int8 weights, in place: linear layers through torchao, embeddings through Int8Embedding."""
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig(set_inductor_config=False), filter_fn=is_linear)
    swap_embeddings(model)
    return model.eval()


def attends(graph: onnx.GraphProto) -> bool:
    """Whether the graph multiplies two computed tensors (attention: queries by keys, scores by values), not only
    tensors by weights."""
    weights = {init.name for init in graph.initializer}
    weights |= {name for node in graph.node if node.op_type == "Constant" for name in node.output}
    return any(node.op_type == "MatMul" and not weights & set(node.input) for node in graph.node)


def quantize_onnx(source: Path, target: Path, calibration: Iterable[tuple[torch.Tensor, ...]]) -> None:
    """`source` (an exported float ONNX file) with int8 weights and int8 kernels, for ONNX Runtime, into `target`.

    A convolution network (a classifier's convolutions, a generator's transposed ones) is quantized
    statically: its activation ranges are measured once on the `calibration` batches of model inputs, so
    that convolutions run as int8 kernels. Dynamic int8
    convolutions (ConvInteger) are slower than float32 ones in ONNX Runtime, while its dynamic MatMul,
    LSTM and Gather (embedding) kernels are fast and need no data: everything else is quantized dynamically,
    attention too, even behind a convolution (a ViT's patch embedding): ranges fixed on a few batches fit its
    scores poorly, and a static int8 ViT strayed from its float32 answers where a dynamic one kept them.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    model = onnx.load(str(source))  # read once: onnxruntime.quantization takes the loaded model too
    # onnxruntime logs a hint to run its model pre-processing first; measured on the CNN, it did not help.
    logging.disable(logging.WARNING)
    try:
        convolutional = any(node.op_type in ("Conv", "ConvTranspose") for node in model.graph.node)
        if not convolutional or attends(model.graph):
            quantize_dynamic(model, target, weight_type=QuantType.QInt8, per_channel=True)
            return
        names = [arg.name for arg in model.graph.input]
        feeds = ({name: t.numpy() for name, t in zip(names, batch, strict=True)} for batch in calibration)

        class Feeds(CalibrationDataReader):  # the calibration batches, as ONNX Runtime reads them
            def get_next(self) -> dict | None:
                return next(feeds, None)

        quantize_static(
            model,
            target,
            Feeds(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
    finally:
        logging.disable(logging.NOTSET)
