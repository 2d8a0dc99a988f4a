"""`repeat`: one config over seeds (and folds), each an ordinary `fit` run, then a summary of the spread.

    python -m {{ cookiecutter.__package }} repeat --config configs/xor.yaml --seeds 0-4 [--folds 5] [--jobs 2]

Each run is `fit --seed_everything <seed>` (with `--data.folds F --data.fold f` for folds: the data module keeps
fold f of its training data for validation), then `validate` and `test` of its best.ckpt in the same run folder.
The summary holds every validation and test metric of every run, and their mean, standard deviation (n - 1),
minimum and maximum: the spread says how much of a difference between two configs the seed alone makes.
Files: runs/<task>/repeats/<time>/summary.json and spread.png (one strip of points per metric).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer

from .. import ConfigError
from ..runs import RUNS_DIR, task_name
from ..task import Task
from .launch import Run, claim_run_dir, command_parser, in_processes, printed_config


def parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "repeat",
        "Run a config over seeds (and folds), test each run's best.ckpt, and sum up the spread. Other options are "
        "fit's, given to every run.",
        "runs",
    )
    parser.add_argument("--seeds", default="0-4", help="0-4, or 0,3,7 (default: 0-4)")
    parser.add_argument("--folds", type=int, help="also run every fold of the training data (k-fold validation)")
    parser.add_argument("--output", type=Path, help="folder for the summary (default: runs/<task>/repeats/<time>)")
    return parser


def seeds_of(text: str) -> list[int]:
    """`0-4` -> [0, 1, 2, 3, 4]; `0,3,7` -> [0, 3, 7]."""
    if match := re.fullmatch(r"(\d+)-(\d+)", text.strip()):
        first, last = int(match[1]), int(match[2])
        if first <= last:
            return list(range(first, last + 1))
    elif re.fullmatch(r"\d+(,\d+)*", text.strip()):
        return [int(seed) for seed in text.split(",")]
    raise ConfigError(f"--seeds {text}: give a range like 0-4 or a list like 0,3,7")


def main(argv: list[str], run: Run) -> None:
    args, options = parser().parse_known_args(argv)
    seeds = seeds_of(args.seeds)
    if args.jobs < 1 or (args.folds is not None and args.folds < 2):
        raise ConfigError(f"--jobs must be at least 1 and --folds at least 2, got {args.jobs} and {args.folds}")
    fit = ["fit", "--config", args.config, *options]
    config = printed_config(run, fit)
    data = config["data"]
    if args.folds and "folds" not in data["init_args"]:
        raise ConfigError(
            f"--folds: {data['class_path'].rsplit('.', 1)[-1]} cannot make folds (its validation split is not part of "
            "its training data); repeat over --seeds only"
        )
    folds: list[int | None] = list(range(args.folds)) if args.folds else [None]
    runs = [(fit, seed, fold, args.folds, run) for seed in seeds for fold in folds]
    rows = in_processes(args.jobs, one_run, runs)
    task = task_name(config["model"]["class_path"])
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = args.output or Path(RUNS_DIR, task, "repeats", stamp)
    report(rows, folder)


def one_run(fit: list[str], seed: int, fold: int | None, folds: int | None, run: Run) -> dict[str, Any]:
    """fit, then validate and test best.ckpt: the run's folder, its time and epochs, and its metrics."""
    options = [f"--seed_everything={seed}"] + ([f"--data.folds={folds}", f"--data.fold={fold}"] if folds else [])
    claimed: list[Path] = []

    def hook(trainer: Trainer, model: Task) -> None:
        claimed.append(claim_run_dir(trainer))

    start = time.perf_counter()
    cli = run([*fit, *options], trainer_hook=hook)
    fit_seconds = time.perf_counter() - start
    trainer = cli.trainer
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best:
        raise ConfigError("repeat tests each run's best.ckpt: leave --trainer.enable_checkpointing on")
    metrics: dict[str, float] = {}
    for evaluate in (trainer.validate, trainer.test):
        for results in evaluate(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False):
            metrics.update({name: float(value) for name, value in results.items()})
    return {
        "seed": seed,
        "fold": fold,
        "run": str(claimed[0]),
        "fit_seconds": fit_seconds,  # the `fit` command's, from reading the config to the last checkpoint
        "epochs": trainer.current_epoch,  # trained: fewer than max_epochs where early stopping ended the run
        **dict(sorted(metrics.items())),
    }


def report(rows: list[dict[str, Any]], folder: Path) -> None:
    """summary.json, a table of every run and the spread, and spread.png."""
    names = [name for name in rows[0] if name.startswith(("val_", "test_"))]
    spread = {}
    for name in names:
        values = [row[name] for row in rows]
        std = statistics.stdev(values) if len(values) > 1 else None
        spread[name] = {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps({"metrics": spread, "runs": rows}, indent=2) + "\n")
    plot(rows, names, folder / "spread.png")
    width = max(len(os.path.relpath(row["run"])) for row in rows)
    print(f"\n{'seed':>4} {'fold':>4}  {'run':{width}}  " + "  ".join(f"{name:>10}" for name in names))
    for row in rows:
        fold = "" if row["fold"] is None else row["fold"]
        cells = "  ".join(f"{row[name]:10.4f}" for name in names)
        print(f"{row['seed']:>4} {fold:>4}  {os.path.relpath(row['run']):{width}}  {cells}")
    for stat in ("mean", "std", "min", "max"):
        cells = "  ".join(f"{'':>10}" if spread[n][stat] is None else f"{spread[n][stat]:10.4f}" for n in names)
        print(f"{stat:>9}  {'':{width}}  {cells}")
    print(f"\nrepeat: {len(rows)} runs; {folder / 'summary.json'}, {folder / 'spread.png'}")


def plot(rows: list[dict[str, Any]], names: list[str], path: Path) -> None:
    """One panel per metric: each run a point (jittered sideways), with the mean and one standard deviation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names) + 1, 3.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = [row[name] for row in rows]
        offsets = [0.08 * ((i % 5) - 2) for i in range(len(values))]
        ax.scatter(offsets, values, alpha=0.7)
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        ax.errorbar([0.35], [mean], yerr=[std], fmt="D", color="black", capsize=4)
        ax.set_xlim(-0.5, 0.6)
        ax.set_xticks([])
        ax.set_title(name)
        ax.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
