"""`import_tracks`: tracks without audio (ids, tags, feature groups, genre, popularity) from a CSV."""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from audiograph.errors import ConfigError, existing_file
from audiograph.graph.readers import csv_rows
from audiograph.models import IMPORT_KIND
from audiograph.runtime import gc_paused, keyword_defaults
from audiograph.store import POPULARITY_SPACE, Store, TrackRecord, path_text

# What a track's audio said about it: an import never overwrites these.
_AUDIO_COLUMNS = tuple("collection path content_hash size mtime_ns duration sample_rate channels format".split())


@dataclass
class ImportReport:
    """What `import_tracks` read and stored."""

    rows: int = 0
    tracks: int = 0  # tracks the import wrote: new ones and stored ones it updated
    updated: int = 0  # of them, tracks that were stored already (a file's tags, an earlier import's rows)
    feature_groups: dict[str, int] = field(default_factory=dict)  # group -> dimensions
    genres: int = 0
    skipped: list[str] = field(default_factory=list)  # "file:line: reason"
    # "file:line: ..." for each row that repeats a track id with other values (the first row's are kept)
    conflicting: list[str] = field(default_factory=list)
    extended: dict[str, str] = field(default_factory=dict)  # group -> the existing model this import added to
    replaced: list[str] = field(default_factory=list)  # one sentence per feature space whose model changed

    def to_json(self) -> dict:
        return asdict(self)


def feature_columns(features: dict[str, list[str] | str] | list[str] | str | None) -> dict[str, list[str]]:
    """Feature groups as {group: [column, ...]}, from that, from {group: "col1,col2"}, or from the command
    line's "group=col1,col2" (one or a list)."""
    if not features:
        return {}
    if isinstance(features, str):
        features = [features]
    if not isinstance(features, dict):
        return parse_feature_groups(list(features))
    groups = {}
    for group, cols in features.items():
        cols = cols.split(",") if isinstance(cols, str) else list(cols)
        groups[group] = [c.strip() for c in cols if c.strip()]
        if not groups[group]:
            raise ConfigError(f"feature group {group!r} names no column")
    return groups


def parse_feature_groups(specs: list[str]) -> dict[str, list[str]]:
    """["audio=a,b,c", ...] -> {"audio": ["a", "b", "c"]}."""
    groups = {}
    for spec in specs:
        name, _, columns = spec.partition("=")
        cols = [c.strip() for c in columns.split(",") if c.strip()]
        if not name.strip() or not cols:
            raise ConfigError(f"--features expects GROUP=col1,col2,... (got {spec!r})")
        groups[name.strip()] = cols
    return groups


