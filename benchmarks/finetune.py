"""Fine-tuning benchmark: transfer measured honestly, with no ImageNet weights to be had.

The benchmark makes its own source task from the real MNIST files in ../shared/data, written out as
PNG folders (train/ val/ test/, one sub-folder per digit), the form `resnet_finetune` reads a user's images in:

1. Source: a ResNet-18 trained by the project's CLI on digits 0-4 (--source-per-class images each), from
   random weights: the "pretrained" backbone.
2. Target: digits 5-9 with a few-shot budget (--per-class labelled images each), --epochs epochs, --seeds
   seeds, three ways:
   - pretrained: the source checkpoint as `--model.weights`, the backbone frozen for the first epoch;
   - scratch: the same ResNet-18 from random weights;
   - linear probe: the source backbone frozen for every epoch, only the new head trained.
   Each is tested on every test image of digits 5-9. Goal: pretrained ahead of scratch by more than the
   spread of the seeds. A seed here also draws which images are labelled (`--data.seed`): the spread is that
   of the few-shot sample and the training together. The project's `repeat` varies only the training seed
   over one data split, as comparing two configs needs, so this loop stays its own.
3. Speed: one run of two epochs over a larger budget (the first frozen, the second not), timed per step:
   frozen-phase steps/s over full fine-tuning's (goal >= 1.5x), and whether the frozen epoch left every
   backbone tensor (weights and batch-norm statistics) bit for bit as the source checkpoint had it.

Images are 28x28 digits, resized to 32x32 (`--data.image_size 32 --data.resize 32`), without flips.

    python benchmarks/finetune.py          # about 35 minutes on 2 CPU cores
    python benchmarks/finetune.py --quick  # a smoke check
Results: benchmarks/results/finetune.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training import bake, machine, package_of, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "finetune.json"
SHARED = REPO_ROOT.parent / "shared" / "data"
IMAGES = ["--data.dataset", "null", "--data.image_size", "32", "--data.resize", "32", "--data.flip", "false"]
SOURCE, TARGET = ["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]


def write_mnist_folders(data_dir: Path, into: Path, per_class_limit: int) -> Path:
    """MNIST as PNG files: into/{train,val,test}/<digit>/<index>.png; val is the last 5,000 training images."""
    from torchvision.datasets import MNIST

    train, test = MNIST(str(data_dir), train=True), MNIST(str(data_dir), train=False)
    splits = {"train": (train, range(55_000)), "val": (train, range(55_000, 60_000)), "test": (test, range(10_000))}
    for split, (dataset, indices) in splits.items():
        written: dict[int, int] = {}
        for index in indices:
            image, label = dataset[index]
            if split == "train" and written.get(label, 0) >= per_class_limit:
                continue
            folder = into / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{index}.png")
            written[label] = written.get(label, 0) + 1
    return into


def worker(spec: dict) -> dict:
    """In the baked project's folder: fit, then test the best checkpoint, through the CLI."""
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, "src")
    cli = importlib.import_module(f"{spec['package']}.cli")
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    # The task's config (vision.py also runs the ViT's), and the data module's class where it is not the config's.
    config = ["--config", spec.get("config", "configs/resnet_finetune.yaml"), *spec.get("data_class", [])]
    common = [*config, "--data.root", spec["root"], *IMAGES, *quiet, *spec["data"]]
    timer = f"--trainer.callbacks+={spec['package']}.callbacks.StepTimer"
    start = time.perf_counter()
    fit = cli.run(["fit", *common, *spec["model"], "--seed_everything", str(spec["seed"]), timer, *spec["fit"]])
    seconds = time.perf_counter() - start
    best = fit.trainer.checkpoint_callback.best_model_path  # empty when nothing was validated
    last = next(c for c in fit.trainer.checkpoint_callbacks if c.filename == "last").best_model_path  # no monitor
    result = {"fit_seconds": seconds, "checkpoint": best, "last": last}
    step_times = next(c for c in fit.trainer.callbacks if type(c).__name__ == "StepTimer").times
    batches = fit.trainer.num_training_batches
    result["epoch_steps_per_s"] = [
        (len(epoch) - 1) / (epoch[-1] - epoch[0])
        for epoch in (step_times[i : i + batches] for i in range(0, len(step_times), batches))
        if len(epoch) > 2
    ]
    if spec.get("test", True):
        tested = cli.run(["test", *common, *spec["model"], "--ckpt_path", best])
        result["test_acc"] = float(tested.trainer.callback_metrics["test_acc"])
    return result


