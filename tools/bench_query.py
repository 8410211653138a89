"""Query latency of the exact vector search next to the memory-bandwidth floor, cold query time, and the
approximate index's recall and speed-up.

    python tools/bench_query.py [--sizes 100000 1000000] [--dim 128] [--repeats 20] [--processes 3] [--ann]
                                [--json] [--quick]

Every figure is the median of repeats after one warm-up run.
Warm latency: one exact cosine top-10 on an already loaded index (`VectorIndex.search`), on random
unit vectors. Floor: the matrix's bytes divided by the copy bandwidth (np.copyto; read + written bytes over
time), i.e. the time just to stream the matrix once; search and copy are timed in alternation, so that a
change in the machine's load moves both. `ratio_1m` is search over floor at the largest size (1M by default),
the median over `--processes` fresh processes: how fast the machine streams a 512 MB matrix through two
BLAS threads moves between processes (the bare product below took 23-34 ms in four processes while the
one-thread copy stayed at 24-25 ms), so one process's figure says as much about its memory as about the search.
Beside them, the bare `matrix @ query` that the search runs (numpy's BLAS, no audiograph code):
`search_over_bare_matvec` is what the search adds to it, apart from the machine's own variance.
Cold: `audiograph query FILE` in a fresh process, from start to printed results, on a store holding
`--cold-size` descriptor vectors (includes imports, loading the vectors from SQLite and embedding FILE), with
the package compiled to bytecode first, as `pip install` leaves it.
ANN (`--ann`, needs audiograph[ann]): `build_ann_index` over the largest size's matrix; recall@10 of fresh
random unit queries against the exact top 10 (numpy brute force), and queries per second one query at a time
(as `query` and `similar` ask them), the approximate index against `VectorIndex.search`, same queries, same
threads. Random isotropic vectors are the hardest case for an approximate index (no clusters, no low-
dimensional structure), so its figures here are a floor for real embeddings.
With `--json` the figures go to stdout as one JSON object and the table to stderr.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import alternating_medians, median_seconds, report_to_stderr, say

import audiograph
from audiograph.store.index import VectorIndex

QUERY_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg"
RATIO_TARGET = 1.2
COLD_TARGET_SECONDS = 1.0
RECALL_TARGET = 0.95
SPEEDUP_TARGET = 5.0


def random_unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """n random directions in `dim` dimensions, float32, unit length."""
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def exact_and_floor(index: VectorIndex, repeats: int) -> dict:
    """Exact top-10 search time of one stored row, the floor (the time to stream the matrix once), and the
    bare BLAS matrix-vector product that the search is built on (what the machine gives, without our code)."""
    n = len(index)
    query = index.matrix[n // 2].copy()
    src = np.ones(index.matrix.size, np.float32)
    dst = np.empty_like(src)
    search, copy, bare = alternating_medians(
        [
            lambda: index.search(query, k=10, exclude={str(n // 2)}, normalised=True),
            lambda: np.copyto(dst, src),
            lambda: index.matrix @ query,
        ],
        repeats,
    )
    bandwidth = 2 * index.matrix.nbytes / copy
    floor = index.matrix.nbytes / bandwidth
    return {
        "vectors": n,
        "search_ms": search * 1e3,
        "floor_ms": floor * 1e3,
        "ratio": search / floor,
        "bare_matvec_ms": bare * 1e3,
        "search_over_bare_matvec": search / bare,
        "copy_gb_per_s": bandwidth / 1e9,
    }


def random_index(n: int, dim: int) -> VectorIndex:
    """An index of n random float32 rows (the same rows for the same n and dim)."""
    rng = np.random.default_rng(n)
    return VectorIndex([str(i) for i in range(n)], rng.standard_normal((n, dim), dtype=np.float32))


def in_fresh_process(n: int, dim: int, repeats: int) -> dict:
    """`exact_and_floor` of a size measured in a new Python process."""
    command = [sys.executable, __file__, "--one-size", str(n), "--dim", str(dim), "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def median_row(rows: list[dict]) -> dict:
    """Per-process rows of one size -> their medians, with each process's ratio kept."""
    row = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    row["vectors"] = rows[0]["vectors"]
    row["ratio_per_process"] = [r["ratio"] for r in rows]
    return row


