"""Query latency of the exact vector search, next to the memory-bandwidth floor, and cold query time.

    python tools/bench_query.py [--sizes 100000 1000000] [--dim 128] [--repeats 20]

Warm latency: one exact cosine top-10 on an already loaded index (`VectorIndex.search`), median of
`--repeats`. Floor: the matrix's bytes divided by the copy bandwidth measured in the same run
(np.copyto; read + written bytes over time), i.e. the time just to stream the matrix once.
Cold: `audiograph query FILE` in a fresh process, from start to printed results, on a store
holding the largest size's vectors (includes importing torch/librosa, loading the vectors from
SQLite and embedding FILE).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from audiograph.audio.descriptors import DESCRIPTOR_NAMES
from audiograph.audio.embed import descriptors_model_id
from audiograph.audio.frontend import AudioFrontend
from audiograph.store import DESCRIPTORS_SPACE, Store, TrackRecord
from audiograph.store.index import VectorIndex

QUERY_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg"


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm caches and lazy allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes per second moved by np.copyto (read + write), measured on a buffer of `nbytes`."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return 2 * nbytes / median_seconds(lambda: np.copyto(dst, src), repeats)


def warm_latency(sizes: list[int], dim: int, repeats: int) -> None:
    print(f"{'vectors':>10}  {'dim':>4}  {'search ms':>9}  {'floor ms':>8}  {'ratio':>5}  {'GB/s':>5}")
    rng = np.random.default_rng(0)
    for n in sizes:
        index = VectorIndex([str(i) for i in range(n)], rng.standard_normal((n, dim), dtype=np.float32))
        query = index.matrix[n // 2].copy()
        search = median_seconds(lambda: index.search(query, k=10, exclude={str(n // 2)}, normalised=True), repeats)
        bandwidth = copy_bandwidth(index.matrix.nbytes, repeats)
        floor = index.matrix.nbytes / bandwidth
        print(f"{n:>10,}  {dim:>4}  {search * 1e3:>9.1f}  {floor * 1e3:>8.1f}  {search / floor:>5.2f}  {bandwidth / 1e9:>5.1f}")


def cold_query(n: int, query_file: Path) -> None:
    """Process start to results, for a descriptor-space store of n random vectors."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        model = descriptors_model_id(AudioFrontend())
        store.register_model(model, "descriptors", DESCRIPTORS_SPACE,
                             config={"frontend": AudioFrontend().config(), "standardize": True})  # fmt: skip
        rng = np.random.default_rng(1)
        dim = len(DESCRIPTOR_NAMES)
        for start in range(0, n, 50_000):
            records = [
                TrackRecord(id=f"bench/{i:07d}.mp3", collection="bench", path=None, content_hash=str(i),
                            vectors={DESCRIPTORS_SPACE: (model, rng.standard_normal(dim).astype(np.float32))})
                for i in range(start, min(n, start + 50_000))
            ]  # fmt: skip
            store.write_tracks(records)
        store.close()
        cmd = [sys.executable, "-m", "audiograph", "query", str(query_file), "--db", str(Path(tmp) / "bench.db"), "--json"]
        for run in ("first", "second"):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            print(f"cold query, {run} run, {n:,} stored {dim}-d vectors: {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cold-size", type=int, default=100_000, help="vectors in the cold-query store")
    parser.add_argument("--query-file", type=Path, default=QUERY_FILE)
    args = parser.parse_args()
    warm_latency(args.sizes, args.dim, args.repeats)
    if args.query_file.exists():
        cold_query(args.cold_size, args.query_file)
    else:
        print(f"cold query skipped: {args.query_file} not found (pass --query-file)")


if __name__ == "__main__":
    main()
