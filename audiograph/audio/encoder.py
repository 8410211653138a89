"""The Spotify-CNN-style audio encoder: log-mel chunks -> unit vectors, and chunk vectors -> a track vector."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from audiograph.audio.frontend import AudioFrontend
from audiograph.errors import ConfigError, StoreError

ENCODER_KIND = "audio-encoder"  # model-registry kind of trained encoders


class AudioEncoder(nn.Module):
    """Conv1d stages over time (mel bands as channels), max-pooling 4 then 2, global average
    pooling over time, an MLP head n_mels -> hidden -> hidden -> embedding_dim, L2-normalised.

    Input: log-mel in dB, [batch, n_mels, frames] (any number of frames >= 1).
    """

    def __init__(
        self,
        n_mels: int = 128,
        embedding_dim: int = 128,
        hidden_dim: int = 1024,
        kernel_size: int = 4,
        pool_sizes: tuple[int, ...] = (4, 2),
    ):
        super().__init__()
        # Standardises the dB input per mel band; learnt statistics replace a hand-set scale.
        self.input_norm = nn.BatchNorm1d(n_mels)
        stages = []
        same = ((kernel_size - 1) // 2, kernel_size // 2)  # "same" padding, explicit for even kernels
        for i in range(len(pool_sizes) + 1):
            stages += [
                nn.ConstantPad1d(same, 0.0),
                nn.Conv1d(n_mels, n_mels, kernel_size),
                nn.BatchNorm1d(n_mels),
                nn.ReLU(),
            ]
            if i < len(pool_sizes):
                # ceil_mode keeps a frame for clips shorter than the pooling window.
                stages.append(nn.MaxPool1d(pool_sizes[i], ceil_mode=True))
        self.conv = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.Linear(n_mels, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, embedding_dim),
        )

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.input_norm(mel_db)).mean(dim=-1)
        return F.normalize(self.head(h), dim=-1)


@torch.no_grad()
def embed_tracks(encoder: AudioEncoder, tracks: list[list[torch.Tensor]], batch_size: int = 64) -> torch.Tensor:
    """Track vectors [len(tracks), D]: the normalised mean of each track's chunk vectors.

    `tracks[i]` holds track i's log-mel chunks [n_mels, frames]. Chunks of equal length are
    batched together across tracks; lengths are never padded, so the result is independent of
    what else is in the batch.
    """
    param = next(encoder.parameters())
    by_length = defaultdict(list)
    for t, chunks in enumerate(tracks):
        for chunk in chunks:
            by_length[chunk.shape[-1]].append((t, chunk))
    sums = torch.zeros(len(tracks), encoder.head[-1].out_features, device=param.device)
    for items in by_length.values():
        for start in range(0, len(items), batch_size):
            part = items[start : start + batch_size]
            batch = torch.stack([c for _, c in part]).to(param.device, param.dtype)
            index = torch.tensor([t for t, _ in part], device=param.device)
            sums.index_add_(0, index, encoder(batch).float())
    return F.normalize(sums, dim=-1).cpu()


def load_encoder_checkpoint(path) -> tuple[AudioEncoder, AudioFrontend]:
    """Rebuild the encoder and its front-end from a Lightning checkpoint whose hyperparameters hold
    `encoder` and `frontend` settings (dicts of keyword arguments) and whose module holds the encoder
    as `self.encoder`."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    encoder = AudioEncoder(**hparams["encoder"])
    state = {k[len("encoder.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("encoder.")}
    encoder.load_state_dict(state)
    return encoder.eval(), AudioFrontend(**hparams["frontend"])


def resolve_encoder(store, model: str | None = "latest") -> tuple[AudioEncoder | None, AudioFrontend, str | None]:
    """(encoder, its front-end, model id) for a registered encoder id or "latest"; without a trained
    encoder (or with `model=None`): (None, the default front-end, None)."""
    if model is None:
        return None, AudioFrontend(), None
    row = store.latest_model(ENCODER_KIND) if model == "latest" else store.model(model)
    if row is None:
        if model != "latest":
            raise ConfigError(f"{store.path}: no model '{model}' in the registry")
        return None, AudioFrontend(), None
    if row["kind"] != ENCODER_KIND:
        raise ConfigError(f"model '{model}' is a {row['kind']} model, not an audio encoder")
    if not row["checkpoint"] or not Path(row["checkpoint"]).exists():
        raise StoreError(f"model '{row['id']}': checkpoint {row['checkpoint']} is missing")
    encoder, frontend = load_encoder_checkpoint(row["checkpoint"])
    return encoder, frontend, row["id"]
