"""Graph-supervised training of the audio encoder: positives and negatives by playlist-graph distance,
a multi-positive contrastive loss over in-batch negatives (or the blog's cosine triplet loss), and a
guard that compares the trained space with the descriptors and the untrained encoder."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from audiograph.audio.analysis import chunks_as_tensors
from audiograph.audio.encoder import ENCODER_KIND, AudioEncoder, embed_tracks
from audiograph.audio.frontend import AudioFrontend
from audiograph.errors import ConfigError
from audiograph.eval.neighbours import neighbour_precision_at_k
from audiograph.graph.csr import CSRGraph
from audiograph.graph.distances import hop_distances
from audiograph.graph.triplets import sample_positive_pairs, sample_triplets
from audiograph.runtime import inference_trainer, keyword_defaults, limit_threads, quiet_lightning, show_progress
from audiograph.store import ACOUSTIC_SPACE, DESCRIPTORS_SPACE, Store, VectorIndex
from audiograph.trainer import TrainingThroughput, best_epoch_metrics, split_options

# Keeps the gradient of sqrt finite where x == y; about 1e-4 in distance.
DISTANCE_EPS = 1e-8
LOSSES = ("contrastive", "triplet")
# What train_audio builds unless told otherwise; AudioEncoder's own defaults stay the original
# architecture, so that every saved encoder still loads.
TRAINING_ENCODER = {"input_norm": "collection"}
GUARD_K = 5  # the guard's and the validation metric's precision@k
MONITOR = f"val_precision_at_{GUARD_K}"
STATISTICS_TRACKS = 512  # tracks sampled for the per-band input statistics


def cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d(x, y) = sqrt(2 (1 - x.y)) for unit vectors (the chord length), safe at x == y."""
    return torch.sqrt(torch.clamp(2.0 - 2.0 * (x * y).sum(dim=-1), min=DISTANCE_EPS))


def multi_positive_info_nce(z: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE (SupCon's L_out) over a batch of unit vectors `z` [M, D].

    `positives` (bool [M, M], diagonal ignored) marks the pairs to pull together; every other row
    of the batch is a negative. Row i's loss is the mean over its positives p of
    -log(exp(z_i.z_p / t) / sum over a != i of exp(z_i.z_a / t)); rows without a positive are left out.
    """
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, -torch.inf)
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positives = positives & ~eye
    count = positives.sum(1)
    rows = count > 0
    if not rows.any():
        return z.sum() * 0.0
    return (-log_prob.masked_fill(~positives, 0.0).sum(1)[rows] / count[rows]).mean()


class AudioEncoderModule(L.LightningModule):
    """The encoder and its loss: "contrastive" (multi-positive InfoNCE over in-batch negatives, at
    `temperature`) or "triplet" (`TripletMarginWithDistanceLoss` on the cosine distance, `margin`).

    `encoder` and `frontend` are keyword arguments of `AudioEncoder` and `AudioFrontend`; the
    resolved settings are saved as hyperparameters, so a checkpoint rebuilds the whole model.
    """

    def __init__(
        self,
        encoder: dict | None = None,
        frontend: dict | None = None,
        loss: str = "contrastive",
        temperature: float = 0.1,
        margin: float = 0.5,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        lr_patience: int = 2,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        encoder = {**keyword_defaults(AudioEncoder), **TRAINING_ENCODER, **(encoder or {})}
        frontend = {**AudioFrontend().config(), **(frontend or {})}
        self.save_hyperparameters()
        self.encoder = AudioEncoder(**encoder)
        self.triplet_loss = nn.TripletMarginWithDistanceLoss(distance_function=cosine_distance, margin=margin)

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        return self.encoder(mel_db)

    def compute_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(loss, accuracy, crops) of one batch: (anchor, positive, negative) crops for the triplet
        loss, (views, positives mask) for the contrastive one."""
        if self.hparams.loss == "triplet":
            anchor, positive, negative = batch
            # One forward pass over all three, so batch-norm statistics see the whole batch.
            za, zp, zn = self.encoder(torch.cat([anchor, positive, negative])).split(anchor.shape[0])
            accuracy = (cosine_distance(za, zp) < cosine_distance(za, zn)).float().mean()
            return self.triplet_loss(za, zp, zn), accuracy, 3 * anchor.shape[0]
        views, positives = batch
        z = self.encoder(views)
        # Top-1 accuracy: each view's nearest other view is one of its positives.
        nearest = (z @ z.T).fill_diagonal_(-torch.inf).argmax(1)
        has = positives.any(1)
        accuracy = positives[torch.arange(len(z), device=z.device), nearest][has].float().mean()
        return multi_positive_info_nce(z, positives, self.hparams.temperature), accuracy, len(z)

    def _step(self, batch, stage: str) -> torch.Tensor:
        loss, accuracy, size = self.compute_loss(batch)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "train", batch_size=size)
        self.log(f"{stage}_accuracy", accuracy, batch_size=size)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and not self.trainer.sanity_checking:
            self.log(MONITOR, datamodule.neighbour_precision(self.encoder), prog_bar=True)

    def predict_step(self, batch, batch_idx):
        ids, chunks = batch
        return ids, embed_tracks(self.encoder, chunks)

    def configure_optimizers(self):
        optimiser = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser, mode="max", factor=0.5, patience=self.hparams.lr_patience
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": plateau, "monitor": MONITOR}}


class _CachedMels:
    """Reads a track's cached log-mel chunks from the store, with one connection per process."""

    def __init__(self, db_path: str):
        self.db_path, self._store, self._pid = db_path, None, None

    def __call__(self, track_id: str) -> list[np.ndarray]:
        if self._pid != os.getpid():  # DataLoader workers must not share the parent's connection
            self._store, self._pid = Store(self.db_path, must_exist=True), os.getpid()
        return self._store.mel_chunks([track_id])[track_id]

    def __getstate__(self):
        return {"db_path": self.db_path, "_store": None, "_pid": None}


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

    def __init__(self, triplets: torch.Tensor, node_ids: list[str], mels: _CachedMels, frames: int, seed: int | None):
        self.triplets, self.node_ids, self.mels, self.frames, self.seed = triplets, node_ids, mels, frames, seed

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int):
        rng = None if self.seed is None else np.random.default_rng([self.seed, i])
        return tuple(crop(self.mels(self.node_ids[n]), self.frames, rng) for n in self.triplets[i].tolist())


