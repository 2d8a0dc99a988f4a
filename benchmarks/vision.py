"""Vision benchmark: the Vision Transformer (`vit`) against the CNN, on all of MNIST and with few labels.

1. MNIST: `vit` and `mnist_cnn`, each with its generated config unchanged, through the project's own
   `repeat --seeds 0-2` (fit, then test the best checkpoint) on the real MNIST files in ../shared/data:
   test accuracy (mean, min and max of the seeds), weights, and fit seconds. Goal: the ViT >= 98.5 %.
2. Few labels (finetune.py's protocol, on PNG folders of the same files at 32x32): a source model trained
   from random weights on digits 0-4 (--source-per-class images each), then trained on --per-class labelled
   images of each digit 5-9, from the source's weights ("pretrained") and from random ones ("scratch"), for
   --seeds seeds (a seed also draws which images are labelled), each tested on every test image of 5-9. The
   CNN is `resnet_finetune`'s ResNet-18 (its backbone frozen for the first epoch when pretrained), the ViT is
   `vit` read through the same image-folder data module (3 x 32 x 32: 64 patches of 4x4), both at the same
   batch size. The question: does pretraining help the ViT more than the CNN (pretrained - scratch, each)?

    python benchmarks/vision.py          # about 1.5 hours on 2 CPU cores
    python benchmarks/vision.py --quick  # a smoke check
Results: benchmarks/results/vision.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from finetune import SOURCE, TARGET, run_worker, write_mnist_folders
from training import Project, bake, machine, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "vision.json"
SHARED = REPO_ROOT.parent / "shared" / "data"
FEW_LABEL_BATCH = "64"  # resnet_finetune's default batch, for both models


def parameters(checkpoint: Path, project: Project) -> int:
    """The trained model's weights (parameters, not batch-norm statistics), read from its checkpoint by the project."""
    sys.path.insert(0, str(project.path / "src"))
    artifacts = importlib.import_module(f"{project.package}.artifacts")
    return sum(p.numel() for p in artifacts.load_checkpoint(checkpoint).model.parameters())


def on_mnist(project: Project, task: str, seeds: str, options: list[str], work: Path) -> dict:
    """`repeat` of the task's config: its summary, and the weights of its first run's model."""
    output = work / f"repeat-{task}"
    data = ["--data.data_dir", str(SHARED), "--data.download", "false"]
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    config = ["--config", f"configs/{task}.yaml"]
    project.run("repeat", *config, "--seeds", seeds, "--output", str(output), *data, *quiet, *options)
    rows = json.loads((output / "summary.json").read_text())["runs"]
    accuracies = [row["test_acc"] for row in rows]
    best = next((Path(project.path) / rows[0]["run"] / "checkpoints").glob("best*.ckpt"))
    return {
        "test_acc_mean": statistics.mean(accuracies),
        "test_acc_min": min(accuracies),
        "test_acc_max": max(accuracies),
        "test_acc_by_seed": accuracies,
        "fit_seconds_mean": statistics.mean(row["fit_seconds"] for row in rows),
        "epochs": rows[0]["epochs"],
        "parameters": parameters(best, project),
    }


