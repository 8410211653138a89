"""Saving and loading trained weights without running code from a file: checkpoints are read with torch's
weights-only unpickler.

A Lightning checkpoint is a pickle. Unpickled in full, it may run any code its author chose, so a store
from someone else could run code on `embed-audio` or `query`. The weights-only unpickler builds tensors,
containers and numbers and nothing else; the few Lightning and Python types a checkpoint of ours also
holds are allowed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from audiograph.errors import ConfigError, StoreError, first_line, resolved_path

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"


def _allowed_globals() -> list:
    """The non-tensor types Lightning writes into our checkpoints (hyperparameters, loop and callback state)."""
    from lightning.fabric.utilities.data import AttributeDict

    allowed = [AttributeDict]
    with contextlib.suppress(ImportError):
        from lightning.pytorch.utilities.parsing import AttributeDict as PytorchAttributeDict

        allowed.append(PytorchAttributeDict)
    return allowed


@contextlib.contextmanager
def weights_only_loading(path: str | os.PathLike, what: str = "model", checkpoint: bool = True):
    """Within this block, `torch.load(..., weights_only=True)` (directly or through Lightning's
    `load_from_checkpoint(..., weights_only=True)`) accepts our checkpoints' types (with `checkpoint`; a saved
    model's `weights.pt` holds tensors only, and its loading needs no Lightning import), and a file that holds
    anything else raises a one-line `StoreError` naming `path` instead of running it (as does an archive that
    `check_archive` refuses)."""
    import torch

    check_archive(path, what)
    try:
        with torch.serialization.safe_globals(_allowed_globals() if checkpoint else []):
            yield
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise StoreError(f"{what}: checkpoint {path} is unreadable ({first_line(e)})") from None
        detail = next((line.strip() for line in str(e).splitlines() if "Unsupported" in line or "GLOBAL" in line), "")
        raise StoreError(
            f"{what} refused: checkpoint {path} holds objects other than weights, which could run code when"
            f" loaded ({detail or 'not a weights-only checkpoint'})"
        ) from None
    except (EOFError, RuntimeError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise StoreError(f"{what}: checkpoint {path} is unreadable ({first_line(e)})") from None


def check_archive(path: str | os.PathLike, what: str = "model") -> None:
    """Refuse, in one line, a torch zip archive whose members are compressed or claim more bytes than the file
    holds: torch writes them stored, and a compressed one (a few kilobytes that inflate to gigabytes) would be
    read in full before any shape is compared."""
    try:
        if not zipfile.is_zipfile(path):
            return  # torch's legacy format, or not an archive at all: torch.load says which
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise StoreError(f"{what}: checkpoint {path} is unreadable ({first_line(e)})") from None
    if any(m.compress_type != zipfile.ZIP_STORED for m in members):
        raise StoreError(f"{what} refused: checkpoint {path} holds compressed members, which torch never writes")
    if sum(m.file_size for m in members) > os.path.getsize(path):
        raise StoreError(f"{what} refused: checkpoint {path} claims more bytes than it holds")


def load_checkpoint(path: str | os.PathLike, what: str = "model") -> dict:
    """A checkpoint's contents (state_dict, hyper_parameters, ...) read with the weights-only unpickler."""
    import torch

    with weights_only_loading(path, what):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("hyper_parameters", {}), dict):
        raise StoreError(f"{what}: {path} is not a training checkpoint (no mapping of weights and settings)")
    return checkpoint


def build_and_load(build: Callable[[], torch.nn.Module], state, source, what: str = "model") -> torch.nn.Module:
    """`build()` (a model made from saved settings) with the weights `state` loaded into it. Settings or weights
    that do not fit (a wrong type, an unknown key, a shape) raise a one-line `StoreError` naming `source`. The
    model is first built on the meta device, which allocates nothing, and its shapes compared with `state`,
    so that settings of a huge model cannot exhaust memory."""
    import torch

    def unfit(reason) -> StoreError:
        return StoreError(f"{what}: {source} holds settings or weights audiograph cannot build a model from ({reason})")

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise unfit("its weights are not a mapping of names to tensors")
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build().state_dict().items()}
        given = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != given:
            name = next(k for k in sorted(shapes.keys() | given.keys()) if shapes.get(k) != given.get(k))
            raise unfit(
                f"{name}: the settings make {shapes.get(name, 'nothing')}, the weights hold {given.get(name, 'nothing')}"
            )
        model = build()
        model.load_state_dict(state)
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RuntimeError) as e:
        raise unfit(first_line(e)) from None
    return model


def save_weights(module: torch.nn.Module, folder: Path, config: dict) -> Path:
    """Write `config.json` and `weights.pt` (the state dict: tensors only) into `folder`; returns `folder`."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, folder / WEIGHTS_FILE)
    return folder


def read_saved(folder: str | os.PathLike, what: str = "model", kind: str | None = None) -> tuple[dict, dict]:
    """(config, state dict) of a folder written by `save_weights`, the weights read weights-only; with `kind`,
    a folder whose config names another kind of model is refused."""
    import torch

    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):  # the folder lies in the models folder; its files must too
        if resolved_path(folder / name, what).parent != resolved_path(folder, what):
            raise StoreError(f"{what} refused: {folder / name} links out of its folder")
    config = read_settings(folder, what)
    if kind is not None and config.get("kind", kind) != kind:
        raise StoreError(f"{what}: {folder} holds a model of kind '{config['kind']}', not '{kind}'")
    with weights_only_loading(folder / WEIGHTS_FILE, what, checkpoint=False):
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    return config, state


def read_settings(folder: str | os.PathLike, what: str = "model") -> dict:
    """The `config.json` of a folder written by `save_weights` (plain JSON: no torch, no weights)."""
    path = Path(folder) / CONFIG_FILE
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StoreError(f"{what}: {path} is unreadable ({first_line(e)})") from None
    if not isinstance(settings, dict):
        raise StoreError(f"{what}: {path} is not a JSON object of settings")
    return settings
