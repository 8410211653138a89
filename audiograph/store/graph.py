"""Playlists and the co-occurrence graph built from them, as tables; callers build graph objects from
the arrays these return."""

from __future__ import annotations

import numpy as np

from audiograph.errors import StoreError
from audiograph.store.connection import Connection


class GraphTables:
    """The `playlists`, `playlist_tracks`, `edges` and `genre_votes` tables."""

    def __init__(self, store: Connection):
        self.store, self.db = store, store.db

    def replace(
        self,
        playlists: list[tuple[str, str, str, int, list[str]]],
        edges: tuple[list[str], list[str], list[float]],
        info: dict,
    ) -> dict | None:
        """Replace the stored playlists and graph in one transaction; returns `summary()` as it was.

        `playlists` holds (id, name, source, entries listed, matched track ids in order);
        `edges` holds parallel lists (src, dst, weight) of undirected edges.
        """
        with self.store.transaction():
            previous = self.summary()
            for table in ("playlist_tracks", "playlists", "edges"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.conn.executemany(
                "INSERT INTO playlists (id, name, source, entries, matched) VALUES (?, ?, ?, ?, ?)",
                [(pid, name, source, entries, len(tracks)) for pid, name, source, entries, tracks in playlists],
            )
            self.db.conn.executemany(
                "INSERT INTO playlist_tracks (playlist_id, position, track_id) VALUES (?, ?, ?)",
                [(pid, i, t) for pid, _, _, _, tracks in playlists for i, t in enumerate(tracks)],
            )
            src, dst, weight = edges
            self.db.conn.executemany(
                "INSERT INTO edges (src, dst, weight) VALUES (?, ?, ?)",
                [(min(a, b), max(a, b), float(w)) for a, b, w in zip(src, dst, weight)],
            )
            self.store.set_meta("graph", info)
        return previous

    def summary(self) -> dict | None:
        """The stored graph in brief, {playlists, edges, sources, built}, or None when there is none."""
        info = self.store.get_meta("graph")
        if info is None:
            return None
        count = self.db.execute("SELECT (SELECT count(*) FROM playlists), (SELECT count(*) FROM edges)").fetchone()
        sources, built = info.get("sources", []), info.get("built")
        return {"playlists": count[0], "edges": count[1], "sources": sources, "built": built}

    def playlists(self) -> list[dict]:
        """Stored playlists with their matched track ids in order: {id, name, source, tracks}."""
        members: dict[str, list[str]] = {}
        for pid, track_id in self.db.execute(
            "SELECT playlist_id, track_id FROM playlist_tracks ORDER BY playlist_id, position"
        ):
            members.setdefault(pid, []).append(track_id)
        return [
            {"id": r["id"], "name": r["name"], "source": r["source"], "tracks": members.get(r["id"], [])}
            for r in self.db.query("SELECT * FROM playlists ORDER BY id")
        ]

    def edges(self, node_ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored edges among `node_ids` as positions in that list: (src, dst, weight) arrays."""
        if self.store.get_meta("graph") is None:
            raise StoreError(f"{self.store.path}: no graph yet (run `audiograph build-graph PLAYLISTS...`)")
        position = {t: i for i, t in enumerate(node_ids)}
        src, dst, weight = [], [], []
        for a, b, w in self.db.execute("SELECT src, dst, weight FROM edges"):
            if a in position and b in position:
                src.append(position[a])
                dst.append(position[b])
                weight.append(w)
        return np.asarray(src, np.int64), np.asarray(dst, np.int64), np.asarray(weight, np.float32)

    def put_genre_votes(self, votes: dict[str, list[tuple[str, str]]]) -> None:
        """Record, per track, (source, genre) labels such as the genre of each playlist listing it."""
        with self.store.transaction():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO genre_votes (track_id, source, genre) VALUES (?, ?, ?)",
                [(t, source, genre) for t, vs in votes.items() for source, genre in vs],
            )

    def genre_votes(self) -> dict[str, list[tuple[str, str]]]:
        """track id -> [(source, genre)]."""
        out: dict[str, list[tuple[str, str]]] = {}
        for t, source, genre in self.db.execute(
            "SELECT track_id, source, genre FROM genre_votes ORDER BY track_id, source"
        ):
            out.setdefault(t, []).append((source, genre))
        return out
