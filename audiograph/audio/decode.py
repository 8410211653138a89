"""Decode audio files to mono float32 at the model rate, with one clear reason when a file is unusable."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audiograph.errors import DecodeError

SAMPLE_RATE = 22_050
# What libsndfile decodes; scanning treats these as the collection's audio files.
AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64"}
)
# Common audio formats libsndfile cannot read: decoded through FFmpeg where PyAV is installed (the `ffmpeg`
# extra), else reported as failures rather than silently ignored.
FFMPEG_AUDIO_EXTENSIONS = frozenset(
    {".m4a", ".mp4", ".aac", ".alac", ".wma", ".ape", ".mpc", ".wv", ".mka", ".webm", ".amr", ".ra"}
)
TAG_NAMES = ("title", "artist", "album", "genre", "tracknumber", "date")
SILENCE_PEAK = 10 ** (-80 / 20)  # -80 dBFS
# +12 dBFS: decoders of valid streams stay far below this; a larger sample is a corrupt stream.
MAX_SAMPLE = 4.0
# Longer files are rejected: the analysis holds a whole track's spectrogram in memory (about 0.4 MB/s).
MAX_SECONDS = 3 * 3600
# No codec packs more frames into a byte (FLAC's densest, constant 65,535-frame blocks: about 4,700):
# a header declaring more is corrupt, and is rejected before anything is allocated for it.
MAX_FRAMES_PER_BYTE = 8192
MIN_RATE, MAX_RATE = 1_000, 384_000
MAX_CHANNELS = 64
# Decoded per read (all channels together), so that memory follows the audio, not the header. Reads
# start small and double: a stream that fails early still says how far it got.
BLOCK_SAMPLES, FIRST_BLOCK_SAMPLES = 1 << 18, 1 << 13
LOSSY_LENGTH_TOLERANCE = 0.01  # share of the declared length an intact Ogg/MP3 may decode short
_UNKNOWN_LENGTH = 2**63 - 1  # libsndfile's frame count for a stream of unknown length


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


def readable_extensions() -> frozenset[str]:
    """The file extensions `decode` reads here: libsndfile's, and FFmpeg's where PyAV is installed."""
    import importlib.util

    return AUDIO_EXTENSIONS | FFMPEG_AUDIO_EXTENSIONS if importlib.util.find_spec("av") else AUDIO_EXTENSIONS


def content_hash(data: bytes) -> str:
    """The hash that identifies a file's content in the store."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def check_waveform(samples, sample_rate: int = SAMPLE_RATE, *, what: str = "waveform", min_seconds: float = 1.0):
    """`samples` (a 1-D array or tensor: mono, at `sample_rate`) as float32, after the checks `decode` makes of a
    file's samples: a `DecodeError` naming `what` for a waveform that is not 1-D, empty, not finite or beyond
    `MAX_SAMPLE` (corrupt), too short or silent. Integer samples are scaled to [-1, 1] by their type's range."""
    if hasattr(samples, "detach"):  # a torch tensor, on any device (bfloat16 and float16 have no numpy twin)
        samples = samples.detach().cpu()
        samples = (samples.float() if samples.is_floating_point() else samples).numpy()
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise DecodeError(
            what,
            f"a waveform must be mono, one dimension of samples; got shape {samples.shape}"
            + (" (average the channels first)" if samples.ndim == 2 and min(samples.shape) <= 8 else ""),
        )
    if np.issubdtype(samples.dtype, np.unsignedinteger):  # 8-bit WAV's convention: silence at the middle value
        middle = float(np.iinfo(samples.dtype).max // 2 + 1)
        samples = (samples - middle) / middle
    elif np.issubdtype(samples.dtype, np.integer):
        samples = samples / float(-np.iinfo(samples.dtype).min)
    elif not np.issubdtype(samples.dtype, np.floating):
        raise DecodeError(what, f"samples must be numbers, not {samples.dtype}")
    samples = samples.astype(np.float32, copy=False)
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if not peak <= MAX_SAMPLE:  # also NaN
        value = "not finite" if not np.isfinite(peak) else f"up to {peak:,.1f}"
        raise DecodeError(what, f"corrupt: samples {value}")
    _check_length_and_level(what, len(samples) / sample_rate, peak, min_seconds)
    return samples


def _check_length_and_level(path, duration: float, peak: float, min_seconds: float) -> None:
    """A `DecodeError` for audio shorter than `min_seconds` or whose peak is below `SILENCE_PEAK`."""
    if duration < min_seconds:
        raise DecodeError(path, f"too short: {duration:.2f} s (minimum {min_seconds:g} s)")
    if peak < SILENCE_PEAK:
        level = "digital silence" if peak == 0 else f"peak {20 * np.log10(peak):.0f} dBFS"
        raise DecodeError(path, f"silent ({level})")


def decode(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    *,
    data: bytes | None = None,
    min_seconds: float = 1.0,
) -> DecodedAudio:
    """Decode `path` (or its already-read bytes `data`) to mono float32 at `sample_rate`.

    libsndfile reads MP3, WAV, FLAC, OGG/Opus, AIFF, AU and CAF; FFmpeg (PyAV, the `ffmpeg` extra) reads an
    MP4 under any name and `FFMPEG_AUDIO_EXTENSIONS`. The file is decoded in blocks, so memory follows the
    audio it really holds. Raises
    `DecodeError` with a one-line reason for empty, non-audio, unsupported, corrupt (an impossible
    header, or samples that are not finite or beyond `MAX_SAMPLE`), truncated (fewer frames than
    the container declares, or an incomplete last Ogg page or MP3 frame), too long, too short and
    silent files.
    """
    path = Path(path)
    data = _file_bytes(path, data)
    if path.suffix.lower() in FFMPEG_AUDIO_EXTENSIONS or data[4:8] == b"ftyp":  # an MP4 under any name
        decoded, mono, peak, source_rate, channels, fmt, tags = _decode_with_ffmpeg(path, data, sample_rate)
    else:
        decoded, mono, peak, source_rate, channels, fmt, tags = _decode_with_libsndfile(path, data, sample_rate)
    duration = decoded / source_rate
    _check_length_and_level(path, duration, peak, min_seconds)
    return DecodedAudio(
        samples=mono,
        sample_rate=sample_rate,
        source_rate=source_rate,
        channels=channels,
        duration=duration,
        format=fmt,
        tags=tags,
    )


def _decode_with_libsndfile(path: Path, data: bytes, sample_rate: int):
    """(frames decoded, mono samples at `sample_rate`, their peak, source rate, channels, format, tags) of the
    formats libsndfile reads, checked against what their containers declare."""
    with _quiet_stderr():
        try:
            with sf.SoundFile(io.BytesIO(data)) as f:
                declared, source_rate, channels, fmt = f.frames, f.samplerate, f.channels, f.format
                _check_header(path, len(data), declared, source_rate, channels)
                tags = {k: v for k, v in f.copy_metadata().items() if k in TAG_NAMES and v}
                decoded, mono, peak, error = _read_mono(path, _libsndfile_blocks(f), channels, source_rate, sample_rate)
        except (sf.LibsndfileError, RuntimeError, ValueError, OverflowError) as e:
            raise DecodeError(path, _describe_unreadable(data, e)) from None
    _check_complete(path, data, fmt, declared, source_rate, decoded, error)
    return decoded, mono, peak, source_rate, channels, fmt.lower(), tags


def _decode_with_ffmpeg(path: Path, data: bytes, sample_rate: int):
    """`_decode_with_libsndfile` for the formats only FFmpeg reads (M4A with AAC or ALAC, WMA, ...), through
    PyAV; without it, a one-line reason that says how to get it."""
    try:
        import av
    except ImportError:
        what = path.suffix.lower() or "MP4"
        raise DecodeError(
            path,
            f"unsupported format '{what}' (pip install 'audiograph[ffmpeg]' reads it; readable without:"
            f" MP3, WAV, FLAC, OGG/Opus, AIFF, AU, CAF)",
        ) from None
    try:
        with av.open(io.BytesIO(data), metadata_errors="ignore") as container:
            stream = next(iter(container.streams.audio), None)
            if stream is None:
                raise DecodeError(path, "no audio stream")
            # A stream whose codec FFmpeg could not open (a damaged header) has no rate or channels at all.
            source_rate, channels = getattr(stream, "rate", 0) or 0, getattr(stream, "channels", 0) or 0
            declared = None
            if stream.duration and stream.time_base:
                declared = round(float(stream.duration * stream.time_base) * source_rate)
            _check_header(path, len(data), declared or _UNKNOWN_LENGTH, source_rate, channels)
            metadata = {k.lower(): v for k, v in {**container.metadata, **stream.metadata}.items()}
            metadata["tracknumber"] = metadata.get("track")
            tags = {k: metadata[k] for k in TAG_NAMES if metadata.get(k)}
            packets = Counter()
            blocks = _ffmpeg_blocks(av, container, stream, channels, packets)
            decoded, mono, peak, error = _read_mono(path, blocks, channels, source_rate, sample_rate)
            fmt = stream.codec_context.name
    except av.error.FFmpegError as e:
        raise DecodeError(path, f"unrecognised or corrupt audio data ({_ffmpeg_message(e)})") from None
    seconds = f"{decoded / source_rate:.1f} s"
    stop = f" ({_ffmpeg_message(error)})" if error else ""
    if decoded == 0:
        raise DecodeError(path, f"no audio frames{stop}")
    if declared and decoded < declared * (1 - LOSSY_LENGTH_TOLERANCE):
        of = f"{seconds} of {declared / source_rate:.1f} s declared"
        # Damaged packets explain a shortfall of about their share of the audio; a cut file misses far more.
        explained = 2 * packets["damaged"] * decoded / max(packets["decoded"], 1)
        if packets["damaged"] and declared - decoded <= explained:
            raise DecodeError(path, f"corrupt: {packets['damaged']} damaged audio frames skipped, decoded {of}{stop}")
        raise DecodeError(path, f"truncated: decoded {of}{stop}")
    if error:
        raise DecodeError(path, f"corrupt: decoding stopped after {seconds}{stop}")
    return decoded, mono, peak, source_rate, channels, fmt, tags


def _ffmpeg_message(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


class _DecoderStopped(Exception):
    """A decoder error part-way through a stream: what decoded before it still counts."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _libsndfile_blocks(f: sf.SoundFile):
    """[frames, channels] float32 blocks of `f`, read into one reused array: nothing is sized by the header.
    Reads start small and double, so that a stream that fails early still says how far it got."""
    block = np.empty((max(1, BLOCK_SAMPLES // f.channels), f.channels), np.float32)
    size = max(1, FIRST_BLOCK_SAMPLES // f.channels)
    if f.frames >= _UNKNOWN_LENGTH:
        # A FLAC stream of unknown length (written to a pipe) ends in a read error, and that read's frames are
        # lost: reads kept at the first, small size lose at most FIRST_BLOCK_SAMPLES samples (0.1 s of stereo).
        block = block[:size]
    while True:
        try:
            samples = f.read(out=block[:size])
        except (sf.LibsndfileError, RuntimeError) as e:
            raise _DecoderStopped(e) from None
        size = min(2 * size, len(block))
        if not len(samples):
            return
        yield samples


def _ffmpeg_blocks(av, container, stream, channels: int, packets: Counter):
    """[frames, channels] float32 blocks of an FFmpeg audio stream, one decoded frame each. A packet the codec
    rejects (a damaged frame) is skipped, as FFmpeg's own tools do; `packets` counts the "decoded" and
    "damaged" ones. An error of the container stops the stream."""
    to_float = av.AudioResampler(format="flt", layout=stream.layout, rate=stream.rate)
    try:
        for packet in container.demux(stream):
            try:
                # Converted here, so that a frame whose layout or rate a damaged header changed counts as damaged.
                blocks = [
                    c.to_ndarray().reshape(-1, channels)
                    for f in stream.codec_context.decode(packet)
                    for c in to_float.resample(f)
                ]
            except (av.error.InvalidDataError, ValueError):
                packets["damaged"] += 1
                continue
            packets["decoded"] += 1
            yield from blocks
    except av.error.FFmpegError as e:
        raise _DecoderStopped(e) from None


def _file_bytes(path: Path, data: bytes | None) -> bytes:
    """The file's bytes (`data` when already read), rejecting empty files."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DecodeError(path, e.strerror or str(e)) from None
    if not data:
        raise DecodeError(path, "empty file (0 bytes)")
    return data


def _check_complete(
    path: Path, data: bytes, fmt: str, declared: int, source_rate: int, decoded: int, error: Exception | None
) -> None:
    """Reject a stream that decoded short of what its container declares, or that stopped on a decoder error."""
    expected, structure = _expected_frames(data, fmt, declared, source_rate)
    seconds = f"{decoded / source_rate:.1f} s"
    stop = f" ({_libsndfile_message(error) or 'decoder error'})" if error else ""
    # Lossy decoders may stop a few codec frames short of the declared length of an intact file (real
    # Ogg Vorbis/Opus soundtracks: up to 0.3 %); a cut file misses far more.
    shortfall_allowed = LOSSY_LENGTH_TOLERANCE * expected if expected and fmt in ("OGG", "MP3") else 0
    if decoded and expected is not None and decoded < expected - shortfall_allowed:
        raise DecodeError(path, f"truncated: decoded {seconds} of {expected / source_rate:.1f} s declared{stop}")
    if structure:
        raise DecodeError(path, f"truncated: {structure} after {seconds} of audio")
    if decoded == 0:
        raise DecodeError(path, _describe_unreadable(data, error) if error else "no audio frames")
    # libsndfile ends a FLAC stream whose header leaves its length unknown (an encoder writing to a pipe cannot go
    # back to fill it in) with a read error, whole or cut: `_expected_frames` has told the two apart.
    if error and not (fmt == "FLAC" and declared >= _UNKNOWN_LENGTH):
        raise DecodeError(path, f"corrupt: decoding stopped after {seconds}{stop}")


def _check_header(path: Path, size: int, declared: int, rate: int, channels: int) -> None:
    """Reject a header whose rate, channels or length cannot be true, before decoding anything."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise DecodeError(path, f"corrupt header: sample rate {rate} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise DecodeError(path, f"corrupt header: {channels} channels")
    if declared == _UNKNOWN_LENGTH:
        return
    if declared > MAX_FRAMES_PER_BYTE * size:
        raise DecodeError(
            path, f"corrupt header: declares {_duration_text(declared / rate)} of audio in {size:,} bytes"
        )
    if declared > MAX_SECONDS * rate:
        limit = _duration_text(MAX_SECONDS)
        raise DecodeError(path, f"too long: {_duration_text(declared / rate)} declared (at most {limit})")


def _read_mono(path: Path, blocks, channels: int, rate: int, sample_rate: int):
    """Mix `blocks` ([frames, channels] float32 arrays at `rate`) to mono and resample them to `sample_rate` as
    they come.

    Returns (frames decoded, mono samples at `sample_rate`, peak of the mono signal, the error that
    stopped decoding early or None).
    """
    mix = np.full(channels, 1 / channels, np.float32)
    resampler = None
    if rate != sample_rate:
        resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
    parts, decoded, peak, error = [], 0, 0.0, None
    while True:
        try:
            samples = next(blocks, None)
        except _DecoderStopped as stopped:
            error = stopped.error
            break
        if samples is None:
            break
        decoded += len(samples)
        high, low = float(samples.max()), float(samples.min())
        if not (high <= MAX_SAMPLE and low >= -MAX_SAMPLE):  # also catches NaN
            value = "not finite" if not (np.isfinite(high) and np.isfinite(low)) else f"up to {max(high, -low):,.1f}"
            raise DecodeError(path, f"corrupt: decoded samples {value} (valid audio stays within ±1)")
        if decoded > MAX_SECONDS * rate:
            raise DecodeError(path, f"too long: more than {_duration_text(MAX_SECONDS)} of audio")
        if channels > 1:
            # A matrix-vector product mixes channels several times faster than mean(axis=1) on (frames, channels).
            mono = samples @ mix
            high, low = float(mono.max()), float(mono.min())
        else:
            mono = samples[:, 0].copy()
        peak = max(peak, high, -low)
        parts.append(resampler.resample_chunk(mono) if resampler else mono)
    if resampler:
        parts.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    mono = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return decoded, np.ascontiguousarray(mono, dtype=np.float32), peak, error


def _expected_frames(data: bytes, fmt: str, declared: int, rate: int) -> tuple[int | None, str | None]:
    """(the frames the container says it holds, or None when it does not say reliably; a sentence
    naming a structural sign of truncation, or None)."""
    known = declared if 0 < declared < _UNKNOWN_LENGTH else None
    if fmt in ("WAV", "WAVEX", "RF64"):
        return _riff_frames(data), None
    if fmt == "W64":
        return _w64_frames(data), None
    if fmt == "AU":
        return _au_frames(data), None
    if fmt == "AIFF":
        return _aiff_frames(data), None
    if fmt == "OGG":
        return _ogg_check(data, rate)
    if fmt == "MP3":
        return _mp3_check(data, known)
    if fmt == "FLAC" and known is None and not _flac_ends_whole(data):
        return None, "its last FLAC frame is incomplete"
    return known, None


# -- container headers: what a file declares, read independently of the decoder ------------------


def _riff_frames(data: bytes) -> int | None:
    """Frames the 'data' chunk of a PCM or float WAV (or RF64, whose 'ds64' chunk holds the 64-bit size)
    declares (None: other codings or unknown size)."""
    if data[:4] not in (b"RIFF", b"RIFX", b"RF64", b"BW64") or data[8:12] != b"WAVE":
        return None
    order = "big" if data[:4] == b"RIFX" else "little"
    pos, coding, block_align, size64 = 12, None, 0, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], order)
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"ds64" and len(body) >= 16:
            size64 = int.from_bytes(body[8:16], order)
        elif chunk == b"fmt " and len(body) >= 16:
            coding, block_align = _wave_format(body, order)
        elif chunk == b"data":
            if size == 0xFFFFFFFF and size64 is not None:
                size = size64
            if coding not in (1, 3) or not block_align or size in (0, 0xFFFFFFFF):
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _wave_format(body: bytes, order: str) -> tuple[int, int]:
    """(coding, block align) of a WAVE 'fmt ' chunk's body."""
    coding, block_align = int.from_bytes(body[0:2], order), int.from_bytes(body[12:14], order)
    if coding == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the coding opens the sub-format GUID
        coding = int.from_bytes(body[24:26], order)
    return coding, block_align


def _w64_frames(data: bytes) -> int | None:
    """Frames the 'data' chunk of a PCM or float Sony Wave64 file declares. Its chunks are named by GUIDs
    that begin with the RIFF names, and sized in 64 bits, header included, padded to 8 bytes."""
    if data[:4] != b"riff" or data[24:28] != b"wave":
        return None
    pos, coding, block_align = 40, None, 0
    while pos + 24 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 16 : pos + 24], "little")
        if size < 24:
            return None
        if chunk == b"fmt " and size >= 40:
            coding, block_align = _wave_format(data[pos + 24 : pos + size], "little")
        elif chunk == b"data":
            return (size - 24) // block_align if coding in (1, 3) and block_align else None
        pos += size + (-size % 8)
    return None


