"""Inductive MUSIG vectors for audio files the graph has never seen: own features, empty neighbourhood.

Kept free of Lightning so that `audiograph query` starts quickly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from audiograph.errors import ConfigError, StoreError
from audiograph.musig.features import FeatureSpec
from audiograph.musig.model import MUSIG, load_musig_checkpoint
from audiograph.store import Store

MUSIG_KIND = "musig"


def musig_model_row(store: Store, model_id: str | None = None) -> dict:
    """The registry row of a MUSIG model id, or of the newest MUSIG model; checks its checkpoint exists."""
    row = store.latest_model(MUSIG_KIND) if model_id is None else store.model(model_id)
    if row is None:
        raise StoreError(f"{store.path}: no MUSIG model (run `audiograph train-musig`)")
    if row["kind"] != MUSIG_KIND:
        raise ConfigError(f"model '{row['id']}' is a {row['kind']} model, not MUSIG")
    if not row["checkpoint"] or not Path(row["checkpoint"]).exists():
        raise StoreError(f"model '{row['id']}': checkpoint {row['checkpoint']} is missing")
    return row


def file_features(store: Store, spec: FeatureSpec, path: Path, data: bytes) -> np.ndarray:
    """A new audio file's feature row [1, F], built the way the model's training features were."""
    from audiograph.audio.analysis import analyse
    from audiograph.audio.frontend import AudioFrontend
    from audiograph.query import QUERY_EMBEDDERS

    parts, analysis = {}, None
    for group in spec.groups:
        if group in ("acoustic", "audio"):
            space, model = spec.spaces[group], spec.models[group]
            if space == "acoustic":
                values = QUERY_EMBEDDERS["audio-encoder"](store, store.model(model), path, data)
            elif space == "descriptors":
                analysis = analysis or analyse(path, AudioFrontend(**store.model(model)["config"]["frontend"]), data=data)
                values = analysis.descriptors
            else:
                raise ConfigError(f"this MUSIG model uses imported '{group}' features, which an audio file does not have")
            parts[group] = spec.standardize(group, values[None, :])
        elif group == "genre":
            from audiograph.audio.decode import decode

            tags = analysis.audio.tags if analysis else decode(path, data=data).tags
            parts[group] = spec.standardize(group, spec.one_hot([tags.get("genre")]))
        else:  # popularity: a new file is in no playlist and has no imported popularity
            parts[group] = spec.standardize(group, np.zeros((1, spec.dims[group]), np.float32))
    return spec.assemble(parts)


@torch.no_grad()
def embed_isolated(model: MUSIG, x: torch.Tensor) -> torch.Tensor:
    """MUSIG vectors of nodes with no neighbours (each aggregates an empty set, i.e. zeros)."""
    n = x.shape[0]
    empty = torch.sparse_csr_tensor(torch.zeros(n + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                                    torch.zeros(0), size=(n, n), check_invariants=False)  # fmt: skip
    return model(x, [empty] * len(model.convs))


def embed_new_file(store: Store, model_row: dict, path: Path, data: bytes) -> np.ndarray:
    """The MUSIG vector of an audio file in no playlist: its own features through the learnt aggregators."""
    model, hparams = load_musig_checkpoint(store.checkpoint_file(model_row), f"model '{model_row['id']}'")
    x = torch.from_numpy(file_features(store, FeatureSpec.from_dict(hparams["features"]), path, data))
    return embed_isolated(model, x)[0].numpy()
