"""The broken files and playlist entries that real collections contain, each planned as a track."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np

from audiograph.synth.audio_files import encode, write_file
from audiograph.synth.catalogue import Track
from audiograph.synth.names import TITLE_FORMS, make_name, pick
from audiograph.synth.playlists import playlist_entry

FILE_FAULTS = ("empty", "truncated", "not_audio", "too_short", "silent", "unsupported", "duplicate")
RENDERED_FAULTS = ("truncated", "too_short")  # rendered like good tracks, then broken
STREAM_URL = "http://radio.example.com:8000/live"
_TRUNCATED_SHARE = 0.35
_SHORT_SECONDS = 0.2
_NOT_FOUND_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
    "<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n"
)


def plan_faults(catalogue: list[Track], seconds: float, rng: np.random.Generator) -> dict[str, Track]:
    """A track behind each broken file or playlist entry, where such files turn up: as the next number
    of a random album, or in Unsorted/. The duplicate keeps its original's index: it is the same audio."""
    next_number: dict[tuple[str, str], int] = {}
    for track in catalogue:
        album = (track.artist.name, track.album)
        next_number[album] = max(next_number.get(album, 1), track.number + 1)
    new_index = itertools.count(len(catalogue))

    def on_album(ext: str, duration: float = seconds) -> Track:
        source = pick(rng, catalogue)
        artist, album = source.artist.name, source.album
        number = next_number[artist, album]
        next_number[artist, album] += 1
        title = make_name(rng, TITLE_FORMS)
        return replace(
            source,
            index=next(new_index),
            path=f"{artist}/{album}/{number:02d} {title}.{ext}",
            title=title,
            number=number,
            duration=duration,
            format=ext,
            sample_rate=22050,
            channels=1,
        )

    def unsorted(ext: str, duration: float = seconds, note: str = "") -> Track:
        track = on_album(ext, duration)
        return replace(track, path=f"Unsorted/{track.artist.name} - {track.title}{note}.{ext}")

    original = pick(rng, catalogue)
    return {
        "empty": on_album("mp3"),
        "truncated": on_album("mp3"),
        "not_audio": unsorted("mp3"),
        "too_short": unsorted("mp3", _SHORT_SECONDS, " (preview)"),
        "silent": on_album("mp3"),
        "unsupported": on_album("m4a"),
        "duplicate": replace(original, path=f"Unsorted/{original.artist.name} - {original.title}.{original.format}"),
        "missing_file": on_album("mp3"),
    }


def write_faults(faults: dict[str, Track], audio_dir: Path, catalogue: list[Track], rng: np.random.Generator) -> None:
    """Write the broken files; the truncated and too-short tracks are already rendered."""
    truncated = audio_dir / faults["truncated"].path
    truncated.write_bytes(truncated.read_bytes()[: int(_TRUNCATED_SHARE * truncated.stat().st_size)])
    write_file(audio_dir / faults["empty"].path, b"")
    write_file(audio_dir / faults["not_audio"].path, _NOT_FOUND_PAGE.encode("ascii"))
    silent = faults["silent"]
    silence = np.zeros((round(silent.duration * silent.sample_rate), silent.channels), dtype=np.float32)
    write_file(audio_dir / silent.path, encode(silence, silent, ogg_serial=0))
    mp4_type_box = b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A mp42isom\x00\x00\x00\x00"
    write_file(audio_dir / faults["unsupported"].path, mp4_type_box + b"\x00\x00\x10\x08mdat" + rng.bytes(4096))
    duplicate = (audio_dir / catalogue[faults["duplicate"].index].path).read_bytes()
    write_file(audio_dir / faults["duplicate"].path, duplicate)


def listed_faults(faults: dict[str, Track]) -> list[tuple[str, str]]:
    """(path, kind) of every fault, as faults.csv lists them: files relative to audio/, playlist entries as
    written in the playlist."""
    listed = [(faults[kind].path, kind) for kind in FILE_FAULTS]
    return listed + [(f"../audio/{faults['missing_file'].path}", "missing_file"), (STREAM_URL, "url")]


def broken_entries(faults: dict[str, Track]) -> list[tuple[int, str, str]]:
    """The playlist entries of the missing file and of the stream URL."""
    missing = faults["missing_file"]
    return [playlist_entry(missing, round(missing.duration * missing.sample_rate)), (-1, "Live Radio", STREAM_URL)]
