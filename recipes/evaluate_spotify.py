"""Playlist completion on the real Spotify playlists in ../shared/data: an analogue of the MUSIG paper's Table 2.

    python recipes/evaluate_spotify.py [--out recipe-evaluate-spotify] [--repeats 3] [--quick]

Imports the tracks (Spotify audio features, playlist genre as per-playlist votes, popularity),
builds the co-occurrence graph from the playlist memberships, and evaluates every method with
the stored playlists split per seed: held-out playlists are removed from the graph, from the
genre labels and from every method's training. There is no audio, so no acoustic group and no
Table 3. Writes results.md, results.json and chart.png to the output folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from audiograph.errors import ConfigError
from audiograph.eval.evaluate import evaluate, format_results
from audiograph.eval.report import write_report
from audiograph.graph.build import build_graph
from audiograph.importer import import_tracks
from audiograph.store import Store

DEFAULT_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spotify_playlists" / "spotify_songs_dev.csv"
AUDIO_FEATURES = ["danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness",
                  "instrumentalness", "liveness", "valence", "tempo", "duration_ms"]  # fmt: skip

ABOUT_DATA = """\
- {playlists} real playlists and {tracks} tracks (the paper: 95k playlists, 15.9k tracks after keeping
  edges of weight >= 10). Most tracks are in one playlist only, co-occurrence weights are 1-8, so the
  graph keeps every edge (min weight {min_weight:g}); it has {edges} edges.
- Genre is a label of the playlist, not of the track: a track's genre is the majority over its
  training playlists, and a track listed only in held-out playlists has none. Six genres only,
  against the paper's top-50.
- "Audio" is Spotify's 12 audio features (the paper: 42 dimensions); popularity is Spotify's track
  popularity plus the number of training playlists and the degree (the paper: global and regional
  popularity). There is no audio here, so no acoustic group.
- Most tracks are in a single playlist, so {unseen:.0%} of the held-out tracks to recover are in no
  training playlist at all: methods that learn only from co-occurrence (CF, Track2Vec, Node2Vec)
  can only give them a zero vector, while MUSIG and GraphSAGE embed them from their features (the
  inductive case). Decoys are drawn with the same share of never-seen tracks, so that "absent from
  training" alone does not give the targets away."""


def main() -> None:
    try:
        run()
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--out", type=Path, default=Path("recipe-evaluate-spotify"))
    parser.add_argument("--min-length", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--musig-epochs", type=int, default=10)
    parser.add_argument("--batches-per-epoch", type=int, default=50, help="MUSIG/GraphSAGE batches of 512 edges per epoch")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one seed, fewer methods and epochs")
    args = parser.parse_args()
    if not args.csv.is_file():
        raise SystemExit(f"{args.csv}: no such file (pass --csv)")
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.out / "recipe.db"
    for stale in args.out.glob("recipe.db*"):
        stale.unlink()
    store = Store(db)
    imported = import_tracks(store, args.csv, id_col="track_id", features={"audio": AUDIO_FEATURES},
                             genre_col="playlist_genre", popularity_col="track_popularity", title_col="track_name",
                             artist_col="track_artist", playlist_col="playlist_id")  # fmt: skip
    graph = build_graph(store, [args.csv], playlist_col="playlist_id", track_col="track_id", name_col="playlist_name")
    print(f"{imported.tracks} tracks, {graph.playlists} playlists; graph: {graph.summary['edges']} edges ({graph.min_weight_reason})")

    seeds = tuple(range(args.seed, args.seed + (1 if args.quick else args.repeats)))
    methods = ["cf", "track2vec", "node2vec", "graphsage:audio", "musig:audio", "features:audio"] if args.quick else None
    musig_options = {"max_epochs": 3 if args.quick else args.musig_epochs, "batches_per_epoch": args.batches_per_epoch}
    evaluation = evaluate(store, methods=methods, seeds=seeds, min_length=args.min_length,
                          musig_options=musig_options, progress=print)  # fmt: skip
    print(format_results(evaluation))
    about = ABOUT_DATA.format(playlists=graph.playlists, tracks=imported.tracks, min_weight=graph.min_weight,
                              edges=graph.summary["edges"], unseen=evaluation.info["unseen_targets"])  # fmt: skip
    report = write_report(evaluation, args.out, title="Playlist completion on real Spotify playlists (Table 2 analogue)",
                          about_data=about, settings={k: str(v) for k, v in vars(args).items()},
                          wall_seconds=time.perf_counter() - started)  # fmt: skip
    print(f"\nwrote {report} ({(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    main()
