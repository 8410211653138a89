"""The audio encoder's DataModule: log-mel crops of tracks, positives and negatives by playlist-graph distance."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audiograph.audio.config import AudioConfig
from audiograph.errors import ConfigError
from audiograph.eval.neighbours import neighbour_precision_at_k
from audiograph.graph.csr import CSRGraph
from audiograph.graph.distances import hop_distances
from audiograph.graph.triplets import sample_positive_pairs, sample_triplets
from audiograph.models.acoustic import AcousticModel
from audiograph.options import check_options
from audiograph.training.audio import GUARD_K, LOSSES
from audiograph.training.distributed import ShardedBatchSampler, shard_batches, trainer_rank

STATISTICS_TRACKS = 512  # tracks sampled for the per-band input statistics


def crop(chunks: list[np.ndarray], frames: int, rng: np.random.Generator | None) -> torch.Tensor:
    """A `frames`-long log-mel window from one of a track's chunks: random with `rng`, else the centre
    of the first chunk. Chunks shorter than the window are looped."""
    chunk = chunks[rng.integers(len(chunks))] if rng is not None else chunks[0]
    length = chunk.shape[1]
    if length < frames:
        chunk = np.tile(chunk, (1, -(-frames // length)))
        length = chunk.shape[1]
    start = rng.integers(length - frames + 1) if rng is not None else (length - frames) // 2
    return torch.from_numpy(np.asarray(chunk[:, start : start + frames], dtype=np.float32))


class TripletCrops(Dataset):
    """(anchor, positive, negative) log-mel crops for rows of node-id triplets."""

    def __init__(
        self,
        triplets: torch.Tensor,
        node_ids: list[str],
        mels: Callable[[str], list[np.ndarray]],
        frames: int,
        seed: int | None,
    ):
        self.triplets, self.node_ids, self.mels, self.frames, self.seed = triplets, node_ids, mels, frames, seed

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int):
        rng = None if self.seed is None else np.random.default_rng([*np.atleast_1d(self.seed), i])
        return tuple(crop(self.mels(self.node_ids[n]), self.frames, rng) for n in self.triplets[i].tolist())


class ContrastiveBatches(Dataset):
    """Whole batches for the contrastive loss: item i is (views [M, n_mels, frames], positives bool [M, M]).

    `batches[i]` lists the batch's node ids; each node gives `views` random crops (two crops of one
    track are positives of each other: self-supervision that needs no playlist), and two views are
    also positives when their tracks lie within `d_pos` hops in `graph`.
    """

    def __init__(
        self,
        batches: list[torch.Tensor],
        graph: CSRGraph,
        node_ids: list[str],
        mels: Callable[[str], list[np.ndarray]],
        frames: int,
        views: int,
        d_pos: int,
        seed: int,
    ):
        self.batches, self.graph, self.node_ids, self.mels = batches, graph, node_ids, mels
        self.frames, self.views, self.d_pos, self.seed = frames, views, d_pos, seed

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        rng = np.random.default_rng([*np.atleast_1d(self.seed), i])
        nodes = self.batches[i]
        crops = []
        for n in nodes.tolist():
            chunks = self.mels(self.node_ids[n])
            crops += [crop(chunks, self.frames, rng) for _ in range(self.views)]
        unique, position = torch.unique(nodes, return_inverse=True)
        near = hop_distances(self.graph, unique, self.d_pos)[:, unique]
        near = (near >= 0) | torch.eye(len(unique), dtype=torch.bool)  # d_pos hops or fewer, or the same track
        slot = position.repeat_interleave(self.views)
        return torch.stack(crops), near[slot][:, slot]


class GraphAudioData(L.LightningDataModule):
    """Training examples over a playlist graph and the tracks' cached log-mel chunks, with a validation
    split by track.

    `node_ids` name the graph's nodes; `eligible` (bool per node) marks those with cached chunks, which
    `mels(track_id)` returns; `audio` is the `AudioConfig` the chunks were made with.

    Validation tracks are in no training example (as anchor, positive, negative or in-batch
    negative). For the "triplet" loss, batches hold `batch_size` triplets; for "contrastive",
    `batch_size` units of (anchor, graph positive) pairs, or single tracks that are in no playlist,
    each track with `views` crops. Training examples are drawn afresh each epoch (seeded by `seed`
    and the epoch); validation examples are fixed.
    """

    def __init__(
        self,
        node_ids: list[str],
        graph: CSRGraph,
        eligible: torch.Tensor,
        mels: Callable[[str], list[np.ndarray]],
        audio: AudioConfig | None = None,
        *,
        loss: str = "contrastive",
        batch_size: int = 16,
        crop_seconds: float = 10.0,
        views: int = 2,
        per_anchor: int = 4,
        val_per_anchor: int = 16,
        d_pos: int = 1,
        d_neg: int = 3,
        d_max: int = 4,
        hard_share: float = 0.2,
        weight_power: float = 2.0,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        check_options(val_fraction=val_fraction, views=views, batch_size=batch_size)
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.save_hyperparameters(ignore=["node_ids", "graph", "eligible", "mels", "audio"])
        self.node_ids, self.graph, self.eligible, self.mels = node_ids, graph, eligible, mels
        self.audio = audio or AudioConfig()
        connected = self.eligible & (self.graph.degree > 0)
        if int(connected.sum()) < 4:
            raise ConfigError(
                f"only {int(connected.sum())} tracks have both cached audio and playlist neighbours;"
                " run `audiograph embed-audio DIR` and `audiograph build-graph PLAYLISTS`"
            )

    def setup(self, stage: str | None = None) -> None:
        """Split the tracks with cached audio and playlist neighbours into training and validation (once)."""
        if hasattr(self, "val_nodes"):
            return
        connected = self.eligible & (self.graph.degree > 0)
        generator = torch.Generator().manual_seed(self.hparams.seed)
        candidates = connected.nonzero().squeeze(1)
        n_val = max(1, round(self.hparams.val_fraction * len(candidates)))
        self.val_nodes = candidates[torch.randperm(len(candidates), generator=generator)[:n_val]].sort().values
        self.train_eligible = self.eligible.clone()
        self.train_eligible[self.val_nodes] = False
        # Training never sees a validation track, not even as a far node of the graph.
        self.train_graph = self.graph.subgraph(self.train_eligible)
        self.crop_frames = self.audio.frames_for(self.hparams.crop_seconds)
        self.band_mean, self.band_std = self._band_statistics(generator)
        if self.hparams.loss == "triplet":
            self.val_triplets = self._triplets(
                self.graph,
                self.eligible,
                anchors=self.val_nodes,
                generator=generator,
                per_anchor=self.hparams.val_per_anchor,
            )
        else:
            pairs = sample_positive_pairs(
                self.graph,
                self.eligible,
                per_anchor=2,
                d_pos=self.hparams.d_pos,
                weight_power=self.hparams.weight_power,
                anchors=self.val_nodes,
                generator=generator,
            )
            self.val_batches = list(pairs.reshape(-1).split(2 * self.hparams.batch_size))

    def _band_statistics(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-mel-band mean and std (dB) over every frame of (a sample of) the training tracks."""
        nodes = self.train_eligible.nonzero().squeeze(1)
        nodes = nodes[torch.randperm(len(nodes), generator=generator)[:STATISTICS_TRACKS]]
        total = total_sq = count = 0
        for n in nodes.tolist():
            for chunk in self.mels(self.node_ids[n]):
                c = np.asarray(chunk, dtype=np.float64)
                total, total_sq, count = total + c.sum(1), total_sq + np.square(c).sum(1), count + c.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        return torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)

    def _triplets(self, graph, eligible, anchors=None, generator=None, per_anchor=None) -> torch.Tensor:
        h = self.hparams
        return sample_triplets(
            graph,
            eligible,
            per_anchor=per_anchor or h.per_anchor,
            d_pos=h.d_pos,
            d_neg=h.d_neg,
            d_max=h.d_max,
            hard_share=h.hard_share,
            weight_power=h.weight_power,
            anchors=anchors,
            generator=generator,
        )

    def _contrastive_batches(
        self, generator: torch.Generator, world_size: int = 1, rank: int = 0
    ) -> list[torch.Tensor]:
        """One epoch of batches: (anchor, positive) pairs of training tracks, plus the training tracks
        that are in no playlist as single units (`per_anchor` times each), shuffled together. In a
        distributed run (every rank draws the same units) this rank's `shard_batches` of them."""
        h = self.hparams
        pairs = sample_positive_pairs(
            self.train_graph,
            self.train_eligible,
            per_anchor=h.per_anchor,
            d_pos=h.d_pos,
            weight_power=h.weight_power,
            generator=generator,
        )
        lonely = (self.train_eligible & (self.train_graph.degree == 0)).nonzero().squeeze(1)
        units = [p for p in pairs] + [n.reshape(1) for n in lonely.repeat(h.per_anchor)]
        order = torch.randperm(len(units), generator=generator)
        if world_size > 1:
            return [
                torch.cat([units[j] for j in b.tolist()]) for b in shard_batches(order, h.batch_size, world_size, rank)
            ]
        order = order.tolist()
        starts = range(0, len(order), h.batch_size)
        batches = [torch.cat([units[j] for j in order[i : i + h.batch_size]]) for i in starts]
        # A last batch of one or two units has too few negatives to be worth a step.
        return batches[:-1] if len(batches) > 1 and len(batches[-1]) < 4 else batches

    def train_dataloader(self) -> DataLoader:
        """One epoch's training examples, drawn afresh (seeded by `seed` and the epoch). In a distributed
        run every rank draws the same examples and takes its own share (`shard_batches`), and crops them
        with a random stream of its own."""
        h = self.hparams
        epoch = self.trainer.current_epoch if self.trainer else 0
        rank, world_size = trainer_rank(self.trainer)
        seed = h.seed * 100_003 + epoch
        generator = torch.Generator().manual_seed(seed + 1)
        crop_seed = seed if world_size == 1 else [seed, rank]
        if h.loss == "triplet":
            triplets = self._triplets(self.train_graph, self.train_eligible, generator=generator)
            dataset = TripletCrops(triplets, self.node_ids, self.mels, self.crop_frames, seed=crop_seed)
            if world_size > 1:
                shards = ShardedBatchSampler(len(dataset), h.batch_size, world_size, rank, seed)
                return DataLoader(dataset, batch_sampler=shards, num_workers=h.num_workers)
            return DataLoader(
                dataset,
                batch_size=h.batch_size,
                shuffle=True,
                generator=generator,
                num_workers=h.num_workers,
                drop_last=len(dataset) > h.batch_size,
            )
        dataset = ContrastiveBatches(
            self._contrastive_batches(generator, world_size, rank),
            self.train_graph,
            self.node_ids,
            self.mels,
            self.crop_frames,
            h.views,
            h.d_pos,
            crop_seed,
        )
        return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=h.num_workers)

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        if h.loss == "triplet":
            dataset = TripletCrops(self.val_triplets, self.node_ids, self.mels, self.crop_frames, seed=None)
            return DataLoader(dataset, batch_size=h.batch_size, num_workers=h.num_workers)
        dataset = ContrastiveBatches(
            self.val_batches, self.graph, self.node_ids, self.mels, self.crop_frames, h.views, h.d_pos, seed=h.seed
        )
        return DataLoader(dataset, batch_size=None, num_workers=h.num_workers)

    def eligible_ids(self) -> list[str]:
        return [t for t, ok in zip(self.node_ids, self.eligible.tolist()) if ok]

    def embed_eligible(self, model: AcousticModel) -> torch.Tensor:
        """Vectors [eligible tracks, D] of every track with cached audio, in node order."""
        nodes = self.eligible.nonzero().squeeze(1).tolist()
        return model.encode_chunks([self.mels(self.node_ids[n]) for n in nodes])

    def neighbour_precision(self, model: AcousticModel, k: int = GUARD_K) -> float:
        """Graph-neighbour precision@k of the model's space, averaged over validation tracks."""
        nodes = self.eligible.nonzero().squeeze(1)
        return neighbour_precision_at_k(self.graph, nodes, self.embed_eligible(model), self.val_nodes, k)
