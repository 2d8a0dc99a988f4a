"""Training benchmarks for the generated project: Lightning's overhead, and MNIST on the real data.

1. Lightning overhead. The MNIST CNN task (its config's hyperparameters, AdamW + OneCycleLR) is
   trained for the same number of steps twice, side by side: through the generated CLI's Trainer
   (`run(["fit", "--config", "configs/mnist_cnn.yaml", ...])`) and through a hand-written PyTorch
   loop (forward -> loss -> backward -> step) over the very same DataLoader of preprocessed tensors
   (the project's MNISTDataModule on the first 12,800 training images). Warm-up steps are not timed;
   both use the same torch thread count. Each measurement runs in a fresh subprocess, so its peak
   RSS (getrusage max RSS) is its own; the two alternate for several rounds and the median steps/s
   of each gives the ratio lightning/raw (goal >= 0.95).
2. MNIST. The default config (6 epochs) trains on the real MNIST files, then `test --ckpt_path best`
   scores the best checkpoint on the 10,000 test images (goal >= 99.3 %). Reported: the wall time of
   the fit call, and the seconds from that call's start to the end of the first validation epoch
   with val_acc >= 0.99 (measured on the 5,000-image validation split, once per epoch).

Every run bakes the template with cookiecutter's defaults into a temporary folder first, so it
measures the template as it is now. Results go to benchmarks/results/training.json.

    python benchmarks/training.py                  # full run: 5 to 20 minutes on 2 CPU cores, by their load
    python benchmarks/training.py --quick          # smoke check with tiny sizes, under a minute
    python benchmarks/training.py --data-dir DIR   # DIR/MNIST/raw holds the four MNIST IDX files
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from lightning.pytorch import Callback

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "training.json"
CONFIG = "configs/mnist_cnn.yaml"
TARGET_RATIO, TARGET_TEST_ACC = 0.95, 0.993

# Benchmark 1 sizes. A step is one batch of 128; 12,800 training images make 100 steps an epoch.
FULL = {"train_images": 12_800, "warmup_steps": 10, "timed_steps": 150, "rounds": 3}
QUICK = {"train_images": 640, "warmup_steps": 3, "timed_steps": 12, "rounds": 1}
VAL_IMAGES = 128  # the data module insists on a validation split; the overhead runs never use it
# Benchmark 2 with --quick: a few batches of the real data instead of 6 epochs.
QUICK_MNIST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "20", "--trainer.limit_val_batches", "5"]
QUICK_MNIST += ["--trainer.limit_test_batches", "5"]
# Off in both benchmarks (stdout is not a terminal); benchmark 1 also turns off what the raw loop lacks.
NO_PROGRESS_BAR = ["--trainer.enable_progress_bar", "false"]
LIGHTNING_OFF = ["--trainer.enable_model_summary", "false", "--trainer.logger", "false"]
LIGHTNING_OFF += ["--trainer.enable_checkpointing", "false", "--trainer.limit_val_batches", "0"]
OFF_IN_OVERHEAD_RUN = "progress bar, model summary, logger, checkpointing, validation"
ON_IN_OVERHEAD_RUN = "the task's train_loss and train_acc logging, the CLI's LearningCurves callback"


# --- Callbacks the workers add with `--trainer.callbacks+=training.<name>` -----------------------


class StepClock(Callback):
    """The time after each optimizer step: Lightning's whole per-batch cycle lies between two of them."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.last_loss = float("nan")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.times.append(time.perf_counter())
        if trainer.global_step == trainer.max_steps:
            self.last_loss = outputs["loss"].item()


