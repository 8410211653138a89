"""What the commands print: one-line messages, result tables and playlists."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from audiograph.errors import ConfigError
from audiograph.tables import TERMINAL_UNSAFE, counted, one_line, show

QUIET = {"on": False}  # set once per command from --quiet


def print_json(result) -> None:
    """A command's result as indented UTF-8 JSON on stdout (what --json prints); C1 controls, line separators and
    bidirectional overrides in its strings as \\u escapes (JSON escapes only C0 ones), so that it cannot drive
    the terminal it is printed on."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text.translate(JSON_ESCAPES))


JSON_ESCAPES = {c: f"\\u{c:04x}" for c in [*range(127, 160), *TERMINAL_UNSAFE]}


def say(message: str = "", quiet: bool = False) -> None:
    """Print a line of chatter, unless `quiet` or the command runs with --quiet. What it quotes from a store (a
    model id, a status) is escaped as `tables.terminal_safe` does, its line breaks kept."""
    if not (quiet or QUIET["on"]):
        show(message, flush=True)


def report_failure(path: str, reason: str) -> None:
    """Print one line for a file that failed, above the progress bar when one is on screen."""
    line = f"failed: {one_line(path)}: {one_line(reason)}"
    if not sys.stderr.isatty():  # no bar to keep clear of (`runtime.progress_bar` writes lines there)
        print(line, file=sys.stderr, flush=True)
        return
    from tqdm.auto import tqdm  # the bar's own class, whose lock the bar has created already

    tqdm.write(line, file=sys.stderr)


def print_embed_summary(summary, quiet: bool) -> None:
    """What an embed-audio run did: counts, duplicates, missing and outdated tracks, and the models used."""
    say(
        f"embedded {summary.embedded}, skipped {summary.skipped} unchanged, failed {len(summary.failed)}"
        + (f", ignored {counted(summary.ignored, 'non-audio file')}" if summary.ignored else ""),
        quiet,
    )
    for dup in summary.duplicates:
        say(f"same audio content: {' = '.join(one_line(p) for p in dup['paths'])}", quiet)
    named = ", ".join(one_line(t) for t in summary.missing_examples)
    if summary.pruned:
        more = ", ..." if summary.pruned > len(summary.missing_examples) else ""
        say(
            f"removed {counted(summary.pruned, 'stored track')} of this collection that are no longer on disk: {named}{more}",
            quiet,
        )
        if summary.pruned_in_graph:
            say(
                f"{summary.pruned_in_graph} of them are in the stored graph: run `audiograph build-graph` again so"
                " that training no longer links them",
                quiet,
            )
    elif summary.missing:
        more = ", ..." if summary.missing > len(summary.missing_examples) else ""
        say(
            f"{counted(summary.missing, 'stored track')} of this collection {'is' if summary.missing == 1 else 'are'} no longer"
            f" on disk, and kept (--prune removes them): {named}{more}",
            quiet,
        )
    for owner, count in summary.elsewhere.items():
        say(
            f"{counted(count, 'file')} {'is' if count == 1 else 'are'} stored already, in collection '{owner}', and left to it (embed that"
            " collection's folder to update them)",
            quiet,
        )
    for space, count in summary.outdated.items():
        say(
            f"'{space}' vectors of {counted(count, 'track')} of this collection are missing or older than their files:"
            f" `audiograph embed-musig{'' if space == 'musig' else f' --space {space}'}` makes them",
            quiet,
        )
    if summary.acoustic_model:
        say(f"acoustic vectors by model {summary.acoustic_model} (the newest trained audio encoder)", quiet)
    else:
        say("no trained audio encoder yet: acoustic vectors appear after `audiograph train-audio`", quiet)


def print_hits(result, wide: bool = False) -> None:
    """A search's results as a table (`wide`: with each path), and what the search left out."""
    from audiograph.pipelines.query import format_hits

    show(
        one_line(
            f"space '{result.space}' (model {result.model_id})"
            + (f"; query is stored track {result.query_track}" if result.query_track else "")
        )
    )
    show(format_hits(result.hits, wide=wide))
    for note in result.notes:
        show(f"note: {note}")


def check_m3u(out: str) -> None:
    """Refuse an --m3u path that is a folder, before any search runs."""
    if Path(out).is_dir():
        raise ConfigError(f"{out}: is a folder; --m3u needs a file name, such as {Path(out) / 'similar.m3u8'}")


def write_m3u(out: str, hits: list[dict], store) -> str:
    """Write the hits that are audio files to the playlist `out`; returns what was written, in words. Tracks
    without a file (imported) cannot be listed: said, and when no hit has a file, an error and no playlist."""
    from audiograph.graph.readers import format_m3u  # numpy: not for every command line

    out_path = Path(out)
    files = sum(1 for h in hits if h.get("path"))
    if hits and not files:
        raise ConfigError(
            f"{out}: none of the {len(hits)} tracks has an audio file (tracks imported from a CSV or a playlist have"
            " none), so there is no playlist to write"
        )
    entries, unwritable = [], 0
    for h in hits:
        if not h.get("path"):
            continue
        if len(h["path"].splitlines()) != 1:  # a line break (as M3U readers split lines) would add an entry
            unwritable += 1
            continue
        # "artist - title" with the separator audiograph's own M3U reader splits on; -1: duration unknown.
        duration = (store.tracks.get(h["track_id"]) or {}).get("duration")
        known = isinstance(duration, (int, float)) and math.isfinite(duration) and duration >= 0
        seconds = round(duration) if known else -1
        label = f"{h.get('artist') or 'Unknown'} - {h['title']}" if h.get("title") else Path(h["path"]).stem
        try:
            location = Path(os.path.relpath(h["path"], out_path.parent.resolve())).as_posix()
        except ValueError:  # another drive on Windows
            location = h["path"]
        entries.append((seconds, one_line(label), location))
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(format_m3u(entries), encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{out}: cannot write the playlist ({e.strerror or e})") from None
    if files and unwritable == files:
        raise ConfigError(f"{out}: every file name of these tracks holds a line break, which M3U cannot list")
    left = [f"{counted(len(hits) - files, 'track')} without an audio file"] if files < len(hits) else []
    left += [f"{unwritable} whose file names hold line breaks"] if unwritable else []
    left_out = f" ({' and '.join(left)} left out)" if left else ""
    return f"wrote {counted(files - unwritable, 'track')} to {out}{left_out}"


def hits_json(hits: list[dict]) -> list[dict]:
    """The fields of each result that --json prints."""
    keys = ("rank", "track_id", "path", "title", "artist", "genre", "score")
    return [{k: h[k] for k in keys} for h in hits]
