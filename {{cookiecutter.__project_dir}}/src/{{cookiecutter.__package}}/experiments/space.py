"""A sweep's search space: `configs/sweeps/<task>.yaml`, one entry per `fit` option that a trial samples.

    model.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # a float range, sampled on a log scale
    model.width: {low: 16, high: 64, step: 16}          # whole numbers when both ends are
    model.cell: [lstm, gru]                              # a list of choices

A name is a `fit` option without its dashes (`--model.lr` is `model.lr`); a trial passes what it sampled as that
option (`--model.lr=0.0031`), so its run is an ordinary `fit` and its config.yaml records the values.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import optuna
import yaml

from .. import ConfigError

SECTIONS = ("model", "data", "trainer")


@dataclasses.dataclass(frozen=True)
class Param:
    """One option of the space: a range (`low`..`high`, `log`, `step`) or a list of `choices`."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float):
            return trial.suggest_int(self.name, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def option(self, value: Any) -> str:
        """The `fit` option that sets this value: `--model.lr=0.0031`, `--model.cell=gru`."""
        return f"--{self.name}={value if isinstance(value, str) else json.dumps(value)}"

    def extremes(self) -> list[Any]:
        """The values that `fit` is asked to accept before the first trial: both ends, or every choice."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def key(self) -> str:
        """Where the option is in a parsed config: `model.lr` -> `model.init_args.lr` (model and data are classes)."""
        section, _, rest = self.name.partition(".")
        return f"{section}.init_args.{rest}" if section in ("model", "data") else self.name


def load_space(path: Path) -> list[Param]:
    """The space in `path`, refused in one line where an entry is not a range or a list of choices."""
    if not path.exists():
        raise ConfigError(f"--space {path}: no such file; write one like configs/sweeps/<task>.yaml")
    try:
        entries = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:  # a folder, unreadable, not YAML
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"--space {path}: not a YAML file ({reason}); write one like configs/sweeps/<task>.yaml"
        ) from None
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{path}: no options to search; give each option a range (low, high) or a list of choices")
    return [parse(path, str(name).removeprefix("--"), entry) for name, entry in entries.items()]


def parse(path: Path, name: str, entry: Any) -> Param:
    where = f"{path}: {name}"
    if name.split(".", 1)[0] not in SECTIONS or "." not in name:
        raise ConfigError(f"{where}: a searched option is a fit option under {', '.join(SECTIONS)} (model.lr)")
    if isinstance(entry, dict) and "choices" in entry:
        entry = entry["choices"]
    if isinstance(entry, list):
        if not entry:
            raise ConfigError(f"{where} has no choices; list at least one")
        return Param(name, choices=tuple(entry))
    if not isinstance(entry, dict) or {"low", "high"} - entry.keys() or entry.keys() - {"low", "high", "log", "step"}:
        raise ConfigError(f"{where}: give a range (low, high, and log or step) or a list of choices")
    low, high, log, step = entry["low"], entry["high"], bool(entry.get("log", False)), entry.get("step")
    numbers = [value for value in (low, high, step) if value is not None]
    if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in numbers):
        raise ConfigError(f"{where}: low, high and step must be numbers, got {entry}")
    if low > high:
        raise ConfigError(f"{where} has low {low} > high {high}; swap them")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"{where}: a log scale needs low > 0 and no step, got {entry}")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: step must be greater than 0, got {step}")
    return Param(name, low=low, high=high, log=log, step=step)


def check_names(space: list[Param], path: Path, config: dict[str, Any], fit_command: str) -> None:
    """Refuse a name that is not an option of `fit` with this config (`config`: what `--print_config` printed)."""
    for param in space:
        node: Any = config
        for part in param.key().split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            raise ConfigError(
                f"{path}: {param.name} is not an option of `{fit_command}`; its --print_config lists the options"
            )