class EpochClock(Callback):
    """The time and val_acc at the end of each validation run (sanity check excluded)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            acc = float(trainer.callback_metrics["val_acc"])
            self.epochs.append({"epoch": trainer.current_epoch, "time": time.perf_counter(), "val_acc": acc})


def find_callback(trainer, cls: type) -> Callback:
    # The instance comes from module `training`, not `__main__`, so match by name.
    return next(cb for cb in trainer.callbacks if type(cb).__name__ == cls.__name__)


def callback_arg(cls: type) -> str:
    return f"--trainer.callbacks+={Path(__file__).stem}.{cls.__name__}"


# --- Workers: each runs in its own subprocess, in the baked project's folder ----------------------


def peak_rss_mib() -> float:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 2**10  # bytes on macOS, KiB on Linux


def current_rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process now (this one by default), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**10
    return float("nan")


def import_project(spec: dict):
    import importlib

    sys.path.insert(0, spec["src"])
    return importlib.import_module(f"{spec['package']}.cli")


def steps_per_s(times: list[float], warmup: int) -> float:
    """Steps after the warm-up divided by their time: from the end of step `warmup` to the end of the last."""
    return (len(times) - warmup) / (times[-1] - times[warmup - 1])


def worker_lightning(spec: dict) -> dict:
    import torch

    cli_module = import_project(spec)
    torch.set_num_threads(spec["threads"])
    rss_before = current_rss_mib()
    total = spec["warmup_steps"] + spec["timed_steps"]
    data_args = ["--data.data_dir", spec["data_dir"], "--data.download", "false", "--data.val_size", str(VAL_IMAGES)]
    steps = ["--trainer.max_steps", str(total), "--trainer.max_epochs", "-1"]
    extra = [*NO_PROGRESS_BAR, *LIGHTNING_OFF, callback_arg(StepClock)]
    cli = cli_module.run(["fit", "--config", CONFIG, *data_args, *steps, *extra])
    clock = find_callback(cli.trainer, StepClock)
    assert len(clock.times) == total, f"expected {total} steps, Lightning ran {len(clock.times)}"
    return {
        "steps_per_s": steps_per_s(clock.times, spec["warmup_steps"]),
        "last_loss": clock.last_loss,
        "threads": torch.get_num_threads(),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def worker_raw(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F
    import yaml

    import_project(spec)
    from importlib import import_module

    torch.set_num_threads(spec["threads"])
    rss_before = current_rss_mib()
    config = yaml.safe_load(Path(CONFIG).read_text())
    model_class, data_class = (config[k]["class_path"].rsplit(".", 1) for k in ("model", "data"))
    DataModule = getattr(import_module(data_class[0]), data_class[1])
    Task = getattr(import_module(model_class[0]), model_class[1])

    torch.manual_seed(42)  # the CLI's seed_everything default
    data = DataModule(
        **{**config["data"]["init_args"], "data_dir": spec["data_dir"], "download": False, "val_size": VAL_IMAGES}
    )
    data.setup("fit")
    # The task only to read its hyperparameters and take its nn.Module: the loop below is plain PyTorch.
    task = Task(num_classes=data.num_classes, input_shape=data.input_shape, **config["model"]["init_args"])
    model, lr, weight_decay = task.model, task.hparams.lr, task.hparams.weight_decay
    total = spec["warmup_steps"] + spec["timed_steps"]
    # fused, as the task's own AdamW (one kernel over every weight)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total)

    model.train()
    times: list[float] = []
    while len(times) < total:
        for images, targets in data.train_dataloader():  # (128, 1, 28, 28), (128,), shuffled
            loss = F.cross_entropy(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            times.append(time.perf_counter())
            if len(times) == total:
                break
    return {
        "steps_per_s": steps_per_s(times, spec["warmup_steps"]),
        "last_loss": loss.item(),
        "threads": torch.get_num_threads(),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def worker_mnist(spec: dict) -> dict:
    import torch

    cli_module = import_project(spec)
    torch.set_num_threads(spec["threads"])
    data_args = ["--config", CONFIG, "--data.data_dir", spec["data_dir"], "--data.download", "false"]
    data_args += [*NO_PROGRESS_BAR, *spec.get("extra_args", [])]
    start = time.perf_counter()
    fit = cli_module.run(["fit", *data_args, callback_arg(EpochClock)])
    fit_seconds = time.perf_counter() - start
    epochs = [
        {"epoch": e["epoch"], "seconds": e["time"] - start, "val_acc": e["val_acc"]}
        for e in find_callback(fit.trainer, EpochClock).epochs
    ]
    first_99 = next((e for e in epochs if e["val_acc"] >= 0.99), None)
    test = cli_module.run(["test", *data_args, "--ckpt_path", "best"])
    data = fit.datamodule
    # The fraction of test images classified correctly, counted here with the tested weights over the whole
    # test set: a cross-check of the logged test_acc (torchmetrics, micro-averaged), which covers the tested batches.
    model = test.model.eval()
    with torch.inference_mode():
        correct = sum((model(x).argmax(dim=-1) == y).sum().item() for x, y in test.datamodule.test_dataloader())
    return {
        "fit_seconds": fit_seconds,
        "epochs": epochs,
        "seconds_to_val_acc_99": first_99["seconds"] if first_99 else None,
        "epoch_of_val_acc_99": first_99["epoch"] if first_99 else None,
        "test_fraction_correct": correct / len(test.datamodule.test_set),
        "test_acc_logged": float(test.trainer.callback_metrics["test_acc"]),
        "tested_checkpoint": os.path.relpath(test.config.test.ckpt_path),
        "split_sizes": [len(data.train_set), len(data.val_set), len(data.test_set)],
        "max_epochs": fit.trainer.max_epochs,
        "threads": torch.get_num_threads(),
        "peak_rss_mib": peak_rss_mib(),
    }


WORKERS = {"lightning": worker_lightning, "raw": worker_raw, "mnist": worker_mnist}


def run_worker(kind: str, spec: dict, project: Path, log_dir: Path) -> dict:
    """Runs one measurement in a fresh Python process in the baked project's folder; returns its result."""
    result_file = log_dir / f"{kind}-{time.monotonic_ns()}.json"
    log_file = result_file.with_suffix(".log")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(spec), str(result_file)]
    with log_file.open("w") as log:
        done = subprocess.run(command, cwd=project, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"{kind} worker failed (exit {done.returncode}); its output:\n{log_file.read_text()[-4000:]}")
    return json.loads(result_file.read_text())


