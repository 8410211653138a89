"""One file -> decoded metadata, cached-form log-mel chunks and descriptors: the per-file work of ingest and query.

Plain numpy (no torch, no librosa import), so that embedding one file for a query starts fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from audiograph.audio.config import AudioConfig, chunk_spans
from audiograph.audio.decode import DecodedAudio, decode
from audiograph.audio.descriptors import compute_descriptors
from audiograph.audio.spectral import mel_power, power_spectrogram, power_to_db


@dataclass
class Analysis:
    """What one decoded file yields. `audio.samples` is dropped to keep worker-to-main transfers small."""

    audio: DecodedAudio | None  # None for a waveform given as samples
    mel_chunks: list[np.ndarray]  # float16 [n_mels, frames], exactly as cached
    descriptors: np.ndarray | None


def preload() -> None:
    """Import scipy's FFT, which `analyse` uses (`spectral.fft_functions`), before forking workers, so that they
    inherit it instead of each importing it again."""
    import scipy.fft  # noqa: F401


def analyse(
    path: str | os.PathLike, config: AudioConfig, *, data: bytes | None = None, descriptors: bool = True
) -> Analysis:
    """Decode `path` and compute its log-mel chunks (and descriptors) from one shared STFT, as `config` sets them.

    Raises `DecodeError` for unusable files.
    """
    audio = decode(path, config.sample_rate, data=data)
    analysis = analyse_samples(audio.samples, config, descriptors=descriptors)
    audio.samples = np.zeros(0, np.float32)
    analysis.audio = audio
    return analysis


def analyse_samples(samples: np.ndarray, config: AudioConfig, *, descriptors: bool = True) -> Analysis:
    """`analyse` of a mono waveform at the config's sample rate (its `audio` is None)."""
    power = power_spectrogram(samples, config.n_fft, config.hop_length)
    mel = power_to_db(mel_power(power, config.sample_rate, config.n_fft, config.n_mels), top_db=config.top_db)
    # Chunks are kept in float16, the cache's precision, so that a vector computed now equals
    # one recomputed from the cache later.
    spans = chunk_spans(mel.shape[1], config.chunk_frames, config.max_chunks)
    chunks = [mel[:, a:b].astype(np.float16) for a, b in spans]
    desc = None
    if descriptors:
        desc = compute_descriptors(samples, power, mel, config.sample_rate, config.n_fft, config.hop_length)
    return Analysis(None, chunks, desc)


def chunks_as_tensors(chunks: list) -> list:
    """Cached float16 chunks (arrays, or tensors already) -> float32 tensors for the encoder."""
    import torch

    return [c.float() if isinstance(c, torch.Tensor) else torch.from_numpy(np.asarray(c, np.float32)) for c in chunks]
