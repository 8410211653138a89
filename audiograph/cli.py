"""The `audiograph` command: argument parsing, and errors turned into one-line messages.

Library modules are imported inside each command so that `audiograph query` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

from audiograph.errors import AudiographError, ConfigError
from audiograph.runtime import Terminated, keyword_defaults, stop_on_sigterm




def _say(message: str = "", quiet: bool = False) -> None:
    if not quiet:
        print(message, flush=True)


def one_line(text: str) -> str:
    """`text` with control characters (a newline in a file name) escaped, so that it prints as one line."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return json.dumps(text, ensure_ascii=False)[1:-1]
    return text


def _report_failure(path: str, reason: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"failed: {one_line(path)}: {one_line(reason)}", file=sys.stderr)


def _open_store(args, must_exist: bool = True):
    from audiograph.store import Store

    return Store(args.db, must_exist=must_exist)


# -- commands -----------------------------------------------------------------------------------


def cmd_synth(args) -> int:
    from audiograph.synth import synthesize

    result = synthesize(
        args.out_dir,
        tracks=args.tracks,
        genres=args.genres,
        playlists=args.playlists,
        seconds=args.seconds,
        seed=args.seed,
        with_faults=args.with_faults,
        progress=not args.quiet,
    )
    faults = f", {len(result.faults)} faulty files" if result.faults else ""
    _say(f"wrote {result.tracks} tracks and {result.playlists} playlists{faults} to {result.out_dir}", args.quiet)
    return 0


