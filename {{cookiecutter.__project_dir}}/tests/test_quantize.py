"""Int8 from the fit command line (post-training, and quantization-aware training) and from `export`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import onnx
import pytest
import torch
from conftest import PROJECT_ROOT, QUICKEST, TASKS, fast_on

from {{ cookiecutter.__package }}.artifacts import load, load_checkpoint, load_int8, read_metadata
from {{ cookiecutter.__package }}.int8 import Int8Embedding, attends
from {{ cookiecutter.__package }}.runs import run_dir

PACKAGE = "{{ cookiecutter.__package }}"
ATTENTION = {"sentiment_transformer", "bert_finetune", "vit"}  # the tasks whose graphs multiply queries by keys
LIMITS = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"]


def assert_int8_written(folder, printed: str) -> dict[str, dict[str, float]]:
    """The int8 file and its metadata, with the test scores of the float and the int8 model ({} when the task has
    none to give: a generator); returns those scores."""
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["int8"]["scheme"]["model_int8.pt"].startswith("int8 weights (torchao")  # as export writes it
    assert 0 <= metadata["int8"]["holds"]["model_int8.pt"]["int8_share"] <= 1
    assert load(folder / "model_int8.pt").kind == "int8"
    scores = metadata["test_scores"]
    if not scores:
        assert "not scored on the test split" in printed
    for metric, before in scores.get("eager", {}).items():
        after = scores["model_int8.pt"][metric]
        assert f"{metric} on the test split: eager {before:.4f}, model_int8.pt {after:.4f}" in printed
    return scores


@pytest.mark.parametrize("task", fast_on("xor", "mnist_cnn", "sentiment_rnn"))
def test_post_training_quantization_from_the_fit_command_line(run_cli, capsys, task):
    cli = run_cli("fit", task, *LIMITS, f"--trainer.callbacks+={PACKAGE}.quantize.PostTrainingQuantization")
    scores = assert_int8_written(run_dir(cli.trainer), capsys.readouterr().out)
    if "test_acc" in scores.get("eager", {}):  # int8 weights cost a classifier at most a point here
        assert scores["model_int8.pt"]["test_acc"] >= scores["eager"]["test_acc"] - 0.01


@pytest.mark.parametrize("task", fast_on("xor", "mnist_cnn", "sentiment_rnn"))
def test_quantization_aware_training_trains_through_fake_quantized_layers_and_ends_int8(run_cli, capsys, task):
    cli = run_cli("fit", task, *LIMITS, f"--trainer.callbacks+={PACKAGE}.quantize.QuantizationAwareTraining")
    # Every linear layer with 2+ inputs trained fake-quantized (torchao cannot fake-quantize nn.Linear(1, 1)).
    float_linear = [m for m in cli.model.modules() if type(m) is torch.nn.Linear and m.in_features > 1]
    assert not float_linear, float_linear
    assert_int8_written(run_dir(cli.trainer), capsys.readouterr().out)
    # Checkpoints keep float weights under the usual names: a plain model reads them.
    load_checkpoint(cli.trainer.checkpoint_callback.best_model_path)


@pytest.mark.parametrize("task", TASKS)
def test_int8_model_holds_int8_weights_and_loads_without_unpickling(trained, exported, tmp_path, task):
    float_model, folder = load_checkpoint(trained(task)), exported(task)
    int8 = load_int8(folder / "model_int8.pt", read_metadata(folder / "model_int8.pt"))  # weights_only=True
    linear = [m for m in int8.modules() if type(m) is torch.nn.Linear]
    assert all(type(m.weight).__name__ == "Int8Tensor" for m in linear)
    # What the file holds is said: no int8 share for a model without linear layers or embeddings.
    holds = read_metadata(folder / "model_int8.pt")["int8"]["holds"]["model_int8.pt"]
    has_int8 = bool(linear) or any(isinstance(m, Int8Embedding) for m in int8.modules())
    assert (holds["int8_share"] > 0) == has_int8
    embeddings = [m for m in int8.modules() if isinstance(m, Int8Embedding)]
    assert all(m.weight_int8.dtype == torch.int8 for m in embeddings)
    assert not any(isinstance(m, torch.nn.Embedding) for m in int8.modules())
    # int8 keeps a quarter of the bytes of what it quantizes: the file shrinks by most of those bytes.
    quantized = [m.weight for m in float_model.model.modules() if type(m) in (torch.nn.Linear, torch.nn.Embedding)]
    quantized_bytes = sum(weight.numel() * 4 for weight in quantized)
    if quantized_bytes > 50_000:  # the files' own overhead matters less
        float_file = tmp_path / "float.pt"
        torch.save(float_model.model.state_dict(), float_file)
        assert (folder / "model_int8.pt").stat().st_size < float_file.stat().st_size - 0.6 * quantized_bytes


@pytest.mark.slow  # a process of its own
def test_an_int8_file_loads_in_a_fresh_process(exported):
    """torch.load(weights_only=True) reads torchao's int8 tensors once torchao is imported: loading sees to it."""
    code = "import sys; from {{ cookiecutter.__package }}.artifacts import load; print(load(sys.argv[1]).kind)"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(exported(QUICKEST) / "model_int8.pt")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("int8"), done.stderr[-2000:]


@pytest.mark.parametrize("task", TASKS)
def test_int8_onnx_runs_int8_kernels_and_scores_like_the_float_model(exported, task):
    folder = exported(task)
    float_graph, int8_graph = (onnx.load(folder / name).graph for name in ("model.onnx", "model_int8.onnx"))
    float_ops, int8_ops = ({node.op_type for node in graph.node} for graph in (float_graph, int8_graph))
    assert attends(float_graph) == (task in ATTENTION)
    if float_ops & {"Conv", "ConvTranspose"} and task not in ATTENTION:  # static: quantize/dequantize pairs
        assert {"QuantizeLinear", "DequantizeLinear"} <= int8_ops
    else:  # dynamic: activations quantized on each call, int8 matrix products (or an int8 LSTM)
        assert int8_ops & {"DynamicQuantizeLinear", "DynamicQuantizeLSTM", "MatMulInteger"}, int8_ops

    def weight_bytes(graph, types) -> int:
        return sum(onnx.numpy_helper.to_array(init).nbytes for init in graph.initializer if init.data_type in types)

    float_bytes = weight_bytes(float_graph, {onnx.TensorProto.FLOAT})
    int8_bytes = weight_bytes(int8_graph, {onnx.TensorProto.INT8, onnx.TensorProto.UINT8})
    left_float = weight_bytes(int8_graph, {onnx.TensorProto.FLOAT})
    if float_bytes > 50_000:  # every large weight is int8: a quarter of its float bytes, scales aside
        assert int8_bytes > 0.2 * float_bytes and left_float < 0.1 * float_bytes, (int8_bytes, left_float, float_bytes)
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["int8"]["scheme"]["model_int8.onnx"].startswith("ONNX Runtime int8")
    if float_bytes > 50_000:
        assert metadata["int8"]["holds"]["model_int8.onnx"]["int8_share"] > 0.9
    scores = metadata["test_scores"]
    if "test_acc" in scores.get("eager", {}):
        assert scores["model_int8.onnx"]["test_acc"] >= scores["eager"]["test_acc"] - 0.02
