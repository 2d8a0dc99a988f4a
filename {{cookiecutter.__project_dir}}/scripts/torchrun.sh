#!/usr/bin/env bash
# Multi-node (and multi-GPU) training with torchrun: run this same command on every node.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 scripts/torchrun.sh fit --config configs/{{ cookiecutter.__example_task }}.yaml
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 scripts/torchrun.sh fit --config configs/{{ cookiecutter.__example_task }}.yaml
#
# torchrun starts NPROC_PER_NODE processes on this node (default: one per GPU, or one on a CPU-only
# node) and gives each its RANK, LOCAL_RANK and WORLD_SIZE; Lightning's TorchElasticEnvironment reads
# them, so the Trainer needs only --trainer.num_nodes and --trainer.devices, which this script sets from
# the same numbers. Node 0 (MASTER_ADDR, MASTER_PORT) is where the others meet; only global rank 0
# writes checkpoints and logs. Options after the subcommand are the usual CLI's: a --trainer.strategy
# there replaces ddp, and --data.batch_size stays per process (global batch = batch_size x WORLD_SIZE).
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: NNODES=N NODE_RANK=I MASTER_ADDR=HOST $0 fit|validate|test|predict --config configs/TASK.yaml [options]" >&2
    exit 2
fi
PYTHON=${PYTHON:-python}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
NPROC_PER_NODE=${NPROC_PER_NODE:-$("$PYTHON" -c 'import torch; print(max(torch.cuda.device_count(), 1))')}
subcommand=$1
shift

exec "$PYTHON" -m torch.distributed.run \
    --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$NPROC_PER_NODE" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    -m {{ cookiecutter.__package }} "$subcommand" \
    --trainer.num_nodes "$NNODES" --trainer.devices "$NPROC_PER_NODE" --trainer.strategy ddp "$@"