@gc_paused()
def import_tracks(
    store: Store,
    csv_path: str | os.PathLike,
    *,
    id_col: str = "track_id",
    features: dict[str, list[str] | str] | list[str] | str | None = None,
    genre_col: str | None = None,
    popularity_col: str | None = None,
    title_col: str | None = None,
    artist_col: str | None = None,
    playlist_col: str | None = None,
) -> ImportReport:
    """Add (or update) one audio-less track per distinct id in the CSV.

    Each feature group becomes a vector space of that name; `popularity_col` becomes the
    one-dimensional `popularity` space. A track listed on several rows takes its genre by
    majority; with `playlist_col`, each row's genre is kept as a vote from that playlist, so that
    labels can later be derived from chosen playlists only. Tracks already in the store with
    audio keep their audio-derived data and status; imported tracks keep every column this import
    does not give (a CSV without `genre_col` keeps their genres).

    A feature group imported again with the same columns extends its existing space (the same
    model id, whatever the CSV); other columns make a new model, which searches and MUSIG then use,
    and the report says which model it replaced and how many tracks only the old one covers.
    """
    path = Path(csv_path)
    features = feature_columns(features)
    for group in features:
        store.models.check_space(group, IMPORT_KIND)
    columns = _csv_columns(id_col, features, genre_col, popularity_col, title_col, artist_col, playlist_col)
    rows = list(csv_rows(existing_file(path), columns))
    report = ImportReport(rows=len(rows))
    _check_numeric_columns(path, rows, features)
    existing = {t["id"]: t for t in store.tracks.rows(status=None)}
    stored_id = _stored_file_ids(existing, path)
    first, votes, values = _collect_tracks(
        path, rows, id_col, stored_id, features, genre_col, popularity_col, playlist_col, report
    )
    if rows and not first:  # nothing to import: say why before the store changes at all
        more = f" (and {len(report.skipped) - 1} more rows like it)" if len(report.skipped) > 1 else ""
        raise ConfigError(f"no row could be imported: {report.skipped[0]}{more}")
    compared = [c for c in (popularity_col, title_col, artist_col) if c] + [c for cs in features.values() for c in cs]
    report.conflicting = _conflicting_rows(path, rows, id_col, stored_id, first, compared)

    # One transaction: a run killed midway leaves no feature model without its vectors.
    with store.transaction():
        models = {}
        for group, cols in [*features.items(), *([(POPULARITY_SPACE, [popularity_col])] if popularity_col else [])]:
            models[group] = _feature_model(store, group, cols, path, set(first), report)
            report.feature_groups[group] = len(cols)

        records = []
        for track_id, row in first.items():
            genre = Counter(g for _, g in votes.get(track_id, [])).most_common(1)
            record = _track_record(track_id, row, existing.get(track_id), genre, title_col, artist_col)
            record.vectors = {group: (models[group], vector) for group, vector in values[track_id].items()}
            records.append(record)
        store.tracks.write(records)
        if playlist_col:  # votes of playlists; without them a row's genre is the track's own label
            store.graph.put_genre_votes({t: v for t, v in votes.items() if t in first})
    report.tracks = len(records)
    report.updated = sum(1 for track_id in first if track_id in existing)
    report.genres = len({g for vs in votes.values() for _, g in vs})
    return report


def _csv_columns(id_col: str, features: dict[str, list[str]], *named: str | None) -> list[str | None]:
    """Every column an import reads: the id, the named ones (None: not asked for) and each feature group's."""
    return [id_col, *named, *(c for cols in features.values() for c in cols)]


def check_import_csv(csv_path: str | os.PathLike, **options) -> None:
    """A `ConfigError` naming what `import_tracks` with these keyword `options` would miss in the CSV (the file,
    or columns), read from its header alone: before a store is made."""
    o = keyword_defaults(import_tracks)
    if unknown := sorted(set(options) - set(o)):
        raise TypeError(f"check_import_csv() got options import_tracks does not take: {', '.join(unknown)}")
    o.update(options)
    named = [o[k] for k in ("genre_col", "popularity_col", "title_col", "artist_col", "playlist_col")]
    next(
        iter(csv_rows(existing_file(csv_path), _csv_columns(o["id_col"], feature_columns(o["features"]), *named))), None
    )


def _collect_tracks(
    path: Path,
    rows: list[tuple[int, dict]],
    id_col: str,
    stored_id: Callable[[str], str],
    features: dict[str, list[str]],
    genre_col: str | None,
    popularity_col: str | None,
    playlist_col: str | None,
    report: ImportReport,
) -> tuple[dict[str, dict], dict[str, list[tuple[str, str]]], dict[str, dict[str, np.ndarray]]]:
    """(track id -> its first usable row, track id -> its (source, genre) votes, track id -> its vectors)."""
    first: dict[str, dict] = {}
    votes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    values: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for line, row in rows:
        track_id = stored_id((row.get(id_col) or "").strip())
        if not track_id:
            report.skipped.append(f"{path}:{line}: empty {id_col}")
            continue
        if row.get(None):  # csv.DictReader's place for fields beyond the header: the columns have shifted
            report.skipped.append(f"{path}:{line}: more fields than the header has columns (an unquoted comma?)")
            continue
        if track_id not in first:
            vectors = _row_vectors(path, line, row, features, popularity_col, report)
            if vectors is None:
                continue
            first[track_id] = row
            values[track_id] = vectors
        if genre_col and (row.get(genre_col) or "").strip():
            source = (row.get(playlist_col) or "").strip() if playlist_col else ""
            votes[track_id].append((source or f"{path.name}:{line}", row[genre_col].strip()))
    return first, votes, values