class ContrastiveBatches(Dataset):
    """Whole batches for the contrastive loss: item i is (views [M, n_mels, frames], positives bool [M, M]).

    `batches[i]` lists the batch's node ids; each node gives `views` random crops (two crops of one
    track are positives of each other: self-supervision that needs no playlist), and two views are
    also positives when their tracks lie within `d_pos` hops in `graph`.
    """

    def __init__(self, batches: list[torch.Tensor], graph: CSRGraph, node_ids: list[str], mels: _CachedMels,
                 frames: int, views: int, d_pos: int, seed: int):
        self.batches, self.graph, self.node_ids, self.mels = batches, graph, node_ids, mels
        self.frames, self.views, self.d_pos, self.seed = frames, views, d_pos, seed

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, i])
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


class CachedTracks(Dataset):
    """(track id, its cached chunks as tensors): what the re-embedding pass reads."""

    def __init__(self, track_ids: list[str], mels: _CachedMels):
        self.track_ids, self.mels = track_ids, mels

    def __len__(self) -> int:
        return len(self.track_ids)

    def __getitem__(self, i: int):
        return self.track_ids[i], chunks_as_tensors(self.mels(self.track_ids[i]))


def _collate_tracks(items):
    return [i for i, _ in items], [c for _, c in items]


class GraphAudioData(L.LightningDataModule):
    """Training examples over the store's graph and mel cache, with a validation split by track.

    Validation tracks are in no training example (as anchor, positive, negative or in-batch
    negative). For the "triplet" loss, batches hold `batch_size` triplets; for "contrastive",
    `batch_size` units of (anchor, graph positive) pairs, or single tracks that are in no playlist,
    each track with `views` crops. Training examples are drawn afresh each epoch (seeded by `seed`
    and the epoch); validation examples are fixed.
    """

    def __init__(
        self,
        db_path: str,
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
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if views < 1 or batch_size < 1:
            raise ConfigError(f"views and batch_size must be at least 1, got {views}, {batch_size}")
        self.save_hyperparameters()
        self.mels = _CachedMels(str(db_path))
        self.frontend = AudioFrontend()

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "graph"):
            return
        store = Store(self.hparams.db_path, must_exist=True)
        self.node_ids, self.graph = store.graph()
        cached = store.mel_states()
        signature = self.frontend.signature()
        self.eligible = torch.tensor([cached.get(t, (None, None))[1] == signature for t in self.node_ids])
        connected = self.eligible & (self.graph.degree > 0)
        if int(connected.sum()) < 4:
            raise ConfigError(
                f"{store.path}: only {int(connected.sum())} tracks have both cached audio and playlist neighbours;"
                " run `audiograph embed-audio DIR` and `audiograph build-graph PLAYLISTS`"
            )
        generator = torch.Generator().manual_seed(self.hparams.seed)
        candidates = connected.nonzero().squeeze(1)
        n_val = max(1, round(self.hparams.val_fraction * len(candidates)))
        self.val_nodes = candidates[torch.randperm(len(candidates), generator=generator)[:n_val]].sort().values
        self.train_eligible = self.eligible.clone()
        self.train_eligible[self.val_nodes] = False
        # Training never sees a validation track, not even as a far node of the graph.
        self.train_graph = self.graph.subgraph(self.train_eligible)
        self.crop_frames = self.frontend.logmel.frames_for(self.hparams.crop_seconds)
        self.band_mean, self.band_std = self._band_statistics(generator)
        if self.hparams.loss == "triplet":
            self.val_triplets = self._triplets(self.graph, self.eligible, anchors=self.val_nodes, generator=generator,
                                               per_anchor=self.hparams.val_per_anchor)
        else:
            pairs = sample_positive_pairs(self.graph, self.eligible, per_anchor=2, d_pos=self.hparams.d_pos,
                                          weight_power=self.hparams.weight_power, anchors=self.val_nodes,
                                          generator=generator)
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
            graph, eligible, per_anchor=per_anchor or h.per_anchor, d_pos=h.d_pos, d_neg=h.d_neg, d_max=h.d_max,
            hard_share=h.hard_share, weight_power=h.weight_power, anchors=anchors, generator=generator,
        )

    def _contrastive_batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        """One epoch of batches: (anchor, positive) pairs of training tracks, plus the training tracks
        that are in no playlist as single units (`per_anchor` times each), shuffled together."""
        h = self.hparams
        pairs = sample_positive_pairs(self.train_graph, self.train_eligible, per_anchor=h.per_anchor, d_pos=h.d_pos,
                                      weight_power=h.weight_power, generator=generator)
        lonely = (self.train_eligible & (self.train_graph.degree == 0)).nonzero().squeeze(1)
        units = [p for p in pairs] + [n.reshape(1) for n in lonely.repeat(h.per_anchor)]
        order = torch.randperm(len(units), generator=generator).tolist()
        starts = range(0, len(order), h.batch_size)
        batches = [torch.cat([units[j] for j in order[i : i + h.batch_size]]) for i in starts]
        # A last batch of one or two units has too few negatives to be worth a step.
        return batches[:-1] if len(batches) > 1 and len(batches[-1]) < 4 else batches

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        epoch = self.trainer.current_epoch if self.trainer else 0
        seed = h.seed * 100_003 + epoch
        generator = torch.Generator().manual_seed(seed + 1)
        if h.loss == "triplet":
            triplets = self._triplets(self.train_graph, self.train_eligible, generator=generator)
            dataset = TripletCrops(triplets, self.node_ids, self.mels, self.crop_frames, seed=seed)
            return DataLoader(dataset, batch_size=h.batch_size, shuffle=True, generator=generator,
                              num_workers=h.num_workers, drop_last=len(dataset) > h.batch_size)
        dataset = ContrastiveBatches(self._contrastive_batches(generator), self.train_graph, self.node_ids, self.mels,
                                     self.crop_frames, h.views, h.d_pos, seed)
        return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=h.num_workers)

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        if h.loss == "triplet":
            dataset = TripletCrops(self.val_triplets, self.node_ids, self.mels, self.crop_frames, seed=None)
            return DataLoader(dataset, batch_size=h.batch_size, num_workers=h.num_workers)
        dataset = ContrastiveBatches(self.val_batches, self.graph, self.node_ids, self.mels, self.crop_frames,
                                     h.views, h.d_pos, seed=h.seed)
        return DataLoader(dataset, batch_size=None, num_workers=h.num_workers)

    def eligible_ids(self) -> list[str]:
        return [t for t, ok in zip(self.node_ids, self.eligible.tolist()) if ok]

    @torch.no_grad()
    def embed_eligible(self, encoder: AudioEncoder) -> torch.Tensor:
        """Vectors [eligible tracks, D] of every track with cached audio, in node order."""
        was_training = encoder.training
        encoder.eval()
        nodes = self.eligible.nonzero().squeeze(1).tolist()
        vectors = embed_tracks(encoder, [chunks_as_tensors(self.mels(self.node_ids[n])) for n in nodes])
        encoder.train(was_training)
        return vectors

    def neighbour_precision(self, encoder: AudioEncoder, k: int = GUARD_K) -> float:
        """Graph-neighbour precision@k of the encoder's space, averaged over validation tracks."""
        nodes = self.eligible.nonzero().squeeze(1)
        return neighbour_precision_at_k(self.graph, nodes, self.embed_eligible(encoder), self.val_nodes, k)


