"""The store: one SQLite file that every command reads and writes (schema in README's "Store" section).

`Store` holds the connection, the migrations and the transactions; one module per concern does the rest:
`store.tracks`, `store.vectors`, `store.models`, `store.graph` and `store.mels`.
"""

from __future__ import annotations

import os

from audiograph.spaces import ACOUSTIC_SPACE, DESCRIPTORS_SPACE, MUSIG_SPACE, POPULARITY_SPACE
from audiograph.store.connection import Connection, default_db_path, on_disk, path_text, sqlite_error
from audiograph.store.graph import GraphTables
from audiograph.store.index import Hit, VectorIndex
from audiograph.store.mels import MelCache
from audiograph.store.models import ModelRegistry
from audiograph.store.tracks import TrackRecord, Tracks
from audiograph.store.vectors import Vectors

__all__ = [
    "ACOUSTIC_SPACE",
    "DESCRIPTORS_SPACE",
    "MUSIG_SPACE",
    "POPULARITY_SPACE",
    "Hit",
    "Store",
    "TrackRecord",
    "VectorIndex",
    "default_db_path",
    "on_disk",
    "path_text",
    "sqlite_error",
]


class Store(Connection):
    """One SQLite file: tracks, vectors per named space, a model registry, playlists and graph, and the
    log-mel cache, each behind its own attribute."""

    def __init__(self, path: str | os.PathLike | None = None, *, must_exist: bool = False):
        super().__init__(path, must_exist=must_exist)
        self.models = ModelRegistry(self)
        self.mels = MelCache(self)
        self.vectors = Vectors(self, self.models)
        self.tracks = Tracks(self, self.vectors, self.mels)
        self.graph = GraphTables(self)

    def close(self) -> None:
        """Release the run folders this process claimed, and close the connection."""
        self.models.release_all()
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
