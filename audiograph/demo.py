"""`audiograph demo`: every capability, end to end, on a freshly synthesized collection."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from audiograph.audio.embed import embed_audio
from audiograph.audio.training import train_audio
from audiograph.graph.build import build_graph
from audiograph.query import format_hits, query_file
from audiograph.store import Store
from audiograph.synth import synthesize


DEMO_TRAIN_EPOCHS = 8


def run_demo(out: str | Path = "audiograph-demo", quiet: bool = False) -> None:
    """Synthesize a collection with faulty files, embed it, build its playlist graph, train the audio
    encoder briefly, and query with a stored and a brand-new track."""
    out = Path(out)
    started = time.perf_counter()

    def step(title: str) -> None:
        print(f"\n== {title} ({time.perf_counter() - started:.0f} s)", flush=True)

    step("1. synthesize a music collection with the faults real collections have")
    collection = synthesize(out / "collection", with_faults=True, progress=not quiet)
    print(f"{collection.tracks} tracks, {collection.playlists} playlists, {len(collection.faults)} faulty files in {out / 'collection'}")

    step("2. embed-audio: decode, log-mel, descriptors, log-mel cache")
    store = Store(out / "audiograph.db")
    summary = embed_audio(
        out / "collection" / "audio",
        store,
        collection="demo",
        quiet=quiet,
        on_failure=lambda path, reason: print(f"failed: {path}: {reason}", file=sys.stderr),
    )
    print(f"embedded {summary.embedded}, skipped {summary.skipped} unchanged, failed {len(summary.failed)}")
    for dup in summary.duplicates:
        print(f"same audio content: {' = '.join(Path(p).name for p in dup['paths'])}")

    step("3. build-graph: the playlist co-occurrence graph")
    graph = build_graph(store, [out / "collection" / "playlists"])
    g = graph.summary
    print(f"{graph.matched} playlist entries matched, {graph.unmatched} unmatched, {graph.urls_skipped} URLs skipped")
    print(f"{graph.min_weight_reason}")
    print(f"{g['nodes']} tracks, {g['edges']} edges, {g['components']} components, {g['isolated_nodes']} isolated")

    step(f"4. train-audio: triplets by graph distance, {DEMO_TRAIN_EPOCHS} epochs (a short schedule)")
    report = train_audio(store, max_epochs=DEMO_TRAIN_EPOCHS, quiet=True)
    print(f"{report.model_id}: validation triplet accuracy {report.metrics.get('val_triplet_accuracy', 0):.3f},"
          f" graph-neighbour recall@10 {report.metrics.get('val_recall_at_10', 0):.3f}")  # fmt: skip
    print(f"re-embedded {report.embedded} tracks into the acoustic space from the log-mel cache")

    with open(out / "collection" / "tracks.csv", newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    query_path = out / "collection" / "audio" / first["path"]
    for space in ("descriptors", "acoustic"):
        step(f"5. query the {space} space with a track of the collection ({first['genre']}: {first['artist']} – {first['title']})")
        _show(query_file(store, query_path, space=space, k=8))

    step("6. query with a brand-new track that is in no collection")
    newcomer = synthesize(out / "newcomer", tracks=1, genres=1, playlists=1, seed=12345, progress=False)
    with open(newcomer.out_dir / "tracks.csv", newline="", encoding="utf-8") as f:
        new_track = next(csv.DictReader(f))
    print(f"new track: {new_track['genre']} – {new_track['title']}")
    _show(query_file(store, newcomer.out_dir / "audio" / new_track["path"], k=8))
    step("done")


def _show(result) -> None:
    print(f"space '{result.space}' (model {result.model_id})")
    print(format_hits(result.hits, extra=("genre",)))
    for note in result.notes:
        print(f"note: {note}")
