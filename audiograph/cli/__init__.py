"""The `audiograph` command: argument parsing, and errors turned into one-line messages.

Library modules are imported inside each command so that `audiograph query` starts fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import sys
import warnings

from audiograph.cli.arguments import (
    args_build_graph,
    args_demo,
    args_embed_audio,
    args_embed_musig,
    args_evaluate,
    args_export,
    args_import_tracks,
    args_index,
    args_info,
    args_map,
    args_query,
    args_radio,
    args_similar,
    args_synth,
    args_train_audio,
    args_train_musig,
    check_ranges,
)
from audiograph.cli.commands import (
    cmd_build_graph,
    cmd_demo,
    cmd_embed_audio,
    cmd_embed_musig,
    cmd_evaluate,
    cmd_export,
    cmd_import_tracks,
    cmd_index,
    cmd_info,
    cmd_map,
    cmd_query,
    cmd_radio,
    cmd_similar,
    cmd_synth,
    cmd_train_audio,
    cmd_train_musig,
)
from audiograph.cli.output import QUIET, one_line
from audiograph.errors import AudiographError
from audiograph.runtime import (
    INTERRUPT_RECEIVED,
    SIGTERM_RECEIVED,
    WORK_SAVED,
    Terminated,
    interrupt_answered,
    stop_on_sigterm,
    stop_once_on_ctrl_c,
)

# name -> (help, argument builder, command)
COMMANDS = {
    "synth": ("write a synthetic music collection (audio, playlists, ground truth)", args_synth, cmd_synth),
    "embed-audio": ("embed every audio file under DIR into the store", args_embed_audio, cmd_embed_audio),
    "query": ("find the stored tracks most similar to an audio file", args_query, cmd_query),
    "similar": ("find the stored tracks most similar to a stored track (imported ones too)", args_similar, cmd_similar),
    "radio": ("a playlist that starts from a seed track and walks a space, with variety", args_radio, cmd_radio),
    "map": ("draw a 2-D map of a space (t-SNE or UMAP), coloured by genre or playlist", args_map, cmd_map),
    "index": ("build an approximate-nearest-neighbour index of a space (needs audiograph[ann])", args_index, cmd_index),
    "export": (
        "write a space's vectors, ids, model id and track metadata to NPZ, CSV or Parquet",
        args_export,
        cmd_export,
    ),
    "build-graph": ("build the playlist co-occurrence graph from playlist sources", args_build_graph, cmd_build_graph),
    "train-audio": (
        "train the audio encoder on the playlist graph (contrastive or triplet loss)",
        args_train_audio,
        cmd_train_audio,
    ),
    "import-tracks": (
        "import tracks without audio (features, genre, popularity) from a CSV",
        args_import_tracks,
        cmd_import_tracks,
    ),
    "train-musig": (
        "train MUSIG on the graph and every feature group; vectors for all tracks",
        args_train_musig,
        cmd_train_musig,
    ),
    "embed-musig": (
        "write MUSIG vectors for every track, new ones included, without retraining",
        args_embed_musig,
        cmd_embed_musig,
    ),
    "evaluate": (
        "playlist-completion evaluation of MUSIG and the baselines (the paper's Table 2)",
        args_evaluate,
        cmd_evaluate,
    ),
    "info": ("summarise the store: tracks, spaces, models", args_info, cmd_info),
    "demo": ("run every capability on a freshly synthesized collection", args_demo, cmd_demo),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; only the command named in `argv` (all, when None) gets its arguments."""
    from audiograph import __version__

    parser = argparse.ArgumentParser(
        prog="audiograph", description="Music-track representations from audio, playlists and metadata."
    )
    parser.add_argument("--version", action="version", version=f"audiograph {__version__}")
    _common_options(parser)  # before the command too: `audiograph --db music.db info`
    common, common_without_store = argparse.ArgumentParser(add_help=False), argparse.ArgumentParser(add_help=False)
    _common_options(common, given_only=True)
    _common_options(common_without_store, store=False, given_only=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None if argv is None else next((a for a in argv if a in COMMANDS), "")
    parser.command_parsers = {}
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        parents = [common_without_store if name in FILE_COMMANDS else common]
        p = parser.command_parsers[name] = commands.add_parser(
            name, parents=parents, help=help_text, description=help_text
        )
        p.set_defaults(func=run)
        if chosen is None or name == chosen:
            add_arguments(p)
            check_ranges(p)
    return parser


FILE_COMMANDS = ("synth", "demo")  # commands that write files, not a store, and print no result: no --db, no --json


def _common_options(parser: argparse.ArgumentParser, store: bool = True, given_only: bool = False) -> None:
    """The options every command takes, before or after its name. With `given_only` they set nothing when
    absent, so that a command's own parser keeps what was given before the command's name."""

    def default(value):
        return argparse.SUPPRESS if given_only else value

    if store:
        parser.add_argument(
            "--db", default=default(None), help="store file (default: $AUDIOGRAPH_DB or ./audiograph.db)"
        )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=default(False), help="no progress bars or chatter"
    )
    if store:
        parser.add_argument("--json", action="store_true", default=default(False), help="print the result as JSON")
    parser.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks for errors")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `audiograph` console script."""
    command_line = argv is None  # the console script: this process exits when main returns
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said with the command's usage, which lists its options, rather than the top level's
        parser.command_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    QUIET["on"] = args.quiet
    with warnings.catch_warnings():  # restores the warning display when an in-process caller gets control back
        if not args.debug:
            warnings.showwarning = _say_warning
        return _run(args, command_line)


