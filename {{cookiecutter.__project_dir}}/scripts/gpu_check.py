"""Training throughput of every task at 32-true vs bf16-mixed precision, eager vs torch.compile.

    python scripts/gpu_check.py                       # every config in configs/, on the best accelerator
    python scripts/gpu_check.py --steps 200 --data_dir /path/with/MNIST
    python scripts/gpu_check.py --configs configs/sentiment_rnn.yaml --text_dataset /path/to/csv/folder

Each run trains for a fraction of an epoch through the project's CLI (validation, logging and
checkpoints off): `--warmup` steps that are not timed (they include compilation), then `--steps`
timed ones. It prints steps/s per variant and the ratio to the same task's 32-true eager run, and
writes the table to runs/gpu_check.json. On an H100 these small models are bound by the host's work
per step (the Trainer loop, logging, optimizer and scheduler: a few ms), not by the GPU, so the
ratios there say little about precision or compilation; larger models and batches show them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from {{ cookiecutter.__package }}.callbacks import StepTimer
from {{ cookiecutter.__package }}.cli import run

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = [("32-true", False), ("bf16-mixed", False), ("32-true", True), ("bf16-mixed", True)]
OFF = [
    *["--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false"],
    *["--trainer.default_root_dir", "runs/gpu_check"],  # where the config and curves of each run land
    *["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"],
]


def data_args(config: Path, args: argparse.Namespace) -> list[str]:
    """Where the config's data module finds its data: --data_dir for MNIST, --text_dataset for text."""
    data_class = yaml.safe_load(config.read_text())["data"]["class_path"]
    if data_class.endswith("MNISTDataModule"):
        return ["--data.data_dir", args.data_dir, "--data.download", "false"]
    if data_class.endswith("TextDataModule") and args.text_dataset:
        return ["--data.dataset", args.text_dataset]
    return []


def steps_per_second(config: Path, data: list[str], precision: str, compile: bool, warmup: int, steps: int) -> float:
    cli = run(
        [
            *["fit", "--config", str(config), *data, *OFF],
            *["--trainer.max_steps", str(warmup + steps), "--trainer.max_epochs", "-1"],
            *["--trainer.precision", precision, "--compile", str(compile).lower()],
            f"--trainer.callbacks+={StepTimer.__module__}.StepTimer",
        ]
    )
    timer = next(callback for callback in cli.trainer.callbacks if isinstance(callback, StepTimer))
    return timer.steps_per_second(skip=warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation happens here)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps")
    parser.add_argument("--data_dir", default="data", help="folder holding MNIST/raw, for the MNIST tasks")
    parser.add_argument("--text_dataset", help="for the text tasks: a local folder of csv files or a dataset name")
    parser.add_argument("--configs", nargs="*", type=Path, default=sorted((ROOT / "configs").glob("*.yaml")))
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # the CLI gets its arguments from run(), not from this script's command line

    results = {}
    for config in args.configs:
        task = config.stem
        for precision, compile in VARIANTS:
            name = f"{precision}{' compiled' if compile else ''}"
            results.setdefault(task, {})[name] = steps_per_second(
                config, data_args(config, args), precision, compile, args.warmup, args.steps
            )
    print(f"\n{'task':20}" + "".join(f"{p + (' compiled' if c else ''):>22}" for p, c in VARIANTS))
    for task, rates in results.items():
        baseline = rates["32-true"]
        cells = "".join(f"{rate:10.1f}/s ({rate / baseline:4.2f}x)" for rate in rates.values())
        print(f"{task:20}{cells}")
    out = Path("runs") / "gpu_check.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nsteps/s per task and variant written to {out}")


if __name__ == "__main__":
    main()
