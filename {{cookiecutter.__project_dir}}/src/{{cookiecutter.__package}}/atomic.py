"""Files written whole or not at all: checkpoints, exported models and their metadata.json.

A file is written to a temporary name beside its place, flushed to the disk, and renamed into place (a rename
within a folder is atomic), so that a full disk or a killed process leaves the previous file, or none, never a
cut-short one. Lightning writes checkpoints through its strategy's `checkpoint_io`; `AtomicCheckpointIO` is
that writer for the local disk, and a full disk becomes one line that says where, and how much room is left.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.plugins.io import TorchCheckpointIO

from . import ConfigError


def write_whole(path: Path, data: bytes | memoryview) -> None:
    """`data` into `path`, through a temporary file that is renamed into place once on the disk. An OSError (a full
    disk) leaves `path` as it was, and names it as the file it failed to write."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # on the disk before the rename: a crash then leaves the old file or the new one
        os.replace(temporary, path)
    except OSError as err:
        err.filename = str(path)  # the file it was writing, not its temporary name
        raise
    finally:
        temporary.unlink(missing_ok=True)


def save_whole(obj: Any, path: Path) -> None:
    """torch.save, whole or not at all. Saved to memory first: writing into a file, torch reports a full disk as a
    RuntimeError about zip offsets, not as the OSError it is."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_whole(path, buffer.getbuffer())


def not_written(path: Path, err: OSError) -> ConfigError:
    """`err`, met while writing `path`, as one line: where, why, and the room left there."""
    folder = next(parent for parent in (path, *path.parents) if parent.is_dir())  # the nearest that exists
    free = shutil.disk_usage(folder).free
    return ConfigError(
        f"{path}: not written ({err.strerror or err}); {human(free)} free on the disk of {folder}: "
        "make room there and run again"
    )


def human(size: float) -> str:
    """1234567 -> '1.2 MiB'."""
    for unit in ("bytes", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with the checkpoint written beside its place and renamed into it, and a full
    disk said in one line. Lightning's own (through fsspec) writes into the system's temporary folder and moves the
    file in: from another disk, that move is a copy into place, which a full disk cuts short, leaving a partial
    best.ckpt. Remote stores (a URL) keep Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # s3://, gs://, ...
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            save_whole(checkpoint, path)
        except OSError as err:
            raise not_written(path, err) from None


def use_atomic_checkpoints(trainer: Trainer) -> None:
    """Give the trainer's strategy AtomicCheckpointIO in place of Lightning's default writer; a writer the user
    chose (a plugin) or the strategy needs (XLA's) is kept."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
