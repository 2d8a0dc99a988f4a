"""GAN benchmark: the generated DCGAN task against the classic fully-connected GAN, judged by the project's CNN.

Everything runs through the baked project's CLI on the real MNIST files in ../shared/data:

1. The judge: `mnist_cnn`'s default config, trained for --judge-epochs epochs; its test accuracy is reported.
2. Each GAN trains for the same --epochs with `--judge` set, once per seed (--seeds, 2 by default), so every
   validation epoch measures it and best.ckpt is its epoch with the lowest classifier FID. The models: the
   project's DCGAN; the baseline, benchmarks/gan_baseline.py: the MLP generator and discriminator of the original
   GAN paper (as Lightning's GAN example writes them) inside the project's own GAN recipe, so only the networks
   differ; and the DCGAN made class-conditional (`--model.conditional true`).
3. Each best checkpoint is then scored by `test --judge`: 10,000 generated digits against the 10,000
   MNIST test digits: `confident_share` (judged with probability >= 0.9), `class_entropy` (ln 10 = 2.303
   is every digit drawn equally often), `classifier_fid`, and `real_vs_real_fid` (the test digits against
   as many training digits: the floor a perfect generator would reach); for the conditional GAN, which draws
   every digit in turn, `requested_digit_accuracy` (the share read as the digit asked for) and
   `min_digit_accuracy` (that share for the worst digit). Each model's figures are the mean of its seeds.
4. Seed 0's samples, beside the results file: gan_mlp_samples.png (`predict`'s 64 digits from seed 0),
   gan_dcgan_samples.png (a row per InfoGAN category) and gan_conditional_samples.png (a row per digit), each
   of its best epoch.
5. `--search NAME ...`: the DCGAN with one lever's options (SEARCH), judged on validation: each run's measures
   at its epoch of the lowest validation FID, with its best checkpoint's test measures beside them (reported
   once the lever is adopted). Every run keeps its validation measures of each epoch (`val_by_epoch`).

    python benchmarks/gan.py                                   # the config's 15 epochs, 2 seeds each: about 3 hours
    python benchmarks/gan.py --models conditional --seeds 1    # one model (the others' results stay): 25 minutes
    python benchmarks/gan.py --models conditional --first-seed 1 --seeds 1   # seed 1, beside seed 0's run
    python benchmarks/gan.py --quick                           # a few batches each: a smoke check
    python benchmarks/gan.py --search default g256 hinge_sn --epochs 4 --seeds 2   # the levers, judged on validation
Results: benchmarks/results/gan.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from lightning.pytorch import Callback
from training import bake, machine, package_of, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SHARED = REPO_ROOT.parent / "shared" / "data"
QUICK = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "20", "--trainer.limit_val_batches", "4"]
MEASURES = ("confident_share", "class_entropy", "classifier_fid", "real_vs_real_fid")
MODELS = {
    "dcgan": [],
    "mlp": ["--model.class_path", "gan_baseline.MLPGAN", "--model.latent_dim", "100", "--model.categories", "0"],
    "conditional": ["--model.conditional", "true"],
}
# The search for an unconditional GAN worth looking at (issue 25): one lever at a time against the default, judged
# on validation (`--search NAME ...`; the levers are the task's options, see tasks/gan.py).
SEARCH = {
    "default": [],
    "g256": ["--model.generator_width", "128"],  # 256 maps at 7x7, as DCGAN-style MNIST generators have
    "hinge_sn": ["--model.loss", "hinge", "--model.spectral_norm", "true"],
    "ttur": ["--model.d_lr", "0.0004", "--model.lr", "0.0001"],
    "ema": ["--model.ema", "0.999"],
    "hinge_sn_ttur": ["--model.loss", "hinge", "--model.spectral_norm", "true", "--model.d_lr", "0.0004"]
    + ["--model.lr", "0.0001"],
    "g256_ema": ["--model.generator_width", "128", "--model.ema", "0.999"],
    "smooth": ["--model.real_label", "0.9"],
    "batch64": ["--data.batch_size", "64"],  # twice the updates per epoch, at about the same time per epoch
    "batch32": ["--data.batch_size", "32"],  # four times
    "info10": ["--model.categories", "10"],  # InfoGAN's category in the noise, read back by the discriminator (default)
    "info20": ["--model.categories", "20"],  # more categories than digits: each one purer?
    "info30": ["--model.categories", "30"],
}
# A conditional GAN's measures, as the judge logs them: the names they have in gan.json
CONDITIONAL_MEASURES = {
    "requested_class_accuracy": "requested_digit_accuracy",
    "min_class_accuracy": "min_digit_accuracy",
}


class ValByEpoch(Callback):
    """The validation measures of every epoch (the judge's among them), for the search."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            metrics = trainer.callback_metrics
            self.rows.append({name: float(value) for name, value in metrics.items() if name.startswith("val_")})


def worker(spec: dict) -> dict:
    """In the baked project's folder: one step of the benchmark through the CLI, its results as JSON."""
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, "src")
    cli = importlib.import_module(f"{spec['package']}.cli")
    run_dir = importlib.import_module(f"{spec['package']}.runs").run_dir
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    data = ["--data.data_dir", spec["data_dir"], "--data.download", "false"]
    if spec["step"] == "judge":
        common = ["--config", "configs/mnist_cnn.yaml", *data, *quiet]
        start = time.perf_counter()
        fit = cli.run(["fit", *common, *spec["args"]])
        seconds = time.perf_counter() - start
        best = fit.trainer.checkpoint_callback.best_model_path
        tested = cli.run(["test", *common, "--ckpt_path", best])
        return {"checkpoint": best, "test_acc": float(tested.trainer.callback_metrics["test_acc"]), "seconds": seconds}
    common = ["--config", "configs/gan.yaml", *data, *quiet, *spec["model_args"], "--judge", spec["judge"]]
    start = time.perf_counter()
    fit = cli.run(["fit", *common, *spec["args"], "--trainer.callbacks+=gan.ValByEpoch"])
    seconds = time.perf_counter() - start
    (by_epoch,) = [callback.rows for callback in fit.trainer.callbacks if type(callback).__name__ == "ValByEpoch"]
    best = fit.trainer.checkpoint_callback.best_model_path
    tested = cli.run(["test", *common, "--ckpt_path", best, *spec["test_args"]])
    drawn = cli.run(["predict", *common, "--ckpt_path", best, "--model.num_samples", "64", "--model.sample_seed", "0"])
    metrics, best_epoch = tested.trainer.callback_metrics, torch.load(best, weights_only=True)["epoch"]
    # The samples of a GAN's best epoch, a row per digit (conditional) or per category (InfoGAN), or predict's 64.
    samples = run_dir(fit.trainer) / "samples" / f"epoch_{best_epoch:03d}.png"
    return {
        **{
            name: float(metrics[f"test_{name}"])
            for name in (*MEASURES, *CONDITIONAL_MEASURES)
            if f"test_{name}" in metrics
        },
        "train_seconds": seconds,
        "epochs": fit.trainer.current_epoch,
        "best_epoch": best_epoch,
        "parameters": {
            "generator": sum(p.numel() for p in fit.model.generator.parameters()),
            "discriminator": sum(p.numel() for p in fit.model.discriminator.parameters()),
        },
        "samples": str(samples if fit.model.sample_rows else run_dir(drawn.trainer) / "predictions" / "grid.png"),
        "val_by_epoch": by_epoch,
    }


