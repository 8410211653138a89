"""`audiograph demo`: every capability, end to end, on a freshly synthesized collection."""

from __future__ import annotations

import contextlib
import csv
import sys
import time
from pathlib import Path

from audiograph.eval.protocol import split_playlist_files
from audiograph.eval.results import format_results
from audiograph.pipelines.build_graph import build_graph
from audiograph.pipelines.embed_audio import embed_audio
from audiograph.pipelines.evaluate import evaluate, held_out_playlists
from audiograph.pipelines.query import format_hits, query_file
from audiograph.pipelines.train_audio import train_audio
from audiograph.pipelines.train_musig import train_musig
from audiograph.store import Store
from audiograph.synth import synthesize
from audiograph.tables import counted, one_line, show

DEMO_AUDIO_EPOCHS = 5
DEMO_MUSIG_EPOCHS = 10
DEMO_MIN_LENGTH = 20  # the synthetic playlists hold 10-50 tracks; the paper evaluates those of 40+
DEMO_METHODS = [
    "cf",
    "track2vec",
    "node2vec",
    "graphsage:acoustic",
    "musig:acoustic",
    "musig:audio",
    "features:acoustic",
    "features:audio",
]


class _Steps:
    """Numbered step headers, each followed by the step's own duration."""

    def __init__(self):
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, title: str):
        show(f"\n== {title}", flush=True)
        start = time.perf_counter()
        yield
        show(f"   ({time.perf_counter() - start:.0f} s)", flush=True)

    def total(self) -> float:
        return time.perf_counter() - self.started


def run_demo(out: str | Path = "audiograph-demo", quiet: bool = False) -> None:
    """Every capability on a fresh synthetic collection: embed it (faulty files included), build the
    graph of its training playlists, train the audio encoder and MUSIG briefly, query each space with
    a stored and a brand-new track, and evaluate playlist completion on the held-out playlists."""
    out, step = Path(out), _Steps()
    with step("1. synthesize a music collection with the faults real collections have"):
        collection = synthesize(out / "collection", with_faults=True, progress=not quiet)
        train_dir, holdout_dir = split_playlist_files(out / "collection" / "playlists", min_length=DEMO_MIN_LENGTH)
        show(
            f"{collection.tracks} tracks, {collection.playlists} playlists, {len(collection.faults)} faulty files"
            f" in {out / 'collection'}; {sum(1 for _ in holdout_dir.iterdir())} playlists held out for"
            " evaluation"
        )
    store = Store(out / "audiograph.db")
    with step("2. embed-audio: decode, log-mel, descriptors, log-mel cache"):
        _embed(store, out / "collection", quiet)
    with step("3. build-graph: the co-occurrence graph of the training playlists"):
        _build_graph(store, train_dir)
    with step(f"4. train-audio: contrastive, positives by graph distance, {DEMO_AUDIO_EPOCHS} epochs (a short run)"):
        _train_audio(store, quiet)
    with step(f"5. train-musig: playlist, genre and audio-similarity tasks, {DEMO_MUSIG_EPOCHS} epochs"):
        _train_musig(store, quiet)
    _queries(store, out, step)
    with step("8. evaluate: playlist completion on the held-out playlists (the paper's Table 2, 3 seeds)"):
        _evaluate(store, holdout_dir)
    show(f"\ndone ({step.total():.0f} s)")


def _embed(store: Store, collection: Path, quiet: bool) -> None:
    summary = embed_audio(
        collection / "audio",
        store,
        collection="demo",
        quiet=quiet,
        on_failure=lambda path, reason: print(f"failed: {one_line(path)}: {one_line(reason)}", file=sys.stderr),
    )
    show(f"embedded {summary.embedded}, skipped {summary.skipped} unchanged, failed {len(summary.failed)}")
    for dup in summary.duplicates:
        show(f"same audio content: {' = '.join(Path(p).name for p in dup['paths'])}")
    _explain_faults(collection, summary)


