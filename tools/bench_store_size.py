"""The store's size per track, by table, for the scale page: measured at a few catalogue sizes and per track.

    python tools/bench_store_size.py [--sizes 10000 100000] [--mel-tracks 200] [--json] [--quick]

Writes stores of N tracks as `embed-audio` and `embed-musig` leave them (a track row with a path and tags,
and vectors in the descriptors (42-d), acoustic (128-d) and musig (128-d) spaces), and a store of
`--mel-tracks` tracks that also hold the log-mel training cache of a long track (4 chunks of 30 s, float16),
then reads each table's pages from SQLite's `dbstat`. The reference, measured in the same run, is the raw
float32 bytes of the vectors: what the rows cost beyond them is keys, model ids, hashes and B-tree pages.
Sizes are linear in the number of tracks, so the per-track figures extrapolate.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import report_to_stderr, say

from audiograph.audio.config import AudioConfig
from audiograph.store import Store, TrackRecord

DIMS = {"descriptors": 42, "acoustic": 128, "musig": 128}


def write_store(path: Path, tracks: int, with_mels: bool, seed: int = 0) -> float:
    """A store of `tracks` tracks with a vector in each space (and the log-mel cache); returns seconds taken."""
    rng = np.random.default_rng(seed)
    config = AudioConfig()
    store = Store(path)
    start = time.perf_counter()
    for first in range(0, tracks, 5_000):
        records = []
        for i in range(first, min(tracks, first + 5_000)):
            chunks = None
            if with_mels:
                chunks = [rng.standard_normal((config.n_mels, config.chunk_frames)).astype(np.float16)] * 4
            records.append(
                TrackRecord(
                    id=f"music/Artist {i % 997:03d}/Album {i % 89:02d}/{i:07d} Track title.mp3",
                    collection="music",
                    path=f"/home/user/music/Artist {i % 997:03d}/Album {i % 89:02d}/{i:07d} Track title.mp3",
                    content_hash=f"{rng.integers(2**63):016x}{rng.integers(2**63):016x}",
                    size=5_000_000 + i,
                    mtime_ns=1_700_000_000_000_000_000 + i,
                    duration=215.0,
                    sample_rate=44100,
                    channels=2,
                    format="MP3",
                    tags={"title": f"Track title {i}", "artist": f"Artist {i % 997}", "genre": "Rock"},
                    vectors={
                        space: (f"{space}-model@0123abcd", rng.standard_normal(dim).astype(np.float32))
                        for space, dim in DIMS.items()
                    },
                    mel_chunks=chunks,
                    frontend=config.signature() if with_mels else None,
                )
            )
        store.tracks.write(records)
    seconds = time.perf_counter() - start
    store.close()
    return seconds


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes of pages per table, each table's indexes counted with it."""
    db = sqlite3.connect(path)
    owners = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
    sizes: dict[str, int] = {}
    for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
        table = owners.get(name, name)
        sizes[table] = sizes.get(table, 0) + size
    db.close()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--mel-tracks", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="small stores: checks that it runs")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.mel_tracks = [500], 20
    if args.json:
        report_to_stderr()
    raw_vector_bytes = 4 * sum(DIMS.values())
    rows, figures = [], {"raw_vector_bytes_per_track": raw_vector_bytes, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"s{n}.db"
            seconds = write_store(path, n, with_mels=False)
            sizes = table_bytes(path)
            total = path.stat().st_size
            per_track = {table: size / n for table, size in sizes.items() if size / n >= 1}
            figures["sizes"].append(
                {"tracks": n, "file_bytes": total, "bytes_per_track": per_track, "write_seconds": seconds}
            )
            rows.append((f"{n:,}", total / n, per_track.get("tracks", 0), per_track.get("vectors", 0), seconds))
        path = Path(tmp) / "mels.db"
        write_store(path, args.mel_tracks, with_mels=True)
        mel_per_track = table_bytes(path).get("mels", 0) / args.mel_tracks
        figures["mel_cache_bytes_per_track"] = mel_per_track
    say(f"{'tracks':>10} {'file B/track':>13} {'tracks B/track':>15} {'vectors B/track':>16} {'write s':>8}")
    for n, total, track_bytes, vector_bytes, seconds in rows:
        say(f"{n:>10} {total:13,.0f} {track_bytes:15,.0f} {vector_bytes:16,.0f} {seconds:8.1f}")
    say(f"reference: the raw float32 vectors (42 + 128 + 128 dimensions): {raw_vector_bytes:,} B/track")
    say(f"log-mel training cache of a track of 2 min or more (4 chunks of 30 s, float16): {mel_per_track:,.0f} B")
    if args.json:
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
