"""The paper's playlist-completion protocol (§4.1): held-out playlists, seed lists and candidate sets.

Everything a method may learn from lives in an `EvalSplit`: the training playlists, the
co-occurrence graph built from them alone, and feature groups whose genre labels and playlist
counts come from training playlists only. The held-out playlists appear only as `EvalCase`s.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiograph.errors import ConfigError
from audiograph.graph.cooccurrence import cooccurrence_matrix, threshold
from audiograph.graph.csr import CSRGraph
from audiograph.musig.features import available_groups, build_features, cold_features
from audiograph.store import Store


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

    @property
    def num_nodes(self) -> int:
        return len(self.node_ids)


def training_genres(store: Store, held_out: set[str]) -> dict[str, str | None]:
    """track id -> genre, never derived from a held-out playlist.

    A track whose genre came from the playlists listing it (`genre_votes`) takes the majority
    of its votes from other playlists (None if it has none left); any other track keeps its
    own genre tag.
    """
    votes = store.genre_votes()
    genres = {}
    for track in store.tracks(status=None):
        if track["id"] in votes:
            kept = [genre for source, genre in votes[track["id"]] if source not in held_out]
            genres[track["id"]] = Counter(kept).most_common(1)[0][0] if kept else None
        else:
            genres[track["id"]] = track["genre"]
    return genres


def playlist_graph(playlists: list[np.ndarray], num_nodes: int, min_weight: float) -> CSRGraph:
    """The co-occurrence graph of `playlists` (node-index arrays), edges below `min_weight` dropped."""
    playlist_index = np.repeat(np.arange(len(playlists)), [len(p) for p in playlists])
    track_index = np.concatenate(playlists) if playlists else np.zeros(0, np.int64)
    return CSRGraph.from_scipy(threshold(cooccurrence_matrix(playlist_index, track_index, num_nodes), min_weight))


def make_split(
    store: Store,
    *,
    groups: list[str] | None = None,
    held_out: list[dict] | None = None,
    min_length: int = 40,
    seed_fraction: float = 0.5,
    holdout: float = 0.2,
    max_playlists: int = 10_000,
    seed: int = 0,
) -> EvalSplit:
    """The evaluation split of one repetition.

    Without `held_out`, a random `holdout` share of the stored playlists (at most `max_playlists`,
    drawn among those with at least `min_length` tracks) is held out, and everything else is
    rebuilt from the remaining playlists. With `held_out` (playlists as {id, tracks} matched to
    stored tracks, e.g. from a file never given to build-graph), every stored playlist trains
    and the given ones with at least `min_length` tracks are evaluated.
    """
    if not 0 < seed_fraction < 1:
        raise ConfigError(f"the seed fraction must be between 0 and 1, got {seed_fraction}")
    if min_length < 2:
        raise ConfigError(f"evaluation playlists need at least 2 tracks (--min-length), got {min_length}")
    node_ids, _ = store.graph()
    position = {t: i for i, t in enumerate(node_ids)}
    stored = [p for p in store.playlists() if p["tracks"]]
    rng = np.random.default_rng(seed)

    def indices(playlist: dict) -> np.ndarray:
        # Distinct tracks in playlist order: a repeat adds nothing to a seed list or a target set.
        return np.asarray(list(dict.fromkeys(position[t] for t in playlist["tracks"] if t in position)), np.int64)

    if held_out is None:
        eligible = [i for i, p in enumerate(stored) if len(indices(p)) >= min_length]
        wanted = min(len(eligible), max_playlists, max(1, round(holdout * len(stored))))
        chosen = set(rng.choice(eligible, size=wanted, replace=False).tolist()) if eligible else set()
        evaluated = [stored[i] for i in sorted(chosen)]
        training = [p for i, p in enumerate(stored) if i not in chosen]
    else:
        overlap = sorted({p["id"] for p in held_out} & {p["id"] for p in stored})
        if overlap:
            raise ConfigError(f"evaluation playlist(s) {', '.join(overlap[:3])} are also in the store's graph;"
                              " evaluate playlists that were kept out of build-graph")  # fmt: skip
        evaluated = [p for p in held_out if len(indices(p)) >= min_length][:max_playlists]
        training = stored
    if not evaluated:
        longest = max((len(indices(p)) for p in (held_out if held_out is not None else stored)), default=0)
        raise ConfigError(
            f"no playlist has at least {min_length} tracks in the store (the longest has {longest});"
            " lower --min-length"
        )

    train_playlists = [indices(p) for p in training]
    seen = np.zeros(len(node_ids), bool)
    if train_playlists:
        seen[np.concatenate(train_playlists)] = True
    cases = completion_cases([(p["id"], indices(p)) for p in evaluated], seen, seed_fraction, rng)

    graph_info = store.get_meta("graph") or {}
    graph = playlist_graph(train_playlists, len(node_ids), graph_info.get("min_weight", 1.0))
    genres = training_genres(store, {p["id"] for p in evaluated})
    groups = groups or available_groups(store)
    train_dicts = [{"tracks": [node_ids[i] for i in p]} for p in train_playlists]
    x, spec, mask = build_features(store, node_ids, graph, groups, genres=genres, playlists=train_dicts)
    bounds = np.cumsum([0, *(spec.dims[g] for g in spec.groups)])
    features = {g: x[:, a:b] for g, a, b in zip(spec.groups, bounds[:-1], bounds[1:])}
    x_cold = cold_features(store, node_ids, spec)
    cold = {g: x_cold[:, a:b] for g, a, b in zip(spec.groups, bounds[:-1], bounds[1:])}
    present = {g: mask[:, k] for k, g in enumerate(spec.groups)}
    info = {
        "playlists": len(stored),
        "train_playlists": len(training),
        "eval_playlists": len(cases),
        "min_length": min_length,
        "seed_fraction": seed_fraction,
        "graph_edges": graph.num_edges // 2,
        "unseen_targets": float(np.mean([not seen[t] for c in cases for t in c.targets])),
        "min_weight": graph_info.get("min_weight", 1.0),
    }
    return EvalSplit(
        node_ids, train_playlists, graph, features, genres, cases, seed=seed, present=present, info=info, cold=cold
    )


def completion_cases(
    playlists: list[tuple[str, np.ndarray]], seen: np.ndarray, seed_fraction: float, rng: np.random.Generator
) -> list[EvalCase]:
    """One case per (id, distinct node indices in order) playlist: its first `seed_fraction` as seeds,
    the rest as targets, mixed with as many decoys matched on `seen` (bool [N]: in a training playlist)."""
    cases = []
    for playlist_id, tracks in playlists:
        n_seeds = min(len(tracks) - 1, max(1, round(seed_fraction * len(tracks))))
        seeds, targets = tracks[:n_seeds], tracks[n_seeds:]
        decoys = _matched_decoys(targets, tracks, seen, rng)
        # Shuffled, so that methods which tie (e.g. zero vectors) gain nothing from the order.
        cases.append(EvalCase(playlist_id, seeds, targets, rng.permutation(np.concatenate([targets, decoys]))))
    return cases


def _matched_decoys(targets: np.ndarray, playlist: np.ndarray, seen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As many random tracks outside the playlist as there are targets, with as many of them absent
    from every training playlist as there are such targets: otherwise "never seen in training"
    alone would tell the targets of held-out playlists from catalogue tracks."""
    outside = np.ones(len(seen), bool)
    outside[playlist] = False
    decoys = []
    for pool_mask, wanted in ((outside & ~seen, int((~seen[targets]).sum())), (outside & seen, int(seen[targets].sum()))):
        pool = np.flatnonzero(pool_mask)
        decoys.append(rng.choice(pool, size=min(wanted, len(pool)), replace=False))
    decoys = np.concatenate(decoys)
    short = len(targets) - len(decoys)
    if short > 0:  # one pool ran out: fill from the rest of the catalogue
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
    lengths = [sum(1 for line in f.read_text(encoding="utf-8", errors="replace").splitlines()
                   if line.strip() and not line.startswith("#")) for f in files]  # fmt: skip
    eligible = [i for i, n in enumerate(lengths) if n >= min_length]
    wanted = min(len(eligible), max(1, round(holdout * len(files))))
    chosen = set(np.random.default_rng(seed).choice(eligible, size=wanted, replace=False).tolist()) if eligible else set()
    train, held = folder.with_name(folder.name + "-train"), folder.with_name(folder.name + "-holdout")
    for target in (train, held):
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copy2(f, (held if i in chosen else train) / f.name)
    return train, held
