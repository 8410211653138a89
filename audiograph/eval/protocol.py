"""The paper's playlist-completion protocol (§4.1): held-out playlists, seed lists and candidate sets.

Everything a method may learn from lives in an `EvalSplit`: the training playlists, the
co-occurrence graph built from them alone, and feature groups whose genre labels and playlist
counts come from training playlists only. The held-out playlists appear only as `EvalCase`s.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiograph.errors import ConfigError
from audiograph.graph.cooccurrence import cooccurrence_matrix, threshold
from audiograph.graph.csr import CSRGraph


@dataclass
class EvalCase:
    """One held-out playlist: the seed list (its first x %) and the candidates to rank.

    `candidates` holds the remaining tracks (`targets`) mixed with as many random catalogue
    tracks that are in neither part of the playlist; all arrays hold node indices.
    """

    playlist_id: str
    seeds: np.ndarray
    targets: np.ndarray
    candidates: np.ndarray


@dataclass
class EvalSplit:
    """What every method trains on, and the cases it is scored on.

    - `node_ids`: the catalogue, one node per track; every array below indexes it.
    - `train_playlists`: node-index arrays of the playlists methods may learn from, in order.
    - `graph`: the co-occurrence graph of `train_playlists` only, thresholded as the stored graph is.
    - `features`: feature group -> [N, d] float32, each z-scored, zeros (the mean) where a track
      lacks the group; genre labels and popularity counts come from `train_playlists` only.
    - `present`: feature group -> [N] bool, which tracks have the group (e.g. acoustic vectors).
    - `cold`: feature group -> [N, d], the features each track would have in no playlist (no
      playlist-voted genre, zero playlist count and degree), scaled as `features`.
    - `content`: feature group -> [N, d'], `features` without the columns that describe a track's place in
      the training graph (`GRAPH_COLUMNS`: playlist count, degree), for groups that have other columns.
    - `genres`: track id -> genre label derived without the held-out playlists (None if unknown).
    - `cases`: the held-out playlists, as seed lists and candidate sets.
    - `seed`: the repetition's random seed; every method seeds its own randomness from it.
    """

    node_ids: list[str]
    train_playlists: list[np.ndarray]
    graph: CSRGraph
    features: dict[str, np.ndarray]
    genres: dict[str, str | None]
    cases: list[EvalCase]
    seed: int = 0
    present: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    cold: dict[str, np.ndarray] = field(default_factory=dict)
    content: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return len(self.node_ids)


def playlist_graph(playlists: list[np.ndarray], num_nodes: int, min_weight: float) -> CSRGraph:
    """The co-occurrence graph of `playlists` (node-index arrays), edges below `min_weight` dropped."""
    playlist_index = np.repeat(np.arange(len(playlists)), [len(p) for p in playlists])
    track_index = np.concatenate(playlists) if playlists else np.zeros(0, np.int64)
    return CSRGraph.from_scipy(threshold(cooccurrence_matrix(playlist_index, track_index, num_nodes), min_weight))


def decoy_strata(seen: np.ndarray, has_content: np.ndarray | None = None) -> np.ndarray:
    """The classes decoys are matched on (int [N]): being in a training playlist (`seen`, bool [N]) and,
    with `has_content` (bool [N, G]), which content feature groups a track has. In a store of audio files
    and imported tracks, a track without the content of a held-out playlist's tracks is an easy decoy."""
    strata = np.asarray(seen, np.int64).copy()
    if has_content is not None:
        for bit, column in enumerate(np.asarray(has_content, bool).T, start=1):
            strata |= column.astype(np.int64) << bit
    return strata


def completion_cases(
    playlists: list[tuple[str, np.ndarray]], strata: np.ndarray, seed_fraction: float, rng: np.random.Generator
) -> list[EvalCase]:
    """One case per (id, distinct node indices in order) playlist: its first `seed_fraction` as seeds,
    the rest as targets, mixed with as many decoys matched on `strata` (int or bool [N], e.g. `decoy_strata`):
    each class gives as many decoys as it has targets."""
    cases = []
    classes = np.unique(strata)
    for playlist_id, tracks in playlists:
        n_seeds = min(len(tracks) - 1, max(1, round(seed_fraction * len(tracks))))
        seeds, targets = tracks[:n_seeds], tracks[n_seeds:]
        decoys = _matched_decoys(targets, tracks, strata, classes, rng)
        # Shuffled, so that methods which tie (e.g. zero vectors) gain nothing from the order.
        cases.append(EvalCase(playlist_id, seeds, targets, rng.permutation(np.concatenate([targets, decoys]))))
    return cases


def _matched_decoys(
    targets: np.ndarray, playlist: np.ndarray, strata: np.ndarray, classes: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """As many random tracks outside the playlist as there are targets, as many of each class as there
    are targets of it: otherwise "never seen in training" (or "has no audio") alone would tell the
    targets of held-out playlists from catalogue tracks."""
    outside = np.ones(len(strata), bool)
    outside[playlist] = False
    decoys = []
    for value in classes:
        pool = np.flatnonzero(outside & (strata == value))
        wanted = int((strata[targets] == value).sum())
        decoys.append(rng.choice(pool, size=min(wanted, len(pool)), replace=False))
    decoys = np.concatenate(decoys)
    short = len(targets) - len(decoys)
    if short > 0:  # a class ran out: fill from the rest of the catalogue
        rest = np.setdiff1d(np.flatnonzero(outside), decoys)
        decoys = np.concatenate([decoys, rng.choice(rest, size=min(short, len(rest)), replace=False)])
    return decoys.astype(np.int64)


def split_playlist_files(
    folder: str | os.PathLike, *, holdout: float = 0.2, min_length: int = 40, seed: int = 0
) -> tuple[Path, Path]:
    """Copy the M3U/M3U8 playlists of `folder` into two sibling folders, `<folder>-train` and
    `<folder>-holdout`, holding out a random `holdout` share drawn among playlists of at least
    `min_length` entries: build the graph from the first, and evaluate with `--playlists` on the
    second, so that no model ever sees the held-out playlists. Relative paths stay valid."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".m3u", ".m3u8"))
    if not files:
        raise ConfigError(f"{folder}: no .m3u/.m3u8 playlists")
    lengths = [
        sum(
            1
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.strip() and not line.startswith("#")
        )
        for f in files
    ]
    eligible = [i for i, n in enumerate(lengths) if n >= min_length]
    wanted = min(len(eligible), max(1, round(holdout * len(files))))
    chosen = (
        set(np.random.default_rng(seed).choice(eligible, size=wanted, replace=False).tolist()) if eligible else set()
    )
    train, held = folder.with_name(folder.name + "-train"), folder.with_name(folder.name + "-holdout")
    for target in (train, held):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copy2(f, (held if i in chosen else train) / f.name)
    return train, held
