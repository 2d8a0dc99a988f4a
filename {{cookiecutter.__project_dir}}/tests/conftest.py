{%- set text_tasks = cookiecutter.__text_data == "yes" -%}
{%- set image_folders = cookiecutter.include_resnet_finetune == "yes" or cookiecutter.include_vit == "yes" -%}
"""Shared fixtures: run the CLI in-process inside a scratch folder, and small offline data."""

from __future__ import annotations

{% if cookiecutter.include_bert_finetune == "yes" -%}
import csv
{% endif -%}
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
{%- if cookiecutter.include_resnet_finetune == "yes" %}
import torchvision
{%- endif %}
import uvicorn
import yaml
from filelock import FileLock
{%- if image_folders %}
from PIL import Image
{%- endif %}
{%- if cookiecutter.include_bert_finetune == "yes" %}
from tokenizers import processors
from tokenizers.implementations import BertWordPieceTokenizer
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast
{%- endif %}

from {{ cookiecutter.__package }}.artifacts import load_checkpoint
from {{ cookiecutter.__package }}.cli import RoadmapCLI, run
from {{ cookiecutter.__package }}.export import export

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((PROJECT_ROOT / "configs").glob("*.yaml"))
TASKS = [config.stem for config in CONFIGS]
# The tests of shared machinery (resume, options, the server's limits) run on the quickest task this project has.
BY_SPEED = (
    "xor",
    "linear_regression",
    "mnist_cnn",
    "vit",
    "sentiment_rnn",
    "sentiment_transformer",
    "resnet_finetune",
    "gan",
    "bert_finetune",
)


def speed(task: str) -> int:
    return BY_SPEED.index(task) if task in BY_SPEED else len(BY_SPEED)  # a task of your own comes last


QUICKEST = min(TASKS, key=speed)
# pytest-xdist's workers (pyproject's addopts: -n) share the cores: torch's threads too.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


def fast_on(*tasks: str, among: list[str] = TASKS) -> list:
    """The tasks `among` (all: TASKS) as test parameters, those not named here marked `slow` (the quickest stays when
    none of them is there): plain `pytest` checks a piece of machinery on a few tasks, `pytest -m slow` on the rest."""
    fast = set(tasks) & set(among) or set(sorted(among, key=speed)[:1])
    return [task if task in fast else pytest.param(task, marks=pytest.mark.slow) for task in among]


