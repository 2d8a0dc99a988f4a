"""`export`, for every config in configs/: ONNX and torch.export files that answer like the eager model."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnxruntime
import pytest
import torch
from conftest import QUICKEST, TASKS

from {{ cookiecutter.__package }}.artifacts import load_checkpoint
from {{ cookiecutter.__package }}.cli import main
from {{ cookiecutter.__package }}.export import export


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["{{ cookiecutter.__package }}", *args])
    main()


def other_inputs(checkpoint) -> tuple[torch.Tensor, ...]:
    """Inputs of 3 examples that differ from the example request the export was checked on."""
    example = checkpoint.codec.example_inputs()
    generator = torch.Generator().manual_seed(0)
    first = example[0]
    if first.is_floating_point():  # numbers, pixels: new values around the example's
        return (first[:1].repeat(3, *[1] * (first.dim() - 1)) + torch.randn(3, *first.shape[1:], generator=generator),)
    return tuple(tensor[[1, 0, 1]] for tensor in example)  # texts: the same rows in another order and count


def test_export_from_the_command_line_says_how_close_each_file_answers_to_the_eager_model(
    trained, tmp_path, monkeypatch, capsys
):
    output = tmp_path / "export"
    run_main(monkeypatch, "export", "--ckpt_path", str(trained(QUICKEST)), "--output", str(output))
    assert {"model.onnx", "model.pt2", "metadata.json", "README.md"} <= {p.name for p in output.iterdir()}
    assert not list(output.glob("model_int8*"))  # int8 only when asked for
    printed = capsys.readouterr().out
    assert "max |model.onnx - eager|" in printed and "max |model.pt2 - eager|" in printed


@pytest.mark.parametrize("task", TASKS)
def test_export_writes_onnx_and_pt2_that_answer_like_the_eager_model(trained, exported, task):
    checkpoint, output = trained(task), exported(task)
    metadata = json.loads((output / "metadata.json").read_text())
    eager = load_checkpoint(checkpoint)
    # Each file scored on the test split with the task's own scores (none for a generator), agreeing with eager.
    scores = metadata["test_scores"]
    assert set(scores) in ({"eager", "model.onnx", "model.pt2", "model_int8.pt", "model_int8.onnx"}, set())
    for file in ("model.onnx", "model.pt2"):
        for metric, value in scores.get("eager", {}).items():
            assert scores[file][metric] == pytest.approx(value, rel=1e-3, abs=1e-3), (file, metric)
    assert metadata["task"] == task and metadata["labels"] == eager.metadata["labels"]
    assert metadata["outputs"] == list(eager.model.predict(*other_inputs(eager)))
    # Inputs the export never saw, in a batch of another size: the batch axis is dynamic.
    inputs = other_inputs(eager)
    with torch.no_grad():
        expected = eager.model.predict(*inputs)
    session = onnxruntime.InferenceSession(str(output / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [arg.name for arg in session.get_inputs()] == [spec["name"] for spec in metadata["inputs"]]
    feeds = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs, strict=True)}
    onnx_out = session.run(metadata["outputs"], feeds)
    program = torch.export.load(output / "model.pt2").module()
    for name, ours, theirs in zip(metadata["outputs"], onnx_out, program(*inputs), strict=True):
        np.testing.assert_allclose(ours, expected[name].numpy(), rtol=1e-4, atol=1e-5, err_msg=f"onnx {name}")
        torch.testing.assert_close(theirs, expected[name], rtol=1e-4, atol=1e-5, msg=f"pt2 {name}")


def test_an_export_removes_what_a_killed_export_left_and_keeps_a_running_ones(trained, tmp_path):
    """Files are staged in `.export-<pid>-*` beside the export; one whose process is gone was killed mid-way."""
    killed, running = tmp_path / ".export-999999999-abc", tmp_path / f".export-{os.getpid()}-xyz"
    for folder in (killed, running):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half a file")
    export(load_checkpoint(trained(QUICKEST)), tmp_path / "export", formats=("onnx",))
    assert sorted(path.name for path in tmp_path.iterdir()) == [running.name, "export"]


def test_export_without_a_checkpoint_says_what_to_give(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(monkeypatch, "export", "--ckpt_path", str(tmp_path / "missing.ckpt"))
    assert exit_info.value.code == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_export_best_needs_the_config_to_find_the_runs(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(monkeypatch, "export", "--ckpt_path", "best")
    assert exit_info.value.code == 2
    assert "needs --config" in capsys.readouterr().err


def test_a_file_that_is_not_a_checkpoint_is_refused_without_unpickling(monkeypatch, tmp_path, capsys):
    fake = tmp_path / "model.ckpt"
    fake.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exit_info:
        run_main(monkeypatch, "export", "--ckpt_path", str(fake), "--output", str(tmp_path / "out"))
    assert exit_info.value.code == 2
    assert "not a checkpoint that loads safely" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
