"""The `audiograph` command: argument parsing, and errors turned into one-line messages.

Library modules are imported inside each command so that `audiograph query` starts fast.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

from audiograph.errors import AudiographError


def _defaults(fn) -> dict:
    """A function's keyword defaults: the CLI shows and uses these, so each default lives in one place."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def _say(message: str = "", quiet: bool = False) -> None:
    if not quiet:
        print(message, flush=True)


def _report_failure(path: str, reason: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"failed: {path}: {reason}", file=sys.stderr)


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
    from audiograph.audio.embed import embed_audio

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
        print(json.dumps(summary.to_json(), indent=2))
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
        _say(f"same audio content: {' = '.join(dup['paths'])}", quiet)
    if summary.missing:
        _say(f"{summary.missing} stored tracks of this collection are no longer on disk", quiet)
    if summary.acoustic_model:
        _say(f"acoustic vectors by model {summary.acoustic_model}", quiet)
    else:
        _say("no trained audio encoder yet: acoustic vectors appear after `audiograph train-audio`", quiet)


def cmd_query(args) -> int:
    from audiograph.query import query_file

    store = _open_store(args)
    result = query_file(store, args.file, space=args.space, k=args.k)
    if args.m3u:
        _write_m3u(args.m3u, result.hits)
    if args.json:
        keys = ("rank", "track_id", "path", "title", "artist", "score")
        print(json.dumps([{k: h[k] for k in keys} for h in result.hits], indent=2))
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


def _write_m3u(out: str, hits: list[dict]) -> None:
    from audiograph.query import track_label

    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["#EXTM3U"]
    for h in hits:
        if not h.get("path"):
            continue
        lines.append(f"#EXTINF:-1,{track_label(h)}")
        try:
            lines.append(Path(os.path.relpath(h["path"], out_path.parent.resolve())).as_posix())
        except ValueError:  # another drive on Windows
            lines.append(h["path"])
    out_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def cmd_info(args) -> int:
    store = _open_store(args)
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
        print(json.dumps(info, indent=2))
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


def _option(p, flag: str, defaults: dict, help: str, key: str | None = None, type=None) -> None:
    """An option whose default (shown in --help) is the keyword default of a library function."""
    key = key or flag.lstrip("-").replace("-", "_")
    default = defaults[key]
    kind = type or (default.__class__ if default is not None and not isinstance(default, bool) else str)
    p.add_argument(flag, dest=key, type=kind, default=default, help=f"{help} (default {default})")


# -- parser: each command's arguments are built (and its modules imported) only when it runs -----


def _args_synth(p) -> None:
    from audiograph.synth import synthesize

    d = _defaults(synthesize)
    p.add_argument("out_dir", metavar="OUT_DIR")
    _option(p, "--tracks", d, "number of tracks")
    _option(p, "--genres", d, "number of genres")
    _option(p, "--playlists", d, "number of playlists")
    _option(p, "--seconds", d, "mean track length in seconds")
    _option(p, "--seed", d, "random seed")
    p.add_argument("--with-faults", action="store_true", help="add the broken files real collections contain")


def _args_embed_audio(p) -> None:
    from audiograph.audio.embed import embed_audio

    d = _defaults(embed_audio)
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
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--m3u", metavar="OUT", help="also write the results as an M3U8 playlist")


def _args_info(p) -> None:
    p.add_argument("--json", action="store_true", help="print as JSON")


def _args_demo(p) -> None:
    p.add_argument("--out", default="audiograph-demo", help="working folder (default ./audiograph-demo)")


# name -> (help, argument builder, command)
COMMANDS = {
    "synth": ("write a synthetic music collection (audio, playlists, ground truth)", _args_synth, cmd_synth),
    "embed-audio": ("embed every audio file under DIR into the store", _args_embed_audio, cmd_embed_audio),
    "query": ("find the stored tracks most similar to an audio file", _args_query, cmd_query),
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
        return args.func(args)
    except AudiographError as e:
        if args.debug:
            raise
        print(f"audiograph: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("audiograph: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