def embedding_diagnostics(vectors, sample: int = 4000, seed: int = 0) -> dict:
    """Collapse diagnosis of a space: the distribution of pairwise cosines between distinct rows
    (mean, std, 5/50/95th percentiles) and the effective rank (exp of the entropy of the normalised
    singular values of the centred matrix; Roy & Vetterli 2007). At most `sample` rows are used."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) > sample:
        x = x[np.random.default_rng(seed).choice(len(x), sample, replace=False)]
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cosines = (unit @ unit.T)[np.triu_indices(len(unit), k=1)]
    singular = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = singular / singular.sum() if singular.sum() > 0 else np.ones(1)
    p = p[p > 0]
    p5, p50, p95 = np.percentile(cosines, [5, 50, 95]) if len(cosines) else (np.nan,) * 3
    return {
        "cosine_mean": float(cosines.mean()) if len(cosines) else float("nan"),
        "cosine_std": float(cosines.std()) if len(cosines) else float("nan"),
        "cosine_p5": float(p5),
        "cosine_p50": float(p50),
        "cosine_p95": float(p95),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "dimensions": int(x.shape[1]),
    }


def standardised_descriptors(store: Store, track_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """(ids, rows) of the descriptor space for those of `track_ids` that have descriptors, z-scored over
    them and L2-normalised: the space a descriptor search uses."""
    ids, matrix = store.vectors(DESCRIPTORS_SPACE)
    row = {t: i for i, t in enumerate(ids)}
    keep = [t for t in track_ids if t in row]
    return keep, VectorIndex(keep, matrix[[row[t] for t in keep]], standardize=True).matrix


@dataclass
class TrainAudioReport:
    """The outcome of `train_audio`. `guard`: validation graph-neighbour precision@k of the trained
    space, the descriptors and the untrained encoder, and whether the trained space is worse."""

    model_id: str
    checkpoint: str
    epochs: int
    metrics: dict = field(default_factory=dict)
    embedded: int = 0
    crops_per_second: float = 0.0
    guard: dict = field(default_factory=dict)


def compare_with_inputs(store: Store, datamodule: GraphAudioData, module: AudioEncoderModule, seed: int,
                        k: int = GUARD_K) -> dict:
    """Graph-neighbour precision@k of the validation tracks in three spaces over the same tracks: the
    trained encoder of `module`, the z-scored descriptors and the same architecture untrained
    (seeded by `seed`, with the trained encoder's input statistics)."""
    trained = module.encoder
    ids = datamodule.eligible_ids()
    described, descriptors = standardised_descriptors(store, ids)
    position = {t: i for i, t in enumerate(datamodule.node_ids)}
    nodes = torch.tensor([position[t] for t in described], dtype=torch.int64)
    in_nodes = torch.zeros(len(datamodule.node_ids), dtype=torch.bool)
    in_nodes[nodes] = True
    queries = datamodule.val_nodes[in_nodes[datamodule.val_nodes]]
    row = {t: i for i, t in enumerate(ids)}
    keep = [row[t] for t in described]

    torch.manual_seed(seed)
    untrained = AudioEncoder(**module.hparams.encoder)
    if untrained.input_norm_kind == "collection":
        untrained.set_input_statistics(trained.band_mean, trained.band_std)
    spaces = {
        "trained": datamodule.embed_eligible(trained)[keep],
        "descriptors": torch.from_numpy(descriptors),
        "untrained": datamodule.embed_eligible(untrained)[keep],
    }
    guard = {f"{name}_precision_at_{k}": neighbour_precision_at_k(datamodule.graph, nodes, vectors, queries, k)
             for name, vectors in spaces.items()}
    guard["val_tracks"] = len(queries)
    trained_value = guard[f"trained_precision_at_{k}"]
    guard["worse_than"] = [s for s in ("descriptors", "untrained") if trained_value < guard[f"{s}_precision_at_{k}"]]
    return guard


def train_audio(
    store: Store,
    *,
    max_epochs: int = 10,
    patience: int = 4,
    accelerator: str = "auto",
    devices="auto",
    quiet: bool = False,
    **options,
) -> TrainAudioReport:
    """Train the encoder on the store's graph and mel cache, register it, re-embed every cached track,
    and compare the trained space with the descriptors and the untrained encoder on the validation
    tracks (printed, with a warning on stderr when the trained space is worse).

    `options` are keyword arguments of `AudioEncoderModule` (loss, lr, temperature, encoder, ...)
    and of `GraphAudioData` (batch_size, crop_seconds, views, d_pos, weight_power, seed, ...).
    """
    quiet_lightning()
    limit_threads()
    module_options, data_options = split_options(options, AudioEncoderModule, GraphAudioData)
    data_options.pop("db_path", None)
    seed = data_options.get("seed", keyword_defaults(GraphAudioData)["seed"])
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = GraphAudioData(str(store.path), **data_options)
    datamodule.setup()
    module = AudioEncoderModule(frontend=datamodule.frontend.config(), **module_options)
    if module.encoder.input_norm_kind == "collection":
        module.encoder.set_input_statistics(datamodule.band_mean, datamodule.band_std)

    model_id = store.new_model_id(ENCODER_KIND)
    run_dir = store.models_dir / model_id
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor=MONITOR, mode="max", save_last=True)
    # Crops per batch: three per triplet; the views of a contrastive batch.
    throughput = TrainingThroughput(count=lambda batch: sum(map(len, batch)) if len(batch) == 3 else len(batch[0]))
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        logger=CSVLogger(store.models_dir, name=model_id, version=""),
        callbacks=[checkpoint, throughput, EarlyStopping(monitor=MONITOR, mode="max", patience=patience)],
        enable_progress_bar=show_progress(quiet),
        enable_model_summary=False,
        deterministic=True,
        log_every_n_steps=10,
        reload_dataloaders_every_n_epochs=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)
    best = checkpoint.best_model_path or checkpoint.last_model_path
    metrics = best_epoch_metrics(Path(trainer.logger.log_dir) / "metrics.csv", MONITOR, mode="max")
    metrics["train_crops_per_second"] = throughput.per_second
    from audiograph.weights import weights_only_loading

    with weights_only_loading(best):
        module = AudioEncoderModule.load_from_checkpoint(best, map_location="cpu", weights_only=True)

    guard = compare_with_inputs(store, datamodule, module, seed)
    metrics.update({f"val_{k}": v for k, v in guard.items() if k.endswith(f"_at_{GUARD_K}")})
    config = {**dict(module.hparams), **{k: v for k, v in datamodule.hparams.items() if k != "db_path"}}
    config.update(max_epochs=max_epochs, patience=patience, train_tracks=int(datamodule.train_eligible.sum()),
                  val_tracks=len(datamodule.val_nodes))
    store.register_model(model_id, ENCODER_KIND, ACOUSTIC_SPACE, checkpoint=best, config=config, metrics=metrics)
    embedded = embed_cached_tracks(store, module, datamodule.eligible_ids(), model_id, accelerator, devices)
    _say_guard(guard, quiet)
    return TrainAudioReport(model_id, str(best), trainer.current_epoch, metrics, embedded, throughput.per_second, guard)


