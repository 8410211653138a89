"""`query_file`: embed an audio file with the model behind a space and find its nearest stored tracks;
`similar_track`: the nearest neighbours of a stored track."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiograph.audio.decode import content_hash
from audiograph.errors import ConfigError, StoreError, existing_file
from audiograph.options import check_options
from audiograph.pipelines.encoders import AudioFile, file_vector
from audiograph.spaces import ACOUSTIC_KIND, MUSIG_KIND, REMAKE_COMMANDS
from audiograph.store import Store
from audiograph.tables import display_width, format_table, one_line, shortened

TABLE_WIDTH = 100  # a table of hits without --wide fits this many columns
EXTRA_WIDTH = 20  # an extra column (genre) is cut to this width
MIN_LABEL_WIDTH = 30

# Preferred search space when none is named: the richest one the store has.
SPACE_PREFERENCE = ("musig", "acoustic", "descriptors")


@dataclass
class QueryResult:
    """The hits for one query file, and how they were found."""

    space: str
    model_id: str
    hits: list[dict]
    query_track: str | None = None  # the stored track the file is, if any (excluded from hits)
    stale_vectors: int = 0  # vectors of older models in the space, left out of the search
    notes: list[str] = field(default_factory=list)


def default_space(store: Store) -> str:
    """The richest space the store holds vectors in."""
    spaces = store.vectors.spaces()
    for space in SPACE_PREFERENCE:
        if space in spaces:
            return space
    if spaces:
        return next(iter(spaces))
    raise StoreError(f"{store.path}: the store holds no vectors yet (run `audiograph embed-audio DIR`)")


def query_file(
    store: Store, path: str | os.PathLike, *, space: str | None = None, k: int = 10, model: str | None = None
) -> QueryResult:
    """The k stored tracks nearest to the audio file `path` in `space` (default: `default_space`).

    The file is embedded with the model that made the searched vectors: `model` when given,
    else the newest model with vectors in the space. A file that is already in the store (same
    path or same content) is excluded from its own results.
    """
    if not os.path.exists(path) and store.tracks.get(os.fspath(path)) is not None:
        raise ConfigError(f"{path}: no such file, but a stored track id: search from it with `audiograph similar`")
    check_options(k=k)
    q = file_query(store, path, space=space, model=model)
    hits = store.vectors.similar(q.space, q.vector, k=k, exclude=q.copies, model_id=q.model_id, normalised=True)
    query_track = q.track
    notes = _search_notes(store, q.space, q.model_id, q.stale)
    return QueryResult(q.space, q.model_id, hits, query_track=query_track, stale_vectors=q.stale, notes=notes)


@dataclass
class FileQuery:
    """An audio file as a query of a space: its vector in the index's form (standardised where the space is,
    unit length), the model that made it, and the stored tracks that are this file (to leave out of results)."""

    space: str
    model_id: str
    vector: np.ndarray
    copies: set[str]
    stale: int = 0  # vectors of older models in the space, left out of the search
    track: str | None = None  # the stored track the file is: the one stored under its path, else its first copy


def file_query(store: Store, path: str | os.PathLike, space: str | None = None, model: str | None = None) -> FileQuery:
    """`path` as a query of `space` (default: `default_space`), embedded with `model` or else the model whose
    vectors a search in the space uses; a file already stored (same path or same bytes) takes its stored
    vector instead of being analysed again."""
    path = existing_file(path)
    space, model_id, stale = _searched_model(store, space, model)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    file = AudioFile(path, data)  # analysed once per audio config, whichever models read it
    current, own = content_hash(data), store.tracks.by_path(path)
    same_bytes = {t["id"] for t in store.tracks.by_hash(current)}
    copies = stored_copies(store, file, same_bytes, own)
    # The file's own row first, then rows of the same bytes, then other bytes of the same audio (a copy's vector
    # is of its own decode); never the own row of bytes since changed, whose vector is of other audio.
    stale_own = own is not None and own.get("content_hash") != current
    rank = {t: (own is None or t != own["id"], t not in same_bytes, t) for t in copies}
    ordered = sorted((t for t in copies if not (stale_own and t == own["id"])), key=rank.get)
    index = store.vectors.index(space, model_id)
    vector = next((index.vector(t) for t in ordered if index.vector(t) is not None), None)
    if vector is None:
        model_row = store.models.get(model_id)
        if model_row is None:
            raise StoreError(f"space '{space}': model '{model_id}' cannot embed new audio files")
        vector = store.vectors.query_vector(space, model_id, file_vector(store, model_row, file))
    return FileQuery(space, model_id, vector, copies, stale, ordered[0] if ordered else None)


def _searched_model(store: Store, space: str | None, model: str | None) -> tuple[str, str, int]:
    """(space, model id, vectors of other models left out) that a query searches: `model`'s vectors when
    given, else the newest model's in `space` (default: `default_space`)."""
    if model is not None:
        row = store.models.require(model)
        space = space or row["space"]
        if row["space"] != space:
            raise ConfigError(f"model '{model}' fills space '{row['space']}', not '{space}'")
    space = space or default_space(store)
    counts = store.vectors.require_space(space)
    if model is None:
        return space, *store.vectors.search_model(space)
    if model not in counts:
        raise StoreError(
            f"{store.path}: no '{space}' vectors by model '{model}' (make them with `{refresh_command(store, model)}`,"
            " which replaces the space's current vectors)"
        )
    return space, model, sum(n for m, n in counts.items() if m != model)


