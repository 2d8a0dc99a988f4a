"""Experiments benchmark: the generated project's `sweep` and `repeat`, run through its CLI as a user runs them.

Every measurement is a subprocess `python -m <package> sweep|repeat|fit ...` in a fresh bake of the template,
timed from start to exit (imports, the study's database and pictures included). MNIST comes from
../shared/data/MNIST/raw and the reviews from ../shared/data/rotten_tomatoes, offline. The CLI picks its own
torch threads: all cores in one process with --jobs 1, cores/K in each of K processes with --jobs K.

1. parallel: trials per hour of one sweep of mnist_cnn (8 trials of 1 short epoch, `--pruner none` so that
   every trial does the same work) with `--jobs 2` against `--jobs 1`, alternating which runs first each round;
   the median wall time of each gives `jobs2_vs_jobs1_trials_per_hour` (goal >= 1.7 on 2 cores). The space is
   the shipped configs/sweeps/mnist_cnn.yaml without model.width: the width sets a trial's cost, so with it the
   two sweeps would time different work even with the same --seed (each worker samples with seed + k). The
   same for a sweep of xor (its shipped space and config: 30 epochs of 16 batches), whose trials are too small
   to use two threads: `jobs2_vs_jobs1_trials_per_hour_xor`. Each sweep's CPU seconds over its wall seconds
   say how many cores it kept busy, which is what --jobs can add to.
2. pruning: the same sweep with 12 trials of 4 epochs, `--jobs 1`, with the median pruner against
   `--pruner none`: `pruning_wall_time_saved_fraction` (1 - pruned wall / unpruned wall), beside
   `pruning_epochs_saved_fraction` (the epochs the trials ran, counted in the study's database: the work saved,
   which the machine's load does not blur), the best val_acc of each and whether they differ. The median
   pruner prunes nothing in the first 5 trials (Optuna's n_startup_trials). Both sweeps sample with --seed 0:
   the same first trials; after those, what a pruned trial reported steers the sampler elsewhere.
3. transformer: a sweep of sentiment_transformer over its shipped space (configs/sweeps/sentiment_transformer.yaml,
   scored by val_acc, its best_checkpoint metric) for --budget-minutes with --jobs 2: `sweep` takes a trial
   count, so the study is continued in calls of as many more trials as the time left allows at the pace so far
   (the same command continues a study), until fewer than --jobs fit. Then `repeat --seeds 0-4` of the best
   trial's config.yaml and of the default config, each tested on the test split:
   `transformer_best_minus_default_test_acc` (difference of the means) and each side's standard deviation. The
   difference exceeds the seeds' spread when it is larger than the larger of the two standard deviations;
   Welch's t is recorded too.
4. overhead: a one-trial sweep of xor (its space file holds the config's own lr and hidden, so the trial trains
   the very config) against a plain `fit` of it, alternating, 3 times each: `sweep_overhead_seconds` is the
   difference of the medians.

    python benchmarks/experiments.py                        # everything: about 2 hours on 2 CPU cores
    python benchmarks/experiments.py --only parallel pruning  # these parts; their keys replace theirs in the JSON
    python benchmarks/experiments.py --budget-minutes 20    # a shorter transformer sweep
    python benchmarks/experiments.py --quick                # every part on a few batches: a smoke check
Results: benchmarks/results/experiments.json (--quick writes none unless --output is given).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

import optuna
import torch
import yaml
from training import Project, bake, machine, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "experiments.json"
PARTS = ("parallel", "pruning", "transformer", "overhead")
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
QUICK_LIMITS = ["--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "2"]
QUICK_LIMITS += ["--trainer.limit_test_batches", "2"]
SIZES = {  # per part: full run, --quick
    "parallel": {
        "full": {"trials": 8, "rounds": 2, "epochs": 1, "train_batches": 60, "val_batches": 10, "xor_epochs": 30},
        "quick": {"trials": 4, "rounds": 1, "epochs": 1, "train_batches": 3, "val_batches": 2, "xor_epochs": 2},
    },
    "pruning": {
        "full": {"trials": 12, "epochs": 4, "train_batches": 50, "val_batches": 10},
        "quick": {"trials": 3, "epochs": 2, "train_batches": 3, "val_batches": 2},
    },
    "transformer": {
        "full": {"seeds": "0-4", "limits": []},
        "quick": {"seeds": "0-1", "limits": ["--trainer.max_epochs", "1", *QUICK_LIMITS]},
    },
    "overhead": {"full": {"rounds": 3}, "quick": {"rounds": 1}},
}
PARALLEL_GOAL = 1.7


def run_sweep(project: Project, task: str, study: str, *args: str) -> tuple[float, dict]:
    """`sweep --study <study> ...` in the project: its wall seconds and its summary.json."""
    seconds = project.run("sweep", "--study", study, *args)
    return seconds, json.loads((project.path / "runs" / task / "sweeps" / study / "summary.json").read_text())


def mnist_space(project: Project, work: Path) -> Path:
    """The shipped mnist_cnn space without model.width, whose value sets what a trial costs."""
    space = yaml.safe_load((project.path / "configs" / "sweeps" / "mnist_cnn.yaml").read_text())
    del space["model.width"]
    path = work / "mnist_cnn_space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def mnist_sweep(data_dir: Path, space: Path, size: dict) -> list[str]:
    """The options of the MNIST sweeps, before --trials, --jobs and --pruner."""
    return [
        *("--config", "configs/mnist_cnn.yaml", "--space", str(space)),
        *("--data.data_dir", str(data_dir), "--data.download", "false", *QUIET),
        *("--trainer.max_epochs", str(size["epochs"]), "--trainer.limit_train_batches", str(size["train_batches"])),
        *("--trainer.limit_val_batches", str(size["val_batches"])),
    ]


def epochs_run(project: Project, task: str, study: str) -> int:
    """The epochs a study's trials ran: each trial reports its metric once per validation epoch."""
    storage = f"sqlite:///{project.path / 'runs' / task / 'sweeps' / study}.db"
    return sum(len(trial.intermediate_values) for trial in optuna.load_study(study_name=study, storage=storage).trials)


