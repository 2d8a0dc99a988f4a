"""Many runs of one config, each an ordinary run folder (`runs/<task>/version_N`): `sweep` searches a space of
`fit` options with Optuna (sweep.py), `repeat` runs the config over seeds and folds and sums up the spread
(repeat.py). Both run `fit` in this process, or in `--jobs K` processes at once (launch.py).

    python -m {{ cookiecutter.__package }} sweep  --config configs/xor.yaml --trials 20 --jobs 2
    python -m {{ cookiecutter.__package }} repeat --config configs/xor.yaml --seeds 0-4
"""

from __future__ import annotations

import sys

from .launch import Run


def main(subcommand: str, argv: list[str], run: Run) -> None:
    """`sweep` or `repeat` with `argv`; `run` is the CLI's own (cli.run), which each of their runs goes through."""
    del sys.argv[1:]  # each run's arguments are given to it, not read from here (LightningCLI warns of both)
    if subcommand == "sweep":
        from .sweep import main as sweep_main

        sweep_main(argv, run)
    else:
        from .repeat import main as repeat_main

        repeat_main(argv, run)
