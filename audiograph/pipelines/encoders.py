"""The models behind the store's spaces, resolved through the registry, and how each one turns a new audio
file into a vector of its space (what `query`, `embed-audio` and MUSIG's inductive path share)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from audiograph.audio.config import AudioConfig
from audiograph.audio.descriptor_names import DESCRIPTORS_VERSION
from audiograph.errors import ConfigError, StoreError
from audiograph.models import ACOUSTIC_KIND, DESCRIPTORS_KIND, MUSIG_KIND, model_class
from audiograph.musig.features import FeatureSpec, artist_genres
from audiograph.store import ACOUSTIC_SPACE, Store

if TYPE_CHECKING:
    from audiograph.audio.analysis import Analysis
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
        return (store.models.rows(kind=ACOUSTIC_KIND, space=ACOUSTIC_SPACE) or [None])[-1]
    return store.models.require(model, ACOUSTIC_KIND, "an audio encoder")


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


class AudioFile:
    """A new audio file to embed: its path, its bytes, and its analyses, each made once per audio config
    however many models read it (a query by file wants its descriptors, then its acoustic vector or its
    MUSIG features, which need both)."""

    def __init__(self, path: str | os.PathLike, data: bytes):
        self.path, self.data = Path(path), data
        self._analyses: dict[str, Analysis] = {}

    def analysis(self, config: AudioConfig, descriptors: bool = True) -> Analysis:
        """The file analysed with `config` (with its descriptors unless `descriptors` is False)."""
        from audiograph.audio.analysis import analyse

        done = self._analyses.get(config.signature())
        if done is None or (descriptors and done.descriptors is None):
            done = analyse(self.path, config, data=self.data, descriptors=descriptors)
            self._analyses[config.signature()] = done
        return done

    def tags(self) -> dict:
        """The file's tags, from an analysis already made if there is one."""
        made = next((a for a in self._analyses.values() if a.audio is not None), None)
        if made is not None:
            return made.audio.tags
        from audiograph.audio.decode import decode

        return decode(self.path, data=self.data).tags


def _descriptors(store: Store, row: dict, file: AudioFile) -> np.ndarray:
    return file.analysis(_audio_config(row)).descriptors


def _acoustic(store: Store, row: dict, file: AudioFile) -> np.ndarray:
    model, _, _ = resolve_acoustic_model(store, row["id"])
    analysis = file.analysis(model.config, descriptors=model.uses_descriptors)
    return model.encode_chunks([analysis.mel_chunks], descriptors=[analysis.descriptors])[0].numpy()


def _musig(store: Store, row: dict, file: AudioFile) -> np.ndarray:
    """The MUSIG vector of an audio file in no playlist: its own features through the learnt aggregators."""
    model = model_class(MUSIG_KIND).load(store.models.checkpoint_file(row), f"model '{row['id']}'")
    return model.encode(file_features(store, model.spec, file))[0]


# model kind -> function(store, model row, the file) -> the file's vector in that model's space
FILE_EMBEDDERS: dict[str, Callable[[Store, dict, AudioFile], np.ndarray]] = {
    DESCRIPTORS_KIND: _descriptors,
    ACOUSTIC_KIND: _acoustic,
    MUSIG_KIND: _musig,
}


def file_vector(store: Store, row: dict, file: AudioFile) -> np.ndarray:
    """The vector of the audio file `file` by the registered model `row`."""
    embed = FILE_EMBEDDERS.get(row["kind"])
    if embed is None:
        raise StoreError(f"space '{row['space']}': model '{row['id']}' cannot embed new audio files")
    return embed(store, row, file)


def file_genre(store: Store, file: AudioFile) -> str | None:
    """A new file's genre: its own tag, else the genre most common among the stored tracks of its artist."""
    tags = file.tags()
    if tags.get("genre") or not tags.get("artist"):
        return tags.get("genre")
    by_track = store.tracks.genres_of_artist(tags["artist"])
    new = ""  # the file, as one more track of that artist without a label: the same majority and tie rule
    return artist_genres({**by_track, new: None}, dict.fromkeys([*by_track, new], tags["artist"]))[new]


def file_features(store: Store, spec: FeatureSpec, file: AudioFile) -> np.ndarray:
    """A new audio file's feature row [1, F], built the way the model's training features were."""
    if not spec.fitted:
        raise ConfigError("this MUSIG model was trained on features built elsewhere, which it cannot build itself")
    imported = spec.imported_groups()
    if imported:
        raise ConfigError(f"this MUSIG model uses imported '{imported[0]}' features, which an audio file lacks")
    parts = {}
    for group in spec.groups:
        if group in ("acoustic", "audio"):
            if group not in spec.spaces or group not in spec.models:
                raise ConfigError(f"this MUSIG model's '{group}' features name no space and model of a store")
            space, model = spec.spaces[group], spec.models[group]
            embed = _acoustic if space == "acoustic" else _descriptors
            parts[group] = spec.standardize(group, embed(store, store.models.get(model), file)[None, :])
        elif group == "genre":
            parts[group] = spec.standardize(group, spec.one_hot([file_genre(store, file)]))
        else:  # popularity: a new file is in no playlist and has no imported popularity
            parts[group] = spec.standardize(group, np.zeros((1, spec.dims[group]), np.float32))
    return spec.assemble(parts)
