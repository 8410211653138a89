"""Each command's arguments. Defaults shown in --help are the keyword defaults of the library functions, read
from their source (`source_defaults`), so each default lives in one place and --help imports none of them."""

from __future__ import annotations

import argparse
import ast
import functools
from pathlib import Path

from audiograph.options import RANGES, range_problem


@functools.cache
def _module_tree(module: str) -> ast.Module:
    # The file itself, found without importing its package (a package's __init__ may import numpy).
    path = Path(__file__).resolve().parents[2].joinpath(*module.split(".")).with_suffix(".py")
    return ast.parse(path.read_text(encoding="utf-8"))


def source_defaults(module: str, name: str) -> dict:
    """The keyword defaults of function or class `name` in `module`, read from its source without importing
    it (so that --help never waits for torch). Defaults are literals or the module's literal constants."""
    tree = _module_tree(module)
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    node = next(n for n in tree.body if getattr(n, "name", None) == name)
    if isinstance(node, ast.ClassDef):
        node = next(n for n in node.body if getattr(n, "name", None) == "__init__")
    args = node.args
    named = list(zip(args.args[len(args.args) - len(args.defaults) :], args.defaults))
    named += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    out = {}
    for arg, default in named:
        try:
            out[arg.arg] = ast.literal_eval(default)
        except ValueError:
            if isinstance(default, ast.Name) and default.id in constants:
                out[arg.arg] = constants[default.id]
    return out


