"""The README's Trainer-flag table, flag by flag: devices and strategy, nodes, precision, gradient
accumulation and clipping, compile; and what happens when a flag asks for hardware that is not there.

The multi-process tests launch the CLI as a user does (DDP's own launcher, scripts/torchrun.sh,
scripts/slurm.sh) with the `rank_probe.RankProbe` callback, which makes every rank save its step,
metrics and weights for the test to compare.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import AUTOMATIC, PROJECT_ROOT, QUICKEST, TASKS, cli_args, fast_on, free_port, launch_env
from jsonargparse import Namespace
from rank_probe import read_probes

from {{ cookiecutter.__package }} import ConfigError
from {{ cookiecutter.__package }}.hardware import check_hardware

PROBE = "--trainer.callbacks+=rank_probe.RankProbe"
# Two training batches per rank and a whole validation epoch (so that one process validates the same examples).
SHORT_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--data.batch_size", "16"]
BITSANDBYTES = '{"class_path": "lightning.pytorch.plugins.BitsandbytesPrecision", "init_args": {"mode": "int8"}}'
no_gpu_here = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without a GPU")
automatic = pytest.mark.skipif(
    not AUTOMATIC, reason="every task here steps its own optimizers, which Lightning allows no clipping or accumulation"
)


def assert_ranks_agree(probes: list[dict], world_size: int) -> None:
    """Every rank trained the same steps and ended with the same parameters (DDP averages the gradients)."""
    assert [p["global_rank"] for p in probes] == list(range(world_size))
    assert all(p["world_size"] == world_size for p in probes)
    first = probes[0]
    assert first["global_step"] > 0
    for other in probes[1:]:
        assert other["global_step"] == first["global_step"]
        for name, tensor in first["weights"].items():
            if tensor.is_floating_point() and "running_" not in name:  # BatchNorm statistics stay per rank
                torch.testing.assert_close(other["weights"][name], tensor, msg=f"{name} differs across ranks")


def single_checkpoint(workdir: Path) -> Path:
    """The run's last.ckpt, which must exist once: only global rank 0 writes."""
    (last,) = workdir.glob("runs/**/checkpoints/last.ckpt")
    return last


@pytest.mark.parametrize("task", fast_on("xor", "sentiment_transformer"))
@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_bfloat16_precisions_train(run_cli, task, precision):
    cli = run_cli("fit", task, "--trainer.fast_dev_run", "true", "--trainer.precision", precision)
    assert cli.trainer.precision == precision
    if precision == "bf16-true":
        assert next(cli.model.parameters()).dtype == torch.bfloat16
    assert math.isfinite(cli.trainer.callback_metrics["train_loss"])


@automatic
def test_accumulate_grad_batches_steps_the_optimizer_every_n_batches(run_cli):
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "1"]
    cli = run_cli("fit", AUTOMATIC[0], *limits, "--trainer.accumulate_grad_batches", "2")
    batches = cli.trainer.num_training_batches  # 6, or fewer where a task's tiny test data has fewer
    assert batches >= 2 and cli.trainer.global_step == math.ceil(batches / 2)


@automatic
@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clip_val_bounds_the_gradient_norm(run_cli, clip):
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "0"]
    cli = run_cli("fit", AUTOMATIC[0], *limits, "--trainer.gradient_clip_val", str(clip) if clip else "null")
    # The gradients of the last step stay on the parameters after fit, as clipped before the optimizer step.
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in cli.model.parameters() if p.grad is not None]))
    if clip:
        assert norm <= clip * 1.001
    else:
        assert norm > 1e-2, "unclipped gradients this small would let the clipped run pass without clipping"


@pytest.mark.slow  # torch.compile builds its kernels with a C++ compiler
def test_compile_switch_trains_the_compiled_model(run_cli):
    cli = run_cli("fit", QUICKEST, "--trainer.fast_dev_run", "true", "--compile", "true")
    assert isinstance(cli.model, torch._dynamo.eval_frame.OptimizedModule)
    assert cli.trainer.global_step == len(cli.trainer.optimizers) and math.isfinite(
        cli.trainer.callback_metrics["train_loss"]
    )


