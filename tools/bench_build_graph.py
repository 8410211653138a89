"""build-graph on an input the size of a Million Playlist Dataset slice, next to its bare parts.

    python tools/bench_build_graph.py [--playlists 1000] [--tracks 30000] [--mean-length 66]

Writes an MPD-format JSON slice (playlist lengths and track popularity skewed like the MPD's),
then times `build_graph(..., add_missing=True)` end to end on a fresh store, next to two
references measured in the same run: parsing the JSON alone, and the co-occurrence algebra alone
(the sparse incidence matrix's transpose times itself).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from audiograph.pipelines.build_graph import build_graph
from audiograph.store import Store


def write_slice(path: Path, playlists: int, tracks: int, mean_length: int, seed: int) -> int:
    """An MPD-style slice; returns the number of memberships."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, tracks + 1) ** 0.8  # Zipf-like: a few tracks are everywhere
    popularity /= popularity.sum()
    items, total = [], 0
    for pid in range(playlists):
        length = int(np.clip(rng.lognormal(np.log(mean_length) - 0.3, 0.75), 5, 250))
        chosen = rng.choice(tracks, size=length, replace=False, p=popularity)
        total += length
        items.append(
            {
                "pid": pid,
                "name": f"playlist {pid}",
                "tracks": [
                    {
                        "pos": i,
                        "track_uri": f"spotify:track:{t:08d}",
                        "track_name": f"track {t}",
                        "artist_name": f"artist {t % 997}",
                        "duration_ms": 200_000,
                    }
                    for i, t in enumerate(chosen.tolist())
                ],
            }
        )
    path.write_text(json.dumps({"info": {"slice": f"0-{playlists - 1}"}, "playlists": items}))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--playlists", type=int, default=1000)
    parser.add_argument("--tracks", type=int, default=30_000)
    parser.add_argument("--mean-length", type=int, default=66)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "mpd.slice.0-999.json"
        memberships = write_slice(source, args.playlists, args.tracks, args.mean_length, args.seed)

        started = time.perf_counter()
        data = json.loads(source.read_text())
        parse_seconds = time.perf_counter() - started
        ids = {}
        rows, cols = [], []
        for p, playlist in enumerate(data["playlists"]):
            for t in playlist["tracks"]:
                rows.append(p)
                cols.append(ids.setdefault(t["track_uri"], len(ids)))
        started = time.perf_counter()
        incidence = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(data["playlists"]), len(ids))
        )
        product = incidence.T @ incidence
        algebra_seconds = time.perf_counter() - started

        store = Store(Path(tmp) / "bench.db")
        started = time.perf_counter()
        report = build_graph(store, [source], add_missing=True, min_weight=1)
        build_seconds = time.perf_counter() - started

    s = report.summary
    print(f"input: {args.playlists} playlists, {memberships:,} memberships, {len(ids):,} distinct tracks")
    print(
        f"graph: {s['nodes']:,} nodes, {s['edges']:,} edges (bare product: {(product.nnz - product.diagonal().astype(bool).sum()) // 2:,})"
    )
    print(f"{'build_graph (parse, match, add tracks, algebra, store)':<58} {build_seconds:8.2f} s")
    print(f"{'reference: json.loads of the slice':<58} {parse_seconds:8.2f} s")
    print(f"{'reference: incidence.T @ incidence (scipy)':<58} {algebra_seconds:8.2f} s")


if __name__ == "__main__":
    main()