def refresh_command(store: Store, model_id: str) -> str:
    """The command that (re)writes the vectors of a registered model."""
    kind = (store.models.get(model_id) or {}).get("kind")
    command = REMAKE_COMMANDS.get(kind, "embed-audio")
    arguments = {"embed-audio": " DIR", "import-tracks": " CSV"}.get(command, "")
    model = f" --model {model_id}" if kind in (ACOUSTIC_KIND, MUSIG_KIND) else ""
    return f"audiograph {command}{arguments}{model}"


def similar_track(store: Store, track: str | os.PathLike, *, space: str | None = None, k: int = 10) -> QueryResult:
    """The k stored tracks nearest to the stored track `track` (a track id, or the path of a stored file).

    The track's own stored vector is the query, so tracks imported without audio can be queried too;
    the track itself is left out. Without `space`: `default_space`, or, when the track has no vector
    there, the first space (in `SPACE_PREFERENCE` order, then by name) where it has one.
    """
    check_options(k=k)
    track_id = resolve_track(store, track)["id"]
    space = track_space(store, track_id, space)
    model_id, stale = store.vectors.search_model(space)
    vector = store.vectors.index(space, model_id).vector(track_id)
    # The index holds vectors already standardised and normalised: searched as they are.
    exclude = same_content(store, track_id)  # the track, and its copies: they say nothing about it
    hits = store.vectors.similar(space, vector, k=k, exclude=exclude, model_id=model_id, normalised=True)
    notes = _search_notes(store, space, model_id, stale)
    return QueryResult(space, model_id, hits, query_track=track_id, stale_vectors=stale, notes=notes)


def _search_notes(store: Store, space: str, model_id: str, stale: int) -> list[str]:
    """What a reader of a search's results should know: vectors of older models left out, and a space of one
    number per track, where a cosine says only on which side of the mean a track lies."""
    notes = []
    if stale:
        notes.append(
            f"{stale} vectors in '{space}' come from older models and were left out; "
            f"re-run `{refresh_command(store, model_id)}` to refresh them"
        )
    if store.vectors.index(space, model_id).matrix.shape[1] == 1:
        notes.append(
            f"'{space}' holds one number per track: a score of +1 or -1 says only on which side of its mean a track lies"
        )
    return notes


def track_space(store: Store, track_id: str, space: str | None = None) -> str:
    """The space to search from a stored track: `space` (checked to hold the track's vector), else
    `default_space`, else the first space (in `SPACE_PREFERENCE` order, then by name) where it has one."""
    current = _spaces_of_track(store, track_id)
    if space is None:
        preferred = default_space(store)
        ordered = [preferred, *SPACE_PREFERENCE, *sorted(current)]
        space = next((s for s in ordered if s in current), preferred)
    store.vectors.require_space(space)
    if space not in current:
        row = store.tracks.get(track_id) or {}
        if not current and row.get("status") == "failed":
            raise StoreError(
                f"track {track_id} has no vectors: its file failed ({row.get('error') or 'unknown reason'})"
            )
        where = ", ".join(sorted(current)) or "no space"
        raise StoreError(f"track {track_id} has no vector in space '{space}' (it has vectors in: {where})")
    return space


