"""`AcousticModel`: the front-end plus the encoder, the one object that turns audio into acoustic vectors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from torch import nn

from audiograph.audio.analysis import analyse, analyse_samples, chunks_as_tensors
from audiograph.audio.config import AudioConfig
from audiograph.audio.decode import check_waveform
from audiograph.audio.descriptor_names import DESCRIPTOR_NAMES
from audiograph.audio.encoder import AudioEncoder, embed_tracks
from audiograph.audio.frontend import AudioFrontend
from audiograph.errors import StoreError
from audiograph.models import ACOUSTIC_KIND
from audiograph.models.weights import build_and_load, load_checkpoint, read_saved, save_weights
from audiograph.options import check_options
from audiograph.runtime import keyword_defaults, progress_bar


def combine_with_descriptors(encoded: torch.Tensor, descriptors: torch.Tensor, weight: float) -> torch.Tensor:
    """Unit vectors [n, D + d] joining the encoder's unit vectors [n, D] and standardised descriptors [n, d]
    so that the cosine of two joined vectors is (1 - weight) x the encoders' cosine + weight x the
    descriptors' cosine (late fusion)."""
    encoded = F.normalize(encoded.float(), dim=-1)
    descriptors = F.normalize(descriptors.float(), dim=-1)
    return torch.cat([(1 - weight) ** 0.5 * encoded, weight**0.5 * descriptors], dim=-1)


