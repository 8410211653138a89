"""Graph-supervised training of the audio encoder: triplets by playlist-graph distance, cosine triplet loss."""

from __future__ import annotations

import os
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
from audiograph.eval.neighbours import neighbour_recall_at_k
from audiograph.graph.triplets import sample_triplets
from audiograph.runtime import inference_trainer, keyword_defaults, quiet_lightning, show_progress
from audiograph.trainer import TrainingThroughput, best_epoch_metrics, split_options
from audiograph.store import ACOUSTIC_SPACE, Store

# Keeps the gradient of sqrt finite where x == y; about 1e-4 in distance.
DISTANCE_EPS = 1e-8


def cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d(x, y) = sqrt(2 (1 - x.y)) for unit vectors (the chord length), safe at x == y."""
    return torch.sqrt(torch.clamp(2.0 - 2.0 * (x * y).sum(dim=-1), min=DISTANCE_EPS))


class AudioEncoderModule(L.LightningModule):
    """The encoder trained with `TripletMarginWithDistanceLoss` on the cosine distance.

    `encoder` and `frontend` are keyword arguments of `AudioEncoder` and `AudioFrontend`; the
    resolved settings are saved as hyperparameters, so a checkpoint rebuilds the whole model.
    """

    def __init__(
        self,
        encoder: dict | None = None,
        frontend: dict | None = None,
        lr: float = 5e-3,
        margin: float = 0.5,
        weight_decay: float = 0.0,
        lr_patience: int = 2,
    ):
        super().__init__()
        encoder = {**keyword_defaults(AudioEncoder), **(encoder or {})}
        frontend = {**AudioFrontend().config(), **(frontend or {})}
        self.save_hyperparameters()
        self.encoder = AudioEncoder(**encoder)
        self.loss = nn.TripletMarginWithDistanceLoss(distance_function=cosine_distance, margin=margin)

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        return self.encoder(mel_db)

    def _step(self, batch, stage: str) -> torch.Tensor:
        anchor, positive, negative = batch
        # One forward pass over all three, so batch-norm statistics see the whole batch.
        z = self.encoder(torch.cat([anchor, positive, negative]))
        za, zp, zn = z.split(anchor.shape[0])
        loss = self.loss(za, zp, zn)
        accuracy = (cosine_distance(za, zp) < cosine_distance(za, zn)).float().mean()
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=anchor.shape[0])
        self.log(f"{stage}_triplet_accuracy", accuracy, prog_bar=stage == "val", batch_size=anchor.shape[0])
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and not self.trainer.sanity_checking:
            self.log("val_recall_at_10", datamodule.neighbour_recall(self.encoder, k=10), prog_bar=True)

    def predict_step(self, batch, batch_idx):
        ids, chunks = batch
        return ids, embed_tracks(self.encoder, chunks)

    def configure_optimizers(self):
        optimiser = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        # Halve the learning rate when validation stalls: the blog's 5e-3 is fast but noisy late on.
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=self.hparams.lr_patience)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}}


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


class TripletDataModule(L.LightningDataModule):
    """Triplets over the store's graph and mel cache, with a validation split by track.

    Validation tracks never appear in a training triplet. Training triplets are drawn afresh each
    epoch (seeded by `seed` and the epoch); validation triplets are fixed.
    """

    def __init__(
        self,
        db_path: str,
        batch_size: int = 16,
        crop_seconds: float = 10.0,
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
        self.val_triplets = self._triplets(self.eligible, anchors=self.val_nodes, generator=generator,
                                           per_anchor=self.hparams.val_per_anchor)  # fmt: skip
        self.crop_frames = self.frontend.logmel.frames_for(self.hparams.crop_seconds)

    def _triplets(self, eligible, anchors=None, generator=None, per_anchor=None) -> torch.Tensor:
        h = self.hparams
        return sample_triplets(
            self.graph, eligible, per_anchor=per_anchor or h.per_anchor, d_pos=h.d_pos, d_neg=h.d_neg, d_max=h.d_max,
            hard_share=h.hard_share, weight_power=h.weight_power, anchors=anchors, generator=generator,
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer else 0
        generator = torch.Generator().manual_seed(self.hparams.seed * 100_003 + epoch + 1)
        triplets = self._triplets(self.train_eligible, generator=generator)
        dataset = TripletCrops(triplets, self.node_ids, self.mels, self.crop_frames, seed=self.hparams.seed * 100_003 + epoch)
        return DataLoader(dataset, batch_size=self.hparams.batch_size, shuffle=True, generator=generator,
                          num_workers=self.hparams.num_workers, drop_last=len(dataset) > self.hparams.batch_size)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        dataset = TripletCrops(self.val_triplets, self.node_ids, self.mels, self.crop_frames, seed=None)
        return DataLoader(dataset, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)

    def eligible_ids(self) -> list[str]:
        return [t for t, ok in zip(self.node_ids, self.eligible.tolist()) if ok]

    @torch.no_grad()
    def neighbour_recall(self, encoder: AudioEncoder, k: int = 10) -> float:
        """Graph-neighbour recall@k of the acoustic space, averaged over validation tracks."""
        was_training = encoder.training
        encoder.eval()
        nodes = self.eligible.nonzero().squeeze(1)
        vectors = embed_tracks(encoder, [chunks_as_tensors(self.mels(self.node_ids[n])) for n in nodes.tolist()])
        encoder.train(was_training)
        return neighbour_recall_at_k(self.graph, nodes, vectors, self.val_nodes, k)


@dataclass
class TrainAudioReport:
    """The outcome of `train_audio`."""

    model_id: str
    checkpoint: str
    epochs: int
    metrics: dict = field(default_factory=dict)
    embedded: int = 0
    triplets_per_second: float = 0.0


def train_audio(
    store: Store,
    *,
    max_epochs: int = 30,
    patience: int = 6,
    accelerator: str = "auto",
    devices="auto",
    quiet: bool = False,
    **options,
) -> TrainAudioReport:
    """Train the encoder on the store's graph and mel cache, register it, and re-embed every cached track.

    `options` are keyword arguments of `AudioEncoderModule` (lr, margin, encoder, ...) and of
    `TripletDataModule` (batch_size, crop_seconds, d_pos, d_neg, hard_share, seed, ...).
    """
    quiet_lightning()
    module_options, data_options = split_options(options, AudioEncoderModule, TripletDataModule)
    data_options.pop("db_path", None)
    seed = data_options.get("seed", keyword_defaults(TripletDataModule)["seed"])
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = TripletDataModule(str(store.path), **data_options)
    module = AudioEncoderModule(frontend=datamodule.frontend.config(), **module_options)

    model_id = store.new_model_id(ENCODER_KIND)
    run_dir = store.models_dir / model_id
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor="val_loss", mode="min", save_last=True)
    throughput = TrainingThroughput()
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        logger=CSVLogger(store.models_dir, name=model_id, version=""),
        callbacks=[checkpoint, throughput, EarlyStopping(monitor="val_loss", mode="min", patience=patience)],
        enable_progress_bar=show_progress(quiet),
        enable_model_summary=False,
        deterministic=True,
        log_every_n_steps=10,
        reload_dataloaders_every_n_epochs=1,
    )
    trainer.fit(module, datamodule=datamodule)
    best = checkpoint.best_model_path or checkpoint.last_model_path
    metrics = best_epoch_metrics(Path(trainer.logger.log_dir) / "metrics.csv", "val_loss")
    metrics["train_triplets_per_second"] = throughput.per_second
    module = AudioEncoderModule.load_from_checkpoint(best, map_location="cpu")

    config = {**dict(module.hparams), **{k: v for k, v in datamodule.hparams.items() if k != "db_path"}}
    config.update(max_epochs=max_epochs, patience=patience, train_tracks=int(datamodule.train_eligible.sum()),
                  val_tracks=len(datamodule.val_nodes))  # fmt: skip
    store.register_model(model_id, ENCODER_KIND, ACOUSTIC_SPACE, checkpoint=best, config=config, metrics=metrics)
    embedded = embed_cached_tracks(store, module, datamodule.eligible_ids(), model_id, accelerator, devices)
    return TrainAudioReport(model_id, str(best), trainer.current_epoch, metrics, embedded, throughput.per_second)


def embed_cached_tracks(store: Store, module: AudioEncoderModule, track_ids: list[str], model_id: str,
                        accelerator: str = "auto", devices="auto") -> int:  # fmt: skip
    """Re-embed tracks into the acoustic space from the mel cache (no decoding); returns how many."""
    loader = DataLoader(CachedTracks(track_ids, _CachedMels(str(store.path))), batch_size=32, collate_fn=_collate_tracks)
    batches = inference_trainer(accelerator, devices).predict(module.eval(), dataloaders=loader)
    vectors = {t: v.numpy() for ids, vecs in batches for t, v in zip(ids, vecs)}
    store.put_vectors(ACOUSTIC_SPACE, model_id, vectors)
    return len(vectors)