def _stored_file_ids(existing: dict[str, dict], csv_path: Path) -> Callable[[str], str]:
    """A CSV's track id -> the id of the stored audio file it names by path (absolute, or relative to the CSV's
    folder, as in a playlist), else the id itself: a CSV of features keyed by file path then describes the files
    `embed-audio` stored, rather than adding tracks without audio beside them."""
    by_path = {t["path"]: t["id"] for t in existing.values() if t["path"]}

    @functools.cache
    def stored_id(track_id: str) -> str:
        if not by_path or track_id in existing or not any(sep in track_id for sep in {"/", os.sep}):
            return track_id
        for candidate in (Path(track_id), csv_path.parent / track_id):
            found = by_path.get(path_text(candidate.resolve()))
            if found is not None:
                return found
        return track_id

    return stored_id


def _conflicting_rows(
    path: Path,
    rows: list[tuple[int, dict]],
    id_col: str,
    stored_id: Callable[[str], str],
    first: dict[str, dict],
    columns: list[str],
) -> list[str]:
    """One line per row that repeats a kept track's id with another value in one of `columns`, naming the first
    such column (a track listed in several playlists normally repeats its values exactly)."""
    first_line, found = {}, []
    for line, row in rows:
        track_id = stored_id((row.get(id_col) or "").strip())
        kept = first.get(track_id)
        if kept is row:  # a kept row comes before every row that repeats its track
            first_line[track_id] = line
        if kept is None or kept is row or row.get(None):
            continue
        column = next((c for c in columns if _cell(row, c) != _cell(kept, c)), None)
        if column is not None:
            found.append(
                f"{path}:{line}: '{column}' is {_cell(row, column) or ''!r}, where line {first_line[track_id]}"
                f" has {_cell(kept, column) or ''!r} for the same track; the first row's values are kept"
            )
    return found


def _check_numeric_columns(path: Path, rows: list[tuple[int, dict]], features: dict[str, list[str]]) -> None:
    """A `ConfigError` for a feature column of which most filled cells are not numbers (a title or a genre
    named by mistake): importing the few that parse would make a space of noise. A numeric column with some
    bad cells imports, and its rows are reported one by one."""
    for group, cols in features.items():
        for column in cols:
            filled = [row[column].strip() for _, row in rows if (row.get(column) or "").strip()]
            text = [value for value in filled if not _parses(value) and not _parses(value.replace(",", "."))]
            if filled and len(text) > len(filled) / 2:
                raise ConfigError(
                    f"{path}: column '{column}' of feature group '{group}' is not numeric: {len(text)} of its"
                    f" {len(filled)} values are not numbers (such as {text[0]!r}); feature groups take numeric columns"
                )


def _row_vectors(
    path: Path, line: int, row: dict, features: dict[str, list[str]], popularity_col: str | None, report: ImportReport
) -> dict[str, np.ndarray] | None:
    """One row's vectors by space, or None (reported as skipped, naming the cell) when a feature group is not
    numeric."""
    vectors = {}
    for group, cols in features.items():
        vector = [_number(row[c]) for c in cols]
        if any(v is None for v in vector):
            column = cols[[v is None for v in vector].index(True)]
            report.skipped.append(f"{path}:{line}: no {group} vector: {_number_problem(column, row[column])}")
            vectors = None
            break
        vectors[group] = np.asarray(vector, np.float32)
    if popularity_col:
        popularity = _number(row[popularity_col])
        if popularity is not None:
            vectors = {**(vectors or {}), POPULARITY_SPACE: np.asarray([popularity], np.float32)}
        elif (row[popularity_col] or "").strip():  # an empty cell gives no popularity, and says nothing
            report.skipped.append(
                f"{path}:{line}: no popularity: {_number_problem(popularity_col, row[popularity_col])}"
            )
    return vectors


