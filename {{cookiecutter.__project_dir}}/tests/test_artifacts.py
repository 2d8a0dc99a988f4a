"""Trained files are whole or absent, and an exported file is served only beside the metadata.json that describes it:
a damaged file, a file of another export, or a full disk during `fit` or `export` is one line and exit status 2."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TASKS, cli_args, launch_env, speed

from {{ cookiecutter.__package }}.artifacts import load_checkpoint, read_metadata, write_metadata
from {{ cookiecutter.__package }}.cli import main
from {{ cookiecutter.__package }}.export import export

QUICKEST, *OTHERS = sorted(TASKS, key=speed)


def serve(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, model: Path) -> str:
    """`serve --model MODEL` through the CLI, refused: its one line. A server that starts instead fails the test."""
    monkeypatch.setattr(sys, "argv", ["{{ cookiecutter.__package }}", "serve", "--model", str(model)])
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: pytest.fail(f"{model.name} was served"))
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def copy_of(folder: Path, tmp_path: Path) -> Path:
    shutil.copytree(folder, tmp_path / "export")
    return tmp_path / "export"


def checkpoint_of(folder: Path) -> str:
    return json.loads((folder / "metadata.json").read_text())["checkpoint"]


@pytest.mark.parametrize("name", ["model.onnx", "model.pt2", "model_int8.pt", "model_int8.onnx"])
def test_a_cut_short_or_altered_exported_file_is_refused_in_one_line(exported, tmp_path, monkeypatch, capsys, name):
    folder = copy_of(exported(QUICKEST), tmp_path)
    model = folder / name
    whole = model.read_bytes()
    model.write_bytes(whole[: len(whole) // 2])  # a copy cut short
    err = serve(monkeypatch, capsys, model)
    assert f"{len(whole) // 2:,} bytes, metadata.json says {len(whole):,}" in err and "export again" in err
    middle = len(whole) // 2  # one byte changed in the middle: same size, other weights
    model.write_bytes(whole[:middle] + bytes([whole[middle] ^ 0xFF]) + whole[middle + 1 :])
    err = serve(monkeypatch, capsys, model)
    assert f"{model} is not the file metadata.json describes (exported from {checkpoint_of(folder)}" in err


@pytest.mark.parametrize("name", ["model.onnx", "model_int8.pt"])
def test_a_described_file_its_runtime_cannot_load_is_refused_in_one_line(exported, tmp_path, monkeypatch, capsys, name):
    """As from a newer onnxruntime or torch than the server's: the file is the one metadata.json describes."""
    folder = copy_of(exported(QUICKEST), tmp_path)
    (folder / name).write_bytes(b"written by a runtime from the future")
    write_metadata(folder, read_metadata(folder / name))  # describes the file as it now is
    err = serve(monkeypatch, capsys, folder / name)
    assert err.startswith(f"error: {folder / name} does not load (") and err.endswith("); export it again")


def test_a_model_file_beside_another_exports_metadata_is_refused_naming_that_export(
    exported, tmp_path, monkeypatch, capsys
):
    if not OTHERS:
        pytest.skip("this project has one task")
    ours, theirs = exported(QUICKEST), exported(OTHERS[0])
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(ours / "model.onnx", folder)
    shutil.copy(theirs / "metadata.json", folder)
    err = serve(monkeypatch, capsys, folder / "model.onnx")
    assert f"(exported from {checkpoint_of(theirs)} of {OTHERS[0]})" in err


def test_a_file_left_by_an_earlier_export_is_not_served_with_the_next_ones_metadata(
    exported, tmp_path, monkeypatch, capsys, trained
):
    """An export without --quantize into a folder that held an int8 export: model_int8.pt is the earlier model."""
    folder = copy_of(exported(QUICKEST), tmp_path)
    export(load_checkpoint(trained(QUICKEST)), folder, formats=("onnx",))
    err = serve(monkeypatch, capsys, folder / "model_int8.pt")
    assert "the metadata.json beside it describes model.onnx, not this one" in err
    (folder / "metadata.json").write_text('{"task": "xo')  # cut short
    assert "is not the JSON `export` writes" in serve(monkeypatch, capsys, folder / "model.onnx")


def limit_file_size(size: int):
    """For a child process: a write past `size` bytes into any file fails with EFBIG, as into a full disk (no root
    needed: RLIMIT_FSIZE, with the signal that would kill the process ignored)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return limit


def run_limited(args: list[str], size: int, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "{{ cookiecutter.__package }}", *args]
    limit = limit_file_size(size)
    return subprocess.run(command, cwd=cwd, env=launch_env(), capture_output=True, text=True, preexec_fn=limit)


def assert_one_line_about(done: subprocess.CompletedProcess, path: str) -> None:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(errors) == 1 and path in errors[0] and "not written (File too large)" in errors[0], errors
    assert "free on the disk of" in errors[0]


@pytest.mark.slow  # a process of its own
def test_fit_on_a_full_disk_says_so_in_one_line_and_leaves_no_partial_checkpoint(trained, tmp_path, data_args):
    limits = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    # Half a checkpoint (20 KB for XOR, optimizer state and all): the logs and the config fit, a checkpoint does not.
    size = trained(QUICKEST).stat().st_size // 2
    done = run_limited(cli_args("fit", QUICKEST, data_args, *limits), size, tmp_path)
    assert_one_line_about(done, ".ckpt")
    assert not [path.name for path in tmp_path.rglob("*") if ".ckpt" in path.name]


@pytest.mark.slow  # a process of its own
def test_export_on_a_full_disk_says_so_in_one_line_and_leaves_the_earlier_export_as_it_was(trained, tmp_path):
    checkpoint, output = trained(QUICKEST), tmp_path / "out" / "export"
    export(load_checkpoint(checkpoint), output, formats=("onnx",))
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    # 4 KB: every exported file is larger.
    done = run_limited(["export", "--ckpt_path", str(checkpoint), "--output", str(output)], 4_000, tmp_path)
    assert_one_line_about(done, str(output))
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
    assert [path.name for path in output.parent.iterdir()] == ["export"]  # no staging folder left beside it