def resolve_track(store: Store, track: str | os.PathLike) -> dict:
    """The stored track row that `track` names: a track id (a Spotify track in any spelling, as `build-graph`
    matches them), else the path of a stored file."""
    row = store.tracks.get(os.fspath(track))
    if row is None and Path(track).exists():
        row = store.tracks.by_path(track)
    if row is None:
        from audiograph.pipelines.build_graph import TrackIds

        spelled = TrackIds(store.tracks.node_ids()).match(os.fspath(track))
        row = store.tracks.get(spelled) if spelled else None
    if row is None:
        hint = " (not a stored file: use `audiograph query FILE`)" if Path(track).is_file() else ""
        raise ConfigError(f"{track}: no such track id or stored file path in {store.path}{hint}")
    return row


def stored_copies(store: Store, file: AudioFile, same_bytes: set[str], own: dict | None) -> set[str]:
    """The stored tracks that are the audio file `file`: those of the same bytes (`same_bytes`), its own row
    (`own`, stored under its path), and those of the same audio."""
    known = set(same_bytes)
    if own is not None and own["status"] == "ok":
        known.add(own["id"])
    # A byte-different file of the same audio (other tags, another container of the same samples) is
    # the same track: found by its descriptors.
    return known | _same_audio_tracks(store, file, known)


def same_content(store: Store, track_id: str) -> set[str]:
    """`track_id` and the other stored files with the same bytes (one recording stored twice)."""
    row = store.tracks.get(track_id) or {}
    copies = store.tracks.by_hash(row["content_hash"]) if row.get("content_hash") else []
    return {track_id, *(t["id"] for t in copies)}


def _spaces_of_track(store: Store, track_id: str) -> set[str]:
    """The spaces holding a vector of `track_id` by the model each space's searches use."""
    return {
        space
        for space in store.vectors.spaces()
        if store.vectors.states(space).get(track_id, (None,))[0] == store.vectors.search_model(space)[0]
    }


def _same_audio_tracks(store: Store, file: AudioFile, known: set[str]) -> set[str]:
    """Stored tracks whose decoded audio is that of the file or of the `known` tracks it is.

    Two files decode to the same samples exactly when their descriptors agree to rounding, so the
    descriptors space is the audio fingerprint. A store without descriptors: an empty set.
    """
    from audiograph.store import DESCRIPTORS_SPACE

    if DESCRIPTORS_SPACE not in store.vectors.spaces():
        return set()
    index = store.vectors.index(DESCRIPTORS_SPACE)
    fingerprint = next((index.vector(t) for t in sorted(known) if index.vector(t) is not None), None)
    if fingerprint is None:
        model_id = store.vectors.search_model(DESCRIPTORS_SPACE)[0]
        model_row = store.models.get(model_id)
        if model_row is None or "frontend" not in model_row["config"]:
            return set()
        fingerprint = index.normalise(file_vector(store, model_row, file))
    return set(index.matching(fingerprint))


def track_label(hit: dict) -> str:
    """ "Artist – Title" from tags, else the file name."""
    if hit.get("title"):
        return f"{hit.get('artist') or 'Unknown'} – {hit['title']}"
    return Path(hit.get("path") or hit["track_id"]).stem


def format_hits(hits: list[dict], extra: tuple[str, ...] = (), wide: bool = False) -> str:
    """Hits as a table: rank, score, artist – title, any `extra` track columns, and with `wide` the path
    (without it, the table fits 100 columns)."""
    rows = [[h["rank"], f"{h['score']:.3f}", track_label(h), *(h.get(c) for c in extra)] for h in hits]
    headers = ["rank", "score", "artist – title", *extra]
    if wide:
        headers.append("path")
        for row, h in zip(rows, hits):
            row.append(h.get("path") or h["track_id"])
    else:  # long tags are cut short, the label last, so that a row fits TABLE_WIDTH columns
        rows = [
            [*row[:2], one_line(row[2]), *(shortened(one_line(c or ""), EXTRA_WIDTH) for c in row[3:])] for row in rows
        ]
        # tabulate pads a column to its header's width plus 2 at least, and joins columns with 2 spaces
        others = [
            max([len(headers[i]) + 2, *(display_width(str(row[i])) for row in rows)])
            for i in range(len(headers))
            if i != 2
        ]
        room = max(MIN_LABEL_WIDTH, TABLE_WIDTH - sum(others) - 2 * len(others))
        rows = [[*row[:2], shortened(row[2], room), *row[3:]] for row in rows]
    return format_table(headers, rows, right={0, 1})