def cmd_embed_audio(args) -> int:
    from audiograph.audio.embed import check_root, embed_audio

    check_root(args.dir)  # before the store is opened, so that a mistyped folder leaves no store behind
    store = _open_store(args, must_exist=False)
    summary = embed_audio(
        args.dir,
        store,
        collection=args.collection,
        acoustic_model=args.acoustic_model,
        batch_size=args.batch_size,
        num_workers=args.workers,
        accelerator=args.accelerator,
        devices=args.devices,
        quiet=args.quiet or args.json,
        on_failure=_report_failure,
    )
    if args.json:
        print(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
        return 0
    _print_embed_summary(summary, args.quiet)
    return 0


def _print_embed_summary(summary, quiet: bool) -> None:
    _say(
        f"embedded {summary.embedded}, skipped {summary.skipped} unchanged, failed {len(summary.failed)}"
        + (f", ignored {summary.ignored} non-audio files" if summary.ignored else ""),
        quiet,
    )
    for dup in summary.duplicates:
        _say(f"same audio content: {' = '.join(one_line(p) for p in dup['paths'])}", quiet)
    if summary.missing:
        _say(f"{summary.missing} stored tracks of this collection are no longer on disk", quiet)
    if summary.acoustic_model:
        _say(f"acoustic vectors by model {summary.acoustic_model}", quiet)
    else:
        _say("no trained audio encoder yet: acoustic vectors appear after `audiograph train-audio`", quiet)


def cmd_query(args) -> int:
    from audiograph.query import query_file

    if args.m3u:
        _check_m3u(args.m3u)
    store = _open_store(args)
    store.check(["tracks", "vectors", "models"])  # what a search reads: a damaged store is said, not searched
    result = query_file(store, args.file, space=args.space, k=args.k, model=args.model)
    if args.m3u:
        _write_m3u(args.m3u, result.hits, store)
    if args.json:
        print(json.dumps(_hits_json(result.hits), indent=2, ensure_ascii=False))
        return 0
    _print_hits(result)
    if args.m3u:
        _say(f"wrote {len(result.hits)} tracks to {args.m3u}", args.quiet)
    return 0


def _print_hits(result) -> None:
    from audiograph.query import format_hits

    print(f"space '{result.space}' (model {result.model_id})" + (f"; query is stored track {result.query_track}" if result.query_track else ""))
    print(format_hits(result.hits))
    for note in result.notes:
        print(f"note: {note}")


def _check_m3u(out: str) -> None:
    if Path(out).is_dir():
        raise ConfigError(f"{out}: is a folder; --m3u needs a file name, such as {Path(out) / 'similar.m3u8'}")


def _write_m3u(out: str, hits: list[dict], store) -> None:
    out_path = Path(out)
    lines = ["#EXTM3U"]
    for h in hits:
        if not h.get("path"):
            continue
        # "artist - title" with the separator audiograph's own M3U reader splits on; -1: duration unknown.
        duration = (store.track(h["track_id"]) or {}).get("duration")
        seconds = round(duration) if duration is not None else -1
        label = f"{h.get('artist') or 'Unknown'} - {h['title']}" if h.get("title") else Path(h["path"]).stem
        lines.append(f"#EXTINF:{seconds},{one_line(label)}")
        try:
            lines.append(Path(os.path.relpath(h["path"], out_path.parent.resolve())).as_posix())
        except ValueError:  # another drive on Windows
            lines.append(h["path"])
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{out}: cannot write the playlist ({e.strerror or e})") from None


def cmd_similar(args) -> int:
    from audiograph.query import similar_track

    store = _open_store(args)
    store.check(["tracks", "vectors", "models"])
    result = similar_track(store, args.track, space=args.space, k=args.k)
    if args.json:
        print(json.dumps(_hits_json(result.hits), indent=2, ensure_ascii=False))
        return 0
    _print_hits(result)
    return 0


def _hits_json(hits: list[dict]) -> list[dict]:
    keys = ("rank", "track_id", "path", "title", "artist", "score")
    return [{k: h[k] for k in keys} for h in hits]


def cmd_export(args) -> int:
    from audiograph.export import export_space

    store = _open_store(args)
    report = export_space(store, args.space, args.out, format=args.format, model=args.model)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return 0
    what = f"{report.tracks} {report.dim}-d '{report.space}' vectors of model {report.model_id}"
    _say(f"wrote {what} to {report.out} ({report.format})", args.quiet)
    return 0


def cmd_build_graph(args) -> int:
    from audiograph.graph.build import build_graph, export_graphml

    store = _open_store(args)
    csv_options = {k: getattr(args, k) for k in CSV_COLUMN_OPTIONS if getattr(args, k) is not None}
    report = build_graph(store, args.sources, min_weight=args.min_weight, add_missing=args.add_missing, **csv_options)
    if args.graphml:
        export_graphml(store, args.graphml)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return 0
    from audiograph.tables import format_table

    s = report.summary
    if report.replaced:
        r = report.replaced
        sources = ", ".join(r["sources"]) or "nothing"
        _say(f"replaced the stored graph: {r['playlists']} playlists and {r['edges']} edges, built {r['built']}"
             f" from {sources}")
    _say(f"read {report.playlists} playlists with {report.entries} entries: {report.matched} matched stored tracks,"
         f" {report.unmatched} did not" + (f", {report.urls_skipped} URLs skipped" if report.urls_skipped else ""))  # fmt: skip
    for example in report.unmatched_examples:
        _say(f"  unmatched: {example}")
    for line in report.malformed:
        _say(f"  malformed: {line}")
    if report.added_tracks:
        _say(f"added {report.added_tracks} tracks without audio")
    _say(report.min_weight_reason)
    _say(f"graph: {s['nodes']} nodes, {s['edges']} edges, {s['components']} connected components"
         f" (largest {s['largest_component']}), {s['isolated_nodes']} isolated tracks")  # fmt: skip
    _say(format_table(["weight", "edges"], list(s["weight_histogram"].items()), right={1}))
    if args.graphml:
        _say(f"wrote {args.graphml}")
    return 0


def cmd_train_audio(args) -> int:
    from audiograph.audio.training import train_audio

    store = _open_store(args)
    options = {k: getattr(args, k) for k in TRAIN_AUDIO_OPTIONS}
    report = train_audio(store, max_epochs=args.max_epochs, patience=args.patience, accelerator=args.accelerator,
                         devices=args.devices, quiet=args.quiet or args.json, num_workers=args.num_workers, **options)  # fmt: skip
    if args.json:
        print(json.dumps(report.__dict__, indent=2, ensure_ascii=False))
        return 0
    m = report.metrics
    _say(f"trained {report.model_id} for {report.epochs} epochs: val accuracy"
         f" {m.get('val_accuracy', float('nan')):.3f}, graph-neighbour precision@5"
         f" {m.get('val_precision_at_5', float('nan')):.3f}")  # fmt: skip
    _say(f"checkpoint {report.checkpoint}")
    _say(f"re-embedded {report.embedded} tracks into the acoustic space from the log-mel cache")
    return 0


def cmd_import_tracks(args) -> int:
    from audiograph.importer import import_tracks, parse_feature_groups

    if not Path(args.csv).is_file():  # before the store is opened, so that a mistyped name leaves no store behind
        raise ConfigError(f"{args.csv}: no such file")
    store = _open_store(args, must_exist=False)
    report = import_tracks(store, args.csv, id_col=args.id_col, features=parse_feature_groups(args.features or []),
                           genre_col=args.genre_col, popularity_col=args.popularity_col, title_col=args.title_col,
                           artist_col=args.artist_col, playlist_col=args.playlist_col)  # fmt: skip
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return 0
    groups = ", ".join(f"{g} ({n} columns)" for g, n in report.feature_groups.items()) or "none"
    genres = f"; {report.genres} genres" if args.genre_col else "; genres left as they were"
    _say(f"imported {report.tracks} tracks from {report.rows} rows; feature groups: {groups}{genres}", args.quiet)
    for group, model in report.extended.items():
        _say(f"  feature group '{group}': added to the existing space of model {model} (same columns)", args.quiet)
    for line in report.replaced:
        print(f"note: {line}", file=sys.stderr)
    for line in report.skipped[:10]:
        _say(f"  skipped: {line}", args.quiet)
    if len(report.skipped) > 10:
        _say(f"  ... and {len(report.skipped) - 10} more skipped rows", args.quiet)
    return 0


def cmd_train_musig(args) -> int:
    from audiograph.musig.training import train_musig

    store = _open_store(args)
    options = {k: getattr(args, k) for k in TRAIN_MUSIG_OPTIONS}
    report = train_musig(
        store, features=args.features, similarity=None if args.similarity == "none" else args.similarity,
        task_weights=args.task_weights, fanouts=tuple(args.fanouts), skip=not args.no_skip,
        max_epochs=args.max_epochs, patience=args.patience, batches_per_epoch=args.batches_per_epoch or None,
        num_workers=args.num_workers, accelerator=args.accelerator, devices=args.devices,
        quiet=args.quiet or args.json, **options,
    )  # fmt: skip
    if args.json:
        print(json.dumps(report.__dict__, indent=2, ensure_ascii=False))
        return 0
    m = report.metrics
    _say(f"trained {report.model_id} on features {', '.join(report.features)} with task weights"
         f" {report.task_weights} (similarity task on {report.similarity_group or 'none'})")  # fmt: skip
    if "val_hr" in m:
        _say(f"best epoch {int(m.get('epoch', 0))}: playlist completion on held-out playlists, hit rate"
             f" {m['val_hr']:.3f} against {m.get('val_hr_features', float('nan')):.3f} for the z-scored input"
             f" features; {report.seeds_per_second:.0f} seeds/s")  # fmt: skip
    else:
        _say(f"best epoch {int(m.get('epoch', 0))}: held-out link AUC {m.get('val_auc', float('nan')):.3f};"
             f" {report.seeds_per_second:.0f} seeds/s")  # fmt: skip
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _say(f"checkpoint {report.checkpoint}")
    _say(f"wrote {report.embedded} vectors to the musig space; `audiograph query` now searches it by default")
    return 0


def cmd_embed_musig(args) -> int:
    from audiograph.musig.training import embed_musig

    store = _open_store(args)
    count = embed_musig(store, args.model, accelerator=args.accelerator)
    if args.json:
        print(json.dumps({"embedded": count}, ensure_ascii=False))
    else:
        _say(f"wrote {count} vectors to the musig space", args.quiet)
    return 0


def cmd_evaluate(args) -> int:
    from audiograph.eval.evaluate import evaluate, format_results, held_out_playlists

    store = _open_store(args)
    held_out = None
    if args.playlists:
        held_out, unmatched = held_out_playlists(store, args.playlists)
        _say(f"read {len(held_out)} held-out playlists; {unmatched} entries matched no stored track", args.quiet or args.json)
    options = {k: getattr(args, k) for k in ("min_length", "seed_fraction", "holdout", "max_playlists")}
    musig_options = {k: getattr(args, k) for k in ("max_epochs", "batches_per_epoch") if getattr(args, k) is not None}
    evaluation = evaluate(store, methods=args.methods, held_out=held_out, seeds=tuple(range(args.seed, args.seed + args.repeats)),
                          task_weights=args.task_weights, accelerator=args.accelerator, musig_options=musig_options,
                          progress=None if args.quiet or args.json else _say, **options)  # fmt: skip
    if args.json:
        print(json.dumps(evaluation.to_json(), indent=2, ensure_ascii=False))
        return 0
    info = evaluation.info
    _say(f"\n{info['eval_playlists']} evaluation playlists (at least {info['min_length']} tracks, first"
         f" {info['seed_fraction']:.0%} as seeds) and {info['train_playlists']} training playlists;"
         f" mean ± std over seeds {', '.join(map(str, evaluation.seeds))}")  # fmt: skip
    _say(format_results(evaluation))
    for note in evaluation.notes:
        _say(f"note: {note}")
    return 0


def cmd_info(args) -> int:
    store = _open_store(args)
    store.check()
    counts = dict(store.db.execute("SELECT status, count(*) FROM tracks GROUP BY status").fetchall())
    info = {
        "store": str(store.path),
        "tracks": counts,
        "spaces": store.spaces(),
        "models": [
            {k: m[k] for k in ("id", "kind", "space", "created")} for m in store.db.query("SELECT * FROM models ORDER BY created")
        ],
    }
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"store {info['store']}")
    print("tracks: " + (", ".join(f"{n} {s}" for s, n in counts.items()) or "none"))
    for space, models in info["spaces"].items():
        print(f"space {space}: " + ", ".join(f"{n} vectors by {m}" for m, n in models.items()))
    for m in info["models"]:
        print(f"model {m['id']} ({m['kind']} -> {m['space']}, {m['created']})")
    return 0


