"""`radio` and `map` over a stored space: the seed or the space from the store, the work in `explore`."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from audiograph.errors import ConfigError
from audiograph.options import check_options
from audiograph.pipelines.query import file_query, resolve_track, same_content, track_label, track_space
from audiograph.store import Hit, Store, on_disk
from audiograph.tables import counted


@dataclass
class RadioResult:
    """A radio playlist: the space and model it walked, the seed, and the tracks as hit rows (score: the
    cosine to the seed); `notes` say why it is shorter than asked for."""

    space: str
    model_id: str
    seed: str
    tracks: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def radio(
    store: Store,
    seed: str | os.PathLike,
    *,
    length: int = 20,
    space: str | None = None,
    diversity: float = 0.4,
    walk: float = 0.3,
) -> RadioResult:
    """A playlist of up to `length` tracks that starts from `seed` (a stored track id, a stored file, or a
    new audio file) and walks `space`, trading similarity to the seed against variety (see
    `explore.radio.make_radio`: no near-duplicates, no artist twice in a row)."""
    check_options(length=length, diversity=diversity, walk=walk)
    from audiograph.explore.radio import DUPLICATE_COSINE, make_radio

    stored = store.tracks.get(os.fspath(seed)) or (store.tracks.by_path(seed) if Path(seed).is_file() else None)
    if stored is not None or not Path(seed).is_file():
        row = resolve_track(store, seed)
        space = track_space(store, row["id"], space)
        model_id = store.vectors.search_model(space)[0]
        index = store.vectors.index(space, model_id)
        _check_walkable(index, space)
        vector, exclude, seed_artist, label = (
            index.vector(row["id"]),
            same_content(store, row["id"]),
            row.get("artist"),
            row["id"],
        )
    else:
        query = file_query(store, seed, space=space)
        space, model_id, vector = query.space, query.model_id, query.vector
        index = store.vectors.index(space, model_id)
        _check_walkable(index, space)
        exclude, seed_artist, label = query.copies, None, os.fspath(seed)
    tracks = store.tracks.rows(status=None)
    artist = {t["id"]: t["artist"] for t in tracks}
    # One recording stored twice (the same bytes under two names) is played once: its first id still on disk
    # stands for it (a file moved since it was stored keeps its old row until `embed-audio --prune`).
    by_content = defaultdict(list)
    for t in tracks:
        if t["status"] == "ok" and t["content_hash"]:
            by_content[t["content_hash"]].append(t)
    for group in (g for g in by_content.values() if len(g) > 1):
        kept = min(group, key=lambda t: (not on_disk(t["path"]), t["id"]))
        exclude.update(t["id"] for t in group if t is not kept)
    picks = make_radio(
        vector,
        index.ids,
        index.matrix,
        [artist.get(t) for t in index.ids],
        length,
        exclude=exclude,
        diversity=diversity,
        walk=walk,
        seed_artist=seed_artist,
    )
    hits = [Hit(0, p.id, p.seed_similarity) for p in picks]
    result = RadioResult(space, model_id, label, store.vectors.hit_rows(hits))
    others = len(index.ids) - len(exclude.intersection(index.ids))
    if len(result.tracks) < length:
        why = (
            f"the space holds only {counted(others, 'other track')}"
            if others < length
            else f"the other tracks near the seed are near-duplicates (cosine above {DUPLICATE_COSINE}) of the seed"
            " or of a track already picked, or by the artist just played"
        )
        result.notes.append(f"the playlist ends after {len(result.tracks)} of the {length} tracks asked for: {why}")
    return result


def _check_walkable(index, space: str) -> None:
    """A `ConfigError` for a space of one number per track, where every cosine is +1 or -1 and every track a
    near-duplicate of the seed or its opposite: there is nothing to walk."""
    if index.matrix.shape[1] < 2:
        raise ConfigError(f"space '{space}' holds one number per track: there is no walk to make from a seed")


@dataclass
class MapReport:
    """What `map_space` drew."""

    space: str
    model_id: str
    points: int
    method: str
    out: str


def map_space(
    store: Store,
    space: str,
    out: str | os.PathLike,
    *,
    method: str = "tsne",
    colour: str = "genre",
    max_points: int = 5000,
    seed: int = 0,
) -> MapReport:
    """A 2-D map of a space's vectors (as its searches see them) written to `out` (.png, .svg, .pdf or
    .html), coloured by the tracks' genre or first playlist, with a few labelled points. At most
    `max_points` tracks, a seeded sample of larger spaces. t-SNE is the default: on 3,000 Spotify tracks'
    audio features its trustworthiness@10 was 0.976, UMAP's 0.929 ("auto": UMAP when installed)."""
    check_options(max_points=max_points, seed=seed)
    import numpy as np

    from audiograph.explore.maps import draw_map, project_2d, projection_method

    if colour not in ("genre", "playlist"):
        raise ConfigError(f"--colour must be genre or playlist, got {colour!r}")
    model_id = store.vectors.search_model(space)[0]
    index = store.vectors.index(space, model_id)
    if index.matrix.shape[1] < 2:
        raise ConfigError(f"space '{space}' has 1-d vectors: there is no map to draw of one number per track")
    rows = np.arange(len(index.ids))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_points, replace=False))
    ids = [index.ids[i] for i in rows]
    tracks = {t["id"]: t for t in store.tracks.rows(status=None)}
    if colour == "genre":
        labels = [tracks.get(t, {}).get("genre") for t in ids]
    else:
        first = {}
        for playlist in store.graph.playlists():
            for t in playlist["tracks"]:
                first.setdefault(t, playlist["name"] or playlist["id"])
        labels = [first.get(t) for t in ids]
    names = [track_label({"track_id": t, **tracks.get(t, {})}) for t in ids]
    chosen = projection_method(method)
    points = project_2d(index.matrix[rows], method=chosen, seed=seed)
    title = f"'{space}' space ({model_id}), {len(ids)} tracks, {chosen}"
    draw_map(points, labels, names, out, title=title, legend_title=colour)
    return MapReport(space, model_id, len(ids), chosen, os.fspath(out))