def warm_latency(sizes: list[int], dim: int, repeats: int, processes: int) -> list[dict]:
    """Exact search and bandwidth floor per size; the largest is measured in `processes` fresh processes
    (the median of each figure), the others in this one."""
    say(
        f"{'vectors':>10}  {'dim':>4}  {'search ms':>9}  {'floor ms':>8}  {'ratio':>5}  {'GB/s':>5}"
        f"  {'bare matvec ms':>14}  {'search/bare':>11}"
    )
    rows = []
    for n in sizes:
        if n == sizes[-1] and processes > 0:
            row = median_row([in_fresh_process(n, dim, repeats) for _ in range(processes)])
            ratios = ", ".join(f"{r:.2f}" for r in row["ratio_per_process"])
            note = f"  (median of {processes} processes; ratios {ratios})"
        else:
            row, note = exact_and_floor(random_index(n, dim), repeats), ""
        rows.append(row)
        say(
            f"{n:>10,}  {dim:>4}  {row['search_ms']:>9.1f}  {row['floor_ms']:>8.1f}  {row['ratio']:>5.2f}  "
            f"{row['copy_gb_per_s']:>5.1f}  {row['bare_matvec_ms']:>14.1f}  {row['search_over_bare_matvec']:>11.2f}"
            + note
        )
    return rows


def cold_query(n: int, query_file: Path, repeats: int) -> float:
    """Process start to results, for a descriptor-space store of n random vectors: median of `repeats` runs
    after a warm-up run."""
    from audiograph.audio.config import AudioConfig
    from audiograph.audio.descriptors import DESCRIPTOR_NAMES
    from audiograph.models import DESCRIPTORS_KIND
    from audiograph.pipelines.encoders import descriptors_model_id
    from audiograph.store import DESCRIPTORS_SPACE, Store, TrackRecord

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        audio = AudioConfig()
        model = descriptors_model_id(audio)
        config = {"names": list(DESCRIPTOR_NAMES), "frontend": audio.to_dict(), "standardize": True}
        store.models.register(model, DESCRIPTORS_KIND, DESCRIPTORS_SPACE, config=config)
        rng = np.random.default_rng(1)
        dim = len(DESCRIPTOR_NAMES)
        for start in range(0, n, 50_000):
            records = [
                TrackRecord(
                    id=f"bench/{i:07d}.mp3",
                    collection="bench",
                    path=None,
                    content_hash=str(i),
                    vectors={DESCRIPTORS_SPACE: (model, rng.standard_normal(dim).astype(np.float32))},
                )
                for i in range(start, min(n, start + 50_000))
            ]
            store.tracks.write(records)
        store.close()
        cmd = [
            sys.executable,
            "-m",
            "audiograph",
            "query",
            str(query_file),
            "--db",
            str(Path(tmp) / "bench.db"),
            "--json",
        ]

        def run_query():
            done = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if done.returncode:
                lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
                raise SystemExit(f"cold query failed: {lines[-1]}")

        # The package's modules compiled to bytecode, as `pip install` does: an editable checkout run under
        # PYTHONDONTWRITEBYTECODE would otherwise compile every module again at every start (0.09 s here).
        compileall.compile_dir(Path(audiograph.__file__).parent, quiet=1)
        seconds = median_seconds(run_query, repeats)
    say(
        f"cold query, {n:,} stored {dim}-d vectors: {seconds:.2f} s (target <= {COLD_TARGET_SECONDS:.1f} s; "
        f"median of {repeats} after a warm-up)"
    )
    return seconds