# Bytes per sample of the AU codings libsndfile reads (G.72x ADPCM is left out: not a whole byte).
_AU_SAMPLE_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}


def _au_frames(data: bytes) -> int | None:
    """Frames a Sun/NeXT AU header declares (big-endian '.snd', or little-endian 'dns.'); None for an
    unknown size or coding."""
    order = {b".snd": "big", b"dns.": "little"}.get(data[:4])
    if order is None or len(data) < 24:
        return None
    size, coding, channels = (int.from_bytes(data[k : k + 4], order) for k in (8, 12, 20))
    width = _AU_SAMPLE_BYTES.get(coding)
    if width is None or not channels or size == 0xFFFFFFFF:
        return None
    return size // (width * channels)


def _aiff_frames(data: bytes) -> int | None:
    """numSampleFrames of the 'COMM' chunk of an AIFF or AIFF-C file."""
    if data[:4] != b"FORM" or data[8:12] not in (b"AIFF", b"AIFC"):
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        if chunk == b"COMM" and size >= 6 and pos + 14 <= len(data):
            return int.from_bytes(data[pos + 10 : pos + 14], "big")
        pos += 8 + size + (size & 1)
    return None


# The longest stretch searched back from the end for the last FLAC frame's start: more than any frame of a block of
# 4,096 samples in 8 channels of 24 bits (each frame is at most its uncompressed size plus a few bytes).
_FLAC_TAIL_BYTES = 1 << 17