def _say_guard(guard: dict, quiet: bool) -> None:
    k = GUARD_K
    figures = (f"trained encoder {guard[f'trained_precision_at_{k}']:.3f},"
               f" descriptors {guard[f'descriptors_precision_at_{k}']:.3f},"
               f" untrained encoder {guard[f'untrained_precision_at_{k}']:.3f}")
    if not quiet:
        print(f"graph-neighbour precision@{k} of {guard['val_tracks']} validation tracks: {figures}")
    if guard["worse_than"]:
        print(f"warning: the trained acoustic space is worse than the {' and the '.join(guard['worse_than'])} on"
              f" its validation tracks ({figures}); more playlists, or other training options, may help",
              file=sys.stderr)


def embed_cached_tracks(store: Store, module: AudioEncoderModule, track_ids: list[str], model_id: str,
                        accelerator: str = "auto", devices="auto") -> int:
    """Re-embed tracks into the acoustic space from the mel cache (no decoding); returns how many."""
    tracks = CachedTracks(track_ids, _CachedMels(str(store.path)))
    loader = DataLoader(tracks, batch_size=32, collate_fn=_collate_tracks)
    batches = inference_trainer(accelerator, devices).predict(module.eval(), dataloaders=loader)
    vectors = {t: v.numpy() for ids, vecs in batches for t, v in zip(ids, vecs)}
    store.put_vectors(ACOUSTIC_SPACE, model_id, vectors)
    return len(vectors)
