"""Loading trained weights without running code from a file: checkpoints are read with torch's weights-only
unpickler, and only from inside the folder they must be in.

A Lightning checkpoint is a pickle. Unpickled in full, it may run any code its author chose, so a store
from someone else could run code on `embed-audio` or `query`. The weights-only unpickler builds tensors,
containers and numbers and nothing else; the few Lightning and Python types a checkpoint of ours also
holds are allowed by name.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path

import torch

from audiograph.errors import StoreError


def _allowed_globals() -> list:
    """The non-tensor types Lightning writes into our checkpoints (hyperparameters, loop and callback state)."""
    from lightning.fabric.utilities.data import AttributeDict

    allowed = [AttributeDict]
    with contextlib.suppress(ImportError):
        from lightning.pytorch.utilities.parsing import AttributeDict as PytorchAttributeDict

        allowed.append(PytorchAttributeDict)
    return allowed


def contained_checkpoint(path: str | os.PathLike | None, root: str | os.PathLike, what: str = "model") -> Path:
    """`path` as a checkpoint file that lies inside `root` once every symbolic link is resolved; otherwise
    a `StoreError` that says, in one line, why `what` was refused."""
    if not path:
        raise StoreError(f"{what}: no checkpoint registered")
    resolved, root = Path(path).resolve(), Path(root).resolve()
    if not resolved.is_relative_to(root):
        raise StoreError(f"{what} refused: its checkpoint {path} lies outside {root}, the only folder models load from")
    if not resolved.is_file():
        raise StoreError(f"{what}: checkpoint {path} is missing")
    return resolved


@contextlib.contextmanager
def weights_only_loading(path: str | os.PathLike, what: str = "model"):
    """Within this block, `torch.load(..., weights_only=True)` (directly or through Lightning's
    `load_from_checkpoint(..., weights_only=True)`) accepts our checkpoints' types, and a checkpoint that
    holds anything else raises a one-line `StoreError` naming `path` instead of running it."""
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            yield
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise StoreError(f"{what}: checkpoint {path} is unreadable ({_first_line(e)})") from None
        detail = next((line.strip() for line in str(e).splitlines() if "Unsupported" in line or "GLOBAL" in line), "")
        raise StoreError(
            f"{what} refused: checkpoint {path} holds objects other than weights, which could run code when"
            f" loaded ({detail or 'not a weights-only checkpoint'})"
        ) from None
    except (EOFError, RuntimeError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise StoreError(f"{what}: checkpoint {path} is unreadable ({_first_line(e)})") from None


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def load_checkpoint(path: str | os.PathLike, what: str = "model") -> dict:
    """A checkpoint's contents (state_dict, hyper_parameters, ...) read with the weights-only unpickler."""
    with weights_only_loading(path, what):
        return torch.load(path, map_location="cpu", weights_only=True)
