"""The Spotify-CNN-style audio encoder: log-mel chunks -> unit vectors, and chunk vectors -> a track vector."""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from audiograph.errors import ConfigError

INPUT_NORMS = ("batch", "collection")
POOLS = ("mean", "max", "l2")


# Deeper than any use, and a bound on what a model folder from elsewhere can make a load build.
MAX_LAYERS = 16


class AudioEncoder(nn.Module):
    """Conv1d stages over time (mel bands as channels), max-pooling 4 then 2, global pooling over
    time, an MLP head n_mels * len(pools) -> hidden x `head_layers` -> embedding_dim, L2-normalised.

    Input: log-mel in dB, [batch, n_mels, frames] (any number of frames >= 1).

    `input_norm`: "batch" standardises each mel band with batch-norm statistics learnt in training;
    "collection" with fixed per-band mean and std of the training collection (`set_input_statistics`;
    saved in the state dict). `pools`: global poolings over time, concatenated ("mean", "max",
    "l2": the Spotify CNN's three). `head_layers`: hidden layers of the head (0: one linear
    projection, as in the blog post). `dropout`: before each head layer, in training only.
    The defaults are the original architecture, so every saved encoder loads unchanged.
    """

    def __init__(
        self,
        n_mels: int = 128,
        embedding_dim: int = 128,
        hidden_dim: int = 1024,
        kernel_size: int = 4,
        pool_sizes: tuple[int, ...] = (4, 2),
        input_norm: str = "batch",
        pools: tuple[str, ...] = ("mean",),
        head_layers: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ConfigError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}")
        pools = tuple(pools)
        if not pools or any(p not in POOLS for p in pools):
            raise ConfigError(f"pools must be a non-empty choice of {', '.join(POOLS)}, got {pools}")
        if not 0 <= head_layers <= MAX_LAYERS or not 0 <= dropout < 1:
            raise ConfigError(
                f"head_layers must be 0..{MAX_LAYERS} and dropout in [0, 1), got {head_layers}, {dropout}"
            )
        if len(pool_sizes) > MAX_LAYERS:
            raise ConfigError(f"at most {MAX_LAYERS} pool sizes (one per convolution stage), got {len(pool_sizes)}")
        self.input_norm_kind, self.pools = input_norm, pools
        if input_norm == "batch":
            self.input_norm = nn.BatchNorm1d(n_mels)
        else:
            self.register_buffer("band_mean", torch.zeros(n_mels))
            self.register_buffer("band_std", torch.ones(n_mels))
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
        # Dropout layers exist only when used, so that the head's parameter names stay those of
        # the original architecture.
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        layers, width = [], n_mels * len(pools)
        for _ in range(head_layers):
            layers += [*drop, nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        self.head = nn.Sequential(*layers, *drop, nn.Linear(width, embedding_dim))

    @property
    def embedding_dim(self) -> int:
        return self.head[-1].out_features

    @torch.no_grad()
    def set_input_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-band mean and std (dB) of the collection, for `input_norm="collection"`."""
        if self.input_norm_kind != "collection":
            raise ConfigError("input statistics apply only to input_norm='collection'")
        self.band_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.band_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def normalise_input(self, mel_db: torch.Tensor) -> torch.Tensor:
        if self.input_norm_kind == "batch":
            return self.input_norm(mel_db)
        return (mel_db - self.band_mean[:, None]) / self.band_std[:, None]

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.normalise_input(mel_db))
        pooled = []
        for pool in self.pools:
            if pool == "mean":
                pooled.append(h.mean(dim=-1))
            elif pool == "max":
                pooled.append(h.amax(dim=-1))
            else:
                pooled.append(h.square().mean(dim=-1).add(1e-8).sqrt())
        return F.normalize(self.head(torch.cat(pooled, dim=-1)), dim=-1)


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
    sums = torch.zeros(len(tracks), encoder.embedding_dim, device=param.device)
    for items in by_length.values():
        for start in range(0, len(items), batch_size):
            part = items[start : start + batch_size]
            batch = torch.stack([c for _, c in part]).to(param.device, param.dtype)
            index = torch.tensor([t for t, _ in part], device=param.device)
            sums.index_add_(0, index, encoder(batch).float())
    return F.normalize(sums, dim=-1).cpu()
