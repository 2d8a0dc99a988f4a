"""Pretrained weights from the hubs, in one place: what to say when they cannot be had, and where they are kept.

Two hubs feed this project. The Hugging Face Hub serves the text models and tokenizers (`from_pretrained` with a
name such as `google-bert/bert-base-uncased`, kept in its cache, `HF_HOME`; a folder written by `save_pretrained`
works offline), and PyTorch's download server serves torchvision's weights (kept in torch's hub cache,
`TORCH_HOME`). Offline, both fail deep inside their libraries; the tasks turn that into one line that says what
was asked for, why it could not be had, and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ConfigError


def unreachable(name: str, option: str, err: Exception) -> str:
    """One line for a pretrained model or tokenizer that cannot be had."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"{option} {name}: no such folder here, and the Hugging Face Hub does not have it or cannot be reached "
        f"({reason}). Offline, save the model with save_pretrained (or `huggingface-cli download {name}`) into a "
        "folder and pass its path, or set HF_HUB_OFFLINE=1 to read only the local cache"
    )


def torchvision_weights(arch: str, weights: str, option: str) -> dict[str, Any]:
    """The state dict of torchvision's `weights` (a name such as IMAGENET1K_V1) for `arch`: from torch's hub
    cache, or downloaded into it."""
    import torch
    import torchvision  # only projects with an image task have it

    named = torchvision.models.get_model_weights(arch)
    if weights not in named.__members__:
        raise ConfigError(f"{option} {weights}: {arch} has the weights {list(named.__members__)}, or give a file")
    chosen = named[weights]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(chosen.url).name
    try:
        return chosen.get_state_dict(progress=False)
    except OSError as err:  # no network (URLError is an OSError), or a partial download
        raise ConfigError(
            f"{option} {weights}: {chosen.url} could not be downloaded ({err}). Offline, put that file at {cached}, "
            f"or pass {option} <a .pth state dict or a .ckpt of this project>, or null to train from scratch "
            "(HF_HUB_OFFLINE does not apply: torchvision's weights come from download.pytorch.org)"
        ) from None