def _number_problem(column: str, value: str | None) -> str:
    """Why the cell `value` of `column` is not a feature value, in words."""
    if value is None:
        return "the row has fewer fields than the header has columns"
    if not value.strip():
        return f"'{column}' is empty"
    try:
        number = float(value)
    except ValueError:
        problem = f"'{column}' is not a number ({value.strip()!r})"
        if _number(value.replace(",", ".")) is not None:
            problem += "; a decimal comma? numbers are read with a decimal point"
        return problem
    if not math.isfinite(number):
        return f"'{column}' is not finite ({value.strip()!r})"
    return f"'{column}' is beyond ±{MAX_FEATURE_MAGNITUDE:g} ({value.strip()!r}): rescale the column"


def _track_record(
    track_id: str,
    row: dict,
    old: dict | None,
    genre: list[tuple[str, int]],
    title_col: str | None,
    artist_col: str | None,
) -> TrackRecord:
    """The record of one imported track (without vectors): a track with audio keeps what its audio said and takes
    from the CSV only what its tags lack, and a stored file that would not decode stays a failed file,
    described by the CSV."""
    kept = {k: old[k] for k in ("title", "artist", "album", "genre")} if old else {}
    given = {
        "title": _cell(row, title_col),
        "artist": _cell(row, artist_col),
        "genre": genre[0][0] if genre else None,
    }
    if old and old["status"] == "ok":
        tags = {**kept, **{k: v for k, v in given.items() if v is not None and not kept.get(k)}}
        return TrackRecord(id=track_id, **{k: old[k] for k in _AUDIO_COLUMNS}, tags=tags)
    # Only the columns this CSV gives replace what an earlier import stored.
    tags = {**kept, **{k: v for k, v in given.items() if v is not None}}
    if old and old["path"] is not None:
        file = {k: old[k] for k in _AUDIO_COLUMNS}
        return TrackRecord(id=track_id, **file, status=old["status"], error=old["error"], tags=tags)
    return TrackRecord(id=track_id, collection=None, path=None, status="imported", tags=tags)


def _feature_model(
    store: Store, group: str, columns: list[str], csv_path: Path, tracks: set[str], report: ImportReport
) -> str:
    """The model id for `columns` of feature group `group`: the existing one with these columns, or a
    new one. Either way it becomes the space's current model; a change of model is reported."""
    registered = store.models.rows(kind=IMPORT_KIND, space=group)
    same = next((r["id"] for r in registered if r["config"].get("columns") == columns), None)
    digest = hashlib.blake2b(",".join(columns).encode(), digest_size=4).hexdigest()
    model_id = same or f"{IMPORT_KIND}:{group}@{digest}"
    current = store.vectors.search_model(group)[0] if group in store.vectors.spaces() else None
    csvs = (store.models.get(model_id) or {}).get("config", {}).get("csv", [])
    csvs = [csvs] if isinstance(csvs, str) else csvs
    # Searched z-scored, as the descriptors are: raw columns (tempo in BPM beside shares in [0, 1]) would let
    # the largest decide every cosine.
    config = {"csv": sorted({*csvs, str(csv_path.resolve())}), "columns": columns, "standardize": True}
    store.models.register(model_id, IMPORT_KIND, group, config=config, current=True)
    if same is not None:
        report.extended[group] = model_id
    if current is not None and current != model_id:
        old = store.models.get(current) or {}
        left = sum(1 for t, (m, _) in store.vectors.states(group).items() if m == current and t not in tracks)
        old_columns = ",".join(old.get("config", {}).get("columns", [])) or "unknown"
        report.replaced.append(
            f"feature group '{group}': model {model_id} (columns {','.join(columns)}) replaces {current} (columns"
            f" {old_columns}) in searches and MUSIG; {left} tracks have '{group}' features only from {current}"
            f" and are left out until imported with these columns"
        )
    return model_id


# Feature values are stored and standardised in float32, whose squares overflow above about 1e19: a larger
# value would make a space's z-scores infinite (no real feature comes near it).
MAX_FEATURE_MAGNITUDE = 1e15


def _parses(text: str) -> bool:
    """Whether `text` reads as a number at all (if perhaps not one a feature can take)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and abs(value) <= MAX_FEATURE_MAGNITUDE else None


def _cell(row: dict, column: str | None) -> str | None:
    return (row.get(column) or "").strip() or None if column else None
