"""Playlist completion on real Spotify playlists: the real-data benchmark of MUSIG.

    python recipes/evaluate_spotify.py [--csv SONGS.csv] [--out recipe-evaluate-spotify] [--repeats 1] [--quick]

The CSV (default: ../shared/data/spotify_playlists/spotify_songs_dev.csv) has the columns of the Spotify
songs CSV: `REQUIRED_COLUMNS`, comma- or semicolon-separated; rows with a bad cell are left out and counted.

A fifth of the playlists is held out by a fixed hash of the playlist id and never reaches the store's
graph; the tracks of every playlist are imported (Spotify audio features, playlist genre as
per-playlist votes, popularity), the graph is built from the other four fifths, and `evaluate` scores
every method on the held-out playlists with the paper's protocol (matched decoys; HR, NDCG).
Each method trains with the defaults a user gets. Writes results.md, results.json and chart.png.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import time
from pathlib import Path

from audiograph.errors import ConfigError
from audiograph.eval.report import check_margins, write_report
from audiograph.eval.results import format_results
from audiograph.graph.readers import csv_rows
from audiograph.pipelines.build_graph import build_graph
from audiograph.pipelines.evaluate import evaluate
from audiograph.pipelines.import_tracks import import_tracks
from audiograph.store import Store

DEFAULT_CSV = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spotify_playlists" / "spotify_songs_dev.csv"
)
AUDIO_FEATURES = [
    "danceability",
    "energy",
    "key",
    "loudness",
    "mode",
    "speechiness",
    "acousticness",
    "instrumentalness",
    "liveness",
    "valence",
    "tempo",
    "duration_ms",
]
ALL = "audio+genre+popularity"
METHODS = [
    "features:audio",
    f"features:{ALL}",
    f"content:{ALL}",
    "cf",
    "track2vec",
    "node2vec",
    f"graphsage:{ALL}",
    f"musig:{ALL}",
    f"musig-playlist-heavy:{ALL}",
    f"musig-content-heavy:{ALL}",
]
# What the recipe reads: the columns of the Spotify songs CSV (tidytuesday's spotify_songs.csv).
REQUIRED_COLUMNS = [
    "playlist_id",
    "playlist_name",
    "playlist_genre",
    "track_id",
    "track_name",
    "track_artist",
    "track_popularity",
    *AUDIO_FEATURES,
]
QUICK_METHODS = ["features:audio", f"features:{ALL}", f"content:{ALL}", f"graphsage:{ALL}", f"musig:{ALL}"]

ABOUT_DATA = """\
- {playlists} real playlists ({train} in the graph, {held} held out by a fixed hash of the playlist id,
  {evaluated} of them with at least {min_length} tracks evaluated) and {tracks} tracks{skipped}. Co-occurrence
  weights are 1 to {max_weight}, and the graph keeps the edges of weight {min_weight:g} and more; it has
  {edges} edges.
- Genre is a label of the playlist, not of the track: a track's genre is the majority over its
  training playlists; a track listed only in held-out playlists takes the genre most common among
  its artist's tracks in training playlists, or has none.
- "Audio" is Spotify's 12 audio features; popularity is Spotify's track popularity plus the number of
  training playlists and the degree, which the learnt models read and the feature rows leave out (in a
  plain cosine they only set the tracks of training playlists apart from the rest). There is no audio
  here, so no acoustic group.
- {unseen:.0%} of the held-out tracks to recover are in no training playlist: methods that learn only
  from co-occurrence (CF, Track2Vec, Node2Vec) give them zero vectors, while the content references,
  GraphSAGE and MUSIG place them by their features (the inductive case). Decoys are drawn with the
  same share of never-seen tracks, so that "absent from training" alone gives nothing away.