# Frame headers tried from the end: the last frame's, and a few before it in case a frame's data happens to hold
# the bytes of a valid header (1 in 256 sync codes pass the header's CRC-8).
_FLAC_HEADERS_TRIED = 3


def _flac_ends_whole(data: bytes) -> bool:
    """Whether a FLAC stream ends with a whole frame: from the start of its last frame (a sync code whose header
    passes its CRC-8) to the last two bytes, the frame's CRC-16 is the one those two hold. The length of a stream
    written to a pipe is unknown, so this is how a cut one shows (libsndfile ends both alike)."""
    tail_start = max(4, len(data) - _FLAC_TAIL_BYTES)
    stored = int.from_bytes(data[-2:], "big")
    position, tried = len(data) - 2, 0
    while tried < _FLAC_HEADERS_TRIED and (position := data.rfind(b"\xff", tail_start, position)) != -1:
        if data[position + 1] in (0xF8, 0xF9) and _flac_header_ok(data, position):
            if _flac_crc16(data[position:-2]) == stored:
                return True
            tried += 1
    return False


def _flac_header_ok(data: bytes, start: int) -> bool:
    """Whether a FLAC frame header starts at `start`: its fixed fields are valid and its CRC-8 holds."""
    if start + 5 > len(data):
        return False
    block_size, rate = data[start + 2] >> 4, data[start + 2] & 0x0F
    if block_size == 0 or rate == 0x0F or data[start + 3] & 0x01:
        return False
    first = data[start + 4]  # the frame or sample number, coded as UTF-8 is (1 to 7 bytes)
    length = 1 if first < 0x80 else next((n for n in range(2, 8) if first >> (7 - n) == ((1 << n) - 1) << 1), 0)
    if length == 0:
        return False
    end = start + 4 + length + {6: 1, 7: 2}.get(block_size, 0) + {12: 1, 13: 2, 14: 2}.get(rate, 0)
    if end >= len(data):
        return False
    crc = 0
    for byte in data[start:end]:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07 if crc & 0x80 else crc << 1) & 0xFF
    return crc == data[end]


