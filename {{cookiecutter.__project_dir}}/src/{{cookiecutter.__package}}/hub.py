"""Pretrained weights from the hubs, in one place: what to say when they cannot be had, and where they are kept.

Two hubs feed this project. The Hugging Face Hub serves the text models and tokenizers (`from_pretrained` with a
name such as `google-bert/bert-base-uncased`, kept in its cache, `HF_HOME`; a folder written by `save_pretrained`
works offline), and PyTorch's download server serves torchvision's weights (kept in torch's hub cache,
`TORCH_HOME`). Offline, both fail deep inside their libraries; the tasks turn that into one line that says what
was asked for, why it could not be had, and what to do.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from . import ConfigError

if TYPE_CHECKING:
    from torch import nn

T = TypeVar("T")
CONNECT_SECONDS = 3.0  # how long the one reachability check may take


def from_hub(load: Callable[[str], T], name: str, option: str) -> T:
    """`load(name)`, a `from_pretrained` of a Hub name or a folder, given as `option`: failures in one line."""
    before_hub(name)
    try:
        return load(name)
    except OSError as err:  # no such name or folder, or no network (and not in the cache)
        raise ConfigError(unreachable(name, option, err)) from None


def before_hub(name: str) -> None:
    """Call before asking the Hugging Face Hub for `name` (a model, tokenizer or dataset). A local folder needs no
    Hub; otherwise the Hub is checked once per process, and where it cannot be reached offline mode is switched on
    (and said once), so that the libraries read their caches at once instead of retrying for a minute."""
    if not Path(name).exists():
        hub_reachable()


@functools.cache
def hub_reachable() -> bool:
    """Whether a connection to the Hub opens (at most CONNECT_SECONDS); if not, HF_HUB_OFFLINE from now on.
    With HF_HUB_OFFLINE set, no check; behind a proxy, the libraries are left to decide."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        go_offline()  # also where it was set after the libraries read it
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy, not this check, knows the way
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        go_offline()
        print(
            f"note: the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached ({err.strerror or err}): reading "
            "only its local cache, as with HF_HUB_OFFLINE=1",
            file=sys.stderr,
            flush=True,
        )
        return False
    return True


def go_offline() -> None:
    """HF_HUB_OFFLINE for this process, its children, and the libraries that read it when first imported."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    if "datasets.config" in sys.modules:  # `datasets` copies the flag into its own config when imported
        setattr(sys.modules["datasets.config"], "HF_HUB_OFFLINE", True)  # noqa: B010 - a module, not typed here


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


def weights_file(path: str, option: str) -> dict[str, Any]:
    """The model weights in a file given as `option`: a .pth state dict, or a .ckpt of this project (its task's
    `model.` weights, the prefix removed): a backbone of your own, trained on other data."""
    import torch

    if not Path(path).is_file():
        raise ConfigError(f"{option} {path}: no such file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in state:  # a checkpoint of this project
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    return state


def load_all_but_head(
    model: nn.Module, state: dict[str, Any], in_head: Callable[[str], bool], weights: str, of: str
) -> None:
    """`state` (read from `--model.weights weights`) into `model`, every weight but the head's, which stays new (its
    classes may differ); weights of another model, or of another shape, are refused in one line naming the first."""
    state = {name: tensor for name, tensor in state.items() if not in_head(name)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # the same names in other shapes
        first = str(err).splitlines()[1].strip()  # "size mismatch for conv1.weight: copying a param with shape ..."
        raise ConfigError(f"--model.weights {weights}: not weights of {of} ({first})") from None
    if unexpected or [name for name in missing if not in_head(name)]:
        raise ConfigError(f"--model.weights {weights}: not weights of {of} ({(missing + unexpected)[:3]} ...)")
