"""What `sweep` and `repeat` share: the config as `fit` would read it, a run folder claimed before the run starts,
and worker processes.

The TensorBoard and CSV loggers name a new run after the folders they find (`version_N`, one past the highest), so
two runs that start at once can pick the same folder; every run of a sweep or a repeat makes its folder under a lock
that all of them take (an flock on `runs/.claim.lock`), so each finds the others' folders made.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from .. import ConfigError
from ..runs import run_dir

Run = Callable[..., Any]  # cli.run: `run(args, trainer_hook=...)` runs one subcommand of the CLI
T = TypeVar("T")


def command_parser(subcommand: str, description: str, each: str) -> argparse.ArgumentParser:
    """The options `sweep` and `repeat` share: the config, and how many of `each` (trials, runs) run at once."""
    parser = argparse.ArgumentParser(prog=f"{{ cookiecutter.__package }} {subcommand}", description=description)
    parser.add_argument("--config", required=True, help="the task's config, configs/<task>.yaml")
    parser.add_argument("--jobs", type=int, default=1, help=f"{each} at once, each in its own process (default: 1)")
    return parser


def printed_config(run: Run, fit: list[str]) -> dict[str, Any]:
    """The whole config that `fit` would run with these arguments (its --print_config), every option in it: checks
    the options by the CLI's own parser, which prints the error and exits 2 on a bad one."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            run([*fit, "--print_config"])
    except SystemExit as exit_:
        if exit_.code:
            raise
    return yaml.safe_load(printed.getvalue())


def claim_run_dir(trainer: Trainer) -> Path:
    """Make the new run's folder now, under the lock (see above), and return it."""
    logger = trainer.logger
    if logger is None:
        raise ConfigError("--trainer.logger false: each run of a sweep or a repeat needs its run folder; keep a logger")
    folder = run_dir(trainer)
    if not isinstance(logger, TensorBoardLogger | CSVLogger):  # W&B and MLflow name a run by a unique id
        return folder
    runs = Path(str(logger.save_dir))
    runs.mkdir(parents=True, exist_ok=True)
    with (runs / ".claim.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        folder = run_dir(trainer)  # the logger picks its version here, seeing every folder claimed before
        if folder.exists():
            raise ConfigError(f"run folder {folder} exists already: runs of a sweep or a repeat each need their own")
        folder.mkdir(parents=True)
    return folder


def use_threads(jobs: int) -> None:
    """A worker's share of the cores: K processes at once each get cores/K torch threads."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))


def in_processes(jobs: int, work: Callable[..., T], arguments: Iterable[tuple]) -> list[T]:
    """`work(*a)` for each `a`, in this process when jobs is 1, else in `jobs` fresh processes (spawned: nothing of
    this process's torch state is shared); results in order, and a worker's error raised here."""
    if jobs == 1:
        return [work(*a) for a in arguments]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=use_threads, initargs=(jobs,)) as pool:
        futures = [pool.submit(work, *a) for a in arguments]
        return [future.result() for future in futures]