def _explain_faults(collection: Path, summary) -> None:
    """What became of each planted fault: reported as failed, stored as a duplicate, ignored as not audio,
    or left for build-graph (a playlist entry)."""
    with open(collection / "faults.csv", newline="", encoding="utf-8") as f:
        faults = list(csv.DictReader(f))
    failed = {Path(x["path"]).name: x["error"] for x in summary.failed}
    duplicated = {Path(p).name for dup in summary.duplicates for p in dup["paths"]}
    show(f"the {len(faults)} planted faults:")
    for fault in faults:
        name = Path(fault["path"]).name
        if name in failed:
            outcome = f"reported as failed ({failed[name]})"
        elif name in duplicated:
            outcome = "stored, and reported as the same audio as another file"
        elif fault["kind"] in ("missing_file", "url"):
            outcome = "a playlist entry: build-graph reports it"
        elif fault["kind"] == "not_audio":
            outcome = "ignored: not an audio file by its name"
        else:
            outcome = "stored (decodable)"
        show(f"  {fault['kind']:<13} {name}: {outcome}")


def _build_graph(store: Store, train_dir: Path) -> None:
    graph = build_graph(store, [train_dir])
    g = graph.summary
    show(
        f"{counted(graph.matched, 'playlist entry', 'playlist entries')} matched, {graph.unmatched} unmatched,"
        f" {counted(graph.urls_skipped, 'URL')} skipped"
    )
    show(f"{graph.min_weight_reason}")
    show(f"{g['nodes']} tracks, {g['edges']} edges, {g['components']} components, {g['isolated_nodes']} isolated")


def _train_audio(store: Store, quiet: bool) -> None:
    report = train_audio(store, max_epochs=DEMO_AUDIO_EPOCHS, quiet=quiet)
    show(f"{report.model_id}: {report.guard_line()}")
    for warning in report.warnings:
        show(f"warning: {warning}")
    show(f"re-embedded {report.embedded} tracks into the acoustic space from the log-mel cache")


def _train_musig(store: Store, quiet: bool) -> None:
    musig = train_musig(store, max_epochs=DEMO_MUSIG_EPOCHS, quiet=quiet)
    m = musig.metrics
    show(
        f"{musig.model_id} on {', '.join(musig.features)} (similarity task on {musig.similarity_group}), best"
        f" epoch {int(m.get('epoch', 0)) + 1}: completing held-out playlists, hit rate"
        f" {m.get('val_hr', float('nan')):.3f} against {m.get('val_hr_features', float('nan')):.3f} for its"
        f" z-scored input features; {musig.embedded} tracks in the musig space"
    )


def _queries(store: Store, out: Path, step: _Steps) -> None:
    with open(out / "collection" / "tracks.csv", newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    query_path = out / "collection" / "audio" / first["path"]
    about = f"{first['genre']}: {first['artist']} – {first['title']}"
    for space in ("descriptors", "acoustic", "musig"):
        with step(f"6. query the {space} space with a track of the collection ({about})"):
            _show(query_file(store, query_path, space=space, k=8))
    with step("7. query with a brand-new track that is in no collection and no playlist (musig, inductive)"):
        newcomer = synthesize(out / "newcomer", tracks=1, genres=1, playlists=1, seed=12345, progress=False)
        with open(newcomer.out_dir / "tracks.csv", newline="", encoding="utf-8") as f:
            new_track = next(csv.DictReader(f))
        show(f"new track: {new_track['genre']} – {new_track['title']}")
        _show(query_file(store, newcomer.out_dir / "audio" / new_track["path"], k=8))


def _evaluate(store: Store, holdout_dir: Path) -> None:
    held_out, _ = held_out_playlists(store, [holdout_dir])
    evaluation = evaluate(
        store,
        methods=DEMO_METHODS,
        held_out=held_out,
        min_length=DEMO_MIN_LENGTH,
        musig_options={"max_epochs": DEMO_MUSIG_EPOCHS},
    )
    info = evaluation.info
    show(
        f"{info['eval_playlists']} held-out playlists (first half as seeds), {info['train_playlists']} training"
        " playlists"
    )
    show(format_results(evaluation))


def _show(result) -> None:
    show(f"space '{result.space}' (model {result.model_id})")
    show(format_hits(result.hits, extra=("genre",)))
    for note in result.notes:
        show(f"note: {note}")
