"""build-graph on an input the size of a Million Playlist Dataset slice, next to its bare parts.

    python tools/bench_build_graph.py [--playlists 1000] [--tracks 30000] [--mean-length 66] [--json] [--quick]

Writes an MPD-format JSON slice (playlist lengths and track popularity skewed like the MPD's),
then times `build_graph(..., add_missing=True)` end to end on a fresh store, next to two
references measured in the same run: parsing the JSON alone, and the co-occurrence algebra alone
(the sparse incidence matrix's transpose times itself). The three are timed in alternation (build_graph
on a fresh store each time), so that a change in the machine's load moves all of them; every figure is
the median of `--repeats` rounds after one warm-up round.
With `--json` the figures go to stdout as one JSON object (`seconds`, `parse_seconds`, `algebra_seconds`)
and the table to stderr.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from benchlib import alternating_medians, report_to_stderr, say

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


def incidence_entries(data: dict) -> tuple[list[int], list[int], int]:
    """(playlist rows, track columns, distinct tracks) of the parsed slice's memberships."""
    ids = {}
    rows, cols = [], []
    for p, playlist in enumerate(data["playlists"]):
        for t in playlist["tracks"]:
            rows.append(p)
            cols.append(ids.setdefault(t["track_uri"], len(ids)))
    return rows, cols, len(ids)


def cooccurrence_product(rows: list[int], cols: list[int], shape: tuple[int, int]) -> sp.csr_matrix:
    """The bare algebra: the sparse incidence matrix's transpose times itself."""
    incidence = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=shape)
    return incidence.T @ incidence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--playlists", type=int, default=1000)
    parser.add_argument("--tracks", type=int, default=30_000)
    parser.add_argument("--mean-length", type=int, default=66)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (median), after one warm-up round")
    parser.add_argument("--quick", action="store_true", help="a small slice, one round: checks that it runs")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    args = parser.parse_args()
    if args.quick:
        args.playlists, args.tracks, args.repeats = 50, 2_000, 1
    if args.json:
        report_to_stderr()

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "mpd.slice.0-999.json"
        memberships = write_slice(source, args.playlists, args.tracks, args.mean_length, args.seed)
        data = json.loads(source.read_text())
        rows, cols, distinct = incidence_entries(data)
        shape = (len(data["playlists"]), distinct)
        product = cooccurrence_product(rows, cols, shape)
        reports = []

        def run_build_graph() -> None:
            folder = Path(tmp) / f"store{len(reports)}"  # a fresh store each time: nothing to replace
            folder.mkdir()
            reports.append(build_graph(Store(folder / "bench.db"), [source], add_missing=True, min_weight=1))

        build_seconds, parse_seconds, algebra_seconds = alternating_medians(
            [run_build_graph, lambda: json.loads(source.read_text()), lambda: cooccurrence_product(rows, cols, shape)],
            args.repeats,
        )

    s = reports[-1].summary
    bare_edges = (product.nnz - product.diagonal().astype(bool).sum()) // 2
    say(f"input: {args.playlists} playlists, {memberships:,} memberships, {distinct:,} distinct tracks")
    say(f"graph: {s['nodes']:,} nodes, {s['edges']:,} edges (bare product: {bare_edges:,})")
    say(f"median of {args.repeats} rounds after a warm-up, timed in alternation")
    say(f"{'build_graph (parse, match, add tracks, algebra, store)':<58} {build_seconds:8.2f} s")
    say(f"{'reference: json.loads of the slice':<58} {parse_seconds:8.2f} s")
    say(f"{'reference: incidence.T @ incidence (scipy)':<58} {algebra_seconds:8.2f} s")
    overhead = build_seconds / (parse_seconds + algebra_seconds)
    say(f"{'build_graph over the two references together':<58} {overhead:8.1f} x")
    if args.json:
        figures = {
            "seconds": build_seconds,
            "parse_seconds": parse_seconds,
            "algebra_seconds": algebra_seconds,
            "playlists": args.playlists,
            "memberships": memberships,
            "edges": s["edges"],
            "bare_product_edges": int(bare_edges),
        }
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