def run_worker(spec: dict, project: Path, log: Path) -> dict:
    result = log.with_suffix(".json")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec), str(result)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project / "src"), str(Path(__file__).parent)])}
    with log.open("w") as out:
        done = subprocess.run(command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{spec['step']} failed with exit {done.returncode}:\n{log.read_text()[-4000:]}")
    return json.loads(result.read_text())


def with_earlier_seeds(rows: list[dict], earlier: list[dict]) -> list[dict]:
    """These seeds' runs and an earlier benchmark run's of the other seeds (the same model and epochs), by seed."""
    ran = {row["seed"] for row in rows}
    return sorted([row for row in earlier if row["seed"] not in ran] + rows, key=lambda row: row["seed"])


def mean_run(rows: list[dict]) -> dict:
    """The mean of each measure over the seeds' runs (and of the training seconds and judges' test accuracy: each
    run is judged by its own benchmark run's judge), with the runs themselves."""
    measured = [
        name for name in (*MEASURES, *CONDITIONAL_MEASURES, "train_seconds", "judge_test_acc") if name in rows[0]
    ]
    means = {name: statistics.mean(row[name] for row in rows) for name in measured}
    return {**means, "fid_over_real_vs_real": means["classifier_fid"] / means["real_vs_real_fid"], "seeds": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few batches per model: a smoke check")
    parser.add_argument("--epochs", type=int, help="epochs of each GAN (default: configs/gan.yaml's max_epochs)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds of each GAN or variant (default: 2)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the seeds run are this one and the next --seeds - 1 (default: 0); the other seeds of a model or "
        "variant that the output file holds, measured over as many epochs, count beside them",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=list(MODELS),
        default=list(MODELS),
        help="these models alone; the others' results in the output file stay (default: all)",
    )
    parser.add_argument(
        "--search",
        nargs="+",
        choices=list(SEARCH),
        default=[],
        help="instead of the models: these variants of the "
        "DCGAN, --seeds each, judged on validation: each run's epoch of the lowest val FID (results under `search`; "
        "the rest of the output file stays)",
    )
    parser.add_argument("--judge-epochs", type=int, default=2, help="epochs of the mnist_cnn judge (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--data-dir", type=Path, default=SHARED, help="holds MNIST/raw with the four IDX files")
    parser.add_argument("--output", type=Path, default=None, help="JSON results (default: gan.json; --quick: none)")
    args = parser.parse_args()
    output = args.output or (None if args.quick else RESULTS_DIR / "gan.json")
    load_before = os.getloadavg()
    partial = set(args.models) < set(MODELS) or args.search
    kept = json.loads(output.read_text()) if output and output.exists() and partial else {}
    runs: dict = kept.get("runs", {})
    with tempfile.TemporaryDirectory(prefix="bench-gan-") as tmp:
        project = bake(Path(tmp) / "bake")
        args.epochs = (
            args.epochs or yaml.safe_load((project / "configs" / "gan.yaml").read_text())["trainer"]["max_epochs"]
        )
        base = {"package": package_of(project), "threads": args.threads, "data_dir": str(args.data_dir.resolve())}
        epochs = ["--trainer.max_epochs", str(args.epochs)]
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        judge = run_worker(
            {
                **base,
                "step": "judge",
                "args": QUICK if args.quick else ["--trainer.max_epochs", str(args.judge_epochs)],
            },
            project,
            Path(tmp) / "judge.log",
        )
        print(f"judge: mnist_cnn test_acc {judge['test_acc']:.4f} ({judge['seconds']:.0f} s)", flush=True)
        if args.search:
            searched = kept.get("search", {})
            for name in args.search:
                spec = {**base, "step": "search", "model_args": SEARCH[name], "judge": judge["checkpoint"]}
                spec["test_args"] = ["--trainer.limit_test_batches", "4"] if args.quick else []
                rows = []
                for seed in seeds:
                    spec["args"] = [*(QUICK if args.quick else epochs), "--seed_everything", str(seed)]
                    rows.append(best_on_validation(run_worker(spec, project, Path(tmp) / f"{name}-{seed}.log"), seed))
                    print(
                        f"{name} seed {seed}: "
                        + ", ".join(f"{k} {v:.4f}" for k, v in rows[-1].items() if not isinstance(v, list)),
                        flush=True,
                    )
                earlier = searched.get(name, {})
                if earlier.get("epochs") == args.epochs:
                    rows = with_earlier_seeds(rows, earlier["seeds"])
                searched[name] = {"options": SEARCH[name], "epochs": args.epochs, "seeds": rows}
            if output:
                write_results(output, {**kept, "search": searched})
            return
        for name in args.models:
            rows = []
            for seed in seeds:
                spec = {**base, "step": name, "model_args": MODELS[name], "judge": judge["checkpoint"]}
                spec |= {
                    "args": [*(QUICK if args.quick else epochs), "--seed_everything", str(seed)],
                    "test_args": ["--trainer.limit_test_batches", "4"] if args.quick else [],
                }
                r = run_worker(spec, project, Path(tmp) / f"{name}-{seed}.log")
                r |= {"seed": seed, "judge_test_acc": judge["test_acc"]}
                rows.append(r)
                measured = [m for m in (*MEASURES, *CONDITIONAL_MEASURES) if m in r]
                print(
                    f"{name} seed {seed}: "
                    + ", ".join(f"{m} {r[m]:.4f}" for m in measured)
                    + f"; {r['train_seconds']:.0f} s",
                    flush=True,
                )
                if output and seed == 0:
                    shutil.copy(r["samples"], output.parent / f"gan_{name}_samples.png")  # beside the results
            earlier = runs.get(name, {})
            if "seeds" in earlier:  # (the runs written before the benchmark kept seeds hold one run, unmerged)
                judged = {"judge_test_acc": earlier["judge_test_acc"]}  # one judge per model, before one per seed
                same = [judged | row for row in earlier["seeds"] if row["epochs"] == rows[0]["epochs"]]
                rows = with_earlier_seeds(rows, same)
            runs[name] = mean_run(rows)

    results = report(runs, args)
    results |= {
        "judge": {"task": "mnist_cnn", "epochs": args.judge_epochs, "test_acc": judge["test_acc"]},
        "quick": args.quick,
        "machine": machine(args.threads, load_before),
    }
    if output:
        write_results(output, {**kept, **results})


def best_on_validation(run: dict, seed: int) -> dict:
    """A searched run's measures at its epoch of the lowest validation FID (what best.ckpt keeps), on which the
    levers are judged; and that checkpoint's test measures, which are reported only for the lever adopted."""
    epochs = run["val_by_epoch"]
    best = min(range(len(epochs)), key=lambda epoch: epochs[epoch]["val_classifier_fid"])
    at = epochs[best]
    return {
        "seed": seed,
        "best_epoch": best,
        "val_confident_share": at["val_confident_share"],
        "val_class_entropy": at["val_class_entropy"],
        "val_fid_over_real_vs_real": at["val_classifier_fid"] / at["val_real_vs_real_fid"],
        "val_fid_over_real_vs_real_by_epoch": [e["val_classifier_fid"] / e["val_real_vs_real_fid"] for e in epochs],
        "val_confident_share_by_epoch": [e["val_confident_share"] for e in epochs],
        "train_seconds": run["train_seconds"],
        **{f"test_{name}": run[name] for name in MEASURES},
    }


def report(runs: dict, args: argparse.Namespace) -> dict:
    """The table against the goals, and the results: the DCGAN's means at the top, the MLP GAN's as `baseline`, the
    conditional GAN's as `conditional` (each model's seeds under `runs`)."""
    goals = {
        "confident_share": 0.90,
        "class_entropy": 0.98 * math.log(10),
        "fid_over_real_vs_real": 20.0,
        "requested_digit_accuracy": 0.95,
        "min_digit_accuracy": 0.90,
    }
    names = [name for name in MODELS if name in runs]
    print(f"\n{'measure (mean of seeds)':<26}" + "".join(f"{name:>13}" for name in names) + "   goal")
    for measure in (*MEASURES, "fid_over_real_vs_real", *CONDITIONAL_MEASURES, "train_seconds"):
        row = "".join(f"{runs[name][measure]:>13.4f}" if measure in runs[name] else f"{'':>13}" for name in names)
        goal = goals.get(CONDITIONAL_MEASURES.get(measure, measure))
        way = "<=" if measure == "fid_over_real_vs_real" else ">="
        print(f"{measure:<26}{row}   {'' if goal is None else f'{way} {goal:.3f}'}")
    results: dict = {"runs": runs, "epochs": args.epochs, "goals": goals}
    keep = (*MEASURES, "fid_over_real_vs_real", "train_seconds")
    if "dcgan" in args.models:
        results |= {name: runs["dcgan"][name] for name in keep}
    if "mlp" in args.models:
        results["baseline"] = {name: runs["mlp"][name] for name in keep}
    if "conditional" in args.models:
        c = runs["conditional"]
        results["conditional"] = {name: c[name] for name in keep} | {
            digit_name: c[name] for name, digit_name in CONDITIONAL_MEASURES.items()
        }
    results["samples"] = {name: f"gan_{name}_samples.png" for name in names}
    return results


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        Path(sys.argv[3]).write_text(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        main()