@functools.lru_cache(maxsize=1)
def _flac_crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


def _flac_crc16(data: bytes) -> int:
    """FLAC's frame CRC-16 (polynomial x^16 + x^15 + x^2 + 1, initial 0, not reflected)."""
    table, crc = _flac_crc16_table(), 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def _ogg_check(data: bytes, rate: int) -> tuple[int | None, str | None]:
    """Walk the Ogg pages: the final page must be complete and end every logical stream, and the
    audio stream's last granule position says how many frames it holds.

    A file cut at a page boundary decodes cleanly to its last whole page, which is why its
    libsndfile length agrees with what decodes: only the missing end-of-stream flag shows the cut.
    """
    pos, open_streams, ended = 0, set(), set()
    codec, serial, preskip, granule, audio_streams = None, None, 0, None, 0
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS":
            found = data.find(b"OggS", pos + 1)  # resynchronise, as libogg does, past damaged bytes
            if found < 0:
                break
            pos = found
            continue
        if pos + 27 > len(data):
            return None, "incomplete last Ogg page"
        flags, segments = data[pos + 5], data[pos + 26]
        page_serial = int.from_bytes(data[pos + 14 : pos + 18], "little")
        body = pos + 27 + segments
        if body > len(data):
            return None, "incomplete last Ogg page"
        end = body + sum(data[pos + 27 : body])
        if end > len(data):
            return None, "incomplete last Ogg page"
        page_granule = int.from_bytes(data[pos + 6 : pos + 14], "little", signed=True)
        if flags & 0x02:
            open_streams.add(page_serial)
            packet = data[body : body + 19]
            kind = "vorbis" if packet[:7] == b"\x01vorbis" else "opus" if packet[:8] == b"OpusHead" else None
            if kind:
                audio_streams += 1
                codec, serial = kind, page_serial
                preskip = int.from_bytes(packet[10:12], "little") if kind == "opus" else 0
        if flags & 0x04:
            ended.add(page_serial)
        if page_serial == serial and page_granule >= 0:
            granule = page_granule
        pos = end
    if open_streams - ended:
        return None, "no end-of-stream page"
    if audio_streams != 1 or granule is None:
        return None, None  # chained or unknown streams: the page structure was all there was to check
    frames = granule if codec == "vorbis" else round(max(granule - preskip, 0) * rate / 48_000)
    return frames, None