def completed(summary: dict, trials: int) -> None:
    finished = summary["counts"]["complete"] + summary["counts"]["pruned"]
    if finished != trials:
        sys.exit(f"study {summary['study']}: {summary['counts']}, expected {trials} finished trials")


# --- the parts: each returns its keys of experiments.json ----------------------------------------


def sweep_walls(project: Project, task: str, options: list[str], size: dict) -> dict[int, list[dict]]:
    """The same sweep with --jobs 1 and --jobs 2, size["rounds"] times, alternating which runs first: per --jobs,
    each sweep's wall and CPU seconds."""
    walls: dict[int, list[dict]] = {1: [], 2: []}
    for round_ in range(size["rounds"]):
        for jobs in (1, 2) if round_ % 2 == 0 else (2, 1):  # alternate against drift in the machine's load
            study = f"parallel_{task}_{round_}_jobs{jobs}"
            args = ["--trials", str(size["trials"]), "--jobs", str(jobs), "--pruner", "none", "--seed", "0", *options]
            seconds, summary = run_sweep(project, task, study, *args)
            completed(summary, size["trials"])
            walls[jobs].append({"wall": seconds, "cpu": project.commands[-1]["cpu_seconds"]})
    return walls


def parallel(project: Project, work: Path, data_dir: Path, size: dict) -> dict:
    sweeps = {
        "mnist_cnn": mnist_sweep(data_dir, mnist_space(project, work), size),
        "xor": ["--config", "configs/xor.yaml", *QUIET, "--trainer.max_epochs", str(size["xor_epochs"])],
    }
    measured = {task: sweep_walls(project, task, options, size) for task, options in sweeps.items()}
    per_hour = {
        task: {jobs: size["trials"] * 3600 / statistics.median(r["wall"] for r in runs) for jobs, runs in w.items()}
        for task, w in measured.items()
    }
    busy = {  # how many cores one sweep kept busy: CPU seconds over wall seconds
        task: {jobs: statistics.median(r["cpu"] / r["wall"] for r in runs) for jobs, runs in w.items()}
        for task, w in measured.items()
    }
    mnist, xor = per_hour["mnist_cnn"], per_hour["xor"]
    return {
        "jobs2_vs_jobs1_trials_per_hour": mnist[2] / mnist[1],
        "jobs1_trials_per_hour": mnist[1],
        "jobs2_trials_per_hour": mnist[2],
        "jobs2_vs_jobs1_trials_per_hour_xor": xor[2] / xor[1],
        "parallel": {
            "sizes": size,
            "runs": {task: {f"jobs{jobs}": runs for jobs, runs in w.items()} for task, w in measured.items()},
            "trials_per_hour": {task: {f"jobs{jobs}": v for jobs, v in r.items()} for task, r in per_hour.items()},
            "cores_busy": {task: {f"jobs{jobs}": v for jobs, v in b.items()} for task, b in busy.items()},
            "means": "trials x 3600 / the median wall time of the sweep command (start to exit) of each --jobs; "
            "rounds alternate which runs first. cores_busy: the sweep's CPU seconds (all its processes) over its "
            "wall seconds. mnist_cnn is the goal's sweep; xor's trials are too small to use two threads",
            "goal": PARALLEL_GOAL,
        },
    }


