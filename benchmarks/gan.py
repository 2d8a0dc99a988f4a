"""GAN benchmark: the generated DCGAN task against the classic fully-connected GAN, judged by the project's CNN.

Everything runs through the baked project's CLI on the real MNIST files in ../shared/data:

1. The judge: `mnist_cnn`'s default config, trained for --judge-epochs epochs; its test accuracy is reported.
2. Each GAN trains for the same --epochs with `--judge` set, so every validation epoch measures it and
   best.ckpt is its epoch with the lowest classifier FID. The baseline is benchmarks/gan_baseline.py: the
   MLP generator and discriminator of the original GAN paper (as Lightning's GAN example writes them) inside
   the project's own GAN recipe, so only the networks differ.
3. Each best checkpoint is then scored by `test --judge`: 10,000 generated digits against the 10,000
   MNIST test digits: `confident_share` (judged with probability >= 0.9), `class_entropy` (ln 10 = 2.303
   is every digit drawn equally often), `classifier_fid`, and `real_vs_real_fid` (the test digits against
   as many training digits: the floor a perfect generator would reach).
4. `predict` draws 64 digits from seed 0 with each model: benchmarks/results/gan_dcgan_samples.png and
   gan_mlp_samples.png.

    python benchmarks/gan.py            # 10 epochs each: about 40 minutes on 2 CPU cores
    python benchmarks/gan.py --quick    # a few batches each: a smoke check
Results: benchmarks/results/gan.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training import bake, machine, package_of, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SHARED = REPO_ROOT.parent / "shared" / "data"
QUICK = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "20", "--trainer.limit_val_batches", "4"]
MEASURES = ("confident_share", "class_entropy", "classifier_fid", "real_vs_real_fid")
MODELS = {"dcgan": [], "mlp": ["--model.class_path", "gan_baseline.MLPGAN", "--model.latent_dim", "100"]}


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
    fit = cli.run(["fit", *common, *spec["args"]])
    seconds = time.perf_counter() - start
    best = fit.trainer.checkpoint_callback.best_model_path
    tested = cli.run(["test", *common, "--ckpt_path", best, *spec["test_args"]])
    drawn = cli.run(["predict", *common, "--ckpt_path", best, "--model.num_samples", "64", "--model.sample_seed", "0"])
    return {
        **{name: float(tested.trainer.callback_metrics[f"test_{name}"]) for name in MEASURES},
        "train_seconds": seconds,
        "epochs": fit.trainer.current_epoch,
        "best_epoch": torch.load(best, weights_only=True)["epoch"],
        "parameters": {
            "generator": sum(p.numel() for p in fit.model.generator.parameters()),
            "discriminator": sum(p.numel() for p in fit.model.discriminator.parameters()),
        },
        "samples": str(run_dir(drawn.trainer) / "predictions" / "grid.png"),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few batches per model: a smoke check")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each GAN (default: 10)")
    parser.add_argument("--judge-epochs", type=int, default=2, help="epochs of the mnist_cnn judge (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--data-dir", type=Path, default=SHARED, help="holds MNIST/raw with the four IDX files")
    parser.add_argument("--output", type=Path, default=None, help="JSON results (default: gan.json; --quick: none)")
    args = parser.parse_args()
    output = args.output or (None if args.quick else RESULTS_DIR / "gan.json")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-gan-") as tmp:
        project = bake(Path(tmp) / "bake")
        base = {"package": package_of(project), "threads": args.threads, "data_dir": str(args.data_dir.resolve())}
        epochs = ["--trainer.max_epochs", str(args.epochs)]
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
        runs = {}
        for name, model_args in MODELS.items():
            spec = {**base, "step": name, "model_args": model_args, "judge": judge["checkpoint"]}
            spec |= {
                "args": QUICK if args.quick else epochs,
                "test_args": ["--trainer.limit_test_batches", "4"] if args.quick else [],
            }
            runs[name] = run_worker(spec, project, Path(tmp) / f"{name}.log")
            r = runs[name]
            print(
                f"{name}: " + ", ".join(f"{m} {r[m]:.4f}" for m in MEASURES) + f"; {r['train_seconds']:.0f} s",
                flush=True,
            )
            if output:
                shutil.copy(r["samples"], RESULTS_DIR / f"gan_{name}_samples.png")

    dcgan, mlp = runs["dcgan"], runs["mlp"]
    print(f"\n{'measure':<18} {'DCGAN':>10} {'MLP GAN':>10}   goal")
    goals = {"confident_share": ">= 0.90", "class_entropy": f">= {0.95 * math.log(10):.3f}", "classifier_fid": "low"}
    for measure in (*MEASURES, "train_seconds"):
        print(f"{measure:<18} {dcgan[measure]:>10.4f} {mlp[measure]:>10.4f}   {goals.get(measure, '')}")
    ratio, baseline_ratio = (r["classifier_fid"] / r["real_vs_real_fid"] for r in (dcgan, mlp))
    print(f"classifier_fid / real_vs_real_fid: DCGAN {ratio:.2f}, MLP GAN {baseline_ratio:.2f}")
    results = {
        **{name: dcgan[name] for name in MEASURES},
        "fid_over_real_vs_real": ratio,
        "train_seconds": dcgan["train_seconds"],
        "epochs": args.epochs,
        "baseline": {
            **{name: mlp[name] for name in MEASURES},
            "fid_over_real_vs_real": baseline_ratio,
            "train_seconds": mlp["train_seconds"],
        },
        "goals": {
            "confident_share": 0.90,
            "class_entropy": 0.95 * math.log(10),
            "dcgan_ahead_on_all_three": dcgan["confident_share"] > mlp["confident_share"]
            and dcgan["class_entropy"] > mlp["class_entropy"]
            and dcgan["classifier_fid"] < mlp["classifier_fid"],
        },
        "judge": {"task": "mnist_cnn", "epochs": args.judge_epochs, "test_acc": judge["test_acc"]},
        "runs": runs,
        "samples": {"dcgan": "gan_dcgan_samples.png", "baseline": "gan_mlp_samples.png"},
        "quick": args.quick,
        "machine": machine(args.threads, load_before),
    }
    if output:
        write_results(output, results)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        Path(sys.argv[3]).write_text(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        main()