def min_weight(text: str):
    """--min-weight: "auto" or a number (its range is checked with the other options)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def in_range(parse, key: str):
    """`parse` (an argparse type) followed by the check of `RANGES[key]`."""

    def parse_in_range(text: str):
        value = parse(text)
        if isinstance(value, (int, float)):
            problem = range_problem(key, value)
            if problem:
                raise argparse.ArgumentTypeError(f"{problem} (got {text})")
        return value

    parse_in_range.__name__ = getattr(parse, "__name__", "value")  # what argparse names in its messages
    return parse_in_range


def check_ranges(p: argparse.ArgumentParser) -> None:
    """Give every option of `p` listed in `RANGES` its range check."""
    for action in p._actions:
        if action.dest in RANGES and action.type is not None:
            action.type = in_range(action.type, action.dest)


def option(p, flag: str, defaults: dict, help: str, key: str | None = None, type=None) -> None:
    """An option whose default (shown in --help) is the keyword default of a library function."""
    key = key or flag.lstrip("-").replace("-", "_")
    default = defaults[key]
    kind = type or (default.__class__ if default is not None and not isinstance(default, bool) else str)
    metavar = flag.lstrip("-").replace("-", "_").upper()  # the flag's own name, not the library's keyword
    p.add_argument(flag, dest=key, type=kind, default=default, metavar=metavar, help=f"{help} (default {default})")


def args_synth(p) -> None:
    d = source_defaults("audiograph.synth.collection", "synthesize")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the collection into")
    option(p, "--tracks", d, "number of tracks")
    option(p, "--genres", d, "number of genres")
    option(p, "--playlists", d, "number of playlists")
    option(p, "--seconds", d, "mean track length in seconds")
    option(p, "--seed", d, "random seed")
    p.add_argument("--with-faults", action="store_true", help="add the broken files real collections contain")


def args_embed_audio(p) -> None:
    d = source_defaults("audiograph.pipelines.embed_audio", "embed_audio")
    p.add_argument("dir", metavar="DIR", help="folder of audio files, scanned recursively")
    p.add_argument("--collection", help="collection name, the prefix of its track ids (default: DIR's name)")
    p.add_argument(
        "--prune", action="store_true", help="remove the collection's stored tracks whose files are no longer in DIR"
    )
    p.add_argument(
        "--rehash",
        action="store_true",
        help="hash every file, not only those whose size or time changed (a tag editor may keep both)",
    )
    option(p, "--model", d, "acoustic encoder id from the registry", key="acoustic_model")
    option(p, "--batch-size", d, "files per batch and per transaction")
    p.add_argument(
        "--workers",
        type=int,
        metavar="WORKERS",
        help="decoding processes, 0 to decode in this one (default: one per CPU core; per rank with DDP)",
    )
    option(p, "--accelerator", d, "accelerator for the encoder (auto, cpu, gpu, or any Lightning accelerator)")
    option(p, "--devices", d, "devices; more than 1 shares the files out over ranks with Lightning", type=str)
    option(p, "--strategy", d, "Lightning strategy for several devices or nodes (e.g. ddp)")
    option(p, "--num-nodes", d, "nodes; every node runs the same command, global rank 0 writes")


def args_query(p) -> None:
    p.add_argument("file", metavar="FILE", help="an audio file, in the store or new")
    option(p, "-k", source_defaults("audiograph.pipelines.query", "query_file"), "number of results")
    p.add_argument("--space", help="vector space to search (default: musig, else acoustic, else descriptors)")
    p.add_argument("--model", help="search the vectors of this registered model (default: the space's newest)")
    p.add_argument("--m3u", metavar="OUT", help="also write the results as an M3U8 playlist")
    p.add_argument("--wide", action="store_true", help="also show each track's path")


def args_similar(p) -> None:
    p.add_argument("track", metavar="TRACK_ID|PATH", help="a stored track: its id, or the path of its file")
    option(p, "-k", source_defaults("audiograph.pipelines.query", "similar_track"), "number of results")
    p.add_argument(
        "--space",
        help="vector space to search (default: query's default space, else the first space the track has a vector in)",
    )
    p.add_argument("--wide", action="store_true", help="also show each track's path")


def args_radio(p) -> None:
    d = source_defaults("audiograph.pipelines.explore", "radio")
    p.add_argument("seed", metavar="SEED", help="a stored track id, a stored file, or a new audio file")
    option(p, "--length", d, "tracks in the playlist")
    p.add_argument("--space", help="vector space to walk (default: as for similar/query)")
    option(p, "--diversity", d, "0: nearest tracks only; higher spreads the playlist (no near-duplicates either way)")
    option(p, "--walk", d, "how much each pick follows the previous track rather than the seed")
    p.add_argument("--m3u", metavar="OUT", help="also write the playlist as an M3U8 file")
    p.add_argument("--wide", action="store_true", help="also show each track's path")


def args_map(p) -> None:
    d = source_defaults("audiograph.pipelines.explore", "map_space")
    p.add_argument("space", metavar="SPACE", help="the vector space to map (see `audiograph info`)")
    p.add_argument("--out", required=True, metavar="PATH", help="image to write: .png, .svg, .pdf, or .html")
    p.add_argument(
        "--method",
        choices=["auto", "umap", "tsne"],
        default=d["method"],
        help=f"2-D projection; auto: UMAP when umap-learn is installed (default {d['method']})",
    )
    p.add_argument(
        "--colour", choices=["genre", "playlist"], default=d["colour"], help=f"colour points by (default {d['colour']})"
    )
    option(p, "--max-points", d, "map at most this many tracks (a seeded sample)")
    option(p, "--seed", d, "random seed")


def args_index(p) -> None:
    p.add_argument("space", metavar="SPACE", help="the vector space to index (see `audiograph info`)")
    p.add_argument(
        "--kind",
        choices=["auto", "flat", "pq", "ivf", "hnsw"],
        default=source_defaults("audiograph.pipelines.index", "build_index")["kind"],
        help="auto: exact below 10k rows, a re-ranked PQ fast scan to 10M, IVF above (default %(default)s)",
    )


def args_export(p) -> None:
    p.add_argument("space", metavar="SPACE", help="the vector space to export (see `audiograph info`)")
    p.add_argument(
        "--format",
        choices=["npy", "csv", "parquet"],
        help="npy: a NumPy .npz archive, np.load(OUT) -> ids, vectors (float32 [N, d]), model_id, space, title,"
        " artist, genre, path; csv: one row per track: track_id, model_id, title, artist, genre, path, v0..vN;"
        " parquet: the csv columns with the vector as one list column `vector` (needs pip install"
        " 'audiograph[parquet]') (default: from OUT's extension, .npz, .csv or .parquet)",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="file to write")
    p.add_argument("--model", help="export the vectors of this registered model (default: the space's newest)")


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


def args_build_graph(p) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="M3U/M3U8 files or folders, MPD JSON slices, CSVs")
    p.add_argument(
        "--min-weight",
        default="auto",
        type=min_weight,
        help="drop edges shared by fewer playlists (default: auto, chosen from the data and reported)",
    )
    p.add_argument(
        "--add-missing", action="store_true", help="add id-based entries that match no track as tracks without audio"
    )
    option(
        p,
        "--max-playlist-length",
        source_defaults("audiograph.pipelines.build_graph", "build_graph"),
        "playlists of more tracks are stored but make no edges (a whole library would link every pair)",
    )
    p.add_argument("--graphml", metavar="OUT", help="also export the graph as GraphML")
    for key, help_text in CSV_COLUMN_OPTIONS.items():
        p.add_argument("--" + key.replace("_", "-"), dest=key, help=help_text)


TRAINING_OPTION_HELP = {
    "genre_loss": "genre task on the sampled pairs (pairs, the paper's), on every pair of the batch's seeds (batch), or"
    " as a genre classifier on the seeds' vectors (classify)",
    "loss": "contrastive (multi-positive InfoNCE, in-batch negatives) or triplet (the blog's cosine triplet loss)",
    "margin": "triplet margin",
    "views": "contrastive: random crops per track (two crops of a track are positives)",
    "crop_seconds": "random crop length in seconds",
    "per_anchor": "examples per anchor per epoch",
    "d_pos": "positives within this many hops",
    "d_neg": "triplet: negatives at least this many hops away",
    "d_max": "triplet: BFS depth bound",
    "hard_share": "triplet: share of harder, intermediate-distance negatives",
    "weight_power": "positives drawn in proportion to edge weight to this power",
    "hidden_channels": "hidden layer size",
    "out_channels": "output vector size",
    "num_layers": "aggregation layers K",
    "dropout": "dropout between layers",
    "cold_start_rate": "share of seeds trained as tracks in no playlist (the new-track case)",
    "playlist_loss": "playlist task loss: infonce (in-batch negatives) or bce (the paper's)",
    "task_weighting": "static, or uncertainty (learnt per-task weights)",
    "batch_size": {
        "train-audio": "(anchor, positive) pairs, or triplets, per batch",
        "train-musig": "positive pairs per batch (as many negatives are added)",
    },
    "lr": {"train-audio": "AdamW learning rate", "train-musig": "Adam learning rate"},
    "weight_decay": "weight decay",
    "temperature": "InfoNCE temperature",
    "val_fraction": {
        "train-audio": "share of the tracks held out for validation",
        "train-musig": "share of the playlists (else of the edges) held out for validation",
    },
    "descriptor_weight": "share of the acoustic space's cosine that comes from the standardised descriptors,"
    " from 0 (the encoder alone) to below 1, or auto: the best of 0, 0.25, 0.5 and 0.75 on the validation tracks",
    "seed": "random seed",
}
# Options whose values are not all of their default's type (a number, or "auto").
OPTION_TYPES = {"descriptor_weight": str}
TRAIN_AUDIO_OPTIONS = (
    "loss",
    "temperature",
    "margin",
    "batch_size",
    "views",
    "lr",
    "weight_decay",
    "crop_seconds",
    "per_anchor",
    "d_pos",
    "d_neg",
    "d_max",
    "hard_share",
    "weight_power",
    "val_fraction",
    "descriptor_weight",
    "seed",
)


def args_train_audio(p) -> None:
    d = {
        **source_defaults("audiograph.training.audio", "AudioEncoderModule"),
        **source_defaults("audiograph.training.audio_data", "GraphAudioData"),
        **source_defaults("audiograph.pipelines.train_audio", "train_audio"),
    }
    p.add_argument("--space", help="the vector space to fill (default: acoustic)")
    training_options(p, d, "train-audio", TRAIN_AUDIO_OPTIONS)


def training_options(p, d: dict, command: str, options: tuple[str, ...]) -> None:
    """The options every training command shares, plus its own `options` (keys of `TRAINING_OPTION_HELP`, whose
    help may differ by `command`)."""
    option(p, "--epochs", d, "maximum epochs", key="max_epochs")
    option(p, "--patience", d, "early-stopping patience in epochs")
    for key in options:
        help_text = TRAINING_OPTION_HELP[key]
        help_text = help_text[command] if isinstance(help_text, dict) else help_text
        option(p, "--" + key.replace("_", "-"), d, help_text, key=key, type=OPTION_TYPES.get(key))
    option(p, "--workers", d, "DataLoader workers", key="num_workers")
    distributed_options(p, d)


def distributed_options(p, d: dict) -> None:
    """--accelerator, --devices, --strategy and --num-nodes, passed to Lightning."""
    option(p, "--accelerator", d, "Lightning accelerator")
    option(p, "--devices", d, "Lightning devices")
    option(p, "--strategy", d, "Lightning strategy, e.g. ddp (the command runs once per process; rank 0 writes)")
    option(p, "--num-nodes", d, "machines taking part (with --strategy ddp)", type=int)


def args_import_tracks(p) -> None:
    p.add_argument("csv", metavar="CSV", help="one row per track (or per track and playlist)")
    p.add_argument(
        "--track-col",
        "--id-col",
        dest="id_col",
        metavar="COLUMN",
        default=source_defaults("audiograph.pipelines.import_tracks", "import_tracks")["id_col"],
        help="track id column (default %(default)s)",
    )
    p.add_argument(
        "--features",
        action="append",
        metavar="GROUP=COL,COL,...",
        help="a feature group and its numeric columns, e.g. audio=danceability,energy (repeatable)",
    )
    p.add_argument("--genre-col", help="genre column (majority over a track's rows)")
    p.add_argument("--popularity-col", help="numeric popularity column")
    p.add_argument("--title-col", help="title column")
    p.add_argument("--artist-col", help="artist column")
    p.add_argument("--playlist-col", help="playlist column: keeps each row's genre as that playlist's vote")


TRAIN_MUSIG_OPTIONS = (
    "genre_loss",
    "batch_size",
    "lr",
    "hidden_channels",
    "out_channels",
    "num_layers",
    "dropout",
    "cold_start_rate",
    "playlist_loss",
    "temperature",
    "task_weighting",
    "weight_decay",
    "val_fraction",
    "seed",
)


def args_train_musig(p) -> None:
    d = {
        **source_defaults("audiograph.training.musig", "MusigModule"),
        **source_defaults("audiograph.training.musig_data", "MusigDataModule"),
        **source_defaults("audiograph.pipelines.train_musig", "train_musig"),
    }
    p.add_argument(
        "--features", help="feature groups, e.g. acoustic,audio,genre,popularity (default: all the store has)"
    )
    p.add_argument(
        "--similarity",
        default="auto",
        help="feature group the similarity task regresses on: acoustic, audio or none (default: acoustic, else audio)",
    )
    p.add_argument(
        "--task-weights",
        default=d["task_weights"],
        help="c1,c2,c3 for the playlist, genre and similarity tasks, a preset (multi=1,1,1,"
        " graphsage=1,0,0, playlist-heavy=0.7,0.1,0.2, content-heavy=0.4,0.2,0.4), or auto: train"
        f" every preset and keep the best on validation (default {d['task_weights']})",
    )
    p.add_argument("--no-skip", action="store_true", help="no skip path from a track's own features to its vector")
    p.add_argument(
        "--space", help="the vector space to fill (default: musig, or graphsage with --task-weights graphsage)"
    )
    p.add_argument(
        "--fanouts",
        type=lambda t: [int(x) for x in t.split(",")],
        default=list(d["fanouts"]),
        help=f"neighbours sampled per layer (default {','.join(map(str, d['fanouts']))})",
    )
    p.add_argument(
        "--batches-per-epoch",
        type=int,
        default=d["batches_per_epoch"],
        help=f"batches per epoch, 0 for all training edges (default {d['batches_per_epoch']})",
    )
    training_options(p, d, "train-musig", TRAIN_MUSIG_OPTIONS)


def args_embed_musig(p) -> None:
    p.add_argument("--model", help="MUSIG model id (default: the newest filling --space)")
    p.add_argument("--space", default="musig", help="the space to refresh, e.g. graphsage (default musig)")
    distributed_options(p, source_defaults("audiograph.pipelines.train_musig", "embed_musig"))


def args_evaluate(p) -> None:
    d = {
        **source_defaults("audiograph.pipelines.evaluate", "make_split"),
        **source_defaults("audiograph.pipelines.evaluate", "evaluate"),
    }
    p.add_argument(
        "--playlists",
        nargs="+",
        metavar="FILE",
        help="evaluate on these playlists (M3U8, MPD JSON, CSV), kept out of build-graph; default: hold out"
        " a share of the stored playlists",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="e.g. cf track2vec node2vec track2vec:genre graphsage:audio musig:popularity features:acoustic"
        " (default: the paper's Table 2 for every feature group the store has)",
    )
    option(p, "--min-length", d, "evaluate playlists with at least this many tracks")
    option(p, "--seed-fraction", d, "share of each playlist given as seeds")
    option(p, "--holdout", d, "share of the stored playlists held out (without --playlists)")
    option(p, "--max-playlists", d, "at most this many evaluation playlists")
    p.add_argument(
        "--repeats", type=int, default=len(d["seeds"]), help=f"seeds to average over (default {len(d['seeds'])})"
    )
    p.add_argument("--seed", type=int, default=d["seeds"][0], help=f"first seed (default {d['seeds'][0]})")
    option(p, "--task-weights", d, "MUSIG task weights: c1,c2,c3, a preset or auto")
    p.add_argument(
        "--epochs", type=int, dest="max_epochs", help="MUSIG/GraphSAGE maximum epochs (default: train-musig's)"
    )
    p.add_argument("--batches-per-epoch", type=int, help="MUSIG/GraphSAGE batches per epoch (default: train-musig's)")
    option(p, "--accelerator", d, "Lightning accelerator")


def args_info(p) -> None:
    """info takes only the options every command has."""


def args_demo(p) -> None:
    option(p, "--out", source_defaults("audiograph.pipelines.demo", "run_demo"), "working folder")