def run_worker(spec: dict, project: Path, log: Path) -> dict:
    result = log.with_suffix(".json")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec), str(result)]
    with log.open("w") as out:
        done = subprocess.run(command, cwd=project, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{log.stem} failed with exit {done.returncode}:\n{log.read_text()[-4000:]}")
    return json.loads(result.read_text())


def backbone_unchanged(source: str, after_frozen_epoch: str) -> bool:
    """Whether every tensor of the backbone (all but the head `fc`) is bit-identical in the two checkpoints."""
    import torch

    before, after = (torch.load(path, weights_only=True)["state_dict"] for path in (source, after_frozen_epoch))
    names = [name for name in before if name.startswith("model.") and not name.startswith("model.fc.")]
    return all(torch.equal(before[name], after[name]) for name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke check")
    parser.add_argument("--seeds", type=int, default=5, help="runs per way, seeds 0..N-1 (default: 5)")
    parser.add_argument("--per-class", type=int, default=20, help="labelled target images per digit (default: 20)")
    parser.add_argument("--epochs", type=int, default=15, help="target epochs (default: 15)")
    parser.add_argument("--source-per-class", type=int, default=2000, help="source images per digit (default: 2000)")
    parser.add_argument("--source-epochs", type=int, default=2, help="source epochs (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--data-dir", type=Path, default=SHARED, help="holds MNIST/raw with the four IDX files")
    parser.add_argument("--output", type=Path, default=None, help="JSON results (default: finetune.json)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.per_class, args.epochs, args.source_per_class, args.source_epochs = 2, 5, 2, 50, 1
    output = args.output or (None if args.quick else RESULTS)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        work = Path(tmp)
        root = write_mnist_folders(args.data_dir, work / "mnist", max(args.source_per_class, 500))
        project = bake(work / "bake")
        base = {"package": package_of(project), "threads": args.threads, "root": str(root), "seed": 0}

        def run(name: str, **spec) -> dict:
            return run_worker({**base, **spec}, project, work / f"{name}.log")

        source = run(
            "source",
            data=["--data.classes", json.dumps(SOURCE), "--data.per_class", str(args.source_per_class)],
            model=["--model.weights", "null", "--model.freeze_epochs", "0"],
            fit=["--trainer.max_epochs", str(args.source_epochs)],
        )
        print(f"source (digits 0-4): test_acc {source['test_acc']:.4f}, {source['fit_seconds']:.0f} s", flush=True)
        target = ["--data.classes", json.dumps(TARGET), "--data.per_class", str(args.per_class)]
        ways = {
            "pretrained": ["--model.weights", source["checkpoint"], "--model.freeze_epochs", "1"],
            "scratch": ["--model.weights", "null", "--model.freeze_epochs", "0"],
            "linear_probe": ["--model.weights", source["checkpoint"], "--model.freeze_epochs", str(args.epochs)],
        }
        runs: dict[str, list[dict]] = {way: [] for way in ways}
        for seed in range(args.seeds):
            for way, model in ways.items():
                fit = ["--trainer.max_epochs", str(args.epochs), "--data.seed", str(seed)]
                runs[way].append({"seed": seed, **run(f"{way}-{seed}", data=target, model=model, fit=fit, seed=seed)})
                print(f"{way} seed {seed}: test_acc {runs[way][-1]['test_acc']:.4f}", flush=True)
        # Speed: 2 epochs of a larger budget, the first frozen; per-epoch steps/s from the step timer.
        speed = run(
            "speed",
            data=["--data.classes", json.dumps(TARGET), "--data.per_class", str(max(args.per_class, 200))],
            model=["--model.weights", source["checkpoint"], "--model.freeze_epochs", "1"],
            fit=["--trainer.max_epochs", "2", "--trainer.limit_val_batches", "0"],
            test=False,
        )
        frozen_only = run(
            "frozen-epoch",
            data=target,
            model=["--model.weights", source["checkpoint"], "--model.freeze_epochs", "1"],
            fit=["--trainer.max_epochs", "1"],
            test=False,
        )
        unchanged = backbone_unchanged(source["checkpoint"], frozen_only["last"])

    def summary(way: str) -> dict:
        accuracies = [r["test_acc"] for r in runs[way]]
        return {
            "test_acc_mean": statistics.mean(accuracies),
            "test_acc_min": min(accuracies),
            "test_acc_max": max(accuracies),
            "test_acc_by_seed": accuracies,
            "fit_seconds_mean": statistics.mean(r["fit_seconds"] for r in runs[way]),
        }

    summaries = {way: summary(way) for way in ways}
    frozen_rate, full_rate = speed["epoch_steps_per_s"][0], speed["epoch_steps_per_s"][1]
    pretrained, scratch = summaries["pretrained"], summaries["scratch"]
    print(f"\n{'way':<14} {'test_acc mean':>14} {'min':>7} {'max':>7} {'fit s':>7}")
    for way, s in summaries.items():
        accuracies = f"{s['test_acc_mean']:>14.4f} {s['test_acc_min']:>7.4f} {s['test_acc_max']:>7.4f}"
        print(f"{way:<14} {accuracies} {s['fit_seconds_mean']:>7.1f}")
    print(f"frozen-phase steps/s {frozen_rate:.1f} / full fine-tuning {full_rate:.1f} = {frozen_rate / full_rate:.2f}x")
    print(f"backbone bit-identical after the frozen epoch: {unchanged}")
    results = {
        "resnet_pretrained_test_acc": pretrained["test_acc_mean"],
        "resnet_scratch_test_acc": scratch["test_acc_mean"],
        "resnet_linear_probe_test_acc": summaries["linear_probe"]["test_acc_mean"],
        "resnet_frozen_vs_full_steps_ratio": frozen_rate / full_rate,
        "frozen_backbone_bit_identical": unchanged,
        "pretrained_minus_scratch": pretrained["test_acc_mean"] - scratch["test_acc_mean"],
        "pretrained_ahead_beyond_seed_spread": pretrained["test_acc_min"] > scratch["test_acc_max"],
        "fit_seconds": {way: s["fit_seconds_mean"] for way, s in summaries.items()},
        "source": {"classes": SOURCE, "per_class": args.source_per_class, "epochs": args.source_epochs, **source},
        "target": {"classes": TARGET, "per_class": args.per_class, "epochs": args.epochs, "seeds": args.seeds},
        "ways": summaries,
        "steps_per_s": {"frozen": frozen_rate, "full": full_rate, "per_epoch": speed["epoch_steps_per_s"]},
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