def pruning(project: Project, work: Path, data_dir: Path, size: dict) -> dict:
    options = mnist_sweep(data_dir, mnist_space(project, work), size)
    runs: dict[str, dict] = {}
    for pruner in ("median", "none"):
        args = ["--trials", str(size["trials"]), "--jobs", "1", "--pruner", pruner, "--seed", "0", *options]
        seconds, summary = run_sweep(project, "mnist_cnn", f"pruning_{pruner}", *args)
        completed(summary, size["trials"])
        runs[pruner] = {
            "wall_seconds": seconds,
            "epochs": epochs_run(project, "mnist_cnn", f"pruning_{pruner}"),
            "best_value": summary["best"]["value"],
            "best_params": summary["best"]["params"],
            "counts": summary["counts"],
            "metric": summary["metric"],
        }
    median, none = runs["median"], runs["none"]
    return {
        "pruning_wall_time_saved_fraction": 1 - median["wall_seconds"] / none["wall_seconds"],
        "pruning_epochs_saved_fraction": 1 - median["epochs"] / none["epochs"],
        "pruning_best_value": median["best_value"],
        "no_pruning_best_value": none["best_value"],
        "pruning_best_value_differs": median["best_value"] != none["best_value"],
        "pruning": {
            "sizes": size,
            "median": median,
            "none": none,
            "means": "1 - wall time (epochs run) of the sweep with the median pruner / without; best_value: the best "
            "trial's metric on validation. Both sample with --seed 0; a pruned trial steers the later samples",
        },
    }


def budgeted_sweep(project: Project, task_options: list[str], budget_s: float, jobs: int) -> tuple[list, dict]:
    """Continues one study in calls of as many trials as the time left allows at the pace so far: `jobs` trials
    first, then until fewer than `jobs` more fit. The wall seconds of each call, and the last summary."""
    calls: list[float] = []
    trials, summary = 0, {}
    while True:
        left = budget_s - sum(calls)
        more = jobs if not calls else int(left / (sum(calls) / trials)) // jobs * jobs
        if more < jobs:
            return calls, summary
        trials += more
        seconds, summary = run_sweep(
            project, "sentiment_transformer", "transformer", "--trials", str(trials), "--jobs", str(jobs), *task_options
        )
        calls.append(seconds)