def _run(args: argparse.Namespace, command_line: bool) -> int:
    """The command, with errors turned into one-line messages and exit codes."""
    WORK_SAVED["what"] = None
    try:
        with stop_on_sigterm(), stop_once_on_ctrl_c(keep_ignored=command_line):
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
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say to it
        if args.debug:
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush cannot fail
        return 1
    except OSError as e:  # the file system refused (permissions, a full disk): the user's to fix
        if args.debug:
            raise
        where = f"{os.fsdecode(e.filename)}: " if e.filename else ""
        print(f"audiograph: error: {one_line(where + (e.strerror or str(e)))}", file=sys.stderr)
        return 1
    except MemoryError:  # numpy says how much it wanted: e.g. a query file hours long on a small machine
        if args.debug:
            raise
        print("audiograph: error: out of memory (a file too long for the memory available?)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _say_interrupted()
        return 130
    except (Terminated, SystemExit) as e:
        if isinstance(e, SystemExit) and INTERRUPT_RECEIVED["at"] is not None:  # Lightning ends a fit so
            _say_interrupted()
            return 130
        if isinstance(e, SystemExit) and SIGTERM_RECEIVED["at"] is None:
            raise
        print("audiograph: stopped by SIGTERM (every finished transaction is kept)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as e:
        # Lightning rejects accelerator/devices settings the machine cannot honour: a user error too.
        if type(e).__name__ != "MisconfigurationException" or args.debug:
            raise
        print(f"audiograph: error: {e}", file=sys.stderr)
        return 1
    finally:
        interrupt_answered()  # the command ends now: a Ctrl-C's 'stopping' notice would come too late


def _say_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, like the errors: what it says, without the source line that raised it."""
    print(f"warning: {one_line(str(message))}", file=sys.stderr)


def _say_interrupted() -> None:
    """Say that Ctrl-C stopped the command, once per machine: in a multi-device run every process of the
    terminal's group gets the Ctrl-C, and the ranks Lightning started (LOCAL_RANK > 0) leave it to the first."""
    if os.environ.get("LOCAL_RANK", "0") == "0":
        saved = WORK_SAVED["what"]
        # After the command's work was committed: said, so that nobody runs it again for nothing.
        print(f"audiograph: interrupted{f' after {saved}' if saved else ''}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
