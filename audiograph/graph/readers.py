"""Readers for playlist and graph sources: M3U/M3U8, Spotify MPD JSON, membership and edge-list CSVs.

Pure parsing: entries keep what the source says (a path, or a track id with title/artist);
matching them to stored tracks happens elsewhere. Problems inside a file are collected in a
`ReadReport`; only an unreadable file or bad options raise `ConfigError`.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import math
import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from audiograph.errors import ConfigError

PLAYLIST_EXTENSIONS = (".m3u", ".m3u8")
# What a directory given to `read_sources` is searched for.
DIRECTORY_EXTENSIONS = (*PLAYLIST_EXTENSIONS, ".json", ".csv")
FLOAT32_MAX = float(np.finfo(np.float32).max)
EDGE_LIST_OPTIONS = ("src_col", "dst_col", "weight_col")

# A URI scheme of two or more letters ("http:", "spotify:"), so "C:\Music" stays a path.
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:/")


@dataclass
class PlaylistEntry:
    """One playlist item: `path` (absolute, normalised) for file entries, `track_id` for id-based sources."""

    path: str | None = None
    track_id: str | None = None
    title: str | None = None
    artist: str | None = None
    duration: float | None = None  # seconds


@dataclass
class Playlist:
    """An ordered playlist; `source` is the file it was read from."""

    id: str
    name: str
    source: str
    entries: list[PlaylistEntry] = field(default_factory=list)


@dataclass
class EdgeList:
    """Weighted edges between track ids, as parallel sequences."""

    source: str
    src: list[str]
    dst: list[str]
    weight: np.ndarray  # float32, 1.0 where the file has no weight column


@dataclass
class ReadReport:
    """What reading one source file found and skipped; `malformed` holds "file:line: reason" strings."""

    source: str
    playlists: int = 0
    entries: int = 0
    edges: int = 0
    urls_skipped: int = 0
    duplicates_dropped: int = 0
    malformed: list[str] = field(default_factory=list)
    error: str | None = None  # why the file could not be read at all (it gave nothing)


def format_m3u(entries: list[tuple[int, str, str]], name: str | None = None) -> str:
    """The text of an extended M3U playlist of (seconds, "Artist - Title", location) entries (-1 seconds:
    unknown), which `read_m3u` reads back; `name` as its #PLAYLIST line."""
    lines = ["#EXTM3U", *([f"#PLAYLIST:{name}"] if name else [])]
    for seconds, label, location in entries:
        lines += [f"#EXTINF:{seconds},{label}", location]
    return "\n".join(lines) + "\n"


def read_m3u(path: str | os.PathLike) -> tuple[Playlist, ReadReport]:
    """Read an M3U/M3U8 playlist: file entries with their #EXTINF info; URLs are skipped and counted."""
    path = os.path.abspath(path)
    report = ReadReport(source=path)
    folder = os.path.dirname(path)
    name = Path(path).stem
    entries = []
    pending_info = PlaylistEntry()  # what the last #EXTINF said about the next entry
    text, note = _read_m3u_text(path)
    if note:
        report.malformed.append(note)
    # Lines end at CR, LF or both only: `splitlines` also breaks at U+2028 and other separators that a title
    # in an #EXTINF line may hold, which made one entry two.
    for line_number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        line = line.strip()
        if not line:
            continue
        if line.upper().startswith("#EXTINF:"):
            try:
                pending_info = _parse_extinf(line[len("#EXTINF:") :])
            except ValueError as error:
                report.malformed.append(f"{path}:{line_number}: {error}")
                pending_info = PlaylistEntry()
        elif line.upper().startswith("#PLAYLIST:"):
            name = line[len("#PLAYLIST:") :].strip() or name
        elif line.startswith("#"):
            continue
        else:
            location = _local_path(line, folder)
            if location is None:
                report.urls_skipped += 1
            else:
                pending_info.path = location
                entries.append(pending_info)
            pending_info = PlaylistEntry()
    report.playlists, report.entries = 1, len(entries)
    return Playlist(id=path, name=name, source=path, entries=entries), report


def _read_m3u_text(path: str) -> tuple[str, str | None]:
    """The playlist's text, and a note when an .m3u8 (UTF-8 by definition, but old tools write it otherwise)
    was not UTF-8."""
    encoding = text_encoding(path)
    text = Path(path).read_bytes().decode(encoding)
    if encoding != "utf-8-sig" and path.lower().endswith(".m3u8"):
        return text, f"{path}: not valid UTF-8, as an .m3u8 must be; read as {ENCODING_NAMES[encoding]}"
    return text, None


