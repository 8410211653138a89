"""`AcousticModel`: the front-end plus the encoder, the one object that turns audio into acoustic vectors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiograph.audio.analysis import analyse, chunks_as_tensors
from audiograph.audio.config import AudioConfig
from audiograph.audio.encoder import AudioEncoder, embed_tracks
from audiograph.audio.frontend import AudioFrontend
from audiograph.models import ACOUSTIC_KIND
from audiograph.models.weights import load_checkpoint, read_saved, save_weights
from audiograph.runtime import keyword_defaults, progress_bar


class AcousticModel(nn.Module):
    """Audio -> unit vectors: `AudioFrontend` (log-mel chunks, as `config` sets them) and `AudioEncoder`
    (keyword arguments in `encoder`; its `n_mels` is the config's). A track's vector is the normalised
    mean of its chunks' vectors."""

    kind = ACOUSTIC_KIND

    def __init__(self, config: AudioConfig | None = None, encoder: dict | None = None):
        super().__init__()
        self.config = config or AudioConfig()
        defaults = {k: v for k, v in keyword_defaults(AudioEncoder).items() if k != "n_mels"}
        self.encoder_options = {**defaults, **(encoder or {})}
        self.frontend = AudioFrontend(self.config)
        self.encoder = AudioEncoder(n_mels=self.config.n_mels, **self.encoder_options)

    @property
    def embedding_dim(self) -> int:
        return self.encoder.embedding_dim

    def forward(self, mel_db: torch.Tensor) -> torch.Tensor:
        return self.encoder(mel_db)

    @torch.no_grad()
    def encode_chunks(self, tracks: list[list[torch.Tensor]], batch_size: int = 64) -> torch.Tensor:
        """Track vectors [len(tracks), D] from each track's log-mel chunks (as the mel cache holds them)."""
        was_training = self.training
        self.eval()
        try:
            return embed_tracks(self.encoder, tracks, batch_size)
        finally:
            self.train(was_training)

    def encode(
        self, audio: list[str | os.PathLike | np.ndarray], batch_size: int = 16, progress: bool = False
    ) -> np.ndarray:
        """Unit vectors [len(audio), D] of audio files (paths) or mono waveforms at the config's sample rate.
        A file that cannot be decoded raises `DecodeError` naming it."""
        out = []
        with progress_bar(len(audio), "encode", quiet=not progress, unit="track") as bar:
            for start in range(0, len(audio), batch_size):
                part = audio[start : start + batch_size]
                out.append(self.encode_chunks([self._chunks(item) for item in part], batch_size).numpy())
                bar.update(len(part))
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), np.float32)

    @torch.no_grad()
    def _chunks(self, item) -> list[torch.Tensor]:
        if isinstance(item, np.ndarray):
            mel = self.frontend.logmel(torch.from_numpy(np.asarray(item, np.float32)))
            return [c.to(torch.float16).float() for c in self.frontend.chunks(mel)]
        return chunks_as_tensors(analyse(item, self.config, descriptors=False).mel_chunks)

    def settings(self) -> dict:
        """What rebuilds this model: its kind, audio config and encoder options."""
        return {"kind": self.kind, "audio": self.config.to_dict(), "encoder": self.encoder_options}

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the settings (config.json) and the weights (weights.pt) into `folder`."""
        return save_weights(self, Path(folder), self.settings())

    @classmethod
    def load(cls, path: str | os.PathLike, what: str = "model") -> AcousticModel:
        """A model saved by `save` (a folder), or a training checkpoint of an `AudioEncoderModule` (a file);
        weights are read weights-only, so loading never runs code."""
        if Path(path).is_dir():
            settings, state = read_saved(path, what)
            model = cls(AudioConfig.from_dict(settings["audio"]), settings["encoder"])
        else:
            checkpoint = load_checkpoint(path, what)
            hparams = checkpoint["hyper_parameters"]
            audio = hparams.get("audio") or hparams["frontend"]
            encoder = {k: v for k, v in hparams["encoder"].items() if k != "n_mels"}
            model = cls(AudioConfig.from_dict(audio), encoder)
            state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
            state = {(k if k.startswith("encoder.") else f"encoder.{k}"): v for k, v in state.items()}
        model.load_state_dict(state)
        return model.eval()
