"""The one command line for every task, built on LightningCLI.

    python -m {{ cookiecutter.__package }} fit  --config configs/xor.yaml
    python -m {{ cookiecutter.__package }} test --config configs/xor.yaml --ckpt_path best

A config names the task's LightningModule and LightningDataModule by ``class_path``; every
``__init__`` argument of both, and of the Trainer, becomes a typed option (``--print_config`` shows
them all). Values that come from the data (``num_classes``, ``input_shape``) are linked from the
data module to the model, so they are never typed twice. Scaling out and mixed precision are plain
Trainer flags: ``--trainer.devices 2 --trainer.strategy ddp --trainer.precision bf16-mixed``.
"""

from __future__ import annotations

import inspect
import json
import logging
{% if cookiecutter.logger == "wandb" -%}
import netrc
{% endif -%}
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch
from jsonargparse import Namespace
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from . import ConfigError
from .atomic import use_atomic_checkpoints
from .callbacks import (
    ConfusionMatrixPlot,
    EpochLines,
    ImageSamples,
    LearningCurves,
    NothingLeftWhenRefused,
    PredictionWriter,
    RandomState,
    SameBuffersOnEveryRank,
    SaveConfigToRunDir,
    user_error,
)
from .data.base import SplitDataModule
from .hardware import check_hardware
{%- if cookiecutter.include_gan == "yes" %}
from .judge import ImageJudge
{%- endif %}
from .runs import RUNS_DIR, command_line_options, find_checkpoint, run_dir, run_of, task_name, trained_settings
from .task import BestCheckpoint, Task

# Lightning 2.6 calls a torch.utils._pytree API that newer torch deprecates; nothing a user can act on.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# check_hardware says it in one line (16-mixed runs as bf16-mixed on the CPU).
warnings.filterwarnings("ignore", message=r"You passed `Trainer\(accelerator='cpu', precision='16-mixed'\)`")
# Lightning's lines that nobody can act on: adverts, and hardware that is not there.
LIGHTNING_NOISE = ("💡 Tip:", "TPU available: False", "Loading `train_dataloader` to estimate number of stepping")
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: not record.getMessage().startswith(LIGHTNING_NOISE)
)

# The experiment logger chosen when the project was generated; `--trainer.logger` overrides it.
LOGGER_CLASS = "{{ cookiecutter.__logger_class }}"
ARTIFACTS = {".ckpt", ".yaml", ".png", ".csv"}
# Values a data module knows and a model needs; each link applies where the model takes the argument.
LINKED_FROM_DATA = ("num_classes", "input_shape", "vocab_size", "max_length")


class ArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, with errors of a line or two: what was wrong, not 40 lines of usage first."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # a parser inside another one: the outer one reports it
            super().error(message, ex)
        noise = ("Does not validate against", "Subtypes:", "Errors:", "Given value", "- Expected a <class 'NoneType'>")
        lines = [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith(noise)]
        command = self.prog.replace(" [options]", "")
        print(f"error: {' '.join(lines)}\n`{command} --help` lists every option", file=sys.stderr)
        raise SystemExit(2)


