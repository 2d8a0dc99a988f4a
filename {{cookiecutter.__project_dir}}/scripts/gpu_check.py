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
{%- if cookiecutter.include_bert_finetune == "yes" %}

`--bert` also fine-tunes a BERT-base-sized model (the folder `--bert_model`, else random weights of
bert-base's shape and a WordPiece vocabulary learnt from the text dataset's train.csv) at 32-true and
bf16-mixed three ways: this project's full fine-tune, its LoRA (`--model.lora_r 8`), and Hugging Face's
`transformers.Trainer` with the same batch, length, learning rate and schedule; it prints reviews/s
and the ratios ours / Trainer and LoRA / full.

    python scripts/gpu_check.py --configs --bert --text_dataset /path/to/rotten_tomatoes
{%- endif %}
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
{%- if cookiecutter.include_bert_finetune == "yes" %}


BERT_BATCH, BERT_LENGTH, BERT_LR = 32, 128, 2e-5


def bert_base(text_dataset: str, into: Path) -> str:
    """A folder as `save_pretrained` writes one: random weights of bert-base's shape (110M), and a WordPiece
    vocabulary of its size learnt from the dataset's train.csv (no pretrained files needed: speed only)."""
    import csv

    from tokenizers import processors
    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    with (Path(text_dataset) / "train.csv").open(newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=30522)
    cls, sep = (wordpiece.token_to_id(token) for token in ("[CLS]", "[SEP]"))
    wordpiece.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
    special = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, **special).save_pretrained(into)
    config = BertConfig(vocab_size=wordpiece.get_vocab_size(), num_labels=2)
    BertForSequenceClassification(config).save_pretrained(into)
    return str(into)


def trainer_steps_per_second(model: str, text_dataset: str, bf16: bool, warmup: int, steps: int) -> float:
    """transformers.Trainer, as run_glue.py sets it up, on the same data, batch, length and schedule."""
    import time

    import torch
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model)
    train = load_dataset("csv", data_files=str(Path(text_dataset) / "train.csv"))["train"]
    train = train.map(lambda rows: tokenizer(rows["text"], truncation=True, max_length=BERT_LENGTH), batched=True)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    arguments = TrainingArguments(
        output_dir="runs/gpu_check/trainer",
        per_device_train_batch_size=BERT_BATCH,
        learning_rate=BERT_LR,
        weight_decay=0.01,
        warmup_steps=0.1,
        max_grad_norm=0.0,
        max_steps=warmup + steps,
        bf16=bf16,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    classifier = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2)
    trainer = Trainer(
        classifier,
        arguments,
        train_dataset=train.rename_column("label", "labels").remove_columns("text"),
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[Clock()],
    )
    trainer.train()
    return (len(times) - warmup - 1) / (times[-1] - times[warmup])


def bert_peers(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Reviews/s of the full fine-tune, LoRA and transformers.Trainer, at 32-true and bf16-mixed."""
    import tempfile

    if not args.text_dataset:
        sys.exit("--bert needs --text_dataset: a folder with train.csv, validation.csv, test.csv (text, label)")
    config = ROOT / "configs" / "bert_finetune.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        model = args.bert_model or bert_base(args.text_dataset, Path(tmp))
        ours = ["--model.pretrained", model, "--data.tokenizer", model, "--data.dataset", args.text_dataset]
        ours += ["--data.max_length", str(BERT_LENGTH), "--data.batch_size", str(BERT_BATCH)]
        ours += ["--model.lr", str(BERT_LR), "--model.pooling", "cls"]
        results: dict[str, dict[str, float]] = {}
        for precision in ("32-true", "bf16-mixed"):
            rates = results.setdefault(precision, {})
            for name, options in (("ours", ours), ("ours_lora", [*ours, "--model.lora_r", "8", "--model.lr", "5e-4"])):
                rates[name] = BERT_BATCH * steps_per_second(config, options, precision, False, args.warmup, args.steps)
            bf16 = precision == "bf16-mixed"
            rates["trainer"] = BERT_BATCH * trainer_steps_per_second(
                model, args.text_dataset, bf16, args.warmup, args.steps
            )
    print(f"\n{'BERT-sized, reviews/s':22}{'ours':>10}{'LoRA':>10}{'Trainer':>10}{'ours/Trainer':>14}{'LoRA/ours':>11}")
    for precision, rates in results.items():
        ratios = f"{rates['ours'] / rates['trainer']:14.2f}{rates['ours_lora'] / rates['ours']:11.2f}"
        print(f"{precision:22}{rates['ours']:10.1f}{rates['ours_lora']:10.1f}{rates['trainer']:10.1f}{ratios}")
    return results
{%- endif %}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation happens here)")
    parser.add_argument("--steps", type=int, default=100, help="timed steps")
    parser.add_argument("--data_dir", default="data", help="folder holding MNIST/raw, for the MNIST tasks")
    parser.add_argument("--text_dataset", help="for the text tasks: a local folder of csv files or a dataset name")
    parser.add_argument("--configs", nargs="*", type=Path, default=sorted((ROOT / "configs").glob("*.yaml")))
{%- if cookiecutter.include_bert_finetune == "yes" %}
    parser.add_argument("--bert", action="store_true", help="also BERT-base-sized: ours, LoRA and transformers.Trainer")
    parser.add_argument("--bert_model", help="for --bert: a save_pretrained folder (default: random bert-base weights)")
{%- endif %}
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
{%- if cookiecutter.include_bert_finetune == "yes" %}
    more = {"bert_peers_reviews_per_s": bert_peers(args)} if args.bert else {}
{%- else %}
    more: dict = {}
{%- endif %}
    out = Path("runs") / "gpu_check.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({**results, **more}, indent=2))
    print(f"\nsteps/s per task and variant written to {out}")


if __name__ == "__main__":
    main()