# Tasks that step their own optimizers (Lightning's manual optimization, a GAN's two): Lightning refuses the Trainer's
# gradient clipping and accumulation for them.
MANUAL_OPTIMIZATION = {"gan"}
AUTOMATIC = sorted((task for task in TASKS if task not in MANUAL_OPTIMIZATION), key=speed)
{%- if text_tasks %}
REVIEWS = PROJECT_ROOT / "tests" / "data" / "reviews"  # a tiny movie-review corpus: train.csv, test.csv
{%- endif %}
# Keeps runs quiet and fast: no progress bar, no model summary.
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, so `runs/` and `data/` never touch the project."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["{{ cookiecutter.__package }}"])  # the CLI gets its arguments from the test
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads fail as they do offline, even on a machine that has a network (torchvision's call urlopen)."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


def launch_env(**extra: str) -> dict[str, str]:
    """The environment of a launched CLI: the project's src/ and tests/ (for rank_probe) importable, 1 thread each."""
    path = [str(PROJECT_ROOT / "src"), str(PROJECT_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app served by uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def cli_args(subcommand: str, task: str, data_args: dict[str, list[str]], *args: str) -> list[str]:
    """The CLI arguments `SUBCOMMAND --config configs/TASK.yaml ...`, made quiet and offline."""
    config = PROJECT_ROOT / "configs" / f"{task}.yaml"
    sections = yaml.safe_load(config.read_text())
    classes = [sections[key]["class_path"].rsplit(".", 1)[-1] for key in ("data", "model")]
    offline = [arg for name in classes for arg in data_args.get(name, [])]
    return [subcommand, "--config", str(config), *offline, *QUIET, *args]


@pytest.fixture
def run_cli(workdir: Path, data_args: dict[str, list[str]]):
    """`run_cli("fit", "xor", "--trainer.max_epochs", "1")` runs the CLI in-process on configs/xor.yaml."""

    def invoke(subcommand: str, task: str, *args: str) -> RoadmapCLI:
        return run(cli_args(subcommand, task, data_args, *args))

    return invoke
{%- if cookiecutter.__mnist_data == "yes" %}


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """The IDX format of the MNIST files: magic (dtype uint8, ndim), big-endian sizes, raw bytes."""
    header = bytes([0, 0, 0x08, tensor.dim()]) + b"".join(int(n).to_bytes(4, "big") for n in tensor.shape)
    path.write_bytes(header + tensor.to(torch.uint8).numpy().tobytes())


def make_fake_mnist(root: Path, n_train: int = 256, n_test: int = 64) -> Path:
    """Tiny MNIST-format files: each image is its label drawn as a bright square at a label-dependent place."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = torch.randint(0, 10, (n,), generator=generator)
        images = torch.randint(0, 40, (n, 28, 28), generator=generator)
        for i, label in enumerate(labels.tolist()):
            row, col = divmod(label, 5)
            images[i, 4 + 10 * row : 12 + 10 * row, 2 + 5 * col : 6 + 5 * col] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def fake_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_mnist(tmp_path_factory.mktemp("mnist"))
{%- endif %}

{%- if image_folders %}


def make_photos(root: Path) -> Path:
    """60 image files in 3 class folders, of many sizes and formats: red (RGB PNG, JPEG), blue (RGBA PNG), gray (L)."""
    generator = torch.Generator().manual_seed(0)
    colors = {"red": (200, 40, 40), "blue": (40, 60, 210), "gray": (128, 128, 128)}
    for name, color in colors.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(20):
            side = 20 + 3 * i
            noise = torch.randint(-30, 30, (side, side + i, 3), generator=generator)
            pixels = (torch.tensor(color) + noise).clamp(0, 255).byte().numpy()
            image = Image.fromarray(pixels)
            if name == "gray":
                image.convert("L").save(root / name / f"{i}.png")
            elif name == "blue":
                image.convert("RGBA").save(root / name / f"{i}.png")
            else:
                image.save(root / name / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos"))
{%- endif %}
{%- if cookiecutter.include_resnet_finetune == "yes" %}


@pytest.fixture(scope="session", autouse=True)
def hub_weights(tmp_path_factory: pytest.TempPathFactory):
    """Random ResNet-18 weights where torchvision keeps its downloads (TORCH_HOME), under the name it expects:
    `weights: IMAGENET1K_V1` (and DEFAULT) then load with no network, as a user's cached download would."""
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
        torch.manual_seed(0)
        state = torchvision.models.resnet18().state_dict()
        (home / "hub" / "checkpoints").mkdir(parents=True)
        torch.save(state, home / "hub" / "checkpoints" / Path(url).name)
        yield state
{%- endif %}
{%- if cookiecutter.include_bert_finetune == "yes" %}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT of width 32 and its WordPiece tokenizer (trained on the test reviews), saved as a Hub model
    folder: `from_pretrained` reads it with no network, as it would read google-bert/bert-base-uncased."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    with (REVIEWS / "train.csv").open(newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=400, min_frequency=1)
    cls, sep = (wordpiece.token_to_id(token) for token in ("[CLS]", "[SEP]"))
    wordpiece.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))  # [CLS] text [SEP]
    special = dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, **special).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=wordpiece.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder
{%- endif %}
{%- if text_tasks %}