class RoadmapCLI(LightningCLI):
    def __init__(self, *args: Any, trainer_hook: Callable[[Trainer, Task], None] | None = None, **kwargs: Any) -> None:
        """`trainer_hook`: what a program does to the run's new Trainer, kept out of its config.yaml (a sweep adds its
        pruning callback and claims the run folder), so that `fit --config <its config.yaml>` runs it again."""
        self.trainer_hook = trainer_hook
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse; resolve `--ckpt_path best|last` and check the file; then parse again with the run's own model and
        data settings under the command line's, so that a run carries what it was trained with.

        `validate`, `test` and `predict` need a checkpoint (`--ckpt_path none` asks for the untrained model).
        """
        super().parse_arguments(parser, args)
        subcommand = str(self.config.get("subcommand"))
        config = self.config.get(subcommand)
        if config is None:
            return
        if config.get("ckpt_path") is None and subcommand in ("validate", "test", "predict"):  # not silently untrained
            raise ConfigError(
                f"`{subcommand}` needs a trained model: --ckpt_path best, last or the path of a .ckpt from `fit` "
                "(--ckpt_path none runs the untrained model)"
            )
        if config.get("ckpt_path") in (None, "none"):
            config.ckpt_path = None
            return
        if config.ckpt_path in ("last", "best"):
            config.ckpt_path = str(find_checkpoint(config.model.class_path, config.ckpt_path))
        path = Path(config.ckpt_path)
        checkpoint = read_checkpoint(path, config.model.class_path)
        argv = list(sys.argv[1:] if args is None else args)
        settings = trained_settings(checkpoint)
        self.config = parser.parse_args(with_run_settings(argv, subcommand, path, settings))
        given, _ = command_line_options(argv, ("model", "data"))
        overridden = f"; from the command line: {', '.join(f'{k} {v}' for k, v in given.items())}" if given else ""
        print_note(f"{subcommand}: the model and data settings of {run_of(path)}, as `fit` saved them{overridden}")

    def _parse_ckpt_path(self) -> None:
        """Lightning's own reading of the checkpoint's model settings, which would override the command line's:
        parse_arguments has read the model's and the data's, under the command line's."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in LINKED_FROM_DATA:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_argument("--compile", type=bool, default=False, help="Run the model through torch.compile.")
{%- if cookiecutter.include_gan == "yes" %}
        parser.add_argument(
            "--judge",
            type=str | None,
            default=None,
            help="A classifier checkpoint that measures the images a generator draws, at validation and test "
            "(judge.py); best.ckpt then keeps the lowest val_classifier_fid.",
        )
{%- endif %}
        # Raw text for the text tasks' `predict`; they become the data module's predict_texts / predict_file.
        # No `type` on --text: with one, jsonargparse turns the list into its repr when --ckpt_path re-parses.
        parser.add_argument("--text", action="append", help="predict: a text to classify (repeat for more)")
        parser.add_argument("--text_file", type=str, help="predict: a file of texts to classify, one per line")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if config.trainer.logger is None:  # not set in the config or on the command line
            task = task_name(config.model.class_path)
            config.trainer.logger = Namespace(class_path=LOGGER_CLASS, init_args=Namespace(**logger_args(task)))
        for note in check_hardware(config.trainer):
            print_note(note)
        self._route_text_options(config)

    def _route_text_options(self, config: Namespace) -> None:
        given = {option: config[option[2:]] for option in ("--text", "--text_file") if config[option[2:]] is not None}
        if not given:
            return
        option = next(iter(given))
        if self.subcommand != "predict":
            raise ConfigError(f"{option} is for `predict`; `{self.subcommand}` reads its data from --data")
        if "predict_texts" not in config.data.init_args:
            task = task_name(config.model.class_path)
            raise ConfigError(f"{option}: the task {task} does not read text; predict with its --data options")
        config.data.init_args.predict_texts = given.get("--text")
        config.data.init_args.predict_file = given.get("--text_file")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        assert isinstance(self.model, Task) and self.subcommand is not None  # the parser accepts Task subclasses only
        config = self.config[self.subcommand]
        given: list[Callback] = []  # what this run was given beside the defaults
        best: BestCheckpoint | None = None
{%- if cookiecutter.include_gan == "yes" %}
        if config.judge:  # a run given a judge keeps, as best.ckpt, the epoch whose images it rated best
            judge = ImageJudge(config.judge)
            given, best = [judge], judge.best_checkpoint
{%- endif %}
        defaults = default_callbacks(config.trainer, self.subcommand, self.model, best)
        self.trainer_defaults["callbacks"] = defaults + given
        if self.model.partial_backward and config.trainer.strategy == "ddp":
            print_note(
                "--trainer.strategy ddp: each of this task's optimizers trains part of it; running ddp that "
                "expects weights without gradients (ddp_find_unused_parameters_true)"
            )
            kwargs["strategy"] = "ddp_find_unused_parameters_true"
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)  # a checkpoint is whole or absent, and a full disk one line
        if self.trainer_hook is not None:
            self.trainer_hook(trainer, self.model)
        return trainer

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        drop_unaccepted_hparams(self.model)
        # Lightning's model summary runs example_input_array without the precision's input cast (bf16-true: a
        # float32 input into bfloat16 weights fails); cast it as training batches are cast.
        if self.model.example_input_array is not None:
            self.model.example_input_array = self.trainer.precision_plugin.convert_input(self.model.example_input_array)
        if self.config_init[self.subcommand].get("compile"):
            self.model = torch.compile(self.model)  # the Trainer unwraps it for checkpoints and hooks

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it without Lightning's warnings about the checkpoint's ModelCheckpoint state, where only `fit`
        saves checkpoints: `validate`, `test` and `predict` neither restore that state nor need it."""
        with warnings.catch_warnings():
            if subcommand != "fit":
                warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`")
                warnings.filterwarnings("ignore", message="The dirpath has changed from")
            super()._run_subcommand(subcommand)

    def after_fit(self) -> None:
        self._report()

    def after_test(self) -> None:
        self._report()

    def before_predict(self) -> None:
        # A task that reads no data (a generator) makes its own predict inputs: Lightning then reads them from the
        # model's predict_dataloader, which it does only when no data module is given.
        if isinstance(self.model, Task) and not self.model.reads_data():
            self.datamodule = None

    def after_predict(self) -> None:
        self._report()

    def _report(self) -> None:
        """Say where this run's files are: checkpoints, config, pictures, predictions."""
        folder = run_dir(self.trainer)
        fast_dev_run = self.config[self.subcommand].trainer.fast_dev_run
        if self.trainer.is_global_zero and folder.exists() and not fast_dev_run:
            listing = "\n  ".join(artifacts(folder))
            print(f"\n{self.subcommand}: run folder {os.path.relpath(folder)}\n  {listing}", flush=True)


