"""`AudioConfig`: every setting that turns audio into encoder inputs, in one frozen object that the front-end,
the encoder and the training data all take, and that is saved with each model."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

from audiograph.audio.decode import SAMPLE_RATE
from audiograph.errors import ConfigError


@dataclass(frozen=True)
class AudioConfig:
    """Sample rate, STFT, mel bands and the chunking of tracks into fixed-length encoder inputs.

    A track is decoded at `sample_rate`, turned into a log-mel spectrogram (`n_fft`, `hop_length`,
    `n_mels`, floored `top_db` below its peak) and cut into at most `max_chunks` chunks of
    `chunk_seconds` (None: no cap) spread over its length.
    """

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 2048
    hop_length: int = 1024
    n_mels: int = 128
    top_db: float | None = 80.0
    chunk_seconds: float = 30.0
    max_chunks: int | None = 4

    def __post_init__(self):
        if not self._valid():
            raise ConfigError(f"invalid audio settings: {self.to_dict()}")

    def _valid(self) -> bool:
        """Whole numbers and durations in the ranges audio analysis has (a model folder from elsewhere may say
        anything: 5 million mel bands would allocate tens of gigabytes before any check on its weights)."""

        def whole(value, low, high):
            return isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high

        def positive(value, high):
            return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value <= high

        if not (whole(self.n_fft, 16, 16_384) and whole(self.sample_rate, 1_000, 384_000)):
            return False
        return (
            whole(self.hop_length, 1, self.n_fft)
            and whole(self.n_mels, 1, min(512, self.n_fft // 2 + 1))
            and (self.top_db is None or positive(self.top_db, 1_000))
            and positive(self.chunk_seconds, 3_600)
            and (self.max_chunks is None or whole(self.max_chunks, 1, 10_000))
        )

    @classmethod
    def from_dict(cls, settings: dict | None) -> AudioConfig:
        """Rebuild from `to_dict()` output (as saved with a model); unknown keys are an error."""
        settings = dict(settings or {})
        unknown = set(settings) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown audio setting(s): {', '.join(sorted(unknown))}")
        return cls(**settings)

    def to_dict(self) -> dict:
        """Every setting, as JSON-able values."""
        return asdict(self)

    def signature(self) -> str:
        """A stable string naming these settings; cached chunks are reused only under the same one."""
        return ",".join(f"{k}={v}" for k, v in self.to_dict().items())

    def frames_for(self, seconds: float) -> int:
        """How many spectrogram frames cover `seconds` of audio."""
        return max(1, round(seconds * self.sample_rate / self.hop_length))

    @property
    def chunk_frames(self) -> int:
        """Frames per chunk."""
        return self.frames_for(self.chunk_seconds)


def chunk_spans(n_frames: int, chunk_frames: int, max_chunks: int | None) -> list[tuple[int, int]]:
    """The (start, stop) frame spans of the chunks that represent a track.

    A track shorter than one chunk is one chunk of its own length. A longer one is covered by
    ceil(n_frames / chunk_frames) chunks, capped at `max_chunks`, spread evenly from start to end
    (so a capped long track is sampled across its whole length, not just its opening).
    """
    if n_frames <= chunk_frames:
        return [(0, n_frames)]
    count = math.ceil(n_frames / chunk_frames)
    if max_chunks is not None:
        count = min(count, max_chunks)
    if count == 1:
        start = (n_frames - chunk_frames) // 2
        return [(start, start + chunk_frames)]
    last_start = n_frames - chunk_frames
    starts = [round(i * last_start / (count - 1)) for i in range(count)]
    return [(s, s + chunk_frames) for s in starts]
