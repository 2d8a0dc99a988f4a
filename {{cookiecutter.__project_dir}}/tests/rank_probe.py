"""Callbacks for the tests that launch the CLI in other processes. RankProbe: every rank saves what it ended with,
for the test to compare; KillAtEpochStart: a crash in the middle of a run.

    --trainer.callbacks+=rank_probe.RankProbe   (with tests/ on PYTHONPATH)

Each rank writes `rank_probe/rank<global rank>.pt` in the working folder: its rank, world size and node
rank, the global step and the number of optimizers, the logged metrics and the model's weights.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class RankProbe(Callback):
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        folder = Path("rank_probe")
        folder.mkdir(exist_ok=True)
        probe = {
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "node_rank": trainer.node_rank,
            "global_step": trainer.global_step,
            "optimizers": len(trainer.optimizers),
            "metrics": {name: float(value) for name, value in trainer.callback_metrics.items() if value.numel() == 1},
            "weights": {name: tensor.detach().cpu() for name, tensor in pl_module.state_dict().items()},
        }
        torch.save(probe, folder / f"rank{trainer.global_rank}.pt")


def read_probes(folder: Path) -> list[dict]:
    """The probes every rank wrote, in rank order."""
    return [torch.load(path, weights_only=True) for path in sorted((folder / "rank_probe").glob("rank*.pt"))]


class KillAtEpochStart(Callback):
    """Kills its own process (SIGKILL: no clean-up at all) when training epoch $KILL_AT_EPOCH starts, as a crash or
    an out-of-memory kill would: the checkpoints of the epochs before it are all that is left."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == int(os.environ.get("KILL_AT_EPOCH", "2")):
            os.kill(os.getpid(), signal.SIGKILL)
