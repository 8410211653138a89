"""The log-mel front-end (`torch.stft` + the Slaney mel filterbank) and the fixed-length chunking of tracks."""

from __future__ import annotations

import torch
from torch import nn

from audiograph.audio.config import AudioConfig, chunk_spans  # noqa: F401 (chunk_spans: re-exported)
from audiograph.audio.decode import SAMPLE_RATE
from audiograph.audio.spectral import mel_filterbank


class LogMel(nn.Module):
    """Waveform [..., samples] -> log-mel power in dB [..., n_mels, frames].

    Equal to `librosa.power_to_db(librosa.feature.melspectrogram(...), top_db=top_db)` with the
    same settings (centred frames, zero padding, periodic Hann window, Slaney mel scale). As in
    librosa, `top_db` floors each input at its own peak minus `top_db`: for a whole track that keeps
    the model out of the range where float32 FFT rounding (about 1e-7 of a frame's peak) dominates.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 2048,
        hop_length: int = 1024,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: float | None = None,
        amin: float = 1e-10,
        top_db: float | None = 80.0,
    ):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.amin, self.top_db = amin, top_db
        filters = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
        # Fixed, not weights: made on the CPU even where a model is shaped on the meta device (`build_and_load`),
        # whose hann_window takes a second to set up.
        self.register_buffer(
            "mel_filters", torch.tensor(filters, device="cpu"), persistent=False
        )  # a copy of the cache
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64, device="cpu")
        self.register_buffer("window", window, persistent=False)

    def power_spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """|STFT|^2 as [..., n_fft // 2 + 1, frames]."""
        shape = waveform.shape
        spec = torch.stft(
            waveform.reshape(-1, shape[-1]),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window.to(waveform.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        return power.reshape(*shape[:-1], *power.shape[-2:])

    def mel_db(self, power: torch.Tensor) -> torch.Tensor:
        """Power spectrogram -> log-mel in dB."""
        mel = torch.matmul(self.mel_filters.to(power.dtype), power)
        db = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
        if self.top_db is not None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
            db = torch.maximum(db, peak - self.top_db)
        return db

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.mel_db(self.power_spectrogram(waveform))


class AudioFrontend(nn.Module):
    """The log-mel front-end plus the chunking that turns a track into fixed-length encoder inputs, as an
    `AudioConfig` sets them.

    A track's acoustic vector is the normalised mean of its chunk vectors; the log-mel cache
    holds exactly these chunks, so a vector can be recomputed from the cache without decoding.
    """

    def __init__(self, config: AudioConfig | None = None):
        super().__init__()
        self.config = config or AudioConfig()
        c = self.config
        self.logmel = LogMel(c.sample_rate, c.n_fft, c.hop_length, c.n_mels, top_db=c.top_db)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def chunks(self, mel_db: torch.Tensor) -> list[torch.Tensor]:
        """The chunks [n_mels, frames] that represent a track's log-mel [n_mels, frames]."""
        spans = chunk_spans(mel_db.shape[-1], self.config.chunk_frames, self.config.max_chunks)
        return [mel_db[..., a:b] for a, b in spans]