def transformer(project: Project, work: Path, data_dir: Path, size: dict, budget_minutes: float, jobs: int) -> dict:
    options = ["--data.dataset", str(data_dir / "rotten_tomatoes"), *QUIET, *size["limits"]]
    sweep_options = ["--config", "configs/sentiment_transformer.yaml", *options]
    calls, summary = budgeted_sweep(project, sweep_options, budget_minutes * 60, jobs)
    best = summary["best"]
    repeats = {}
    for name, config in (("default", "configs/sentiment_transformer.yaml"), ("best", best["config"])):
        out = work / f"repeat-{name}"
        args = ["--config", config, "--seeds", size["seeds"], "--jobs", str(jobs), "--output", str(out)]
        seconds = project.run("repeat", *args, *options)
        repeated = json.loads((out / "summary.json").read_text())
        accuracies = [row["test_acc"] for row in repeated["runs"]]
        repeats[name] = {**repeated["metrics"]["test_acc"], "test_acc": accuracies, "wall_seconds": seconds}
    default, tuned = repeats["default"], repeats["best"]
    difference = tuned["mean"] - default["mean"]
    spread = max(default["std"], tuned["std"])
    # Welch: the difference over its standard error, and the Welch-Satterthwaite degrees of freedom
    n = {name: len(r["test_acc"]) for name, r in repeats.items()}
    squared = {name: r["std"] ** 2 / n[name] for name, r in repeats.items()}  # each mean's squared standard error
    error = math.sqrt(sum(squared.values()))
    welch_t = difference / error if error else None
    welch_df = error**4 / sum(squared[name] ** 2 / (n[name] - 1) for name in n) if error else None
    sentiment = REPO_ROOT / "benchmarks" / "results" / "sentiment.json"
    return {
        "transformer_best_minus_default_test_acc": difference,
        "transformer_default_test_acc": default["mean"],
        "transformer_best_test_acc": tuned["mean"],
        "transformer_default_test_acc_std": default["std"],
        "transformer_best_test_acc_std": tuned["std"],
        "transformer_difference_exceeds_spread": abs(difference) > spread,
        "transformer": {
            "budget_minutes": budget_minutes,
            "jobs": jobs,
            "sweep_calls_seconds": calls,
            "counts": summary["counts"],
            "metric": summary["metric"],
            "best_trial": best["number"],
            "best_value": best["value"],
            "best_params": best["params"],
            "repeats": repeats,
            "welch_t": welch_t,
            "welch_df": welch_df,
            "tfidf_lr_test_acc": json.loads(sentiment.read_text())["tfidf_lr_test_acc"] if sentiment.exists() else None,
            "means": "repeat --seeds over the best trial's config.yaml and over configs/sentiment_transformer.yaml, "
            "each run's best.ckpt tested on the test split; exceeds_spread: |difference of the means| > the larger "
            "standard deviation (n - 1); welch_t: the difference over its standard error",
        },
    }


def overhead(project: Project, work: Path, size: dict) -> dict:
    config = yaml.safe_load((project.path / "configs" / "xor.yaml").read_text())["model"]["init_args"]
    space = work / "xor_space.yaml"  # one choice per option: the config's own values
    space.write_text(yaml.safe_dump({f"model.{name}": [config[name]] for name in ("lr", "hidden")}))
    walls: dict[str, list[float]] = {"fit": [], "sweep": []}
    for round_ in range(size["rounds"]):
        for kind in ("fit", "sweep") if round_ % 2 == 0 else ("sweep", "fit"):
            if kind == "fit":
                walls[kind].append(project.run("fit", "--config", "configs/xor.yaml", *QUIET))
            else:
                args = ["--config", "configs/xor.yaml", "--space", str(space), "--trials", "1", *QUIET]
                seconds, summary = run_sweep(project, "xor", f"overhead_{round_}", *args)
                completed(summary, 1)
                walls[kind].append(seconds)
    fit, sweep = (statistics.median(walls[kind]) for kind in ("fit", "sweep"))
    return {
        "sweep_overhead_seconds": sweep - fit,
        "overhead": {
            "rounds": size["rounds"],
            "wall_seconds": walls,
            "fit_seconds": fit,
            "sweep_seconds": sweep,
            "means": "median wall time of `sweep --trials 1` (a space of the config's own values) minus that of "
            "`fit` of configs/xor.yaml, alternating",
        },
    }


# --- the table and the driver ---------------------------------------------------------------------