_MP3_BITRATES = {  # (MPEG-1, layer) -> kbit/s for bitrate indices 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_BITRATES[False, 3] = _MP3_BITRATES[False, 2]
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


@functools.lru_cache(maxsize=1024)  # a file repeats a handful of headers over hundreds of frames
def _mp3_frame_size(header: bytes) -> int | None:
    """Bytes of the MPEG audio frame this 4-byte header opens, or None if it is not a valid header."""
    h = int.from_bytes(header, "big")
    version, layer_bits, bitrate, rate_index = (h >> 19) & 3, (h >> 17) & 3, (h >> 12) & 15, (h >> 10) & 3
    if (h >> 21) != 0x7FF or version == 1 or layer_bits == 0 or bitrate in (0, 15) or rate_index == 3:
        return None  # bitrate index 0 is free format, whose frame size no header states
    layer, mpeg1, padding = 4 - layer_bits, version == 3, (h >> 9) & 1
    bits_per_second, rate = _MP3_BITRATES[mpeg1, layer][bitrate - 1] * 1000, _MP3_RATES[version][rate_index]
    if layer == 1:
        return (12 * bits_per_second // rate + padding) * 4
    return (144 if mpeg1 or layer == 2 else 72) * bits_per_second // rate + padding


def _mp3_check(data: bytes, declared: int | None) -> tuple[int | None, str | None]:
    """Walk the MPEG frames from the first to the last: a last frame that runs past the end of the
    file is a cut. The declared length counts only when a Xing, Info or VBRI header states it;
    otherwise it is the decoder's estimate from the bitrate."""
    pos = 0
    while data[pos : pos + 3] == b"ID3" and pos + 10 <= len(data):
        size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[pos + 6 : pos + 10]))
        pos += 10 + size + (10 if data[pos + 5] & 0x10 else 0)
    end = len(data)
    if data[end - 128 : end - 125] == b"TAG":  # ID3v1
        end -= 128
    first = None
    for start in range(pos, min(pos + 65_536, end - 4)):  # the first header that a second one follows
        size = _mp3_frame_size(data[start : start + 4])
        if size and (start + size + 4 > end or _mp3_frame_size(data[start + size : start + size + 4])):
            first = start
            break
    if first is None:
        return None, None
    size = _mp3_frame_size(data[first : first + 4])
    counted = declared if any(tag in data[first : first + size] for tag in (b"Xing", b"Info", b"VBRI")) else None
    pos = first
    while pos < end:
        size = _mp3_frame_size(data[pos : pos + 4]) if pos + 4 <= end else None
        if size is None:
            # Trailing tags (APE, Lyrics3) or damage: the walk cannot say where audio ends. Fewer
            # than 4 bytes that open a header are a header cut short.
            cut = end - pos < 4 and data[pos] == 0xFF
            return counted, "incomplete last MPEG frame" if cut else None
        if pos + size > end:
            return counted, "incomplete last MPEG frame"
        pos += size
    return counted, None


def _duration_text(seconds: float) -> str:
    if seconds >= 48 * 3600:
        return f"{seconds / 86400:,.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _libsndfile_message(error: Exception) -> str:
    """libsndfile's reason without the "Error opening ...:" prefix soundfile adds."""
    return str(error).split(":", 1)[-1].strip().rstrip(".")


def _describe_unreadable(data: bytes, error: Exception) -> str:
    head = data[:512]
    if head[:4] == b"OggS":
        _, structure = _ogg_check(data, 48_000)
        if structure:
            return f"truncated: {structure}"
    printable = sum(32 <= b < 127 or b in b"\t\r\n" for b in head)
    if printable > 0.95 * len(head):
        return "not an audio file (text content)"
    # libsndfile's own message for unknown data ("File does not exist or is not a regular
    # file") is misleading for a file that exists, so only pass on messages that say more.
    message = _libsndfile_message(error)
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