ENCODING_NAMES = {"utf-8-sig": "UTF-8", "cp1252": "Windows-1252", "latin-1": "Latin-1"}


@functools.lru_cache(maxsize=64)
def _encoding_of(path: str, size: int, mtime_ns: int) -> str:
    for encoding in ("utf-8", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with open(path, "rb") as file:
                while block := file.read(1 << 20):
                    decoder.decode(block)
            decoder.decode(b"", final=True)
            return "utf-8-sig" if encoding == "utf-8" else encoding
        except UnicodeDecodeError:
            continue
    return "latin-1"


def text_encoding(path: str | os.PathLike) -> str:
    """How to read a playlist or CSV file: UTF-8 (a byte-order mark skipped) where all of it decodes so, else
    the Windows code page, in which old playlists (Winamp, Windows Media Player) and spreadsheets of Western
    locales save text: Latin-1 plus typographic marks in 0x80-0x9F, and plain Latin-1 where the file has one of
    the few bytes that code page leaves undefined. Read in blocks, once per version of the file."""
    status = os.stat(path)
    return _encoding_of(os.fspath(path), status.st_size, status.st_mtime_ns)


_EXTINF_SPLIT = re.compile(r'((?:[^,"]|"[^"]*")*),(.*)', re.S)


def _parse_extinf(info: str) -> PlaylistEntry:
    """'<secs>[ attributes],<Artist> - <Title>' -> an entry without a path; ValueError when malformed."""
    # The first comma outside quoted attribute values (tvg-name="Artist, Band") ends the duration and attributes.
    split = _EXTINF_SPLIT.match(info)
    head, comma, display = (split.group(1), ",", split.group(2)) if split else info.partition(",")  # a stray quote
    if not comma:
        raise ValueError("malformed #EXTINF (no comma before the title)")
    seconds = (head.split() or [""])[0]
    try:
        duration = float(seconds)
    except ValueError:
        raise ValueError(f"malformed #EXTINF (duration {seconds!r} is not a number)") from None
    artist, dash, title = display.partition(" - ")
    if not dash:
        artist, title = "", display
    return PlaylistEntry(
        title=title.strip() or None,
        artist=artist.strip() or None,
        duration=duration if duration >= 0 else None,  # -1 means unknown
    )


def _local_path(location: str, folder: str) -> str | None:
    """The absolute, normalised path an M3U line names, or None for a non-file URL."""
    if location.lower().startswith("file:"):
        location = unquote(urlsplit(location).path)
        location = re.sub(r"^/(?=[A-Za-z]:/)", "", location)  # file:///C:/x -> C:/x
    elif _URI_SCHEME.match(location):
        return None
    location = location.replace("\\", "/")
    if _WINDOWS_DRIVE.match(location):
        return os.path.normpath(location)
    return os.path.normpath(os.path.join(folder, location))


def read_mpd_json(path: str | os.PathLike) -> tuple[list[Playlist], ReadReport]:
    """Read a Spotify Million Playlist Dataset slice; bad playlist or track objects are reported, not fatal."""
    path = str(path)
    report = ReadReport(source=path)
    try:
        with open(path, encoding="utf-8-sig") as file:  # a byte-order mark, as some Windows tools write
            document = json.load(file)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, an int of 5,000 digits
        reason = "nested too deeply" if isinstance(error, RecursionError) else error
        raise ConfigError(f"{path}: invalid JSON ({reason})") from None
    if not isinstance(document, dict) or not isinstance(document.get("playlists"), list):
        raise ConfigError(f"{path}: not an MPD slice (no 'playlists' list)")
    playlists = []
    for k, item in enumerate(document["playlists"]):
        where = f"{path}: playlists[{k}]"
        pid = item.get("pid") if isinstance(item, dict) else None
        if not isinstance(pid, (int, str)) or isinstance(pid, bool) or not isinstance(item.get("tracks"), list):
            report.malformed.append(f"{where}: not a playlist object with 'pid' and 'tracks'")
            continue
        entries = []
        for j, track in enumerate(item["tracks"]):
            entry = _mpd_entry(track)
            if entry is None:
                report.malformed.append(f"{where}.tracks[{j}]: not a track object with a 'track_uri'")
            else:
                entries.append(entry)
        playlist_id = f"mpd:{pid}"
        playlists.append(Playlist(playlist_id, _text(item.get("name")) or playlist_id, path, entries))
        report.entries += len(entries)
    report.playlists = len(playlists)
    return playlists, report


def _mpd_entry(track) -> PlaylistEntry | None:
    """The entry for one MPD track object, or None when it has no usable track_uri."""
    if not isinstance(track, dict) or not isinstance(track.get("track_uri"), str) or not track["track_uri"]:
        return None
    duration_ms = track.get("duration_ms")
    known = isinstance(duration_ms, (int, float)) and not isinstance(duration_ms, bool) and 0 < duration_ms < math.inf
    return PlaylistEntry(  # a name or duration of another type (a list, NaN) is unknown, as a missing one is
        track_id=track["track_uri"],
        title=_text(track.get("track_name")),
        artist=_text(track.get("artist_name")),
        duration=duration_ms / 1000 if known else None,
    )


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def read_membership_csv(
    path: str | os.PathLike,
    playlist_col: str = "playlist_id",
    track_col: str = "track_id",
    name_col: str | None = None,
    title_col: str | None = None,
    artist_col: str | None = None,
) -> tuple[list[Playlist], ReadReport]:
    """Read one (playlist, track) membership per row; repeated pairs count once, in first-seen order."""
    path = str(path)
    report = ReadReport(source=path)
    playlists: dict[str, Playlist] = {}
    seen = set()
    for line_number, row in csv_rows(path, [playlist_col, track_col, name_col, title_col, artist_col]):
        playlist_id, track_id = _cell(row, playlist_col), _cell(row, track_col)
        if playlist_id is None or track_id is None:
            empty = playlist_col if playlist_id is None else track_col
            report.malformed.append(f"{path}:{line_number}: empty {empty}")
            continue
        if (playlist_id, track_id) in seen:
            report.duplicates_dropped += 1
            continue
        seen.add((playlist_id, track_id))
        if playlist_id not in playlists:
            name = _cell(row, name_col) or playlist_id
            playlists[playlist_id] = Playlist(id=playlist_id, name=name, source=path)
        playlists[playlist_id].entries.append(
            PlaylistEntry(track_id=track_id, title=_cell(row, title_col), artist=_cell(row, artist_col))
        )
    report.playlists, report.entries = len(playlists), len(seen)
    return list(playlists.values()), report


def read_edge_list_csv(
    path: str | os.PathLike, src_col: str = "src", dst_col: str = "dst", weight_col: str = "weight"
) -> tuple[EdgeList, ReadReport]:
    """Read weighted edges between track ids; the weight column is optional (1.0 when absent)."""
    path = str(path)
    report = ReadReport(source=path)
    src, dst, weight = [], [], []
    has_weight = weight_col in _csv_header(path)
    for line_number, row in csv_rows(path, [src_col, dst_col]):
        a, b = _cell(row, src_col), _cell(row, dst_col)
        if a is None or b is None:
            report.malformed.append(f"{path}:{line_number}: empty {src_col if a is None else dst_col}")
            continue
        text = _cell(row, weight_col) if has_weight else "1"
        value = _positive_float(text)
        if value is None:
            report.malformed.append(
                f"{path}:{line_number}: weight {text or ''!r} is not a positive number (up to {FLOAT32_MAX:.3g})"
            )
            continue
        src.append(a)
        dst.append(b)
        weight.append(value)
    report.edges = len(src)
    return EdgeList(source=path, src=src, dst=dst, weight=np.array(weight, np.float32)), report


def _positive_float(text: str | None) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if 0 < value <= FLOAT32_MAX else None  # weights are float32: a larger one became infinite


@contextmanager
def _csv_reader(path: str):
    """A csv.DictReader over `path`, with column names stripped of spaces; decoding and CSV syntax errors become
    ConfigError. The delimiter is a comma, or, where the header line has none, the semicolon, tab or bar it has
    (spreadsheets in many locales save semicolons)."""
    encoding = text_encoding(path)
    if encoding != "utf-8-sig":  # said once per file: a warning's text and place are shown once
        warnings.warn(f"{path}: not valid UTF-8; read as {ENCODING_NAMES[encoding]}", stacklevel=2)
    try:
        with open(path, newline="", encoding=encoding) as file:
            header = file.readline()
            file.seek(0)
            delimiter = next((d for d in ",;\t|" if d in header), ",")
            reader = csv.DictReader(file, delimiter=delimiter)
            if reader.fieldnames:
                reader.fieldnames = [name.strip() for name in reader.fieldnames]
                repeated = sorted({n for n in reader.fieldnames if n and reader.fieldnames.count(n) > 1})
                if repeated:  # DictReader keeps the last of them
                    warnings.warn(
                        f"{path}: columns named twice, the last of each is read: {', '.join(repeated)}", stacklevel=3
                    )
            yield reader
    except (csv.Error, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: unreadable CSV ({error})") from None


def _csv_header(path: str) -> list[str]:
    with _csv_reader(path) as reader:
        return reader.fieldnames or []


def csv_rows(path: str | os.PathLike, required: list[str | None]):
    """(line number, row dict) for each data row, after checking that the `required` columns exist. The line
    is the one the row starts on, also after a quoted field that spans lines."""
    with _csv_reader(path) as reader:
        header = reader.fieldnames or []
        missing = [column for column in required if column is not None and column not in header]
        if missing:
            raise ConfigError(
                f"{path}: missing column(s) {', '.join(map(repr, missing))};"
                f" available: {', '.join(header) or 'none (empty file)'}"
            )
        start = reader.line_num + 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1


def _cell(row: dict, column: str | None) -> str | None:
    """The stripped value of `column`, or None when the column is not wanted or the cell is empty."""
    if column is None:
        return None
    return (row.get(column) or "").strip() or None


def read_sources(paths, **csv_options) -> tuple[list[Playlist], list[EdgeList], list[ReadReport]]:
    """Read every file or directory in `paths`, choosing the reader by extension (and a CSV's header).

    A directory contributes its .m3u/.m3u8/.json/.csv files, recursively, in sorted order. A .csv
    whose header has the edge-list src/dst columns is an edge list, otherwise a membership
    table. `csv_options` are the column-name arguments of both CSV readers. A file that cannot be
    read at all (not JSON, not CSV, a missing column, no permission) gives nothing but its report,
    whose `error` says why; the other files are read all the same.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    edge_options = {key: value for key, value in csv_options.items() if key in EDGE_LIST_OPTIONS}
    membership_options = {key: value for key, value in csv_options.items() if key not in EDGE_LIST_OPTIONS}
    playlists, edge_lists, reports = [], [], []
    for path in dict.fromkeys(_expand(paths)):  # a file named twice (or inside a folder also named) is read once
        try:
            if not path.exists():
                raise ConfigError(f"{path}: no such file or directory")
            if path.is_dir():  # `_expand` keeps a folder only when it holds no playlist file
                raise ConfigError(f"{path}: no playlist files in this folder (.m3u, .m3u8, .json or .csv)")
            if path.suffix.lower() not in DIRECTORY_EXTENSIONS:
                raise ConfigError(f"{path}: unknown source type (expected .m3u, .m3u8, .json, .csv or a folder)")
            found, edges, report = _read_source(path, edge_options, membership_options)
        except (ConfigError, OSError) as error:
            reason = error.strerror or str(error) if isinstance(error, OSError) else str(error)
            found, edges, report = [], [], ReadReport(str(path), error=reason.removeprefix(f"{path}: "))
        playlists.extend(found)
        edge_lists.extend(edges)
        reports.append(report)
    return playlists, edge_lists, reports


def _read_source(
    path: Path, edge_options: dict, membership_options: dict
) -> tuple[list[Playlist], list[EdgeList], ReadReport]:
    """One source file's playlists, edge lists and report, by the reader its extension (and header) calls for."""
    extension = path.suffix.lower()
    if extension in PLAYLIST_EXTENSIONS:
        playlist, report = read_m3u(path)
        return [playlist], [], report
    if extension == ".json":
        found, report = read_mpd_json(path)
        return found, [], report
    if _is_edge_list(path, edge_options):
        edge_list, report = read_edge_list_csv(path, **edge_options)
        return [], [edge_list], report
    found, report = read_membership_csv(path, **membership_options)
    return found, [], report


def _expand(paths) -> list[Path]:
    """The files named by `paths`, directories replaced by the playlist files inside them."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DIRECTORY_EXTENSIONS]
            files.extend(sorted(found) or [path])  # an empty folder gets a report of its own
        else:  # a file that is missing or of another type gets its report, and the others are read
            files.append(path)
    return [file.resolve() for file in files]


def merge_playlists(playlists: list[Playlist]) -> tuple[list[Playlist], int]:
    """`playlists` with those of one id joined into the first, in order (a membership table split over several
    files, or one playlist in two slices), and how many were joined into another."""
    by_id: dict[str, Playlist] = {}
    for playlist in playlists:
        if playlist.id in by_id:
            by_id[playlist.id].entries.extend(playlist.entries)
        else:
            by_id[playlist.id] = Playlist(playlist.id, playlist.name, playlist.source, list(playlist.entries))
    return list(by_id.values()), len(playlists) - len(by_id)


def _is_edge_list(path: Path, edge_options: dict) -> bool:
    header = _csv_header(str(path))
    return edge_options.get("src_col", "src") in header and edge_options.get("dst_col", "dst") in header
