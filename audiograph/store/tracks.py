"""Tracks and the collections they come from: one row per file (or imported track), written atomically
with its vectors and log-mel chunks."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiograph.errors import ConfigError
from audiograph.store.connection import Connection, path_text, utc_now
from audiograph.store.mels import MelCache
from audiograph.store.vectors import Vectors

_TRACK_COLUMNS = (
    "id",
    "collection",
    "path",
    "size",
    "mtime_ns",
    "content_hash",
    "duration",
    "sample_rate",
    "channels",
    "format",
    "title",
    "artist",
    "album",
    "genre",
    "status",
    "error",
    "updated",
)
_UPSERT_TRACK = (
    f"INSERT INTO tracks ({', '.join(_TRACK_COLUMNS)}) VALUES ({', '.join('?' * len(_TRACK_COLUMNS))})"
    " ON CONFLICT(id) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in _TRACK_COLUMNS if c != "id")
)


@dataclass
class TrackRecord:
    """Everything one analysed (or failed) file contributes to the store, written atomically."""

    id: str
    collection: str | None
    path: str | None
    content_hash: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    status: str = "ok"
    error: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    format: str | None = None
    tags: dict = field(default_factory=dict)
    vectors: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # space -> (model id, vector)
    mel_chunks: list[np.ndarray] | None = None  # float16 [n_mels, frames] each
    frontend: str | None = None  # signature of the front-end that made mel_chunks

    def row(self, now: str) -> list:
        """The values of the `tracks` row, in `_TRACK_COLUMNS` order."""
        tag = self.tags.get
        return [
            self.id,
            self.collection,
            self.path,
            self.size,
            self.mtime_ns,
            self.content_hash,
            self.duration,
            self.sample_rate,
            self.channels,
            self.format,
            tag("title"),
            tag("artist"),
            tag("album"),
            tag("genre"),
            self.status,
            self.error,
            now,
        ]


class Tracks:
    """The `tracks` and `collections` tables."""

    def __init__(self, store: Connection, vectors: Vectors, mels: MelCache):
        self.store, self.vectors, self.mels = store, vectors, mels

    def collection(self, root: Path, name: str | None = None) -> str:
        """The collection name for `root` (registering it), so ids of two roots never collide."""
        root = path_text(Path(root).resolve())
        if name is None:
            known = self.store.execute("SELECT name FROM collections WHERE root = ?", [root]).fetchone()
            if known:
                return known[0]
            name = path_text(Path(root).name) or "collection"
        if "/" in name or not name.strip():
            raise ConfigError(f"collection name {name!r} must be non-empty and contain no '/'")
        existing = self.store.execute("SELECT root FROM collections WHERE name = ?", [name]).fetchone()
        if not existing:
            with self.store.transaction():  # OR IGNORE: a concurrent run may register the same root first
                self.store.execute(
                    "INSERT OR IGNORE INTO collections (name, root, created) VALUES (?, ?, ?)", [name, root, utc_now()]
                )
            existing = self.store.execute("SELECT root FROM collections WHERE name = ?", [name]).fetchone()
        if existing[0] != root:
            raise ConfigError(
                f"collection '{name}' already refers to {existing[0]}; name this one with --collection NAME"
            )
        return name

    def get(self, track_id: str) -> dict | None:
        """One track row, or None. An id as typed (a file name that is not UTF-8 among it) is looked up as stored."""
        rows = list(self.store.query("SELECT * FROM tracks WHERE id = ?", [path_text(track_id)]))
        return rows[0] if rows else None

    def rows(self, status: str | None = "ok") -> list[dict]:
        """Track rows ordered by id; `status=None` for all."""
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        return list(self.store.query(f"SELECT * FROM tracks {where} ORDER BY id", args))

    def by_path(self, path: str | os.PathLike) -> dict | None:
        """The row of the stored file at `path`, or None."""
        rows = list(self.store.query("SELECT * FROM tracks WHERE path = ?", [path_text(Path(path).resolve())]))
        return rows[0] if rows else None

    def by_hash(self, content_hash: str) -> list[dict]:
        """The usable tracks whose file has this content hash."""
        return list(self.store.query("SELECT * FROM tracks WHERE content_hash = ? AND status = 'ok'", [content_hash]))

    def genres_of_artist(self, artist: str) -> dict[str, str]:
        """id -> genre of the stored tracks with a genre by `artist` (compared case-insensitively)."""
        wanted = artist.strip().casefold()
        rows = self.store.execute("SELECT id, artist, genre FROM tracks WHERE genre IS NOT NULL AND artist IS NOT NULL")
        return {t: genre for t, a, genre in rows if a.strip().casefold() == wanted and genre}

    def node_ids(self) -> list[str]:
        """The graph's nodes: every usable track (decoded or imported), ordered by id."""
        return [r[0] for r in self.store.execute("SELECT id FROM tracks WHERE status != 'failed' ORDER BY id")]

    def status_counts(self) -> dict[str, int]:
        """status -> number of tracks."""
        return dict(self.store.execute("SELECT status, count(*) FROM tracks GROUP BY status").fetchall())

    def file_states(self, collection: str) -> dict[str, dict]:
        """id -> the stored size, mtime, hash, status and error of a collection's files (for change detection)."""
        rows = self.store.query(
            "SELECT id, size, mtime_ns, content_hash, status, error FROM tracks WHERE collection = ?", [collection]
        )
        return {r["id"]: r for r in rows}

    def paths_elsewhere(self, collection: str) -> dict[str, str]:
        """path -> collection, for the files stored by every other collection (an enclosing or enclosed folder
        embedded under its own name holds the same files)."""
        rows = self.store.execute(
            "SELECT path, collection FROM tracks WHERE collection IS NOT ? AND path IS NOT NULL", [collection]
        )
        return dict(rows.fetchall())

    def duplicates(self, collection: str) -> list[dict]:
        """Groups of a collection's files with the same content: {content_hash, paths}."""
        rows = self.store.execute(
            """SELECT content_hash, json_group_array(path) FROM tracks
               WHERE collection = ? AND status = 'ok' GROUP BY content_hash HAVING count(*) > 1""",
            [collection],
        ).fetchall()
        return [{"content_hash": h, "paths": sorted(json.loads(paths))} for h, paths in rows]

    def write(self, records: list[TrackRecord]) -> None:
        """Write tracks with their vectors and mel chunks in one transaction: all of a batch or none."""
        now = utc_now()
        with self.store.transaction():
            for r in records:
                r.id, r.path = path_text(r.id), None if r.path is None else path_text(r.path)
            # One statement for every row (an import adds tens of thousands at once), then each row's payload.
            self.store.conn.executemany(_UPSERT_TRACK, [r.row(now) for r in records])
            vectors = []
            for r in records:
                if r.status == "failed":
                    # A file that no longer decodes must not keep vectors of its old content.
                    self.vectors.delete_track(r.id)
                    self.mels.delete(r.id)
                    continue
                vectors += [
                    (space, r.id, model, r.content_hash, vector) for space, (model, vector) in r.vectors.items()
                ]
                if r.mel_chunks is not None:
                    self.mels.put(r.id, r.content_hash, r.frontend, r.mel_chunks, now)
            self.vectors.put_rows(vectors, now)
        self.vectors.forget_indexes()

    def touch(self, states: list[tuple[str, int, int]]) -> None:
        """Record new (size, mtime_ns) for files whose content turned out unchanged."""
        with self.store.transaction():
            self.store.conn.executemany(
                "UPDATE tracks SET size = ?, mtime_ns = ? WHERE id = ?", [(s, m, i) for i, s, m in states]
            )

    def delete(self, track_ids: list[str]) -> None:
        """Remove tracks with their vectors and cached log-mels."""
        with self.store.transaction():
            for track_id in track_ids:
                self.vectors.delete_track(track_id)
                self.mels.delete(track_id)
                self.store.execute("DELETE FROM tracks WHERE id = ?", [track_id])
        self.vectors.forget_indexes()
