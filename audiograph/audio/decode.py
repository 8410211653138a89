"""Decode audio files to mono float32 at the model rate, with one clear reason when a file is unusable."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiograph.errors import DecodeError

SAMPLE_RATE = 22_050
# What libsndfile decodes; scanning treats these as the collection's audio files.
AUDIO_EXTENSIONS = frozenset({".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff"})
# Common audio formats libsndfile cannot read: reported as failures rather than silently ignored.
UNSUPPORTED_AUDIO_EXTENSIONS = frozenset(
    {".m4a", ".mp4", ".aac", ".alac", ".wma", ".ape", ".mpc", ".wv", ".mka", ".webm", ".amr", ".ra"}
)
TAG_NAMES = ("title", "artist", "album", "genre", "tracknumber", "date")
SILENCE_PEAK = 10 ** (-80 / 20)  # -80 dBFS
TRUNCATION_TOLERANCE = 0.9  # decoded/declared frames below this means a cut-off file


@dataclass
class DecodedAudio:
    """Mono samples at `sample_rate`, plus what the file said about itself."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    channels: int
    duration: float
    format: str
    tags: dict = field(default_factory=dict)


def content_hash(data: bytes) -> str:
    """The hash that identifies a file's content in the store."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def decode(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    *,
    data: bytes | None = None,
    min_seconds: float = 1.0,
) -> DecodedAudio:
    """Decode `path` (or its already-read bytes `data`) to mono float32 at `sample_rate`.

    Raises `DecodeError` with a one-line reason for empty, non-audio, unsupported, corrupt,
    truncated, too-short and silent files.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in UNSUPPORTED_AUDIO_EXTENSIONS:
        raise DecodeError(path, f"unsupported format '{suffix}' (readable: MP3, WAV, FLAC, OGG/Opus, AIFF)")
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DecodeError(path, e.strerror or str(e)) from None
    if not data:
        raise DecodeError(path, "empty file (0 bytes)")

    with _quiet_stderr():
        try:
            with sf.SoundFile(io.BytesIO(data)) as f:
                declared = f.frames
                source_rate, channels, fmt = f.samplerate, f.channels, f.format
                tags = {k: v for k, v in f.copy_metadata().items() if k in TAG_NAMES and v}
                samples = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, ValueError) as e:
            raise DecodeError(path, _describe_unreadable(data, e)) from None

    decoded = len(samples)
    if decoded == 0:
        raise DecodeError(path, "no audio frames")
    if 0 < declared and decoded < TRUNCATION_TOLERANCE * declared:
        raise DecodeError(
            path, f"truncated: decoded {decoded / source_rate:.1f} s of {declared / source_rate:.1f} s declared"
        )
    duration = decoded / source_rate
    if duration < min_seconds:
        raise DecodeError(path, f"too short: {duration:.2f} s (minimum {min_seconds:g} s)")
    # A matrix-vector product mixes channels several times faster than mean(axis=1) on (frames, channels).
    mono = samples @ np.full(channels, 1 / channels, np.float32) if channels > 1 else samples[:, 0]
    peak = max(float(mono.max()), -float(mono.min()))
    if peak < SILENCE_PEAK:
        level = "digital silence" if peak == 0 else f"peak {20 * np.log10(peak):.0f} dBFS"
        raise DecodeError(path, f"silent ({level})")
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ")
    return DecodedAudio(
        samples=np.ascontiguousarray(mono, dtype=np.float32),
        sample_rate=sample_rate,
        source_rate=source_rate,
        channels=channels,
        duration=duration,
        format=fmt.lower(),
        tags=tags,
    )


def _describe_unreadable(data: bytes, error: Exception) -> str:
    head = data[:512]
    if head[4:8] == b"ftyp":
        return "MP4/AAC container, which libsndfile cannot read"
    printable = sum(32 <= b < 127 or b in b"\t\r\n" for b in head)
    if printable > 0.95 * len(head):
        return "not an audio file (text content)"
    # libsndfile's own message for unknown data ("File does not exist or is not a regular
    # file") is misleading for a file that exists, so only pass on messages that say more.
    message = str(error).split(":", 1)[-1].strip().rstrip(".")
    if not message or "does not exist" in message or "not recognised" in message:
        return "unrecognised or corrupt audio data"
    return f"cannot decode ({message})"


@contextlib.contextmanager
def _quiet_stderr():
    """Silence libmpg123's direct writes to file descriptor 2 (e.g. 'Xing stream size off')."""
    fd = 2  # the C library writes here whatever Python's sys.stderr is
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(fd)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), fd)
    try:
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
