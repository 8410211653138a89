"""Node features of the store's tracks, built group by group as a `FeatureSpec` says."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import torch

from audiograph.errors import ConfigError
from audiograph.graph.csr import CSRGraph
from audiograph.musig.features import FEATURE_GROUPS, GROUP_SPACES, TOP_GENRES, FeatureSpec, artist_genres
from audiograph.store import POPULARITY_SPACE, Store
from audiograph.tables import counted

# Leading columns of a group that describe a track's place in the training graph rather than the track:
# the popularity group's playlist count and degree (`build_features`).
GRAPH_COLUMNS = {"popularity": 2}


def available_groups(store: Store) -> list[str]:
    """The feature groups the store can supply (vector groups need vectors; genre needs labels)."""
    spaces = store.vectors.spaces()
    groups = [g for g, candidates in GROUP_SPACES.items() if any(s in spaces for s in candidates)]
    if any(t["genre"] for t in store.tracks.rows(status=None)):
        groups.append("genre")
    groups.append("popularity")
    return [g for g in FEATURE_GROUPS if g in groups]


def genre_labels(
    store: Store, labelled: dict[str, str | None] | None = None
) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(warm, cold) genre labels of every track, from `labelled` (track id -> its label; default: the stored
    ones, a track's own tag or the one its playlists voted).

    warm: a track's label, or, without one, the genre most common among its artist's other tracks
    (`artist_genres`); cold, as the track would be in no playlist: its own tag unless playlists voted
    it, else its artist's other tracks' genre, never its own playlists' vote."""
    rows = store.tracks.rows(status=None)
    artists = {t["id"]: t["artist"] for t in rows}
    labelled = {t["id"]: t["genre"] for t in rows} if labelled is None else labelled
    by_artist = artist_genres(labelled, artists)
    voted = store.graph.genre_votes()
    warm = {t: genre or by_artist[t] for t, genre in labelled.items()}
    cold = {t: (None if t in voted else genre) or by_artist[t] for t, genre in labelled.items()}
    return warm, cold


def playlist_counts(store: Store, node_ids: list[str], playlists: list[dict] | None = None) -> np.ndarray:
    """How many playlists list each node (from `playlists`, default: all stored playlists)."""
    position = {t: i for i, t in enumerate(node_ids)}
    counts = np.zeros(len(node_ids), np.float32)
    for p in store.graph.playlists() if playlists is None else playlists:
        for t in set(p["tracks"]):
            if t in position:
                counts[position[t]] += 1
    return counts


def build_features(
    store: Store,
    node_ids: list[str],
    graph: CSRGraph,
    groups: list[str],
    *,
    genres: dict[str, str | None] | None = None,
    playlists: list[dict] | None = None,
    spec: FeatureSpec | None = None,
) -> tuple[np.ndarray, FeatureSpec, np.ndarray]:
    """Node features [N, F], the spec that made them, and a mask [N, G] of which groups each node has.

    `genres` overrides the tracks' own genre labels (an evaluation derives them from training
    playlists only); `playlists` likewise for the popularity counts. With `spec`, its scaling,
    vocabulary and models are reused (inference); otherwise they are fitted to these nodes.
    A node without a group's vectors gets zeros, the group's mean.
    """
    fitting = spec is None
    if spec is not None and not spec.fitted:
        raise ConfigError("this MUSIG model was trained on features built elsewhere, which it cannot build itself")
    spec = spec or FeatureSpec(groups=list(groups))
    genres = genres if genres is not None else genre_labels(store)[0]
    parts, present = {}, {}
    for group in spec.groups:
        if group in GROUP_SPACES:
            if fitting:
                spec.spaces[group], spec.models[group] = _vector_source(store, group, node_ids)
            values, has = _vectors_for(store, spec.spaces[group], spec.models[group], node_ids)
            if fitting:
                spec.fit(group, values[has])
        elif group == "genre":
            labels = [genres.get(t) for t in node_ids]
            if fitting:
                common = Counter(g for g in labels if g).most_common(TOP_GENRES)
                spec.genres = sorted(g for g, _ in common)
            values = spec.one_hot(labels)
            has = values.any(axis=1)
            if fitting:
                spec.fit(group, values)
            parts[group] = spec.standardize(group, values)
            present[group] = has
            continue
        else:  # popularity
            values = np.stack(
                [np.log1p(playlist_counts(store, node_ids, playlists)), np.log1p(graph.degree.numpy())], 1
            )
            if fitting and POPULARITY_SPACE in store.vectors.spaces():
                spec.popularity_model = store.vectors.search_model(POPULARITY_SPACE)[0]
            if spec.popularity_model:
                imported, _ = _vectors_for(store, POPULARITY_SPACE, spec.popularity_model, node_ids)
                values = np.concatenate([values, np.nan_to_num(imported, nan=0.0)], axis=1)  # none imported: 0
            has = np.ones(len(node_ids), bool)
            if fitting:
                spec.fit(group, values)
        parts[group] = np.where(has[:, None], spec.standardize(group, values), 0.0).astype(np.float32)
        present[group] = has
    mask = np.stack([present[g] for g in spec.groups], axis=1)
    return spec.assemble(parts), spec, mask


