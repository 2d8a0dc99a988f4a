"""The Trainer flags checked against this machine before anything starts.

Lightning meets a flag that the hardware cannot honour with a traceback from deep inside the Trainer
(`--trainer.accelerator gpu` on a laptop), a late dtype error (`16-true` on the CPU), a hang
(`--trainer.num_nodes 2` with no launcher: rank 0 waits for nodes that never come), or a quiet
rewrite (`16-mixed` becomes `bf16-mixed` on the CPU; `--trainer.devices 4` without a GPU starts four
CPU processes). `check_hardware` turns the first three into a one-line `ConfigError` that says what
was asked and what was found, and returns the rewrites as notes that the CLI prints.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from jsonargparse import Namespace
from lightning.fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment

from . import ConfigError

GPU_ACCELERATORS = ("gpu", "cuda")
# Lightning runs these on CUDA only; a prefix also covers variants such as fsdp_cpu_offload.
GPU_ONLY_STRATEGIES = ("fsdp", "deepspeed")


def found_hardware() -> str:
    """What this machine offers, for the messages: `2 CUDA GPUs (NVIDIA H100)` or `no CUDA GPU (... CPU only)`."""
    gpus = torch.cuda.device_count()
    if gpus:
        return f"{gpus} CUDA GPU{'s' if gpus > 1 else ''} ({torch.cuda.get_device_name(0)})"
    build = f"with CUDA {torch.version.cuda}" if torch.version.cuda else "for CPU only"
    build = f"torch {torch.__version__}, built {build}"
    return f"no CUDA GPU ({build}; torch.cuda.is_available() is False), {os.cpu_count()} CPU cores"


def launched_by_a_cluster() -> bool:
    """Whether torchrun, SLURM's srun, LSF's jsrun, or hand-set MASTER_ADDR/NODE_RANK started this process."""
    manual = "MASTER_ADDR" in os.environ and "NODE_RANK" in os.environ
    return manual or any(env.detect() for env in (TorchElasticEnvironment, SLURMEnvironment, LSFEnvironment))


def requested_devices(devices: object) -> int | None:
    """`--trainer.devices` as a count: 2, "2", [0, 1], "0,1" -> 2; "auto" and -1 ("all") -> None."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    if "," in text:
        return len([d for d in text.split(",") if d.strip()])
    return int(text) if text.lstrip("-").isdigit() and int(text) > 0 else None


def check_hardware(trainer: Namespace) -> list[str]:
    """Refuse what this machine cannot run; return notes on what Lightning will run instead of what was asked."""
    accelerator = str(trainer.get("accelerator") or "auto")
    precision = str(trainer.get("precision") or "32-true")
    strategy = trainer.get("strategy")
    strategy = strategy if isinstance(strategy, str) else "auto"  # a class_path strategy is the user's own choice
    devices = requested_devices(trainer.get("devices", "auto"))
    gpus = torch.cuda.device_count()
    on_gpu = gpus > 0 and accelerator in ("auto", *GPU_ACCELERATORS)
    # Apple's GPU (mps) runs float16; only a run that lands on the CPU gets the CPU's refusals and notes.
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not gpus and not torch.backends.mps.is_available())
    notes = []

    if accelerator in GPU_ACCELERATORS and not gpus:
        found = found_hardware()
        raise ConfigError(f"--trainer.accelerator {accelerator}: found {found}; use --trainer.accelerator cpu")
    if on_gpu and devices is not None and devices > gpus:
        raise ConfigError(f"--trainer.devices {devices}: found {found_hardware()}; ask for at most {gpus}")
    if strategy.startswith(GPU_ONLY_STRATEGIES) and not on_gpu:
        raise ConfigError(
            f"--trainer.strategy {strategy} shards the model across CUDA GPUs; found {found_hardware()}. "
            "On CPUs use --trainer.strategy ddp"
        )
    has_transformer_engine = importlib.util.find_spec("transformer_engine") is not None
    if precision.startswith("transformer-engine") and not (on_gpu and has_transformer_engine):
        installed = "installed" if has_transformer_engine else "not installed"
        raise ConfigError(
            f"--trainer.precision {precision} needs NVIDIA Transformer Engine (here: {installed}) and a GPU with "
            f"FP8 support (Hopper, Ada or newer); found {found_hardware()}. Use bf16-mixed instead"
        )
    if precision in ("16", "16-true") and on_cpu:
        raise ConfigError(
            f"--trainer.precision {precision} keeps float16 weights, which CPUs compute slowly or not at all; "
            f"found {found_hardware()}. On the CPU use bf16-true or bf16-mixed"
        )
    plugins = trainer.get("plugins") or []
    plugins = plugins if isinstance(plugins, list) else [plugins]
    if any("Bitsandbytes" in str(getattr(plugin, "class_path", plugin)) for plugin in plugins) and not on_gpu:
        raise ConfigError(
            f"--trainer.plugins BitsandbytesPrecision quantizes weights with CUDA kernels; found {found_hardware()}. "
            "On the CPU, quantize for serving with `export --quantize int8` instead"
        )
    if precision == "16-mixed" and on_cpu:
        notes.append("--trainer.precision 16-mixed: float16 autocast needs a CUDA GPU; running bf16-mixed on the CPU")
    if trainer.get("num_nodes", 1) > 1 and not launched_by_a_cluster():
        raise ConfigError(
            f"--trainer.num_nodes {trainer.num_nodes}: no multi-node launcher started this process, so it would wait "
            "for the other nodes forever. Start scripts/torchrun.sh on every node, or submit scripts/slurm.sh"
        )
    if on_cpu and accelerator == "auto" and devices is not None and devices > 1:
        notes.append(f"--trainer.devices {devices}: {found_hardware()}, so this starts {devices} processes on the CPU")
    return notes