def cmd_demo(args) -> int:
    from audiograph.demo import run_demo

    run_demo(args.out, quiet=args.quiet)
    return 0


def _min_weight(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _option(p, flag: str, defaults: dict, help: str, key: str | None = None, type=None) -> None:
    """An option whose default (shown in --help) is the keyword default of a library function."""
    key = key or flag.lstrip("-").replace("-", "_")
    default = defaults[key]
    kind = type or (default.__class__ if default is not None and not isinstance(default, bool) else str)
    p.add_argument(flag, dest=key, type=kind, default=default, help=f"{help} (default {default})")


# -- parser: each command's arguments are built (and its modules imported) only when it runs -----


def _args_synth(p) -> None:
    from audiograph.synth import synthesize

    d = keyword_defaults(synthesize)
    p.add_argument("out_dir", metavar="OUT_DIR")
    _option(p, "--tracks", d, "number of tracks")
    _option(p, "--genres", d, "number of genres")
    _option(p, "--playlists", d, "number of playlists")
    _option(p, "--seconds", d, "mean track length in seconds")
    _option(p, "--seed", d, "random seed")
    p.add_argument("--with-faults", action="store_true", help="add the broken files real collections contain")


def _args_embed_audio(p) -> None:
    from audiograph.audio.embed import embed_audio

    d = keyword_defaults(embed_audio)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--collection", help="collection name, the prefix of its track ids (default: DIR's name)")
    _option(p, "--model", d, "acoustic encoder id from the registry", key="acoustic_model")
    _option(p, "--batch-size", d, "files per batch and per transaction")
    p.add_argument("--workers", type=int, help="decoding processes (default: one per CPU core)")
    _option(p, "--accelerator", d, "Lightning accelerator for the encoder")
    _option(p, "--devices", d, "Lightning devices")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _args_query(p) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--space", help="vector space to search (default: musig, else acoustic, else descriptors)")
    p.add_argument("--model", help="search the vectors of this registered model (default: the space's newest)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--m3u", metavar="OUT", help="also write the results as an M3U8 playlist")


def _args_similar(p) -> None:
    p.add_argument("track", metavar="TRACK_ID|PATH", help="a stored track: its id, or the path of its file")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument(
        "--space",
        help="vector space to search (default: query's default space, else the first space the track has a vector in)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _args_export(p) -> None:
    p.add_argument("space", metavar="SPACE", help="the vector space to export (see `audiograph info`)")
    p.add_argument(
        "--format",
        choices=["npy", "csv", "parquet"],
        default="npy",
        help="npy: a NumPy .npz archive, np.load(OUT) -> ids, vectors (float32 [N, d]), model_id, space, title,"
        " artist, genre, path; csv: one row per track: track_id, model_id, title, artist, genre, path, v0..vN;"
        " parquet: the csv columns with the vector as one list column `vector` (needs pip install"
        " 'audiograph[parquet]') (default npy)",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="file to write")
    p.add_argument("--model", help="export the vectors of this registered model (default: the space's newest)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


CSV_COLUMN_OPTIONS = {
    "playlist_col": "membership CSV: playlist id column (default playlist_id)",
    "track_col": "membership CSV: track id column (default track_id)",
    "name_col": "membership CSV: playlist name column",
    "title_col": "membership CSV: track title column",
    "artist_col": "membership CSV: artist column",
    "src_col": "edge-list CSV: source column (default src)",
    "dst_col": "edge-list CSV: destination column (default dst)",
    "weight_col": "edge-list CSV: weight column (default weight)",
}


def _args_build_graph(p) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="M3U/M3U8 files or folders, MPD JSON slices, CSVs")
    p.add_argument("--min-weight", default="auto", type=_min_weight,
                   help="drop edges shared by fewer playlists (default: auto, chosen from the data and reported)")  # fmt: skip
    p.add_argument("--add-missing", action="store_true", help="add id-based entries that match no track as tracks without audio")
    p.add_argument("--graphml", metavar="OUT", help="also export the graph as GraphML")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    for key, help_text in CSV_COLUMN_OPTIONS.items():
        p.add_argument("--" + key.replace("_", "-"), dest=key, help=help_text)


TRAIN_AUDIO_OPTIONS = {
    "loss": "contrastive (multi-positive InfoNCE, in-batch negatives) or triplet (the blog's cosine triplet loss)",
    "temperature": "contrastive temperature",
    "margin": "triplet margin",
    "batch_size": "contrastive: (anchor, positive) pairs per batch; triplet: triplets per batch",
    "views": "contrastive: random crops per track (two crops of a track are positives)",
    "lr": "AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "crop_seconds": "random crop length in seconds",
    "per_anchor": "examples per anchor per epoch",
    "d_pos": "positives within this many hops",
    "d_neg": "triplet: negatives at least this many hops away",
    "d_max": "triplet: BFS depth bound",
    "hard_share": "triplet: share of harder, intermediate-distance negatives",
    "weight_power": "positives drawn in proportion to edge weight to this power",
    "val_fraction": "share of tracks held out for validation",
    "seed": "random seed",
}


def _args_train_audio(p) -> None:
    from audiograph.audio.training import AudioEncoderModule, GraphAudioData, train_audio

    d = {**keyword_defaults(AudioEncoderModule), **keyword_defaults(GraphAudioData), **keyword_defaults(train_audio)}
    _training_options(p, d, TRAIN_AUDIO_OPTIONS)


def _training_options(p, d: dict, options: dict[str, str]) -> None:
    """The options every training command shares, plus its own `options` (key -> help)."""
    _option(p, "--epochs", d, "maximum epochs", key="max_epochs")
    _option(p, "--patience", d, "early-stopping patience in epochs")
    for key, help_text in options.items():
        _option(p, "--" + key.replace("_", "-"), d, help_text, key=key)
    _option(p, "--workers", d, "DataLoader workers", key="num_workers")
    _option(p, "--accelerator", d, "Lightning accelerator")
    _option(p, "--devices", d, "Lightning devices")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _args_import_tracks(p) -> None:
    p.add_argument("csv", metavar="CSV", help="one row per track (or per track and playlist)")
    p.add_argument("--id-col", default="track_id", help="track id column (default track_id)")
    p.add_argument("--features", action="append", metavar="GROUP=COL,COL,...",
                   help="a feature group and its numeric columns, e.g. audio=danceability,energy (repeatable)")  # fmt: skip
    p.add_argument("--genre-col", help="genre column (majority over a track's rows)")
    p.add_argument("--popularity-col", help="numeric popularity column")
    p.add_argument("--title-col", help="title column")
    p.add_argument("--artist-col", help="artist column")
    p.add_argument("--playlist-col", help="playlist column: keeps each row's genre as that playlist's vote")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


TRAIN_MUSIG_OPTIONS = {
    "batch_size": "positive pairs per batch (as many negatives are added)",
    "lr": "Adam learning rate",
    "hidden_channels": "hidden layer size",
    "out_channels": "output vector size",
    "num_layers": "aggregation layers K",
    "dropout": "dropout between layers",
    "cold_start_rate": "share of seeds trained as tracks in no playlist (the new-track case)",
    "playlist_loss": "playlist task loss: infonce (in-batch negatives) or bce (the paper's)",
    "temperature": "InfoNCE temperature",
    "task_weighting": "static, or uncertainty (learnt per-task weights)",
    "weight_decay": "Adam weight decay",
    "val_fraction": "share of playlists (else edges) held out for validation",
    "seed": "random seed",
}


def _args_train_musig(p) -> None:
    from audiograph.musig.training import MusigModule, train_musig

    d = {**keyword_defaults(MusigModule), **keyword_defaults(train_musig)}
    p.add_argument("--features", help="feature groups, e.g. acoustic,audio,genre,popularity (default: all the store has)")
    p.add_argument("--similarity", default="auto",
                   help="feature group the similarity task regresses on: acoustic, audio or none (default: acoustic, else audio)")  # fmt: skip
    p.add_argument("--task-weights", default=d["task_weights"],
                   help="c1,c2,c3 for the playlist, genre and similarity tasks, a preset (multi=1,1,1,"
                        " graphsage=1,0,0, playlist-heavy=0.7,0.1,0.2, content-heavy=0.4,0.2,0.4), or auto: train"
                        f" every preset and keep the best on validation (default {d['task_weights']})")  # fmt: skip
    p.add_argument("--no-skip", action="store_true", help="no skip path from a track's own features to its vector")
    p.add_argument("--fanouts", type=lambda t: [int(x) for x in t.split(",")], default=list(d["fanouts"]),
                   help=f"neighbours sampled per layer (default {','.join(map(str, d['fanouts']))})")  # fmt: skip
    p.add_argument("--batches-per-epoch", type=int, default=d["batches_per_epoch"],
                   help=f"batches per epoch, 0 for all training edges (default {d['batches_per_epoch']})")
    _training_options(p, d, TRAIN_MUSIG_OPTIONS)


def _args_embed_musig(p) -> None:
    p.add_argument("--model", help="MUSIG model id (default: the newest)")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator (default auto)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def _args_evaluate(p) -> None:
    from audiograph.eval.evaluate import evaluate
    from audiograph.eval.protocol import make_split

    d = {**keyword_defaults(make_split), **keyword_defaults(evaluate)}
    p.add_argument("--playlists", nargs="+", metavar="FILE",
                   help="evaluate on these playlists (M3U8, MPD JSON, CSV), kept out of build-graph; default: hold out"
                        " a share of the stored playlists")  # fmt: skip
    p.add_argument("--methods", nargs="+", metavar="METHOD",
                   help="e.g. cf track2vec node2vec track2vec:genre graphsage:audio musig:popularity features:acoustic"
                        " (default: the paper's Table 2 for every feature group the store has)")  # fmt: skip
    _option(p, "--min-length", d, "evaluate playlists with at least this many tracks")
    _option(p, "--seed-fraction", d, "share of each playlist given as seeds")
    _option(p, "--holdout", d, "share of the stored playlists held out (without --playlists)")
    _option(p, "--max-playlists", d, "at most this many evaluation playlists")
    p.add_argument("--repeats", type=int, default=len(d["seeds"]), help=f"seeds to average over (default {len(d['seeds'])})")
    p.add_argument("--seed", type=int, default=d["seeds"][0], help=f"first seed (default {d['seeds'][0]})")
    _option(p, "--task-weights", d, "MUSIG task weights: c1,c2,c3, a preset or auto")
    p.add_argument("--epochs", type=int, dest="max_epochs", help="MUSIG/GraphSAGE maximum epochs (default: train-musig's)")
    p.add_argument("--batches-per-epoch", type=int, help="MUSIG/GraphSAGE batches per epoch (default: train-musig's)")
    _option(p, "--accelerator", d, "Lightning accelerator")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _args_info(p) -> None:
    p.add_argument("--json", action="store_true", help="print as JSON")


def _args_demo(p) -> None:
    p.add_argument("--out", default="audiograph-demo", help="working folder (default ./audiograph-demo)")


# name -> (help, argument builder, command)
COMMANDS = {
    "synth": ("write a synthetic music collection (audio, playlists, ground truth)", _args_synth, cmd_synth),
    "embed-audio": ("embed every audio file under DIR into the store", _args_embed_audio, cmd_embed_audio),
    "query": ("find the stored tracks most similar to an audio file", _args_query, cmd_query),
    "similar": (
        "find the stored tracks most similar to a stored track (imported ones too)", _args_similar, cmd_similar
    ),
    "export": (
        "write a space's vectors, ids, model id and track metadata to NPZ, CSV or Parquet", _args_export, cmd_export
    ),
    "build-graph": ("build the playlist co-occurrence graph from playlist sources", _args_build_graph, cmd_build_graph),
    "train-audio": ("train the audio encoder on the playlist graph (contrastive or triplet loss)", _args_train_audio, cmd_train_audio),
    "import-tracks": ("import tracks without audio (features, genre, popularity) from a CSV", _args_import_tracks, cmd_import_tracks),
    "train-musig": ("train MUSIG on the graph and every feature group; vectors for all tracks", _args_train_musig, cmd_train_musig),
    "embed-musig": ("write MUSIG vectors for every track, new ones included, without retraining", _args_embed_musig, cmd_embed_musig),
    "evaluate": ("playlist-completion evaluation of MUSIG and the baselines (the paper's Table 2)", _args_evaluate, cmd_evaluate),
    "info": ("summarise the store: tracks, spaces, models", _args_info, cmd_info),
    "demo": ("run every capability on a freshly synthesized collection", _args_demo, cmd_demo),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; only the command named in `argv` (all, when None) gets its arguments."""
    from audiograph import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="store file (default: $AUDIOGRAPH_DB or ./audiograph.db)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or chatter")
    common.add_argument("--debug", action="store_true", help="show tracebacks for errors")

    parser = argparse.ArgumentParser(prog="audiograph", description="Music-track representations from audio, playlists and metadata.")
    parser.add_argument("--version", action="version", version=f"audiograph {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if a in COMMANDS), "")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(func=run)
        if chosen is None or name == chosen:
            add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `audiograph` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        with stop_on_sigterm():
            return args.func(args)
    except AudiographError as e:
        if args.debug:
            raise
        print(f"audiograph: error: {one_line(str(e))}", file=sys.stderr)
        return 1
    except sqlite3.Error as e:
        if args.debug:
            raise
        from audiograph.store import default_db_path, sqlite_error

        print(f"audiograph: error: {one_line(str(sqlite_error(args.db or default_db_path(), e)))}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system refused (permissions, a full disk): the user's to fix
        if args.debug:
            raise
        where = f"{os.fsdecode(e.filename)}: " if e.filename else ""
        print(f"audiograph: error: {one_line(where + (e.strerror or str(e)))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("audiograph: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("audiograph: stopped by SIGTERM (every finished transaction is kept)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as e:
        # Lightning rejects accelerator/devices settings the machine cannot honour: a user error too.
        if type(e).__name__ != "MisconfigurationException" or args.debug:
            raise
        print(f"audiograph: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