def table(results: dict, parts: list[str]) -> None:
    rows: list[tuple[str, str]] = []
    if "parallel" in parts:
        ratio = results["jobs2_vs_jobs1_trials_per_hour"]
        verdict = "meets" if ratio >= PARALLEL_GOAL else "BELOW"
        for task in ("mnist_cnn", "xor"):
            per_hour, busy = (results["parallel"][key][task] for key in ("trials_per_hour", "cores_busy"))
            for jobs in (1, 2):
                value = f"{per_hour[f'jobs{jobs}']:.0f} ({busy[f'jobs{jobs}']:.2f} cores busy)"
                rows.append((f"parallel: {task} trials/hour, --jobs {jobs}", value))
        rows += [
            ("parallel: mnist_cnn jobs 2 / jobs 1", f"{ratio:.2f}x, {verdict} the goal of {PARALLEL_GOAL}x"),
            ("parallel: xor jobs 2 / jobs 1", f"{results['jobs2_vs_jobs1_trials_per_hour_xor']:.2f}x"),
        ]
    if "pruning" in parts:
        for pruner in ("median", "none"):
            p = results["pruning"][pruner]
            counts = ", ".join(f"{n} {state}" for state, n in p["counts"].items() if n)
            value = (
                f"{p['wall_seconds']:.0f} s, {p['epochs']} epochs, best {p['metric']} {p['best_value']:.4f} ({counts})"
            )
            rows.append((f"pruning: --pruner {pruner}", value))
        wall, epochs = (100 * results[f"pruning_{kind}_saved_fraction"] for kind in ("wall_time", "epochs"))
        rows.append(("pruning: wall time saved", f"{wall:.1f} % ({epochs:.1f} % of the epochs)"))
    if "transformer" in parts:
        t = results["transformer"]
        seeds = len(t["repeats"]["best"]["test_acc"])
        calls = t["sweep_calls_seconds"]
        counts = ", ".join(f"{n} {state}" for state, n in t["counts"].items() if n)
        params = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["best_params"].items()]
        welch = "" if t["welch_t"] is None else f", Welch t {t['welch_t']:.2f} (df {t['welch_df']:.1f})"
        rows += [
            ("transformer: sweep", f"{counts} in {len(calls)} calls, {sum(calls) / 60:.1f} min"),
            ("transformer: best trial", f"{t['metric']} {t['best_value']:.4f}, {' '.join(params)}"),
        ]
        for name in ("default", "best"):
            mean, std = results[f"transformer_{name}_test_acc"], results[f"transformer_{name}_test_acc_std"]
            rows.append((f"transformer: {name} config, test_acc ({seeds} seeds)", f"{mean:.4f} ± {std:.4f}"))
        difference = results["transformer_best_minus_default_test_acc"]
        exceeds = "exceeds" if results["transformer_difference_exceeds_spread"] else "within"
        rows.append(("transformer: best - default", f"{difference:+.4f}, {exceeds} the larger std{welch}"))
        if t["tfidf_lr_test_acc"] is not None:
            rows.append(("transformer: TF-IDF baseline (sentiment.json)", f"{t['tfidf_lr_test_acc']:.4f}"))
    if "overhead" in parts:
        o = results["overhead"]
        medians = f"{o['fit_seconds']:.1f} s / {o['sweep_seconds']:.1f} s (medians of {o['rounds']})"
        rows += [
            ("overhead: fit / sweep --trials 1", medians),
            ("overhead: sweep - fit", f"{results['sweep_overhead_seconds']:.1f} s"),
        ]
    width = max(len(label) for label, _ in rows)
    print()
    for label, value in rows:
        print(f"{label:{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, help="these parts; their keys replace theirs in the JSON")
    parser.add_argument("--quick", action="store_true", help="every part on a few batches: a smoke check")
    parser.add_argument("--budget-minutes", type=float, help="the transformer sweep's time (default: 60; --quick: 2.5)")
    parser.add_argument(
        "--jobs", type=int, default=2, help="processes of the transformer's sweep and repeats (default: 2)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help="holds MNIST/raw/*-ubyte and rotten_tomatoes/{train,validation,test}.csv (default: ../shared/data)",
    )
    parser.add_argument("--output", type=Path, help=f"JSON results (default: {RESULTS.name}; --quick: none)")
    args = parser.parse_args()
    output = args.output or (None if args.quick else RESULTS)
    parts = args.only or list(PARTS)
    scale = "quick" if args.quick else "full"
    budget = args.budget_minutes or (2.5 if args.quick else 60)  # quick: time for a second call that continues
    data_dir = args.data_dir.resolve()

    threads, run_load_before = torch.get_num_threads(), os.getloadavg()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-experiments-") as tmp:
        work = Path(tmp)
        project = Project(bake(work / "bake"), work)
        for part in parts:
            print(f"{part} ...", flush=True)
            load_before, first = os.getloadavg(), len(project.commands)
            size = SIZES[part][scale]
            if part == "parallel":
                measured = parallel(project, work, data_dir, size)
            elif part == "pruning":
                measured = pruning(project, work, data_dir, size)
            elif part == "transformer":
                measured = transformer(project, work, data_dir, size, budget, args.jobs)
            else:
                measured = overhead(project, work, size)
            record = {"machine": machine(threads, load_before), "commands": project.commands[first:]}
            measured[part] |= record | {"quick": args.quick}
            results |= measured
    table(results, parts)
    results["machine"] = machine(threads, run_load_before)  # the whole run's; each part holds its own too
    if output:
        kept = json.loads(output.read_text()) if output.exists() else {}
        write_results(output, {**kept, **results})


if __name__ == "__main__":
    main()
