"""Playlists and the co-occurrence graph built from them; callers build graph objects from the arrays these
return.

Playlists are tables. The graph's nodes are a table too (`graph_nodes`: position, track id), but its edges,
millions of them for a Million Playlist Dataset slice, are three little-endian arrays in `graph_arrays`
(src and dst node positions as int32, weight as float32; each undirected edge once, src < dst): written and
read in a fraction of a second, where one SQL row per edge took seconds each way. `build-graph --graphml`
exports the graph for other tools.
"""

from __future__ import annotations

import numpy as np

from audiograph.errors import StoreError
from audiograph.store.connection import Connection


class GraphTables:
    """The `playlists`, `playlist_tracks`, `edges` and `genre_votes` tables."""

    def __init__(self, store: Connection):
        self.store = store

    def replace(
        self,
        playlists: list[tuple[str, str, str, int, list[str]]],
        nodes: list[str],
        edges: tuple[np.ndarray, np.ndarray, np.ndarray],
        info: dict,
    ) -> dict | None:
        """Replace the stored playlists and graph in one transaction; returns `summary()` as it was.

        `playlists` holds (id, name, source, entries listed, matched track ids in order); `nodes` the
        graph's track ids, and `edges` parallel arrays (src, dst, weight) of undirected edges, each once,
        as positions in `nodes`.
        """
        src, dst, weight = (np.asarray(a) for a in edges)
        if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= len(nodes)):
            raise ValueError("edge ends must be positions in `nodes`")
        with self.store.transaction():
            previous = self.summary()
            for table in ("playlist_tracks", "playlists", "graph_nodes", "graph_arrays"):
                self.store.execute(f"DELETE FROM {table}")
            self.store.conn.executemany(
                "INSERT INTO playlists (id, name, source, entries, matched) VALUES (?, ?, ?, ?, ?)",
                [(pid, name, source, entries, len(tracks)) for pid, name, source, entries, tracks in playlists],
            )
            self.store.conn.executemany(
                "INSERT INTO playlist_tracks (playlist_id, position, track_id) VALUES (?, ?, ?)",
                [(pid, i, t) for pid, _, _, _, tracks in playlists for i, t in enumerate(tracks)],
            )
            self.store.conn.executemany("INSERT INTO graph_nodes (position, track_id) VALUES (?, ?)", enumerate(nodes))
            low, high = np.minimum(src, dst), np.maximum(src, dst)
            for name, array in (
                ("src", low.astype("<i4")),
                ("dst", high.astype("<i4")),
                ("weight", weight.astype("<f4")),
            ):
                self.store.execute(
                    "INSERT INTO graph_arrays (name, dtype, length, data) VALUES (?, ?, ?, ?)",
                    [name, array.dtype.str, len(array), array.tobytes()],
                )
            self.store.set_meta("graph", info)
        return previous

    def summary(self) -> dict | None:
        """The stored graph in brief, {playlists, edges, sources, built}, or None when there is none."""
        info = self.store.get_meta("graph")
        if info is None:
            return None
        count = self.store.execute(
            "SELECT (SELECT count(*) FROM playlists), (SELECT coalesce(max(length), 0) FROM graph_arrays)"
        ).fetchone()
        with self.store.damaged("the stored 'graph' value"):
            sources, built = info.get("sources", []), info.get("built")
            if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
                raise ValueError("its sources are not a list of names")
        return {"playlists": count[0], "edges": count[1], "sources": sources, "built": str(built)}

    def playlists(self) -> list[dict]:
        """Stored playlists with their matched track ids in order: {id, name, source, tracks}."""
        members: dict[str, list[str]] = {}
        for pid, track_id in self.store.execute(
            "SELECT playlist_id, track_id FROM playlist_tracks ORDER BY playlist_id, position"
        ):
            members.setdefault(pid, []).append(track_id)
        return [
            {"id": r["id"], "name": r["name"], "source": r["source"], "tracks": members.get(r["id"], [])}
            for r in self.store.query("SELECT * FROM playlists ORDER BY id")
        ]

    def edges(self, node_ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored edges among `node_ids` as positions in that list: (src, dst, weight) arrays."""
        if self.store.get_meta("graph") is None:
            raise StoreError(f"{self.store.path}: no graph yet (run `audiograph build-graph PLAYLISTS...`)")
        position = {t: i for i, t in enumerate(node_ids)}
        stored = [t for (t,) in self.store.execute("SELECT track_id FROM graph_nodes ORDER BY position")]
        # stored node position -> position in `node_ids`, or -1 for a node the caller left out
        lookup = np.fromiter((position.get(t, -1) for t in stored), np.int64, len(stored))
        with self.store.damaged("the stored graph"):
            arrays = {
                name: np.frombuffer(data, dtype=_stored_dtype(dtype), count=length)
                for name, dtype, length, data in self.store.execute(
                    "SELECT name, dtype, length, data FROM graph_arrays"
                )
            }
            if not arrays:
                return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
            src, dst, weight = arrays["src"], arrays["dst"], arrays["weight"]
            if not len(src) == len(dst) == len(weight) or (
                len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= len(stored))
            ):
                raise ValueError("its edges do not fit its nodes")
            src, dst = lookup[src], lookup[dst]
            keep = (src >= 0) & (dst >= 0)
            return src[keep], dst[keep], weight[keep].astype(np.float32)

    def count_nodes(self, track_ids: list[str]) -> int:
        """How many of `track_ids` the stored graph has as nodes."""
        wanted, count = list(track_ids), 0
        for start in range(0, len(wanted), 500):  # SQLite's limit on bound parameters
            part = wanted[start : start + 500]
            sql = f"SELECT count(*) FROM graph_nodes WHERE track_id IN ({','.join('?' * len(part))})"
            count += self.store.execute(sql, part).fetchone()[0]
        return count

    def edge_rows(self) -> list[tuple[str, str, float]]:
        """Every stored edge as (src track id, dst track id, weight), src < dst."""
        stored = [t for (t,) in self.store.execute("SELECT track_id FROM graph_nodes ORDER BY position")]
        src, dst, weight = self.edges(stored)
        pairs = zip(src.tolist(), dst.tolist(), weight.tolist())
        return [(*sorted((stored[a], stored[b])), w) for a, b, w in pairs]

    def put_genre_votes(self, votes: dict[str, list[tuple[str, str]]]) -> None:
        """Record, per track, (source, genre) labels such as the genre of each playlist listing it."""
        with self.store.transaction():
            self.store.conn.executemany(
                "INSERT OR REPLACE INTO genre_votes (track_id, source, genre) VALUES (?, ?, ?)",
                [(t, source, genre) for t, vs in votes.items() for source, genre in vs],
            )

    def genre_votes(self) -> dict[str, list[tuple[str, str]]]:
        """track id -> [(source, genre)]."""
        out: dict[str, list[tuple[str, str]]] = {}
        for t, source, genre in self.store.execute(
            "SELECT track_id, source, genre FROM genre_votes ORDER BY track_id, source"
        ):
            out.setdefault(t, []).append((source, genre))
        return out


def _stored_dtype(name: str) -> np.dtype:
    """The dtype a graph array was written with: little-endian integers or floats, nothing else (an object
    dtype would unpickle)."""
    dtype = np.dtype(name)
    if dtype.kind not in "iuf" or dtype.newbyteorder("<") != dtype:
        raise ValueError(f"dtype {name!r} is not a little-endian number")
    return dtype
