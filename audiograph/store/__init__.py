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

    def summary(self) -> dict:
        """What the store holds: track counts by status, the graph's summary, each space's vectors by model and
        the model its searches use (`serving`), and every registered model with its vector count."""
        self.check()
        spaces = self.vectors.spaces()
        serving = {space: self.vectors.search_model(space)[0] for space in spaces}
        vectors_by_model = {m: n for models in spaces.values() for m, n in models.items()}
        models = [
            {
                **{k: m[k] for k in ("id", "kind", "space", "created")},
                "vectors": vectors_by_model.get(m["id"], 0),
                "serves": serving.get(m["space"]) == m["id"],
            }
            for m in self.models.rows()
        ]
        return {
            "store": str(self.path),
            "tracks": self.tracks.status_counts(),
            "graph": self.graph.summary(),
            "spaces": spaces,
            "serving": serving,
            "models": models,
        }

    def close(self) -> None:
        """Release the run folders this process claimed, and close the connection."""
        self.models.release_all()
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        """A store pickles as its path (for DataLoader workers and other processes, which cannot share an SQLite
        connection): the copy opens a connection of its own."""
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], must_exist=True)
