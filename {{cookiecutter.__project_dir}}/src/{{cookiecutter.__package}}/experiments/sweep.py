"""`sweep`: an Optuna search over a space of `fit` options; every trial is an ordinary `fit` run.

    python -m {{ cookiecutter.__package }} sweep --config configs/mnist_cnn.yaml --trials 20 --jobs 2 --trainer.max_epochs 3

A trial samples the space (configs/sweeps/<task>.yaml, space.py), runs `fit` with what it sampled as options, and
is scored by the task's `best_checkpoint` metric on validation (best.ckpt's value). After every validation epoch
the pruner (median or successive halving) may stop a trial that does worse than the others did at that epoch. The
study lives in a database (SQLite under runs/ unless --storage names one), so any number of processes and
machines work on one study; a trial whose process dies (kill -9, a lost node) stops sending its heartbeat, and is
marked failed and queued again with the same values. `--trials N` is the study's total of finished trials
(complete or pruned), not N more: the same command started again continues the study to N.

Its files, beside the study: runs/<task>/sweeps/<study>.db (the default database) and runs/<task>/sweeps/<study>/
(summary.json, history.png, importance.png, slice_<option>.png). `fit --config <best trial's run>/config.yaml` runs
the best trial again, without the sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import optuna
from lightning.pytorch import Callback, LightningModule, Trainer
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from .. import ConfigError
from ..runs import RUNS_DIR, task_name
from ..task import Task
from .launch import Run, claim_run_dir, command_parser, in_processes, printed_config
from .space import Param, check_names, load_space

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries, plots
optuna.logging.set_verbosity(optuna.logging.WARNING)  # here, so that --jobs workers (which import this) say it too
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PRUNERS = {
    "median": optuna.pruners.MedianPruner,  # stops a trial below the median of the others at the same epoch
    "halving": optuna.pruners.SuccessiveHalvingPruner,  # keeps the best share of trials at each rung
    "none": optuna.pruners.NopPruner,
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """All a worker needs to run trials of the study: picklable, for --jobs."""

    fit: list[str]  # `fit --config ... [options]`: every trial's command before what it sampled
    space: list[Param]
    storage: str
    study: str
    trials: int
    metric: str
    direction: Literal["minimize", "maximize"]
    pruner: str
    heartbeat: int
    seed: int | None


class Pruning(Callback):
    """Reports the trial's metric to Optuna after every validation epoch; when the pruner says the trial does
    worse than the others did by that epoch, stops its training there (the run keeps its checkpoints)."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or not trainer.is_global_zero or value is None:
            return
        self.trial.report(float(value), step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True


class Surplus(Exception):
    """A trial started by one worker while others already run the last ones: it ends at once, as failed."""


def parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "sweep",
        "Search a space of fit options with Optuna; every trial is a `fit` run. Other options are fit's "
        "(--trainer.max_epochs 3, --data.data_dir ...), given to every trial.",
        "trials",
    )
    parser.add_argument("--space", type=Path, help="the space to search (default: configs/sweeps/<task>.yaml)")
    parser.add_argument(
        "--trials",
        type=int,
        default=20,
        help="finished trials (complete or pruned) the study holds in the end, in total: started again, a sweep "
        "runs only those still missing (default: 20)",
    )
    parser.add_argument(
        "--storage",
        help="the study's database, an SQLAlchemy URL: postgresql+psycopg://user:password@host/db for many "
        "machines (default: sqlite:///runs/<task>/sweeps/<study>.db)",
    )
    parser.add_argument("--study", help="the study's name: the same name continues it (default: the task's name)")
    parser.add_argument("--pruner", choices=list(PRUNERS), default="median", help="(default: median)")
    parser.add_argument(
        "--seed", type=int, help="the sampler's seed: a new study with the same seed and --jobs samples alike"
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        help="seconds between a running trial's signs of life; one silent for twice that is failed and queued "
        "again (default: 60)",
    )
    return parser