- The bar: MUSIG with the defaults against the best simple and learnt uses of its own inputs (the
  z-scored features, the learnt content metric) and against single-task GraphSAGE."""


def held_out_by_hash(playlist_id: str, share: int = 5, fold: int = 0) -> bool:
    """A fixed fifth of the playlists (`fold` picks which): the same on every machine and in every run."""
    return int(hashlib.blake2b(playlist_id.encode(), digest_size=8).hexdigest(), 16) % share == fold


def split_csv(csv_path: Path, out: Path, fold: int = 0) -> tuple[Path, list[dict]]:
    """Write the training rows to `out/train.csv`; return it and the held-out playlists (fifth `fold`) as
    {id, name, tracks}. The CSV is read as `import-tracks` reads it (a BOM, semicolons); a `ConfigError` names
    the columns it lacks, or says that no playlist falls in the fold."""
    rows = [row for _, row in csv_rows(csv_path, REQUIRED_COLUMNS)]
    train = out / "train.csv"
    held: dict[str, dict] = {}
    with open(train, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, REQUIRED_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            if held_out_by_hash(row["playlist_id"], fold=fold):
                entry = held.setdefault(
                    row["playlist_id"], {"id": row["playlist_id"], "name": row["playlist_name"], "tracks": []}
                )
                entry["tracks"].append(row["track_id"])
            else:
                writer.writerow(row)
    playlists = len({row["playlist_id"] for row in rows})
    if not held:
        raise ConfigError(f"{csv_path}: none of its {playlists} playlists falls in fold {fold}: try another --fold")
    if len(held) == playlists:
        raise ConfigError(f"{csv_path}: all of its {playlists} playlists fall in fold {fold}: none is left to train on")
    return train, list(held.values())


def main() -> None:
    try:
        run()
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--csv", type=Path, default=DEFAULT_CSV, help=f"the songs CSV, with columns {', '.join(REQUIRED_COLUMNS)}"
    )
    parser.add_argument("--out", type=Path, default=Path("recipe-evaluate-spotify"))
    parser.add_argument("--min-length", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1, help="seeds (each retrains every method)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fold", type=int, default=0, choices=range(5), help="which fifth of the playlists to hold out (default 0)"
    )
    parser.add_argument("--methods", help="comma-separated methods (default: the benchmark's rows)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer methods and short training")
    args = parser.parse_args()
    if not args.csv.is_file():
        raise ConfigError(f"{args.csv}: no such file" + ("" if args.csv != DEFAULT_CSV else " (pass --csv)"))
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob("recipe.db*"):
        stale.unlink()
    store = Store(args.out / "recipe.db")
    train_csv, held_out = split_csv(args.csv, args.out, args.fold)
    imported = import_tracks(
        store,
        args.csv,
        id_col="track_id",
        features={"audio": AUDIO_FEATURES},
        genre_col="playlist_genre",
        popularity_col="track_popularity",
        title_col="track_name",
        artist_col="track_artist",
        playlist_col="playlist_id",
    )
    graph = build_graph(store, [train_csv], playlist_col="playlist_id", track_col="track_id", name_col="playlist_name")
    print(
        f"{imported.tracks} tracks; {graph.playlists} playlists in the graph ({graph.summary['edges']} edges),"
        f" {len(held_out)} held out"
    )
    if imported.skipped:
        print(f"{len(imported.skipped)} rows left out (the first: {imported.skipped[0]})")

    seeds = tuple(range(args.seed, args.seed + args.repeats))
    methods = (
        list(dict.fromkeys(args.methods.split(","))) if args.methods else (QUICK_METHODS if args.quick else METHODS)
    )
    musig_options = {"max_epochs": 2, "batches_per_epoch": 20} if args.quick else None
    evaluation = evaluate(
        store,
        methods=methods,
        held_out=held_out,
        seeds=seeds,
        min_length=args.min_length,
        musig_options=musig_options,
        progress=print,
    )
    print(format_results(evaluation))
    margins = check_margins(
        evaluation, f"musig:{ALL}", [f"features:{ALL}", "features:audio", f"content:{ALL}", f"graphsage:{ALL}"]
    )
    print("\n".join(margins))
    about = ABOUT_DATA.format(
        playlists=graph.playlists + len(held_out),
        train=graph.playlists,
        held=len(held_out),
        evaluated=evaluation.info["eval_playlists"],
        min_length=args.min_length,
        tracks=imported.tracks,
        skipped=f"; {len(imported.skipped)} rows of the CSV were left out, each for a bad cell"
        if imported.skipped
        else "",
        max_weight=f"{max(store.graph.edges(store.tracks.node_ids())[2], default=0):g}",
        min_weight=graph.min_weight,
        edges=graph.summary["edges"],
        unseen=evaluation.info["unseen_targets"],
    )
    extra = "## MUSIG with the defaults against its inputs and GraphSAGE\n\n" + "\n".join(margins)
    report = write_report(
        evaluation,
        args.out,
        title="Playlist completion on real Spotify playlists",
        about_data=about,
        extra=extra,
        settings={k: str(v) for k, v in vars(args).items()},
        wall_seconds=time.perf_counter() - started,
    )
    print(f"\nwrote {report} ({(time.perf_counter() - started) / 60:.1f} min)")


if __name__ == "__main__":
    main()
