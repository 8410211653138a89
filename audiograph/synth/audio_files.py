"""Audio files: encoding to MP3, WAV, FLAC and Ogg Vorbis with tags, byte-identical from run to run."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from audiograph.synth.catalogue import Track
from audiograph.synth.render import render

_SUBTYPES = {"mp3": "MPEG_LAYER_III", "ogg": "VORBIS", "flac": "PCM_16", "wav": "PCM_16"}
_ID3_FRAMES = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "genre": "TCON",
    "tracknumber": "TRCK",
    "date": "TDRC",
}
_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def write_track(track: Track, seed: int, audio_dir: Path) -> int:
    """Render, encode and write one track (in a worker process); returns the frames written."""
    rng = np.random.default_rng([seed, 1, track.index])
    data = encode(render(track, rng), track, ogg_serial=int(rng.integers(2**32)))
    write_file(audio_dir / track.path, data)
    with sf.SoundFile(io.BytesIO(data)) as f:
        return f.frames


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path`, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def encode(samples: np.ndarray, track: Track, ogg_serial: int) -> bytes:
    """The bytes of `track`'s file holding `samples`, tags included."""
    buffer = io.BytesIO()
    subtype = "PCM_24" if track.format == "flac" and track.sample_rate == 48000 else _SUBTYPES[track.format]
    with sf.SoundFile(buffer, "w", track.sample_rate, track.channels, subtype, format=track.format.upper()) as f:
        if track.format != "mp3":
            for key, value in track.tags().items():
                setattr(f, key, value)
        f.write(samples)
    if track.format == "mp3":
        # libsndfile passes tags to LAME, which stores them as Latin-1 and so garbles any non-ASCII text.
        return _id3v2_tag(track.tags()) + buffer.getvalue()
    if track.format == "ogg":
        return _with_ogg_serial(buffer.getvalue(), ogg_serial)
    return buffer.getvalue()


def _id3v2_tag(tags: dict[str, str]) -> bytes:
    """An ID3v2.4 tag of UTF-8 text frames."""
    frames = b""
    for key, frame_id in _ID3_FRAMES.items():
        body = b"\x03" + tags[key].encode("utf-8")  # text encoding 3 is UTF-8
        frames += frame_id.encode("ascii") + _syncsafe(len(body)) + b"\x00\x00" + body
    return b"ID3\x04\x00\x00" + _syncsafe(len(frames)) + frames


def _syncsafe(n: int) -> bytes:
    return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))


def _with_ogg_serial(data: bytes, serial: int) -> bytes:
    """`data` with every page's stream serial number set to `serial` and its CRC recomputed.

    libsndfile picks a random serial number, so Ogg files would differ from run to run otherwise.
    """
    pages = bytearray(data)
    start = 0
    while start < len(pages):
        if pages[start : start + 4] != b"OggS":
            raise ValueError(f"no Ogg page at byte {start}")
        segments = pages[start + 26]
        end = start + 27 + segments + sum(pages[start + 27 : start + 27 + segments])
        pages[start + 14 : start + 18] = serial.to_bytes(4, "little")
        pages[start + 22 : start + 26] = bytes(4)  # the CRC is computed over the page with a zero CRC field
        pages[start + 22 : start + 26] = _ogg_crc(bytes(pages[start:end])).to_bytes(4, "little")
        start = end
    return bytes(pages)


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0, no final xor.

    zlib's crc32 is the bit-reflected variant: run on bit-reversed bytes, with its initial and final
    inversion undone, it gives the Ogg CRC with its bits reversed.
    """
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)