@no_gpu_here
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trainer.accelerator", "gpu"], "--trainer.accelerator gpu: found no CUDA GPU"),
        (["--trainer.precision", "16-true"], "16-true keeps float16 weights"),
        (["--trainer.precision", "transformer-engine"], "needs NVIDIA Transformer Engine"),
        (["--trainer.strategy", "fsdp"], "--trainer.strategy fsdp shards the model across CUDA GPUs"),
        (["--trainer.num_nodes", "2"], "no multi-node launcher started this process"),
        (["--trainer.plugins", BITSANDBYTES], "BitsandbytesPrecision quantizes weights with CUDA kernels"),
    ],
)
def test_absent_hardware_is_refused_in_one_line_that_says_what_was_found(run_cli, workdir, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("fit", QUICKEST, *flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not list(workdir.glob("runs/**/*.*")), "a refused run must not leave files behind"


@no_gpu_here
def test_16_mixed_on_the_cpu_says_that_it_runs_bf16_mixed(run_cli, capsys):
    cli = run_cli("fit", QUICKEST, "--trainer.fast_dev_run", "true", "--trainer.precision", "16-mixed")
    assert cli.trainer.precision == "bf16-mixed"
    assert "16-mixed: float16 autocast needs a CUDA GPU; running bf16-mixed on the CPU" in capsys.readouterr().err


@no_gpu_here
def test_devices_without_a_gpu_says_they_are_cpu_processes():
    (note,) = check_hardware(Namespace(accelerator="auto", devices="4", precision="32-true", num_nodes=1))
    assert "no CUDA GPU" in note and "starts 4 processes on the CPU" in note
    assert check_hardware(Namespace(accelerator="cpu", devices=4, precision="32-true", num_nodes=1)) == []


@no_gpu_here
def test_apple_gpu_is_not_taken_for_a_cpu(monkeypatch):
    """On a Mac, `auto` lands on the GPU (mps), which runs float16: no CPU refusal, no CPU note."""
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    for precision in ("16-true", "16-mixed"):
        assert check_hardware(Namespace(accelerator="auto", devices="auto", precision=precision, num_nodes=1)) == []
    with pytest.raises(ConfigError, match="16-true keeps float16 weights"):
        check_hardware(Namespace(accelerator="cpu", devices="auto", precision="16-true", num_nodes=1))


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_two_process_ddp_trains_in_step_and_validates_like_one_process(run_cli, workdir, data_args, task):
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    command = [sys.executable, "-m", "{{ cookiecutter.__package }}", *cli_args("fit", task, data_args, *ddp, *SHORT_FIT)]
    done = subprocess.run([*command, PROBE], cwd=workdir, env=launch_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr
    probes = read_probes(workdir)
    assert_ranks_agree(probes, world_size=2)
    assert probes[0]["global_step"] == 2 * probes[0]["optimizers"]  # 2 batches per rank, each optimizer stepped
    # The same weights and validation data in one process: the metrics synced across the 2 ranks must match.
    checkpoint = single_checkpoint(workdir)
    single = run_cli("validate", task, "--ckpt_path", str(checkpoint), "--data.batch_size", "16").trainer
    val_metrics = {name for name in single.callback_metrics if name.startswith("val_")}
    assert "val_loss" in val_metrics
    for probe in probes:
        for name in val_metrics:
            assert probe["metrics"][name] == pytest.approx(float(single.callback_metrics[name]), rel=1e-5), name


@pytest.mark.slow
def test_torchrun_script_trains_on_two_nodes_of_one_process(workdir, data_args):
    """scripts/torchrun.sh started twice, as on two machines: node ranks 0 and 1 meet at 127.0.0.1."""
    args = cli_args("fit", QUICKEST, data_args, *SHORT_FIT, "--trainer.limit_val_batches", "1", PROBE)
    nodes = dict(NNODES="2", NPROC_PER_NODE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    launchers = [
        subprocess.Popen(
            ["bash", str(PROJECT_ROOT / "scripts" / "torchrun.sh"), *args],
            cwd=workdir,
            env=launch_env(**nodes, NODE_RANK=str(rank), PYTHON=sys.executable),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
    for launcher, output in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, output[-3000:]
    probes = read_probes(workdir)
    assert [p["node_rank"] for p in probes] == [0, 1]
    assert_ranks_agree(probes, world_size=2)
    single_checkpoint(workdir)


@pytest.mark.slow
def test_slurm_script_trains_on_two_nodes_under_srun(workdir, data_args, tmp_path_factory):
    """scripts/slurm.sh under a stand-in `srun` that starts its tasks with the variables SLURM gives them."""
    bin_dir = tmp_path_factory.mktemp("bin")
    srun = bin_dir / "srun"
    srun.write_text(
        "#!/usr/bin/env bash\n"
        "per_node=$SLURM_NTASKS_PER_NODE\n"
        "for ((i = 0; i < SLURM_NTASKS; i++)); do\n"
        '  SLURM_PROCID=$i SLURM_NODEID=$((i / per_node)) SLURM_LOCALID=$((i % per_node)) "$@" &\n'
        "done\n"
        "status=0; for job in $(jobs -p); do wait $job || status=1; done; exit $status\n"
    )
    srun.chmod(0o755)
    job = dict(
        SLURM_JOB_ID=str(free_port()),  # Lightning derives the main port from the job id
        SLURM_JOB_NAME="roadmap",
        SLURM_JOB_NUM_NODES="2",
        SLURM_NNODES="2",
        SLURM_NTASKS="2",
        SLURM_NTASKS_PER_NODE="1",
        SLURM_NODELIST="127.0.0.1",
    )
    env = launch_env(**job, PYTHON=sys.executable)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    args = cli_args("fit", QUICKEST, data_args, *SHORT_FIT, "--trainer.limit_val_batches", "1", PROBE)
    command = ["bash", str(PROJECT_ROOT / "scripts" / "slurm.sh"), *args]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    probes = read_probes(workdir)
    assert [p["node_rank"] for p in probes] == [0, 1]
    assert_ranks_agree(probes, world_size=2)
    single_checkpoint(workdir)
