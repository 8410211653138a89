"""Playlists from a latent taste model (see the package docstring), coverage of every track, and M3U8 files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiograph.graph.readers import format_m3u
from audiograph.synth.audio_files import write_file
from audiograph.synth.catalogue import Track
from audiograph.synth.names import pick

MAX_PLAYLIST_LENGTH = 100
_PLAYLIST_KINDS = {"genre": 0.45, "genre_energy": 0.1, "artist": 0.05, "mixed": 0.2, "mood": 0.2}
_GENRE_NAMES = (
    "{} Essentials",
    "Best of {}",
    "{} Classics",
    "Fresh {}",
    "Pure {}",
    "{} Favourites",
    "All Out {}",
    "{} Mix",
)
_GENRE_ENERGY_NAMES = {
    True: ("{} Workout", "Peak-time {}", "Hard {}"),
    False: ("Deep {} Nights", "Chill {}", "Mellow {}"),
}
_MIXED_NAMES = ("{} Mix", "Best of {}", "{} Party")
_MOOD_NAMES = {
    ("energy", True): ("Workout Mix", "Running Pace", "Party Starters", "Power Hour", "Gym Motivation"),
    ("energy", False): ("Sunday Chill", "Sleep Sounds", "Deep Focus", "Rainy Day", "Wind Down"),
    ("valence", True): ("Happy Hits", "Feel Good", "Sunny Day"),
    ("valence", False): ("Melancholy", "Sad Songs", "Heartbreak"),
}


@dataclass
class Playlist:
    """A planned playlist: the catalogue indices it may hold and those it holds."""

    name: str
    pool: frozenset[int]  # indices of the tracks it may hold
    tracks: list[int]


@dataclass
class _Taste:
    """What the taste model draws from: each track's genre, factors and popularity, and genres' popularity."""

    catalogue: list[Track]
    genre: np.ndarray
    genre_names: dict[int, str]
    factors: dict[str, np.ndarray]
    popularity: np.ndarray
    genre_popularity: np.ndarray


def plan_playlists(catalogue: list[Track], count: int, rng: np.random.Generator) -> list[Playlist]:
    """Playlists drawn from the latent taste model described in the package docstring."""
    taste = _taste(catalogue, rng)
    # genres with no playlist of their own yet
    unserved = sorted(taste.genre_names, key=lambda g: -taste.genre_popularity[g])
    names: set[str] = set()
    playlists = []
    for _ in range(count):
        kind = str(rng.choice(list(_PLAYLIST_KINDS), p=list(_PLAYLIST_KINDS.values())))
        pool, name, preference = _draw_pool(kind, taste, unserved, rng)
        weights = taste.popularity[pool] * preference[pool]
        length = min(
            int(np.clip(rng.lognormal(np.log(22), 0.55), 10, 60)),
            max(1, len(catalogue) // 2),
            max(1, len(pool) // 2),  # a playlist picks from its pool, it does not copy it
        )
        tracks = rng.choice(pool, length, replace=False, p=weights / weights.sum())
        playlists.append(Playlist(_numbered(name, names), frozenset(pool.tolist()), tracks.tolist()))
    return playlists


def _taste(catalogue: list[Track], rng: np.random.Generator) -> _Taste:
    genre_names = {t.artist.genre: t.artist.style.name for t in catalogue}
    genre_popularity = 1 / rng.permutation(np.arange(1, len(genre_names) + 1))
    return _Taste(
        catalogue=catalogue,
        genre=np.array([t.artist.genre for t in catalogue]),
        genre_names=genre_names,
        factors={
            "energy": np.array([t.energy for t in catalogue]),
            "valence": np.array([t.valence for t in catalogue]),
        },
        popularity=np.array([t.popularity for t in catalogue]),
        genre_popularity=genre_popularity / genre_popularity.sum(),
    )


def _draw_pool(
    kind: str, taste: _Taste, unserved: list[int], rng: np.random.Generator
) -> tuple[np.ndarray, str, np.ndarray]:
    """The pool (catalogue indices) of a playlist of `kind`, its name and a preference weight per track."""
    preference = np.ones(len(taste.catalogue))
    if kind == "mixed" and len(taste.genre_names) > 1:
        size = min(len(taste.genre_names), rng.integers(2, 4))
        chosen = rng.choice(len(taste.genre_names), size, replace=False, p=taste.genre_popularity)
        labels = [taste.genre_names[g] for g in chosen]
        name = pick(rng, _MIXED_NAMES).format(", ".join(labels[:-1]) + " & " + labels[-1])
        return np.flatnonzero(np.isin(taste.genre, chosen)), name, preference
    if kind == "mood":
        factor, high = ("energy" if rng.random() < 0.7 else "valence"), bool(rng.random() < 0.5)
        values = taste.factors[factor]
        pool = np.flatnonzero(values >= np.quantile(values, 0.6) if high else values <= np.quantile(values, 0.4))
        return pool, pick(rng, _MOOD_NAMES[factor, high]), preference
    g = unserved.pop(0) if unserved else rng.choice(len(taste.genre_names), p=taste.genre_popularity)
    pool = np.flatnonzero(taste.genre == g)
    name = pick(rng, _GENRE_NAMES).format(taste.genre_names[g])
    if kind == "genre_energy":
        high = bool(rng.random() < 0.5)
        preference = np.exp((6 if high else -6) * (taste.factors["energy"] - 0.5))
        name = pick(rng, _GENRE_ENERGY_NAMES[high]).format(taste.genre_names[g])
    elif kind == "artist":
        popularity = taste.popularity[pool]
        artist = taste.catalogue[rng.choice(pool, p=popularity / popularity.sum())].artist.name
        preference = np.where([t.artist.name == artist for t in taste.catalogue], 8.0, 1.0)
        name = f"{artist} Radio"
    return pool, name, preference


def _numbered(name: str, taken: set[str]) -> str:
    """`name`, or `name 2`, `name 3`, ... if taken."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name} {number}"
    taken.add(candidate)
    return candidate


def cover(playlists: list[Playlist], count: int, rng: np.random.Generator) -> int:
    """Append each track in no playlist to the shortest playlist that admits it and has room, then
    shuffle every playlist; returns the number of tracks that found no place."""
    limit = min(MAX_PLAYLIST_LENGTH, max(1, count // 2))
    listed = {t for p in playlists for t in p.tracks}
    left_out = 0
    for track in rng.permutation(count).tolist():
        if track in listed:
            continue
        fitting = [p for p in playlists if track in p.pool and len(p.tracks) < limit]
        if fitting:
            min(fitting, key=lambda p: len(p.tracks)).tracks.append(track)
        else:
            left_out += 1
    for playlist in playlists:
        playlist.tracks = [playlist.tracks[i] for i in rng.permutation(len(playlist.tracks))]
    return left_out


def write_playlist(path: Path, name: str, entries: list[tuple[int, str, str]]) -> None:
    """An M3U8 playlist of (seconds, label, location) entries."""
    write_file(path, format_m3u(entries, name).encode("utf-8"))


def playlist_entry(track: Track, frames: int) -> tuple[int, str, str]:
    """The (seconds, label, location) entry of `track` in a playlist file, given the frames written."""
    return round(frames / track.sample_rate), f"{track.artist.name} - {track.title}", f"../audio/{track.path}"