# --- The driver -----------------------------------------------------------------------------------


def bake(into: Path) -> Path:
    from cookiecutter.main import cookiecutter

    return Path(cookiecutter(str(REPO_ROOT), no_input=True, output_dir=str(into)))


def package_of(project: Path) -> str:
    """The Python package of a baked project: the one package under src/."""
    return next(p.name for p in (project / "src").iterdir() if (p / "__init__.py").exists())


def cpu_seconds() -> float:
    """User + system seconds of this process's finished children (and theirs: a sweep's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Project:
    """The baked project, and every command run in it: `python -m <package> ...` as a user types it."""

    def __init__(self, path: Path, work: Path) -> None:
        self.path, self.package = path, package_of(path)
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(path / "src"), os.environ.get("PYTHONPATH", "")]),
            "HF_DATASETS_CACHE": str(work / "hf_datasets"),  # the reviews' cache, not the user's
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }
        self.log = work / "logs"
        self.log.mkdir()
        # Compiled as `pip install` compiles it: else the first command measured also writes the bytecode.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(path / "src")], check=True)
        self.commands: list[dict] = []

    def run(self, *args: str) -> float:
        """Runs the command; its wall seconds. Exits with the end of its output when it fails. Its CPU seconds
        (its processes' user + system time) are recorded too: wall time that grew while they did not is other
        processes' load."""
        log = self.log / f"{len(self.commands):03d}-{args[0]}.log"
        cpu = cpu_seconds()
        start = time.perf_counter()
        with log.open("w") as out:
            done = subprocess.run(
                [sys.executable, "-m", self.package, *args], cwd=self.path, env=self.env, stdout=out, stderr=out
            )
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        command = shlex.join(["python", "-m", self.package, *args])
        if done.returncode != 0:
            sys.exit(f"{command}\nexited with {done.returncode}; the end of its output:\n{log.read_text()[-4000:]}")
        self.commands.append({"command": command, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2)})
        print(f"  {seconds:7.1f} s (CPU {cpu:6.1f} s)  {command}", flush=True)
        return seconds


def write_idx(path: Path, array) -> None:
    """IDX file: magic (0, 0, type 0x08 = ubyte, ndim), big-endian int32 dims, then the bytes."""
    path.write_bytes(struct.pack(f">BBBB{array.ndim}i", 0, 0, 0x08, array.ndim, *array.shape) + array.tobytes())


