#!/usr/bin/env bash
# A sweep on many machines under SLURM: an array of jobs, each a worker of one Optuna study in one database.
#
#   export STORAGE=postgresql+psycopg://user:password@dbhost/sweeps
#   sbatch --array 0-7 scripts/slurm_sweep.sh --config configs/{{ cookiecutter.__example_task }}.yaml --trials 40
#
# Every array task runs `sweep` with the same options and --storage "$STORAGE": each takes the next trial the
# study needs and stops when it holds --trials finished ones, so the array size is how many trials run at once,
# not how many there are. A database every node reaches is needed (PostgreSQL: `pip install psycopg[binary]`);
# the SQLite default lives in one folder and suits one machine. Each trial's run folder is made where its
# task runs (runs/<task>/version_N, under the folder sbatch was started from); the study records which
# host and folder. A task that is killed (time limit, preemption) leaves its trial without a heartbeat: another
# task marks it failed and runs it again. When all are done, any task's summary (runs/<task>/sweeps/<study>/)
# names the best trial: `fit --config <its run folder>/config.yaml` runs it again.
#SBATCH --job-name=sweep
#SBATCH --ntasks=1
#SBATCH --gpus=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
set -euo pipefail

if [[ -z "${STORAGE:-}" ]]; then
    echo "set STORAGE to a database URL every node reaches, e.g. postgresql+psycopg://user:password@host/sweeps" >&2
    exit 2
fi

"${PYTHON:-python}" -m {{ cookiecutter.__package }} sweep --storage "$STORAGE" "$@"