def main(argv: list[str], run: Run) -> None:
    args, options = parser().parse_known_args(argv)
    for name, value in (("--trials", args.trials), ("--jobs", args.jobs), ("--heartbeat", args.heartbeat)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    fit = ["fit", "--config", args.config, *options]
    config = printed_config(run, fit)
    task = task_name(config["model"]["class_path"])
    space_path = args.space or Path("configs", "sweeps", f"{task}.yaml")
    space = load_space(space_path)
    check_space(space, space_path, options, config, run, fit)
    metric, mode = model_class(config["model"]["class_path"]).best_checkpoint
    name = args.study or task
    folder = Path(RUNS_DIR, task, "sweeps")
    storage_url = args.storage or f"sqlite:///{folder / name}.db"
    if args.storage is None:
        folder.mkdir(parents=True, exist_ok=True)
    direction: Literal["minimize", "maximize"] = "minimize" if mode == "min" else "maximize"
    plan = Plan(fit, space, storage_url, name, args.trials, metric, direction, args.pruner, args.heartbeat, args.seed)
    study = open_study(plan)
    print(f"sweep: study {name} in {shown(storage_url)}: {metric} ({mode}) over {', '.join(p.name for p in space)}")
    in_processes(args.jobs, work, [(plan, run, worker) for worker in range(args.jobs)])
    report(study, plan, folder / name)


def check_space(space: list[Param], path: Path, options: list[str], config: dict, run: Run, fit: list[str]) -> None:
    """Refuse an option the space samples that `fit` lacks, or that the command line sets too; then have `fit`'s
    parser check both ends of every range and every choice (a float for an int option)."""
    check_names(space, path, config, " ".join(fit[:3]))
    for param in space:
        if any(option == f"--{param.name}" or option.startswith(f"--{param.name}=") for option in options):
            raise ConfigError(f"--{param.name} is both in {path} and on the command line; give it in one place")
    longest = max(len(param.extremes()) for param in space)
    for i in range(longest):
        printed_config(run, [*fit, *(p.option(p.extremes()[i % len(p.extremes())]) for p in space)])


def model_class(class_path: str) -> type[Task]:
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def shown(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def storage(plan: Plan) -> RDBStorage:
    """The study's database, with heartbeats: a trial silent for 2 heartbeats is failed, and queued again (3 times)."""
    from sqlalchemy.exc import IntegrityError

    connect = {"connect_args": {"timeout": 60}} if plan.storage.startswith("sqlite") else {}  # waits for a busy file
    for attempt in range(3):
        try:
            return RDBStorage(
                plan.storage,
                engine_kwargs=connect,
                heartbeat_interval=plan.heartbeat,
                grace_period=2 * plan.heartbeat,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except Exception as err:  # noqa: BLE001 - no server, a wrong password, a missing driver: the user's to hear
            failure: Exception = err
            # Sweeps that start at once on a new database (an array, a sweep per GPU) all make its tables: the
            # ones that lose the race see them made (SQLite: "table ... already exists"; PostgreSQL: a duplicate
            # key) and try again, finding them.
            if not (isinstance(err, IntegrityError) or "already exists" in str(err)):
                break
            time.sleep(1 + attempt)
    reason = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
    raise ConfigError(f"--storage {shown(plan.storage)}: cannot open the database ({reason}); start it, or fix the URL")


def open_study(plan: Plan) -> optuna.Study:
    """Create the study, or continue it when it searched the same space for the same metric."""
    study = optuna.create_study(
        study_name=plan.study, storage=storage(plan), direction=plan.direction, load_if_exists=True
    )
    searched = {"metric": plan.metric, "space": [dataclasses.asdict(p) for p in plan.space]}
    searched = json.loads(json.dumps(searched))  # tuples as lists, as the database gives them back
    if study.user_attrs.get("searched", searched) != searched:
        raise ConfigError(
            f"study {plan.study} in {shown(plan.storage)} searched another space or metric; give --study a new name"
        )
    study.set_user_attr("searched", searched)
    return study


def work(plan: Plan, run: Run, worker: int) -> None:
    """Run trials until the study holds plan.trials finished ones; wait while the last ones run elsewhere. With a
    seed, worker k samples with seed + k: the same draws each time, and not the same as the other workers'."""
    sampler = optuna.samplers.TPESampler(seed=None if plan.seed is None else plan.seed + worker)
    pruner = PRUNERS[plan.pruner]()
    study = optuna.load_study(study_name=plan.study, storage=storage(plan), sampler=sampler, pruner=pruner)
    failures = 0
    while True:
        fail_stale_trials(study)  # a trial whose process died: failed, and queued again
        states = [trial.state for trial in study.get_trials(deepcopy=False)]
        finished, running = sum(s in FINISHED for s in states), states.count(TrialState.RUNNING)
        if finished >= plan.trials:
            return
        if finished + running >= plan.trials and TrialState.WAITING not in states:
            time.sleep(1)  # the last trials run elsewhere: wait for them, or for a dead one's retry
            continue
        study.optimize(partial(objective, plan=plan, run=run), n_trials=1, catch=(Surplus,))
        last = study.get_trials(deepcopy=False)[-1]
        failures = failures + 1 if last.state == TrialState.FAIL and not last.user_attrs.get("surplus") else 0
        if failures >= 3:
            raise ConfigError(f"3 trials in a row failed ({plan.metric} not finite: diverged); narrow the space")


def objective(trial: optuna.Trial, plan: Plan, run: Run) -> float:
    """One trial: `fit` with the sampled options; its value is best.ckpt's metric."""
    ahead = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    if sum(other.number < trial.number for other in ahead) >= plan.trials:  # another worker started it at once
        trial.set_user_attr("surplus", True)
        raise Surplus
    sampled = [param.option(param.suggest(trial)) for param in plan.space]
    pruning = Pruning(trial, plan.metric)

    def hook(trainer: Trainer, model: Task) -> None:
        if tuple(model.best_checkpoint) != (plan.metric, "min" if plan.direction == "minimize" else "max"):
            kept_by = model.best_checkpoint[0]
            raise ConfigError(f"{type(model).__name__} keeps best.ckpt by {kept_by}: no validation metric to search")
        folder = claim_run_dir(trainer)
        trial.set_user_attr("run", str(folder.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        # Added to the Trainer, not the config: the trial's config.yaml runs again without the study.
        trainer.callbacks.append(pruning)  # type: ignore[attr-defined]  # Lightning sets it without declaring it

    print(f"\nsweep: trial {trial.number}: {' '.join(sampled)}", file=sys.stderr, flush=True)
    try:
        cli = run([*plan.fit, *sampled], trainer_hook=hook)
    except SystemExit as exit_:  # the CLI has printed why
        raise ConfigError(f"trial {trial.number} stopped: fit exited with status {exit_.code}") from None
    if pruning.pruned_at is not None:
        raise optuna.TrialPruned(f"{plan.metric} at epoch {pruning.pruned_at}")
    best = next(c for c in cli.trainer.checkpoint_callbacks if getattr(c, "monitor", None) == plan.metric)
    if best.best_model_score is None:
        raise ConfigError(f"trial {trial.number}: {plan.metric} was never logged; does the run validate?")
    value = float(best.best_model_score)
    return value if math.isfinite(value) else math.nan  # nan: Optuna marks the trial failed


def report(study: optuna.Study, plan: Plan, folder: Path) -> None:
    """Print the best trial; write summary.json and the study's pictures into `folder`."""
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState if state.is_finished()}
    if not counts["complete"]:
        raise ConfigError(f"no trial of study {plan.study} completed ({counts}); run more --trials, or --pruner none")
    best = study.best_trial
    rows = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            "params": t.params,
            "run": t.user_attrs.get("run"),
            "host": t.user_attrs.get("host"),
            "retry_of": RetryHeartbeatStaleTrialCallback.retried_trial_number(t),
        }
        for t in trials
    ]
    run_folder = Path(best.user_attrs["run"])
    summary = {
        "study": plan.study,
        "storage": shown(plan.storage),
        "metric": plan.metric,
        "direction": plan.direction,
        "counts": counts,
        "best": {**rows[best.number], "config": str(run_folder / "config.yaml")},
        "trials": rows,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    pictures = plot(study, plan, folder)
    print(f"\nsweep: {', '.join(f'{n} {state}' for state, n in counts.items() if n)} in study {plan.study}")
    options = " ".join(param.option(best.params[param.name]) for param in plan.space)
    print(f"best: trial {best.number}, {plan.metric} {best.value:.6g}, {options}")
    print(f"  run folder {os.path.relpath(run_folder)}")
    print(f"  again: fit --config {os.path.relpath(run_folder / 'config.yaml')}")
    print(f"files: {os.path.relpath(folder / 'summary.json')}, " + ", ".join(p.name for p in pictures))


def plot(study: optuna.Study, plan: Plan, folder: Path) -> list[Path]:
    """The optimisation history, the options' importance (2 options or more, 3 finished trials), a slice per option."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    drawn: dict[str, Callable[[], Any]] = {
        "history.png": lambda: plots.plot_optimization_history(study, target_name=plan.metric)
    }
    complete = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if len(plan.space) >= 2 and complete >= 3:
        drawn["importance.png"] = lambda: plots.plot_param_importances(study, target_name=plan.metric)
    for param in plan.space:
        drawn[f"slice_{param.name}.png"] = partial(plots.plot_slice, study, [param.name], target_name=plan.metric)
    written = []
    for name, draw in drawn.items():
        axes = draw()
        figure: Any = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        written.append(folder / name)
    return written