def mnist_subset(data_dir: str, n_train: int, n_test: int, into: Path) -> Path:
    """A data_dir holding the first n_train (+ the validation split) and n_test MNIST images."""
    from torchvision.datasets import MNIST

    raw = into / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", n_train + VAL_IMAGES), ("t10k", n_test)):
        full = MNIST(data_dir, train=split == "train", download=False)
        write_idx(raw / f"{split}-images-idx3-ubyte", full.data[:n].numpy())
        write_idx(raw / f"{split}-labels-idx1-ubyte", full.targets[:n].to(dtype=full.data.dtype).numpy())
    return into


def machine(threads: int, load_before: tuple[float, ...]) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": threads,
        # Other processes' load, 1/5/15-minute averages: above ~cores - threads, the timings are contended.
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": version("torch"),
        "lightning": version("lightning"),
        "torchmetrics": version("torchmetrics"),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def write_results(output: Path, results: dict) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {output}")


def overhead_benchmark(sizes: dict, spec: dict, project: Path, work: Path) -> dict:
    spec = {
        **spec,
        **sizes,
        "data_dir": str(mnist_subset(spec["data_dir"], sizes["train_images"], 256, work / "subset")),
    }
    runs: dict[str, list[dict]] = {"raw": [], "lightning": []}
    for round_ in range(sizes["rounds"]):
        order = ("raw", "lightning") if round_ % 2 == 0 else ("lightning", "raw")  # alternate against drift
        for kind in order:
            runs[kind].append(run_worker(kind, spec, project, work))
            print(f"  round {round_ + 1} {kind:9} {runs[kind][-1]['steps_per_s']:7.2f} steps/s", flush=True)
    median = {kind: statistics.median(r["steps_per_s"] for r in rs) for kind, rs in runs.items()}
    return {"sizes": sizes, "runs": runs, "median_steps_per_s": median, "ratio": median["lightning"] / median["raw"]}


def print_overhead(o: dict, threads: int) -> None:
    s = o["sizes"]
    print(
        f"\nLightning overhead: MNIST CNN, batch 128, {s['timed_steps']} timed steps after {s['warmup_steps']} "
        f"warm-up, {s['train_images']:,} training images, torch threads: {threads}"
    )
    print(f"(Lightning: {OFF_IN_OVERHEAD_RUN} off; {ON_IN_OVERHEAD_RUN} on)")
    rounds = "".join(f"  round {i + 1}" for i in range(s["rounds"]))
    print(f"{'':22}{rounds}   median   peak RSS MiB (at start)   last loss")
    for kind, label in (("raw", "raw PyTorch loop"), ("lightning", "Lightning Trainer")):
        runs = o["runs"][kind]
        cells = "".join(f"{r['steps_per_s']:9.2f}" for r in runs)
        peak = statistics.median(r["peak_rss_mib"] for r in runs)
        before = statistics.median(r["rss_before_mib"] for r in runs)
        print(
            f"{label:22}{cells}{o['median_steps_per_s'][kind]:9.2f}   {peak:8.0f} ({before:4.0f})"
            f"{'':13}{runs[-1]['last_loss']:.4f}"
        )
    verdict = "meets" if o["ratio"] >= TARGET_RATIO else "BELOW"
    print(f"{'lightning / raw':22}{'':{9 * s['rounds']}}{o['ratio']:9.3f}   {verdict} the goal of {TARGET_RATIO}")