def artifacts(folder: Path) -> list[str]:
    """The files of a run folder that a user opens: each checkpoint by name, other folders by their count of
    files (a GAN's samples/, a predict's pictures)."""
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in ARTIFACTS:
            found.append(path.name)
        elif path.is_dir():
            inside = [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in ARTIFACTS]
            if path.name == "checkpoints":  # the files --ckpt_path takes
                found += [str(p.relative_to(folder)) for p in inside]
            elif inside:
                found.append(f"{path.name}/ ({len(inside)} files)")
    return found


def drop_unaccepted_hparams(model: LightningModule) -> None:
    """Forget linked values the model does not take, so its checkpoint reloads (`--ckpt_path`, `load_from_checkpoint`).

    jsonargparse skips a link whose target argument the model lacks (`max_length` for the RNN) but still reports
    it as applied, and Lightning then saves it among the model's hyperparameters, and logs it from their initial
    copy, where it may contradict the data module's own argument of that name (a pretrained tokenizer's vocab_size).
    """
    accepted = inspect.signature(type(model).__init__).parameters
    initial = getattr(model, "_hparams_initial", {})  # Lightning's frozen copy (`hparams_initial` returns a copy of it)
    for name in [name for name in model.hparams if name in LINKED_FROM_DATA and name not in accepted]:
        del model.hparams[name]
        initial.pop(name, None)


def read_checkpoint(path: Path, model_class_path: str) -> dict[str, Any]:
    """The checkpoint at `path` (its tensors mapped, not read), refused in one line where it does not load, was not
    written by this CLI, or holds another task."""
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {path}: no such file; give best, last, or the path of a .ckpt from `fit`")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any reason it does not load is the user's to hear
        reason = f"{type(err).__name__}: {err}"
        raise ConfigError(f"--ckpt_path {path} does not load: damaged, or not a checkpoint ({reason})") from None
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if "_class_path" not in hparams or "_class_path" not in checkpoint.get("datamodule_hyper_parameters", {}):
        raise ConfigError(f"--ckpt_path {path} was not written by this project's `fit`: it names no model and data")
    theirs = hparams["_class_path"]
    if theirs != model_class_path:  # weights of another task: refused, not retrained
        ours = task_name(model_class_path)
        raise ConfigError(
            f"--ckpt_path {path} is a checkpoint of {task_name(theirs)} ({theirs}), but this config's task is "
            f"{ours} ({model_class_path}): give a checkpoint of {ours}, or the config of {task_name(theirs)}"
        )
    return checkpoint


def with_run_settings(argv: list[str], subcommand: str, path: Path, settings: dict[str, Any]) -> list[str]:
    """`argv` with the run's model and data settings after the subcommand's config files and before its other
    options, which override them; and the checkpoint's path for `best`/`last`, resolved once."""
    start = argv.index(subcommand) + 1
    after = start
    for i, arg in enumerate(argv[start:], start):
        if arg in ("--config", "-c"):
            after = i + 2
        elif arg.startswith("--config="):
            after = i + 1
    sections = [f"--{name}={json.dumps(value, default=str)}" for name, value in settings.items()]
    return [*argv[:after], *sections, *argv[after:], f"--ckpt_path={path}"]


def default_callbacks(
    trainer: Namespace, subcommand: str, task: Task, best: BestCheckpoint | None = None
) -> list[Callback]:
    """What every run gets; `--trainer.enable_checkpointing false` and `--trainer.enable_progress_bar false` hold.
    `best`: the metric that picks best.ckpt, when the run's own callbacks measure it (default: the task's).

    `--trainer.fast_dev_run` writes no files, as Lightning promises (its ModelCheckpoint would still save last.ckpt).
    """
    writes_files = not trainer.fast_dev_run
    pictures = [LearningCurves(), ConfusionMatrixPlot(), ImageSamples(), PredictionWriter()]
    always = [RandomState(), SameBuffersOnEveryRank(), NothingLeftWhenRefused()]
    callbacks: list[Callback] = [*always, *(pictures if writes_files else [])]
    if subcommand == "fit" and trainer.enable_checkpointing is not False and writes_files:
        # best.ckpt and last.ckpt in the run's checkpoints/ folder. Best is the task's `best_checkpoint`, a
        # (metric, "min" | "max") pair: highest val_acc for classifiers, else lowest val_loss.
        # Last is a second checkpoint without a monitor: since Lightning 2.6, `save_last=True` rewrites last.ckpt
        # only when the best one changes, so it would hold the best epoch, and `--ckpt_path last` would resume there.
        monitor, mode = best or task.best_checkpoint
        callbacks.append(ModelCheckpoint(monitor=monitor, mode=mode, filename="best"))
        callbacks.append(ModelCheckpoint(filename="last"))
    callbacks.append(RichProgressBar() if trainer.enable_progress_bar is not False else EpochLines())
    return callbacks