@pytest.fixture(scope="session", autouse=True)
def datasets_cache(tmp_path_factory: pytest.TempPathFactory):
    """Hugging Face `datasets` caches what it loads; keep the tests' copies out of ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets")))
        yield
{%- endif %}


@pytest.fixture(scope="session")
def data_args(request: pytest.FixtureRequest) -> dict[str, list[str]]:
    """Options that let a task run offline in a test, by data module class (every task on it gets them) and by
    model class (for that task only)."""
    offline = {}
{%- if cookiecutter.__mnist_data == "yes" %}
    fake_mnist = request.getfixturevalue("fake_mnist")
    mnist = ["--data.data_dir", str(fake_mnist), "--data.download", "false", "--data.val_size", "64"]
    offline["MNISTDataModule"] = mnist
{%- endif %}
{%- if image_folders %}
    # 60 small photos of 3 classes, at 32x32 pixels; a ResNet's weights are the session's cached file (hub_weights).
    photos = request.getfixturevalue("photos")
    offline["ImageFolderDataModule"] = ["--data.root", str(photos), "--data.dataset", "null", "--data.image_size", "32"]
    offline["ImageFolderDataModule"] += ["--data.resize", "36", "--data.batch_size", "8"]
{%- endif %}
{%- if text_tasks %}
    # 160 training and 40 test reviews in tests/data/reviews; no validation file, so 16 are split off for it. They
    # are 12 words at most: 32 tokens keep them whole (word pieces too), and the export traces 32 tokens, not 128.
    offline["TextDataModule"] = ["--data.dataset", str(REVIEWS), "--data.batch_size", "16", "--data.vocab_size", "200"]
    offline["TextDataModule"] += ["--data.max_length", "32"]
{%- endif %}
{%- if cookiecutter.include_bert_finetune == "yes" %}
    # The tiny BERT and its tokenizer in place of bert-base-uncased, both read from its folder.
    tiny_bert = request.getfixturevalue("tiny_bert")
    offline["BertClassifier"] = ["--model.pretrained", str(tiny_bert), "--data.tokenizer", str(tiny_bert)]
{%- endif %}
    return offline


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]) -> Path:
    """`make(folder)`, which returns a path in the folder, run once per test run: under pytest-xdist, by the first
    worker that asks (a file lock), and the others read that path from the folder."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    folder = tmp_path_factory.getbasetemp().parent / name  # the run's own folder, above each worker's
    with FileLock(f"{folder}.lock"):
        made = folder / ".made"
        if not made.exists():
            folder.mkdir(exist_ok=True)  # a worker that failed here may have left some of it
            made.write_text(str(make(folder)))
        return Path(made.read_text())


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, data_args: dict[str, list[str]]):
    """`trained("xor")`: the best.ckpt of a short fit of the task, made once per test run; `trained("xor", *options)`
    with more options (another run, made once too)."""
    checkpoints: dict[tuple[str, ...], Path] = {}
    limits = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"]

    def fit(task: str, options: tuple[str, ...], folder: Path) -> Path:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(folder)
            patch.setattr("sys.argv", ["{{ cookiecutter.__package }}"])
            cli = run(cli_args("fit", task, data_args, *limits, *options))
            return Path(cli.trainer.checkpoint_callback.best_model_path).resolve()

    def checkpoint(task: str, *options: str) -> Path:
        key = (task, *options)
        if key not in checkpoints:
            name = "-".join(key).replace("--", "").replace(".", "_")
            checkpoints[key] = made_once(tmp_path_factory, name, partial(fit, task, options))
        return checkpoints[key]

    return checkpoint


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory: pytest.TempPathFactory):
    """`exported("xor")`: the folder of the export of `trained("xor")` (every format, the int8 files, metadata.json
    and the model card), made once per test run: a test that changes a file changes a copy."""
    folders: dict[str, Path] = {}

    def export_to(task: str, folder: Path) -> Path:
        export(load_checkpoint(trained(task)), folder, quantize="int8")
        return folder

    def folder(task: str) -> Path:
        if task not in folders:
            folders[task] = made_once(tmp_path_factory, f"{task}-export", partial(export_to, task))
        return folders[task]

    return folder
