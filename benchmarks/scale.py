"""Scale-out benchmark for the generated project: DDP and torch.compile on the CPU, and the multi-node proofs.

1. Throughput of the MNIST CNN task (its config, batch 128 per process) on the real MNIST training
   images, through the generated CLI with validation, logging and checkpoints off. Each variant runs in
   fresh processes for `--warmup` untimed steps (compilation happens there) and `--steps` timed ones:
   - 1 process, 1 torch thread: the per-device baseline;
   - 1 process, 2 torch threads: the same cores as DDP below, used by one process;
   - DDP, 2 processes of 1 thread each (`--trainer.devices 2 --trainer.strategy ddp`, gloo);
   - 1 process, 1 thread, `--compile true`: torch.compile against the eager baseline.
   Samples/s = steps/s x batch size x processes. The variants alternate for `--rounds` rounds and the
   median of each counts. This machine has 2 cores, so DDP can at best double the 1-thread baseline,
   and it competes with the 2-thread single process for the same cores.
2. The multi-node and metric proofs: the baked project's own tests, run here and recorded as passed or
   not: `scripts/torchrun.sh` on 2 nodes x 1 process (rendezvous on 127.0.0.1), `scripts/slurm.sh`
   under a stand-in srun, and 2-process DDP validation of the MNIST CNN equal to 1 process's.

Every run bakes the template with cookiecutter's defaults first. Results: benchmarks/results/scale.json.

    python benchmarks/scale.py                     # about 10 minutes on 2 CPU cores
    python benchmarks/scale.py --quick             # smoke check: a few steps, one round
    python benchmarks/scale.py --data-dir DIR      # DIR/MNIST/raw holds the four MNIST IDX files
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from lightning.pytorch import Callback
from training import bake, machine, package_of, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "scale.json"
BATCH_SIZE = 128
FULL = {"warmup": 20, "steps": 120, "rounds": 2}
QUICK = {"warmup": 3, "steps": 8, "rounds": 1}
OFF = ["--trainer.limit_val_batches", "0", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false"]
OFF += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
# name -> (processes, torch threads per process, extra CLI options)
VARIANTS = {
    "single_1thread": (1, 1, []),
    "single_2threads": (1, 2, []),
    "ddp_2x1thread": (2, 1, ["--trainer.strategy", "ddp"]),
    "compiled_1thread": (1, 1, ["--compile", "true"]),
}
# The baked project's tests that prove the multi-node launch and the synced metrics (test name -> result key).
PROOFS = {
    "test_torchrun_script_trains_on_two_nodes_of_one_process": "multinode_2x1_ok",
    "test_slurm_script_trains_on_two_nodes_under_srun": "slurm_2x1_ok",
    "test_two_process_ddp_trains_in_step_and_validates_like_one_process[mnist_cnn]": "ddp_val_acc_matches_single",
}


class StepClock(Callback):
    """Rank 0's time at the end of every training step, written to $STEP_CLOCK_FILE when fit ends."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.times.append(time.perf_counter())

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            Path(os.environ["STEP_CLOCK_FILE"]).write_text(json.dumps({"times": self.times}))


def throughput(variant: str, sizes: dict, project: Path, data_dir: Path, work: Path) -> dict:
    """Run one variant of the MNIST CNN through the CLI in fresh processes; its steps/s and samples/s."""
    processes, threads, extra = VARIANTS[variant]
    clock = work / f"{variant}-{time.monotonic_ns()}.json"
    command = [sys.executable, "-m", package_of(project), "fit", "--config", "configs/mnist_cnn.yaml"]
    command += ["--data.data_dir", str(data_dir), "--data.download", "false", "--data.batch_size", str(BATCH_SIZE)]
    command += ["--trainer.max_steps", str(sizes["warmup"] + sizes["steps"]), "--trainer.max_epochs", "-1", *OFF]
    command += ["--trainer.accelerator", "cpu", "--trainer.devices", str(processes), *extra]
    command += [f"--trainer.callbacks+={Path(__file__).stem}.StepClock"]
    paths = [str(project / "src"), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": str(threads)}
    env["STEP_CLOCK_FILE"] = str(clock)
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{variant} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    times = json.loads(clock.read_text())["times"][sizes["warmup"] - 1 :]
    steps_per_s = (len(times) - 1) / (times[-1] - times[0])
    return {"steps_per_s": steps_per_s, "samples_per_s": steps_per_s * BATCH_SIZE * processes}


def proofs(project: Path, work: Path) -> dict[str, bool]:
    """Run the project's multi-node and DDP-metric tests; which of them passed."""
    report = work / "proofs.xml"
    selection = " or ".join(["torchrun_script", "slurm_script", "(validates_like_one_process and mnist_cnn)"])
    command = [sys.executable, "-m", "pytest", "tests/test_scale.py", "-q", "-p", "no:cacheprovider"]
    command += ["-k", selection, f"--junitxml={report}"]
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:], flush=True)
    passed = {
        case.get("name"): not any(child.tag in ("failure", "error", "skipped") for child in case)
        for case in ElementTree.parse(report).iter("testcase")
    }
    return {key: passed.get(name, False) for name, key in PROOFS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps, one round: a smoke check")
    parser.add_argument(
        "--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data", help="folder holding MNIST/raw"
    )
    parser.add_argument("--output", type=Path, default=None, help=f"JSON results (default: {RESULTS.name})")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    output = args.output or (None if args.quick else RESULTS)

    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        project = bake(work / "bake")
        for round_ in range(sizes["rounds"]):
            for variant in VARIANTS:
                runs[variant].append(throughput(variant, sizes, project, args.data_dir.resolve(), work))
                print(f"round {round_ + 1} {variant}: {runs[variant][-1]['samples_per_s']:.0f} samples/s", flush=True)
        proven = proofs(project, work)

    median = {variant: statistics.median(r["samples_per_s"] for r in rs) for variant, rs in runs.items()}
    base = median["single_1thread"]
    print(f"\n{'variant (MNIST CNN, batch 128 per process)':<44} {'samples/s':>10} {'/ 1 process 1 thread':>21}")
    for variant, rate in median.items():
        print(f"{variant:<44} {rate:>10.0f} {rate / base:>21.2f}")
    for key, ok in proven.items():
        print(f"{key}: {ok}")
    results = {
        **proven,
        "ddp2_vs_1_samples_ratio": median["ddp_2x1thread"] / base,
        "ddp2_vs_1_two_threads_samples_ratio": median["ddp_2x1thread"] / median["single_2threads"],
        "compile_vs_eager_steps_ratio": median["compiled_1thread"] / base,
        "ratios": "medians over rounds of samples/s (steps/s for compile, same batch), each against 1 process "
        "with 1 torch thread, except ddp2_vs_1_two_threads (against 1 process with 2 threads: the same 2 cores)",
        "samples_per_s": median,
        "sizes": {**sizes, "batch_size_per_process": BATCH_SIZE},
        "runs": runs,
        "quick": args.quick,
        "machine": machine(1, load_before),
    }
    if output:
        write_results(output, results)


if __name__ == "__main__":
    main()