def logger_args(task: str) -> dict[str, Any]:
    """Where the chosen logger writes: runs/<task>/<version>/ holds logs, checkpoints and config.yaml.

    The path is absolute: wandb and MLflow cache their stores per process, keyed by path.
    """
    runs = str(Path(RUNS_DIR).absolute())
{%- if cookiecutter.logger == "tensorboard" or cookiecutter.logger == "csv" %}
    return {"save_dir": runs, "name": task}
{%- elif cookiecutter.logger == "wandb" %}
    if not os.environ.get("WANDB_API_KEY") and not has_netrc_entry("api.wandb.ai"):
        os.environ.setdefault("WANDB_MODE", "offline")  # not logged in: keep the run on disk, `wandb sync` it later
    return {"save_dir": runs, "project": task}


def has_netrc_entry(host: str) -> bool:
    """Where `wandb login` stores the API key."""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
{%- elif cookiecutter.logger == "mlflow" %}
    # MLflow's local file store under runs/mlruns: no server to start. MLflow 3 keeps it in maintenance mode
    # and asks for this opt-in; to use a database or a server, pass --trainer.logger.init_args.tracking_uri.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return {"save_dir": f"{runs}/mlruns", "experiment_name": task}
{%- endif %}


@rank_zero_only
def print_note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def main() -> None:
    """The console script and `python -m {{ cookiecutter.__package }}`: arguments from sys.argv.

    `export`, `serve`, `sweep` and `repeat` are this project's own subcommands; the others are LightningCLI's.
    """
    subcommand = sys.argv[1] if len(sys.argv) > 1 else None
    if subcommand not in ("export", "serve", "sweep", "repeat"):
        if subcommand in (None, "-h", "--help"):
            print(
                "Also: `export` (ONNX, torch.export, int8), `serve` (HTTP), `sweep` (Optuna search over a config) and "
                "`repeat` (a config over seeds and folds); each has --help.\n"
            )
        run()
        return
    # Imported here, not at the top: they load ONNX, FastAPI and Optuna, which training never needs.
    try:
        if subcommand == "export":
            from .export import main as export_main

            export_main(sys.argv[2:])
        elif subcommand in ("sweep", "repeat"):
            from .experiments import main as experiments_main

            experiments_main(subcommand, sys.argv[2:], run)  # given `run`: experiments sit above the CLI
        else:
            from .serve.app import main as serve_main

            serve_main(sys.argv[2:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def join_negative_numbers(args: list[str]) -> list[str]:
    """`--model.lr -1e-3` -> `--model.lr=-1e-3`: argparse takes a value like -1e-3 for an option of its own."""
    joined: list[str] = []
    for arg in args:
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] and arg.startswith("-") and is_number(arg):
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run(args: list[str] | None = None, trainer_hook: Callable[[Trainer, Task], None] | None = None) -> RoadmapCLI:
    """Parse `args` (default: sys.argv), run the subcommand, and return the CLI (its trainer, model, data).
    `trainer_hook`: see RoadmapCLI."""
    if args is None:  # the command line, where LightningCLI reads it
        sys.argv[1:] = join_negative_numbers(sys.argv[1:])
    else:
        args = join_negative_numbers(args)
    try:
        return RoadmapCLI(
            Task,  # a config's model must be a Task, and its data a SplitDataModule: jsonargparse says so if not
            SplitDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveConfigToRunDir,
            seed_everything_default=42,
            args=args,
            auto_configure_optimizers=False,
            parser_class=ArgumentParser,
            parser_kwargs={"allow_abbrev": False, "prog": "{{ cookiecutter.__package }}"},  # abbreviations: typos
            trainer_hook=trainer_hook,
        )
    except Exception as err:
        problem = user_error(err)
        if problem is None:
            raise
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        # Without this a DDP worker can die at exit with "terminate called without an active exception".
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
