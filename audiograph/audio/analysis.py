"""One file -> decoded metadata, cached-form log-mel chunks and descriptors: the per-file work of ingest and query."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from audiograph.audio.decode import DecodedAudio, decode
from audiograph.audio.descriptors import compute_descriptors
from audiograph.audio.frontend import AudioFrontend


@dataclass
class Analysis:
    """What one decoded file yields. `audio.samples` is dropped to keep worker-to-main transfers small."""

    audio: DecodedAudio
    mel_chunks: list[np.ndarray]  # float16 [n_mels, frames], exactly as cached
    descriptors: np.ndarray | None


@torch.no_grad()
def analyse(
    path: str | os.PathLike, frontend: AudioFrontend, *, data: bytes | None = None, descriptors: bool = True
) -> Analysis:
    """Decode `path` and compute its log-mel chunks (and descriptors) from one shared STFT.

    Raises `DecodeError` for unusable files.
    """
    audio = decode(path, frontend.sample_rate, data=data)
    lm = frontend.logmel
    power = lm.power_spectrogram(torch.from_numpy(audio.samples))
    mel = lm.mel_db(power)
    # Chunks are kept in float16, the cache's precision, so that a vector computed now equals
    # one recomputed from the cache later.
    chunks = [c.numpy().astype(np.float16) for c in frontend.chunks(mel)]
    desc = None
    if descriptors:
        desc = compute_descriptors(audio.samples, power.numpy(), mel.numpy(), lm.sample_rate, lm.n_fft, lm.hop_length)
    audio.samples = np.zeros(0, np.float32)
    return Analysis(audio, chunks, desc)


def chunks_as_tensors(chunks: list[np.ndarray]) -> list[torch.Tensor]:
    """Cached float16 chunks -> float32 tensors for the encoder."""
    return [torch.from_numpy(np.asarray(c, dtype=np.float32)) for c in chunks]