def ann_figures(index: VectorIndex, n_queries: int, timed_queries: int, repeats: int) -> dict:
    """Build the approximate index over `index`'s rows; its recall@10 and speed-up against the exact scan."""
    from audiograph.store.ann import build_ann_index, exact_top_rows, import_faiss, recall_at_k

    faiss = import_faiss()
    n, dim = index.matrix.shape
    start = time.perf_counter()
    ann = build_ann_index(index.ids, index.matrix, model_id="bench")
    build_seconds = time.perf_counter() - start
    say(f"ANN over {n:,} x {dim}: {ann.kind} {ann.params}, built in {build_seconds:.1f} s")

    queries = random_unit_rows(np.random.default_rng(2), n_queries, dim)
    truth = None

    def exact_all():
        nonlocal truth
        truth = exact_top_rows(index.matrix, queries, 10)

    found = None

    def ann_all():
        nonlocal found
        found = ann.search_rows(queries, 10)[0]

    exact_batch, ann_batch = alternating_medians([exact_all, ann_all], max(1, repeats // 5))
    recall = recall_at_k(found, truth)

    timed = queries[:timed_queries]

    def exact_one_by_one():
        for q in timed:
            index.search(q, k=10, normalised=True)

    def ann_one_by_one():
        for q in timed:
            ann.hits(q, k=10)

    exact_seconds, ann_seconds = alternating_medians([exact_one_by_one, ann_one_by_one], max(1, repeats // 5))
    exact_qps, ann_qps = len(timed) / exact_seconds, len(timed) / ann_seconds
    figures = {
        "ann_recall_at_10": recall,
        "ann_speedup": ann_qps / exact_qps,
        "ann_exact_qps": exact_qps,
        "ann_qps": ann_qps,
        "ann_speedup_batched": exact_batch / ann_batch,
        "ann_kind": ann.kind,
        "ann_params": ann.params,
        "ann_build_seconds": build_seconds,
        "ann_queries": n_queries,
        "ann_timed_queries": len(timed),
        "threads": faiss.omp_get_max_threads(),
    }
    say(f"ANN recall@10 over {n_queries} random queries: {recall:.3f} (target >= {RECALL_TARGET})")
    say(
        f"ANN one query at a time: {ann_qps:.0f} q/s against exact {exact_qps:.1f} q/s: speed-up "
        f"{figures['ann_speedup']:.1f}x (target >= {SPEEDUP_TARGET:.0f}x)"
    )
    say(f"ANN in one batch of {n_queries}: speed-up {figures['ann_speedup_batched']:.1f}x over numpy brute force")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--processes", type=int, default=3, help="fresh processes that measure the largest size (0: this one)"
    )
    parser.add_argument("--one-size", type=int, help=argparse.SUPPRESS)  # a fresh process's measure, as JSON
    parser.add_argument("--cold-size", type=int, default=100_000, help="vectors in the cold-query store")
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--query-file", type=Path, default=QUERY_FILE)
    parser.add_argument("--ann", action="store_true", help="also measure the approximate index (audiograph[ann])")
    parser.add_argument("--ann-queries", type=int, default=1000, help="random queries for the ANN recall")
    parser.add_argument("--ann-timed-queries", type=int, default=100, help="of them, timed one at a time")
    parser.add_argument("--skip-cold", action="store_true", help="leave out the cold query (cold_query_seconds: null)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats: checks that it runs")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    args = parser.parse_args()
    if args.one_size:
        print(json.dumps(exact_and_floor(random_index(args.one_size, args.dim), args.repeats)))
        return
    if args.quick:
        args.sizes, args.repeats, args.cold_size, args.cold_repeats = [20_000], 3, 2_000, 1
        args.ann_queries, args.ann_timed_queries, args.processes = 50, 20, 2
    if args.json:
        report_to_stderr()

    rows = warm_latency(args.sizes, args.dim, args.repeats, args.processes)
    figures = {
        "vectors": rows[-1]["vectors"],
        "dim": args.dim,
        "ratio_1m": rows[-1]["ratio"],
        "search_ms": rows[-1]["search_ms"],
        "floor_ms": rows[-1]["floor_ms"],
        "bare_matvec_ms": rows[-1]["bare_matvec_ms"],
        "search_over_bare_matvec": rows[-1]["search_over_bare_matvec"],
        "ratio_1m_per_process": rows[-1].get("ratio_per_process"),
        "sizes": rows,
        "cpus": os.cpu_count(),
    }
    say(
        f"exact top-10 over {rows[-1]['vectors']:,} x {args.dim}: {rows[-1]['search_ms']:.1f} ms against a floor of "
        f"{rows[-1]['floor_ms']:.1f} ms: ratio {rows[-1]['ratio']:.2f} (target <= {RATIO_TARGET})"
    )
    if args.ann:
        figures.update(
            ann_figures(random_index(args.sizes[-1], args.dim), args.ann_queries, args.ann_timed_queries, args.repeats)
        )
    if args.skip_cold:
        figures["cold_query_seconds"] = None
    elif args.query_file.exists():
        figures["cold_query_seconds"] = cold_query(args.cold_size, args.query_file, args.cold_repeats)
        figures["cold_vectors"] = args.cold_size
    else:
        figures["cold_query_seconds"] = None
        say(f"cold query skipped: {args.query_file} not found (pass --query-file)")
    if args.json:
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
