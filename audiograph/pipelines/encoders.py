"""The models behind the store's spaces, resolved through the registry, and how each one turns a new audio
file into a vector of its space (what `query`, `embed-audio` and MUSIG's inductive path share)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from audiograph.audio.config import AudioConfig
from audiograph.audio.descriptor_names import DESCRIPTORS_VERSION
from audiograph.errors import ConfigError, StoreError
from audiograph.models import ACOUSTIC_KIND, DESCRIPTORS_KIND, MUSIG_KIND, model_class
from audiograph.musig.features import FeatureSpec
from audiograph.store import ACOUSTIC_SPACE, Store

if TYPE_CHECKING:
    from audiograph.models.acoustic import AcousticModel


def descriptors_model_id(config: AudioConfig) -> str:
    """Descriptors depend on the audio settings, so the id names both."""
    return f"{DESCRIPTORS_VERSION}@{hashlib.blake2b(config.signature().encode(), digest_size=4).hexdigest()}"


def acoustic_model_row(store: Store, model: str | None = "latest") -> dict | None:
    """The registry row of a registered acoustic model id or "latest" (the newest, if any); None with
    `model=None` or when no encoder is trained yet. Reads the registry only (no torch)."""
    if model is None:
        return None
    if model == "latest":  # the newest that fills the acoustic space, not one trained into a space of its own
        row = (store.models.rows(kind=ACOUSTIC_KIND, space=ACOUSTIC_SPACE) or [None])[-1]
    else:
        row = store.models.get(model)
    if row is None:
        if model != "latest":
            raise ConfigError(f"{store.path}: no model '{model}' in the registry")
        return None
    if row["kind"] != ACOUSTIC_KIND:
        raise ConfigError(f"model '{model}' is a {row['kind']} model, not an audio encoder")
    return row


def resolve_acoustic_model(
    store: Store, model: str | None = "latest"
) -> tuple[AcousticModel | None, AudioConfig, str | None]:
    """(model, its audio config, model id) for a registered acoustic model id or "latest" (the newest that
    fills the acoustic space: one trained into a space of its own is not embed-audio's encoder); without a
    trained one (or with `model=None`): (None, the default audio config, None)."""
    row = acoustic_model_row(store, model)
    if row is None:
        return None, AudioConfig(), None
    # Only from the store's models folder, and without running code.
    loaded = model_class(ACOUSTIC_KIND).load(store.models.checkpoint_file(row), f"model '{row['id']}'")
    return loaded, loaded.config, row["id"]


def _audio_config(row: dict) -> AudioConfig:
    return AudioConfig.from_dict(row["config"]["frontend"])


def _descriptors(store: Store, row: dict, path: Path, data: bytes) -> np.ndarray:
    from audiograph.audio.analysis import analyse

    return analyse(path, _audio_config(row), data=data).descriptors


def _acoustic(store: Store, row: dict, path: Path, data: bytes) -> np.ndarray:
    from audiograph.audio.analysis import analyse

    model, _, _ = resolve_acoustic_model(store, row["id"])
    analysis = analyse(path, model.config, data=data, descriptors=model.uses_descriptors)
    return model.encode_chunks([analysis.mel_chunks], descriptors=[analysis.descriptors])[0].numpy()


def _musig(store: Store, row: dict, path: Path, data: bytes) -> np.ndarray:
    """The MUSIG vector of an audio file in no playlist: its own features through the learnt aggregators."""
    model = model_class(MUSIG_KIND).load(store.models.checkpoint_file(row), f"model '{row['id']}'")
    return model.encode(file_features(store, model.spec, path, data))[0].numpy()


# model kind -> function(store, model row, file path, file bytes) -> the file's vector in that model's space
FILE_EMBEDDERS: dict[str, Callable[[Store, dict, Path, bytes], np.ndarray]] = {
    DESCRIPTORS_KIND: _descriptors,
    ACOUSTIC_KIND: _acoustic,
    MUSIG_KIND: _musig,
}


def file_vector(store: Store, row: dict, path: Path, data: bytes) -> np.ndarray:
    """The vector of the audio file `path` (its bytes `data`) by the registered model `row`."""
    embed = FILE_EMBEDDERS.get(row["kind"])
    if embed is None:
        raise StoreError(f"space '{row['space']}': model '{row['id']}' cannot embed new audio files")
    return embed(store, row, path, data)


def file_features(store: Store, spec: FeatureSpec, path: Path, data: bytes) -> np.ndarray:
    """A new audio file's feature row [1, F], built the way the model's training features were."""
    from audiograph.audio.analysis import analyse

    parts, analysis = {}, None
    for group in spec.groups:
        if group in ("acoustic", "audio"):
            space, model = spec.spaces[group], spec.models[group]
            if space == "acoustic":
                values = _acoustic(store, store.models.get(model), path, data)
            elif space == "descriptors":
                analysis = analysis or analyse(path, _audio_config(store.models.get(model)), data=data)
                values = analysis.descriptors
            else:
                raise ConfigError(f"this MUSIG model uses imported '{group}' features, which an audio file lacks")
            parts[group] = spec.standardize(group, values[None, :])
        elif group == "genre":
            from audiograph.audio.decode import decode

            tags = analysis.audio.tags if analysis else decode(path, data=data).tags
            parts[group] = spec.standardize(group, spec.one_hot([tags.get("genre")]))
        else:  # popularity: a new file is in no playlist and has no imported popularity
            parts[group] = spec.standardize(group, np.zeros((1, spec.dims[group]), np.float32))
    return spec.assemble(parts)
