"""The acoustic model's LightningModule: a multi-positive contrastive loss over in-batch negatives, or the
blog's cosine triplet loss."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from audiograph.audio.config import AudioConfig
from audiograph.errors import ConfigError
from audiograph.models.acoustic import AcousticModel
from audiograph.options import check_options

# Keeps the gradient of sqrt finite where x == y; about 1e-4 in distance.
DISTANCE_EPS = 1e-8
LOSSES = ("contrastive", "triplet")
# What train_audio builds unless told otherwise; AudioEncoder's own defaults stay the original
# architecture, so that every saved encoder still loads.
TRAINING_ENCODER = {"input_norm": "collection"}
GUARD_K = 5  # the guard's and the validation metric's precision@k
MONITOR = f"val_precision_at_{GUARD_K}"


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

    It wraps an `AcousticModel`: `audio` is its `AudioConfig` as a dict and `encoder` its encoder's
    keyword arguments; the resolved settings are saved as hyperparameters.
    """

    def __init__(
        self,
        audio: dict | None = None,
        encoder: dict | None = None,
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
        check_options(temperature=temperature)
        audio = AudioConfig.from_dict(audio).to_dict()
        encoder = {**TRAINING_ENCODER, **(encoder or {})}
        self.save_hyperparameters()
        self.model = AcousticModel(AudioConfig.from_dict(audio), encoder)
        self.triplet_loss = nn.TripletMarginWithDistanceLoss(distance_function=cosine_distance, margin=margin)

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(mel_db)

    def setup(self, stage: str) -> None:
        """Under a user's own Trainer too: refuse to fit without the data module (validation ranks its tracks),
        take the collection's per-band statistics from it where the encoder has none yet, and have the
        trainer reload the training examples every epoch, which the data module draws afresh."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage != "fit":
            return
        if not hasattr(datamodule, "neighbour_precision"):
            raise ConfigError(
                "AudioEncoderModule trains with its data module: trainer.fit(module, datamodule=GraphAudioData(...))"
            )
        encoder = self.model.encoder
        unset = encoder.input_norm_kind == "collection" and not encoder.band_mean.any() and encoder.band_std.eq(1).all()
        if unset and getattr(datamodule, "band_mean", None) is not None:
            encoder.set_input_statistics(datamodule.band_mean, datamodule.band_std)
        self.trainer.reload_dataloaders_every_n_epochs = 1

    def compute_loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(loss, accuracy, crops) of one batch: (anchor, positive, negative) crops for the triplet
        loss, (views, positives mask) for the contrastive one."""
        if self.hparams.loss == "triplet":
            anchor, positive, negative = batch
            # One forward pass over all three, so batch-norm statistics see the whole batch.
            za, zp, zn = self.model.encoder(torch.cat([anchor, positive, negative])).split(anchor.shape[0])
            accuracy = (cosine_distance(za, zp) < cosine_distance(za, zn)).float().mean()
            return self.triplet_loss(za, zp, zn), accuracy, 3 * anchor.shape[0]
        views, positives = batch
        z = self.model.encoder(views)
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
            self.log(MONITOR, datamodule.neighbour_precision(self.model), prog_bar=True)

    def configure_optimizers(self):
        optimiser = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser, mode="max", factor=0.5, patience=self.hparams.lr_patience
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": plateau, "monitor": MONITOR}}