def _vector_source(store: Store, group: str, node_ids: list[str]) -> tuple[str, str]:
    """(space, model id) a vector group reads: of its spaces (`GROUP_SPACES`), the one with vectors of the most
    nodes (the first listed on a tie). One group reads one space, as its columns must mean one thing: where
    another space holds vectors of nodes the chosen one lacks (descriptors of audio files beside features
    imported from a CSV), that is warned of, as those nodes get none of the group's features."""
    spaces = store.vectors.spaces()
    nodes = set(node_ids)
    covered = {}
    for space in (s for s in GROUP_SPACES[group] if s in spaces):
        model_id = store.vectors.search_model(space)[0]
        ids = {t for t, (m, _) in store.vectors.states(space).items() if m == model_id}
        covered[space] = (model_id, nodes & ids)
    if not covered:
        raise ConfigError(
            f"{store.path}: no vectors for feature group '{group}' (looked in spaces {', '.join(GROUP_SPACES[group])})"
        )
    chosen = max(covered, key=lambda s: len(covered[s][1]))
    for space, (_, ids) in covered.items():
        left_out = len(ids - covered[chosen][1])
        if space != chosen and left_out:
            warnings.warn(
                f"feature group '{group}' reads the '{chosen}' space ({len(covered[chosen][1])} of the graph's"
                f" tracks); the '{space}' space also holds vectors of {counted(left_out, 'other track')}, which get no"
                f" '{group}' features (a group's columns must mean one thing)",
                stacklevel=2,
            )
    return chosen, covered[chosen][0]


def _vectors_for(store: Store, space: str, model_id: str, node_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """[N, d] raw vectors of `model_id` in node order (NaN rows where missing), and the has-vector mask."""
    ids, matrix = store.vectors.matrix(space, model_id)
    position = {t: i for i, t in enumerate(node_ids)}
    values = np.full((len(node_ids), matrix.shape[1] if len(ids) else 0), np.nan, np.float32)
    rows = [(position[t], i) for i, t in enumerate(ids) if t in position]
    if rows:
        target, source = map(np.asarray, zip(*rows))
        values[target] = matrix[source]
    return values, ~np.isnan(values).any(axis=1) if values.shape[1] else np.zeros(len(node_ids), bool)


def cold_features(
    store: Store, node_ids: list[str], spec: FeatureSpec, cold_genres: dict[str, str | None]
) -> np.ndarray:
    """Node features [N, F] as each track would have them in no playlist, with `cold_genres` (the cold labels
    of `genre_labels`)."""
    empty = CSRGraph(torch.zeros(len(node_ids) + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    x, _, _ = build_features(store, node_ids, empty, spec.groups, genres=cold_genres, playlists=[], spec=spec)
    return x
