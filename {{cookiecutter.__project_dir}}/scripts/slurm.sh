#!/usr/bin/env bash
# Multi-node training under SLURM: one task per GPU, and Lightning's SLURMEnvironment does the rest.
#
#   sbatch scripts/slurm.sh fit --config configs/{{ cookiecutter.__example_task }}.yaml
#   sbatch --nodes 4 --gpus-per-node 8 --ntasks-per-node 8 scripts/slurm.sh fit --config ...
#
# srun starts --ntasks-per-node copies of the CLI on each of --nodes nodes; each reads its rank from
# SLURM_PROCID and SLURM_LOCALID, and the main node from SLURM_NODELIST. --trainer.num_nodes and
# --trainer.devices are set from the job's own numbers, so they always match the allocation (Lightning
# refuses a mismatch). Run sbatch from the project folder, in the environment that has the project
# installed; only global rank 0 writes checkpoints and logs, to runs/ as usual. SIGUSR1 comes 90 s
# before the time limit: Lightning then saves a checkpoint and requeues the job, which resumes from it.
#SBATCH --job-name=roadmap
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --signal=SIGUSR1@90
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: sbatch $0 fit|validate|test|predict --config configs/TASK.yaml [options]" >&2
    exit 2
fi
subcommand=$1
shift

srun "${PYTHON:-python}" -m {{ cookiecutter.__package }} "$subcommand" \
    --trainer.num_nodes "$SLURM_JOB_NUM_NODES" --trainer.devices "$SLURM_NTASKS_PER_NODE" \
    --trainer.strategy ddp "$@"
