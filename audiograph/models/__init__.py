"""Model objects, each the one way to get its vectors, and the registry from model kind to class.

A model object holds everything that turns its input into vectors (settings and weights), saves itself
into a folder (config.json and weights.pt) and loads from one without running code.
"""

from __future__ import annotations

import importlib
import os

from audiograph.errors import ConfigError
from audiograph.spaces import ACOUSTIC_KIND, DESCRIPTORS_KIND, IMPORT_KIND, MUSIG_KIND

# kind -> (module, class); imported on first use, so that a search in one space loads only its own model
MODEL_CLASSES = {
    ACOUSTIC_KIND: ("audiograph.models.acoustic", "AcousticModel"),
    MUSIG_KIND: ("audiograph.models.musig", "MusigModel"),
}

__all__ = [
    "ACOUSTIC_KIND",
    "DESCRIPTORS_KIND",
    "IMPORT_KIND",
    "MODEL_CLASSES",
    "MUSIG_KIND",
    "AcousticModel",
    "MusigModel",
    "as_numpy",
    "load_model",
    "model_class",
]


def as_numpy(vectors):
    """A tensor of vectors as a numpy array on the CPU: float64 stays, other floats become float32."""
    vectors = vectors.detach().cpu()
    return (vectors if vectors.element_size() >= 4 else vectors.float()).numpy()


def load_model(kind: str, path: str | os.PathLike, what: str = "model"):
    """The model of `kind` saved at `path` (loaded weights-only)."""
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"{what} is a {kind} model, which has no weights to load")
    return model_class(kind).load(path, what)


def model_class(kind: str):
    """The model class of `kind`."""
    module, name = MODEL_CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def __getattr__(name):
    if name in ("AcousticModel", "MusigModel"):
        return model_class(ACOUSTIC_KIND if name == "AcousticModel" else MUSIG_KIND)
    raise AttributeError(f"module 'audiograph.models' has no attribute {name!r}")