class AcousticModel(nn.Module):
    """Audio -> unit vectors: `AudioFrontend` (log-mel chunks, as `config` sets them) and `AudioEncoder`
    (keyword arguments in `encoder`; its `n_mels` is the config's). A track's vector is the normalised
    mean of its chunks' vectors.

    With `descriptor_weight` w > 0 the vector also holds the track's descriptors, standardised by the
    statistics of the training collection (`combine_with_descriptors`): cosines are then (1 - w) x the
    encoder's + w x the descriptors'. `train_audio` chooses w on its validation tracks: on a small
    collection the descriptors carry what the encoder has not learnt yet.
    """

    kind = ACOUSTIC_KIND

    def __init__(self, config: AudioConfig | None = None, encoder: dict | None = None, descriptor_weight: float = 0.0):
        super().__init__()
        self.config = config or AudioConfig()
        defaults = {k: v for k, v in keyword_defaults(AudioEncoder).items() if k != "n_mels"}
        self.encoder_options = {**defaults, **(encoder or {})}
        self.frontend = AudioFrontend(self.config)
        self.encoder = AudioEncoder(n_mels=self.config.n_mels, **self.encoder_options)
        self.descriptor_weight = 0.0
        if descriptor_weight > 0:
            self.combine_descriptors(descriptor_weight, np.zeros(len(DESCRIPTOR_NAMES)), np.ones(len(DESCRIPTOR_NAMES)))

    @property
    def embedding_dim(self) -> int:
        return self.encoder.embedding_dim + (len(DESCRIPTOR_NAMES) if self.uses_descriptors else 0)

    @property
    def uses_descriptors(self) -> bool:
        """Whether vectors also hold the descriptors (then every encode call needs them)."""
        return self.descriptor_weight > 0

    def combine_descriptors(self, weight: float, mean: np.ndarray, scale: np.ndarray) -> None:
        """From now on, join the descriptors, standardised by `mean` and `scale`, with weight `weight`
        (0: the encoder alone)."""
        if not 0 <= weight < 1:
            raise ValueError(f"descriptor weight must be in [0, 1), got {weight}")
        self.descriptor_weight = float(weight)
        for name, value in (("descriptor_mean", mean), ("descriptor_scale", scale)):
            if weight > 0:
                self.register_buffer(name, torch.as_tensor(np.asarray(value, np.float32)).clone())
            elif hasattr(self, name):
                delattr(self, name)

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        """The encoder's unit vectors [B, encoder.embedding_dim] of log-mel chunks [B, n_mels, frames]: the
        trainable part, for use inside another model. A track's vector in the space (`encode`,
        `encode_chunks`) also averages its chunks and, where the model joins them, appends the descriptors, so
        it is `embedding_dim` long."""
        return self.encoder(mel_db)

    @torch.no_grad()
    def encode_chunks(self, tracks: list[list], batch_size: int = 64, descriptors=None) -> torch.Tensor:
        """Track vectors [len(tracks), D] from each track's log-mel chunks (arrays as the mel cache holds them,
        or tensors), and their raw descriptors (rows of 42) when the model `uses_descriptors` (otherwise
        `descriptors` is ignored)."""
        tracks = [chunks_as_tensors(chunks) for chunks in tracks]
        was_training = self.training
        self.eval()
        try:
            encoded = embed_tracks(self.encoder, tracks, batch_size)
        finally:
            self.train(was_training)
        if not self.uses_descriptors:
            return encoded
        if descriptors is None or len(descriptors) != len(tracks):
            raise ValueError("this acoustic model joins the descriptors: pass one descriptor row per track")
        raw = torch.as_tensor(np.asarray(descriptors, np.float32))
        # The encoder's vectors come back on the CPU; the buffers are wherever the model was moved.
        mean, scale = self.descriptor_mean.to("cpu", torch.float32), self.descriptor_scale.to("cpu", torch.float32)
        standardised = (raw - mean) / scale
        return combine_with_descriptors(encoded, standardised, self.descriptor_weight)

    def encode(
        self,
        audio,
        batch_size: int = 16,
        progress: bool = False,
        sample_rate: int | None = None,
        *,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | torch.Tensor:
        """Unit vectors [len(audio), D] of a list of audio files (paths) or mono waveforms (1-D arrays or tensors,
        at `sample_rate`, default the config's, and resampled as decoding does where it differs); of one file
        or waveform, its vector [D]. A numpy array, as `MusigModel.encode` gives; with `convert_to_tensor`, a
        tensor on the model's device. A file that cannot be decoded, or a waveform that is not finite, too short
        or silent, raises `DecodeError` naming it."""
        check_options(batch_size=batch_size)
        if sample_rate is not None and not (isinstance(sample_rate, int) and sample_rate > 0):
            raise ValueError(f"sample_rate must be a positive whole number of Hz, not {sample_rate!r}")
        single = isinstance(audio, (str, os.PathLike)) or getattr(audio, "ndim", None) == 1
        if single:
            return self.encode([audio], batch_size, progress, sample_rate, convert_to_tensor=convert_to_tensor)[0]
        shape = getattr(audio, "shape", ())
        if len(shape) == 2 and shape[1] <= 8 < shape[0]:
            raise ValueError(
                f"audio of shape {tuple(shape)} looks like [samples, channels]: pass mono waveforms (average the"
                " channels), one per row or as a list"
            )
        rate = sample_rate or self.config.sample_rate
        audio = list(audio)
        out = []
        with progress_bar(len(audio), "encode", quiet=not progress, unit="track") as bar:
            for start in range(0, len(audio), batch_size):
                part = [self._analyse(item, rate) for item in audio[start : start + batch_size]]
                descriptors = np.stack([d for _, d in part]) if self.uses_descriptors else None
                out.append(self.encode_chunks([c for c, _ in part], batch_size, descriptors).numpy())
                bar.update(len(part))
        vectors = np.concatenate(out) if out else np.zeros((0, self.embedding_dim), np.float32)
        return torch.from_numpy(vectors).to(next(self.parameters()).device) if convert_to_tensor else vectors

    def _analyse(self, item, rate: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        """(log-mel chunks, descriptors when the model uses them) of a file or a waveform at `rate`, from one
        STFT."""
        if not isinstance(item, (str, os.PathLike)):
            samples = check_waveform(item, rate)
            if rate != self.config.sample_rate:
                samples = soxr.resample(samples, rate, self.config.sample_rate, quality="HQ").astype(np.float32)
            analysis = analyse_samples(samples, self.config, descriptors=self.uses_descriptors)
        else:
            analysis = analyse(item, self.config, descriptors=self.uses_descriptors)
        return analysis.mel_chunks, analysis.descriptors

    def settings(self) -> dict:
        """What rebuilds this model: its kind, audio config, encoder options and descriptor weight."""
        return {
            "kind": self.kind,
            "audio": self.config.to_dict(),
            "encoder": self.encoder_options,
            "descriptor_weight": self.descriptor_weight,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the settings (config.json) and the weights (weights.pt) into `folder`."""
        return save_weights(self, Path(folder), self.settings())

    @classmethod
    def from_settings(cls, settings: dict) -> AcousticModel:
        """An untrained model shaped as `settings()` say (the descriptors' statistics come with the weights)."""
        audio = AudioConfig.from_dict(settings["audio"])
        return cls(audio, settings["encoder"], settings.get("descriptor_weight", 0.0))

    @classmethod
    def load(cls, path: str | os.PathLike, what: str = "model") -> AcousticModel:
        """A model saved by `save` (a folder), or a training checkpoint of an `AudioEncoderModule` (a file);
        weights are read weights-only, so loading never runs code. A training checkpoint holds the encoder
        alone: its model does not join the descriptors (weight 0), so its vectors are those of a space that
        does not either; the `model/` folder beside it is the model that made the space."""
        if Path(path).is_dir():
            settings, state = read_saved(path, what, kind=cls.kind)

            def build():
                return cls.from_settings(settings)

        else:
            checkpoint = load_checkpoint(path, what)
            hparams = checkpoint.get("hyper_parameters", {})
            if "encoder" not in hparams or not ("audio" in hparams or "frontend" in hparams):
                raise StoreError(f"{what}: {path} is not a training checkpoint of an acoustic model")
            state = checkpoint.get("state_dict", {})
            if isinstance(state, dict):
                state = {str(k).removeprefix("model."): v for k, v in state.items()}
                state = {(k if k.startswith("encoder.") else f"encoder.{k}"): v for k, v in state.items()}

            def build():
                encoder = {k: v for k, v in hparams["encoder"].items() if k != "n_mels"}
                return cls(AudioConfig.from_dict(hparams.get("audio") or hparams["frontend"]), encoder)

        return build_and_load(build, state, path, what).eval()