def print_mnist(m: dict, quick: bool) -> None:
    train, val, test = m["split_sizes"]
    print(
        f"\nMNIST, default config ({m['max_epochs']} epochs on {train:,} training images, "
        f"validation on {val:,}), then test --ckpt_path best on {test:,} test images"
    )
    if quick:
        print(f"--quick: only {' '.join(QUICK_MNIST)}, so the accuracy says nothing about the goal")
    print(f"{'epoch':>5}  {'seconds':>8}  {'val_acc':>8}   (seconds since the fit call; val_acc as logged)")
    for e in m["epochs"]:
        print(f"{e['epoch']:5d}  {e['seconds']:8.1f}  {100 * e['val_acc']:7.2f}%")
    to_99 = m["seconds_to_val_acc_99"]
    verdict = "meets" if m["test_fraction_correct"] >= TARGET_TEST_ACC else "BELOW"
    rows = [
        ("fit wall time (CLI call to return)", f"{m['fit_seconds']:8.1f} s"),
        (
            "seconds until logged val_acc >= 0.99",
            f"{to_99:8.1f} s (end of epoch {m['epoch_of_val_acc_99']})" if to_99 is not None else "   never",
        ),
        (
            "test accuracy, best checkpoint (correct/all)",
            f"{100 * m['test_fraction_correct']:8.2f} % {verdict} the goal of {100 * TARGET_TEST_ACC:.1f} %",
        ),
        ("logged test_acc (tested batches)", f"{100 * m['test_acc_logged']:8.2f} %"),
        ("peak RSS (fit and test in one process)", f"{m['peak_rss_mib']:8.0f} MiB"),
    ]
    for label, value in rows:
        print(f"{label:46}{value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke check in under a minute")
    parser.add_argument(
        "--data-dir",
        default=str(REPO_ROOT.parent / "shared" / "data"),
        help="folder with MNIST/raw/*-ubyte (default: ../shared/data from the repo root)",
    )
    # One thread by default: on a shared machine, OpenMP threads that fight other processes for the
    # cores made a step up to 4x slower and the timings swing; on an idle machine pass --threads N.
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every run (default: 1)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"JSON results (default: {RESULTS.relative_to(REPO_ROOT)}; --quick writes none)",
    )
    args = parser.parse_args()
    output = args.output or (None if args.quick else RESULTS)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        project = bake(work / "bake")
        package = package_of(project)
        spec = {
            "src": str(project / "src"),
            "package": package,
            "threads": args.threads,
            "data_dir": str(Path(args.data_dir).resolve()),
        }
        print(f"baked {REPO_ROOT} -> {project} (package {package})", flush=True)

        print("Lightning overhead ...", flush=True)
        overhead = overhead_benchmark(QUICK if args.quick else FULL, spec, project, work)
        print("MNIST fit + test ...", flush=True)
        mnist = run_worker("mnist", {**spec, "extra_args": QUICK_MNIST if args.quick else []}, project, work)

    print_overhead(overhead, args.threads)
    print_mnist(mnist, args.quick)
    results = {
        "lightning_vs_raw_steps_ratio": overhead["ratio"],
        "lightning_steps_per_s": overhead["median_steps_per_s"]["lightning"],
        "raw_steps_per_s": overhead["median_steps_per_s"]["raw"],
        "lightning_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in overhead["runs"]["lightning"]),
        "raw_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in overhead["runs"]["raw"]),
        "lightning_rss_at_start_mib": statistics.median(r["rss_before_mib"] for r in overhead["runs"]["lightning"]),
        "raw_rss_at_start_mib": statistics.median(r["rss_before_mib"] for r in overhead["runs"]["raw"]),
        "lightning_off_in_overhead_run": OFF_IN_OVERHEAD_RUN,
        "lightning_on_in_overhead_run": ON_IN_OVERHEAD_RUN,
        "overhead": overhead,
        "mnist_test_acc": mnist["test_fraction_correct"],
        "mnist_test_acc_means": "fraction of the 10,000 test images the best checkpoint classifies correctly; "
        "the task's logged test_acc is mnist.test_acc_logged",
        "mnist_seconds": mnist["fit_seconds"],
        "mnist_seconds_to_99": mnist["seconds_to_val_acc_99"],
        "mnist_seconds_to_99_means": "seconds from the start of the fit call to the end of the first validation "
        "epoch whose logged val_acc (5,000-image validation split, once per epoch) is >= 0.99",
        "mnist_peak_rss_mib": mnist["peak_rss_mib"],
        "mnist": mnist,
        "quick": args.quick,
        "machine": machine(args.threads, load_before),
    }
    m = results["machine"]
    print(
        f"\n{m['cpu']}, {m['cores']} cores, torch threads: {m['torch_threads']}; load average before "
        f"{m['load_average_before'][0]}, after {m['load_average_after'][0]}; torch {m['torch']}, "
        f"lightning {m['lightning']}"
    )
    if output:
        write_results(output, results)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        kind, spec, result_file = sys.argv[2], json.loads(sys.argv[3]), Path(sys.argv[4])
        result_file.write_text(json.dumps(WORKERS[kind](spec)))
    else:
        main()