def few_labels(
    name: str, project: Path, base: dict, pretrained: list[str], scratch: list[str], args, work: Path
) -> dict:
    """The source model on digits 0-4, then digits 5-9 from its weights and from random ones, seed by seed."""
    batch = ["--data.batch_size", FEW_LABEL_BATCH]

    def run(label: str, **spec) -> dict:
        return run_worker({**base, **spec}, project, work / f"{name}-{label}.log")

    source = run(
        "source",
        data=[*batch, "--data.classes", json.dumps(SOURCE), "--data.per_class", str(args.source_per_class)],
        model=["--model.weights", "null", *scratch],
        fit=["--trainer.max_epochs", str(args.source_epochs)],
    )
    print(f"{name} source (digits 0-4): test_acc {source['test_acc']:.4f}, {source['fit_seconds']:.0f} s", flush=True)
    target = [*batch, "--data.classes", json.dumps(TARGET), "--data.per_class", str(args.per_class)]
    ways = {
        "pretrained": ["--model.weights", source["checkpoint"], *pretrained],
        "scratch": ["--model.weights", "null", *scratch],
    }
    runs: dict[str, list[float]] = {way: [] for way in ways}
    for seed in range(args.seeds):
        for way, model in ways.items():
            fit = ["--trainer.max_epochs", str(args.epochs), "--data.seed", str(seed)]
            done = run(f"{way}-{seed}", data=target, model=model, fit=fit, seed=seed)
            runs[way].append(done["test_acc"])
            print(f"{name} {way} seed {seed}: test_acc {done['test_acc']:.4f}", flush=True)
    means = {f"{way}_test_acc": statistics.mean(accuracies) for way, accuracies in runs.items()}
    return {
        "source_test_acc": source["test_acc"],
        "source_fit_seconds": source["fit_seconds"],
        **means,
        **{f"{way}_test_acc_by_seed": accuracies for way, accuracies in runs.items()},
        "pretrained_minus_scratch": means["pretrained_test_acc"] - means["scratch_test_acc"],
        "gain_beyond_seed_spread": min(runs["pretrained"]) > max(runs["scratch"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke check")
    parser.add_argument("--seeds", type=int, default=3, help="runs per model and way, seeds 0..N-1 (default: 3)")
    parser.add_argument("--per-class", type=int, default=20, help="labelled target images per digit (default: 20)")
    parser.add_argument("--epochs", type=int, default=15, help="target epochs (default: 15)")
    parser.add_argument("--source-per-class", type=int, default=2000, help="source images per digit (default: 2000)")
    parser.add_argument("--source-epochs", type=int, default=5, help="source epochs, both models (default: 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--skip-mnist", action="store_true", help="only the few-label part")
    parser.add_argument("--output", type=Path, default=None, help="JSON results (default: vision.json)")
    args = parser.parse_args()
    mnist_options: list[str] = []
    if args.quick:
        args.seeds, args.per_class, args.epochs, args.source_per_class, args.source_epochs = 2, 5, 2, 50, 1
        mnist_options = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "20"]
    output = args.output or (None if args.quick else RESULTS)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the project's commands, one after the other
    load_before = os.getloadavg()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-vision-") as tmp:
        work = Path(tmp)
        path = bake(work / "bake")
        project = Project(path, work)
        if not args.skip_mnist:
            seeds = f"0-{args.seeds - 1}"
            mnist = {task: on_mnist(project, task, seeds, mnist_options, work) for task in ("vit", "mnist_cnn")}
            results["vit_test_acc"] = mnist["vit"]["test_acc_mean"]
            results["cnn_test_acc"] = mnist["mnist_cnn"]["test_acc_mean"]
            results["mnist"] = mnist
        root = write_mnist_folders(SHARED, work / "mnist", max(args.source_per_class, 500))
        base = {"package": project.package, "threads": args.threads, "root": str(root), "seed": 0}
        # Each model's config, the data module it reads the folders with (the ViT's config reads MNIST's files),
        # and its options when it starts from the source's weights and from random ones.
        folders = ["--data", f"{project.package}.data.images.ImageFolderDataModule"]
        patches = ["--model.patch_size", "4"]  # 32x32 images: the config's 7x7 patches do not tile them
        models = {
            "cnn": ("configs/resnet_finetune.yaml", [], ["--model.freeze_epochs", "1"], ["--model.freeze_epochs", "0"]),
            "vit": ("configs/vit.yaml", folders, patches, patches),
        }
        few = {
            name: few_labels(
                name,
                project.path,
                {**base, "config": config, "data_class": data_class},
                pretrained,
                scratch,
                args,
                work,
            )
            for name, (config, data_class, pretrained, scratch) in models.items()
        }
    results |= {
        "vit_pretrained_test_acc": few["vit"]["pretrained_test_acc"],
        "vit_scratch_test_acc": few["vit"]["scratch_test_acc"],
        "cnn_pretrained_test_acc": few["cnn"]["pretrained_test_acc"],
        "cnn_scratch_test_acc": few["cnn"]["scratch_test_acc"],
        "pretraining_helps_vit_more": few["vit"]["pretrained_minus_scratch"] > few["cnn"]["pretrained_minus_scratch"],
        "few_labels": few,
        "protocol": {
            "source": {"classes": SOURCE, "per_class": args.source_per_class, "epochs": args.source_epochs},
            "target": {"classes": TARGET, "per_class": args.per_class, "epochs": args.epochs, "seeds": args.seeds},
            "batch_size": int(FEW_LABEL_BATCH),
            "image_size": 32,
        },
        "quick": args.quick,
        "machine": machine(args.threads, load_before),
    }
    print_table(results)
    if output:
        write_results(output, results)


def print_table(results: dict) -> None:
    if "mnist" in results:
        print(f"\n{'MNIST':<10} {'test_acc mean':>14} {'min':>7} {'max':>7} {'weights':>9} {'fit s':>7}")
        for task, m in results["mnist"].items():
            row = f"{m['test_acc_mean']:>14.4f} {m['test_acc_min']:>7.4f} {m['test_acc_max']:>7.4f}"
            print(f"{task:<10} {row} {m['parameters']:>9,} {m['fit_seconds_mean']:>7.0f}")
        vit, cnn = results["mnist"]["vit"], results["mnist"]["mnist_cnn"]
        print(
            f"ViT - CNN: {100 * (vit['test_acc_mean'] - cnn['test_acc_mean']):+.2f} points; "
            f"fit time {vit['fit_seconds_mean'] / cnn['fit_seconds_mean']:.2f}x the CNN's"
        )
    print(f"\n{'few labels':<10} {'pretrained':>11} {'scratch':>9} {'gain':>8} {'beyond spread':>14}")
    for name, f in results["few_labels"].items():
        gain = 100 * f["pretrained_minus_scratch"]
        print(
            f"{name:<10} {f['pretrained_test_acc']:>11.4f} {f['scratch_test_acc']:>9.4f} {gain:>+7.1f}p "
            f"{str(f['gain_beyond_seed_spread']):>14}"
        )


if __name__ == "__main__":
    main()
