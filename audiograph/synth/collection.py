"""`synthesize`: plan the catalogue, render it in worker processes, break some files, write playlists and
ground truth."""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiograph.errors import ConfigError
from audiograph.runtime import progress_bar
from audiograph.synth.audio_files import write_track
from audiograph.synth.catalogue import Track, plan_catalogue
from audiograph.synth.faults import RENDERED_FAULTS, broken_entries, listed_faults, plan_faults, write_faults
from audiograph.synth.playlists import Playlist, cover, plan_playlists, playlist_entry, write_playlist
from audiograph.synth.style_space import draw_styles

TRACK_COLUMNS = (
    "path",
    "title",
    "artist",
    "album",
    "genre",
    "energy",
    "valence",
    "popularity",
    "duration",
    "sample_rate",
    "channels",
    "format",
)
FAULT_COLUMNS = ("path", "kind")
_MARKER = ".audiograph-synth"
_OUTPUTS = ("audio", "playlists", "tracks.csv", "faults.csv")


@dataclass
class SynthResult:
    """What `synthesize` wrote: counts of good tracks and playlists, and every fault as (path, kind).

    `tracks` counts the tracks asked for; with faults, tracks.csv also lists the duplicate copy, a fault.
    """

    out_dir: Path
    tracks: int
    playlists: int
    faults: list[tuple[str, str]] = field(default_factory=list)
    unplaylisted: int = 0  # good tracks in no playlist (see the package docstring on coverage)


def synthesize(
    out_dir,
    *,
    tracks: int = 240,
    genres: int = 6,
    playlists: int = 120,
    seconds: float = 20.0,
    seed: int = 0,
    with_faults: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> SynthResult:
    """Write a music collection with ground truth to `out_dir` (layout and model: the package docstring).

    The same arguments give byte-identical files for any number of `workers` (processes, default one per
    CPU core). An earlier synth output in `out_dir` is replaced; any other non-empty folder is refused.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    _check_arguments(tracks, genres, playlists, seconds, seed, workers, with_faults)
    out_dir = Path(out_dir)
    settings = {
        "tracks": tracks,
        "genres": genres,
        "playlists": playlists,
        "seconds": seconds,
        "seed": seed,
        "with_faults": with_faults,
    }
    _prepare(out_dir, settings)
    audio_dir = out_dir / "audio"

    plan_rng, playlist_rng, fault_rng = (np.random.default_rng([seed, stream]) for stream in (0, 2, 3))
    catalogue = plan_catalogue(draw_styles(genres, plan_rng), tracks, seconds, plan_rng)
    faults = plan_faults(catalogue, seconds, fault_rng) if with_faults else {}
    jobs = catalogue + [faults[kind] for kind in RENDERED_FAULTS if with_faults]
    frames = _render_all(jobs, seed, audio_dir, workers, progress)
    faulty = []
    if with_faults:
        write_faults(faults, audio_dir, catalogue, fault_rng)
        faulty = listed_faults(faults)

    planned = plan_playlists(catalogue, playlists, playlist_rng)
    unplaylisted = cover(planned, len(catalogue), playlist_rng)
    _write_playlists(out_dir / "playlists", planned, catalogue, frames, faults, fault_rng)
    _write_ground_truth(out_dir, catalogue, faults, frames, faulty)
    return SynthResult(out_dir, len(catalogue), len(planned), faulty, unplaylisted)


def _check_arguments(tracks, genres, playlists, seconds, seed, workers, with_faults) -> None:
    problems = [
        (genres < 1, f"genres must be at least 1 (got {genres})"),
        (tracks < genres, f"tracks must be at least genres, one track per genre (got {tracks} < {genres})"),
        (playlists < 0, f"playlists must not be negative (got {playlists})"),
        (not seconds > 0 or not math.isfinite(seconds), f"seconds must be a positive number (got {seconds})"),
        (seed < 0, f"seed must not be negative (got {seed})"),
        (workers < 1, f"workers must be at least 1 (got {workers})"),
        (with_faults and playlists < 1, "with_faults needs at least one playlist, for its broken entries"),
    ]
    for failed, message in problems:
        if failed:
            raise ConfigError(message)


def _prepare(out_dir: Path, settings: dict) -> None:
    """Create `out_dir`, or clear an earlier synth output in it; refuse a folder holding anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / _MARKER).is_file():
            raise ConfigError(f"{out_dir} is not empty and holds no earlier synth output; choose an empty folder")
        for name in _OUTPUTS:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / _MARKER).write_text(json.dumps(settings, sort_keys=True) + "\n", encoding="utf-8")


def _render_all(jobs: list[Track], seed: int, audio_dir: Path, workers: int, progress: bool) -> dict[int, int]:
    """Render and write every track, in `workers` processes; returns the frames written per track index."""
    write = functools.partial(write_track, seed=seed, audio_dir=audio_dir)
    # Costliest first, so that no long job starts last and runs alone.
    jobs = sorted(jobs, key=_cost, reverse=True)
    workers = min(workers, len(jobs))
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    frames = {}
    with pool or nullcontext(), progress_bar(len(jobs), "synth", quiet=not progress, unit="track") as bar:
        for track, count in zip(jobs, pool.map(write, jobs) if pool else map(write, jobs), strict=True):
            frames[track.index] = count
            bar.update()
    return frames


def _cost(track: Track) -> float:
    """Roughly proportional to the time a track takes: samples, and LAME is the slowest encoder."""
    return track.duration * track.sample_rate * track.channels * (3 if track.format == "mp3" else 1)


def _write_playlists(
    folder: Path,
    planned: list[Playlist],
    catalogue: list[Track],
    frames: dict[int, int],
    faults: dict[str, Track],
    fault_rng: np.random.Generator,
) -> None:
    """One M3U8 file per playlist, numbered; the first also holds the broken entries, if there are faults."""
    entries = [[playlist_entry(catalogue[i], frames[i]) for i in p.tracks] for p in planned]
    if faults:
        for entry in broken_entries(faults):
            entries[0].insert(fault_rng.integers(len(entries[0]) + 1), entry)
    for number, (playlist, playlist_entries) in enumerate(zip(planned, entries, strict=True), start=1):
        write_playlist(folder / f"{number:03d} {playlist.name}.m3u8", playlist.name, playlist_entries)


def _write_ground_truth(
    out_dir: Path,
    catalogue: list[Track],
    faults: dict[str, Track],
    frames: dict[int, int],
    faulty: list[tuple[str, str]],
) -> None:
    """tracks.csv (every decodable track, the duplicate copy included) and, with faults, faults.csv."""
    top = max(t.popularity for t in catalogue)
    listed = catalogue + ([faults["duplicate"]] if faults else [])
    rows = [_track_row(t, frames[t.index], top) for t in listed]
    _write_csv(out_dir / "tracks.csv", TRACK_COLUMNS, sorted(rows, key=lambda row: row["path"]))
    if faults:
        _write_csv(out_dir / "faults.csv", FAULT_COLUMNS, [dict(zip(FAULT_COLUMNS, f, strict=True)) for f in faulty])


def _track_row(track: Track, frames: int, top_popularity: float) -> dict:
    return {
        "path": track.path,
        "title": track.title,
        "artist": track.artist.name,
        "album": track.album,
        "genre": track.artist.style.name,
        "energy": f"{track.energy:.4f}",
        "valence": f"{track.valence:.4f}",
        "popularity": f"{track.popularity / top_popularity:.4f}",
        "duration": f"{frames / track.sample_rate:.4f}",
        "sample_rate": track.sample_rate,
        "channels": track.channels,
        "format": track.format,
    }


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
