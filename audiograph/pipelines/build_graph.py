"""`build_graph`: playlist sources -> matched memberships -> the weighted co-occurrence graph in the store."""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from audiograph.errors import ConfigError
from audiograph.graph.cooccurrence import choose_min_weight, cooccurrence_matrix, graph_summary, threshold
from audiograph.graph.readers import EdgeList, Playlist, merge_playlists, read_sources
from audiograph.options import check_options
from audiograph.runtime import gc_paused
from audiograph.store import Store, TrackRecord, path_text
from audiograph.tables import counted

if TYPE_CHECKING:
    from audiograph.graph.csr import CSRGraph

UNMATCHED_EXAMPLES = 5
# A Spotify track named as a URI (the MPD's `track_uri`), as a link, or bare (the Web API's and its CSVs' id).
_SPOTIFY_TRACK = re.compile(
    r"(?:spotify:track:|https?://open\.spotify\.com/(?:intl-[\w-]+/)?track/)?([0-9A-Za-z]{22})(?:\?\S*)?"
)


class TrackIds:
    """Matches the track ids that playlist sources give to stored track ids: exactly, else as another
    spelling of the same Spotify track (`spotify:track:ID`, an open.spotify.com link, the bare ID), so that
    MPD slices meet tracks imported from CSVs of the Web API's ids, and the other way round."""

    def __init__(self, stored):
        self.stored = stored if isinstance(stored, (set, dict)) else set(stored)
        self._by_spotify_id = None  # made at the first id that does not match exactly

    def match(self, track_id: str | None) -> str | None:
        """The stored id that `track_id` names, or None."""
        if track_id is None or track_id in self.stored:
            return track_id
        found = _SPOTIFY_TRACK.fullmatch(track_id)
        if found is None:
            return None
        if self._by_spotify_id is None:
            matches = ((_SPOTIFY_TRACK.fullmatch(t), t) for t in self.stored)
            self._by_spotify_id = {m.group(1): t for m, t in matches if m is not None}
        return self._by_spotify_id.get(found.group(1))


@dataclass
class GraphReport:
    """What `build_graph` read, matched and built."""

    playlists: int = 0
    entries: int = 0
    matched: int = 0
    unmatched: int = 0
    unmatched_examples: list[str] = field(default_factory=list)
    urls_skipped: int = 0
    malformed: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {"file", "reason"} of each source that could not be read
    duplicates_dropped: int = 0
    playlists_joined: int = 0  # playlists of an id already read from another source, joined to it
    edge_list_edges: int = 0
    self_loops_dropped: int = 0
    edge_rows_summed: int = 0  # edge-list rows between a pair an earlier row already joined: weights add up
    added_tracks: int = 0
    min_weight: float = 1.0
    min_weight_reason: str = ""
    edges_below_min_weight: int = 0
    long_playlists: int = 0  # playlists longer than max_playlist_length, stored but left out of the graph
    max_playlist_length: int = 0
    summary: dict = field(default_factory=dict)
    replaced: dict | None = None  # the graph this one replaced: {playlists, edges, sources, built}

    def to_json(self) -> dict:
        return asdict(self)


@gc_paused()
def build_graph(
    store: Store,
    sources: list[str | os.PathLike] | str | os.PathLike,
    *,
    min_weight: float | str = "auto",
    add_missing: bool = False,
    max_playlist_length: int = 1000,
    **csv_options,
) -> GraphReport:
    """Read playlists and edge lists, match their entries to stored tracks, and store the playlists
    and the co-occurrence graph, replacing the previous ones (`GraphReport.replaced` says which). A new
    graph without edges never replaces a stored one: that raises a `ConfigError` and keeps it.

    An edge's weight is the number of distinct playlists holding both tracks, plus the weights of
    edge-list rows between them; edges below `min_weight` are dropped ("auto": chosen from the data,
    see `choose_min_weight`). Entries that match no stored track are counted and reported; with
    `add_missing`, id-based entries (MPD, CSV, edge lists) become tracks without audio instead, stored in one
    transaction with the graph (so other writers wait while the graph is built). A playlist of
    more than `max_playlist_length` matched tracks (a whole library as one list) is stored but makes no
    edges: it would link every pair of its tracks, as many edges as the square of its length.
    """
    check_options(max_playlist_length=max_playlist_length)
    if isinstance(sources, (str, os.PathLike)):  # one source
        sources = [sources]
    if not sources:
        raise ConfigError("build-graph needs at least one playlist source")
    playlists, edge_lists, reports = read_sources(sources, **csv_options)
    failed = [{"file": r.source, "reason": r.error} for r in reports if r.error]
    if failed and len(failed) == len(reports):
        more = f" (and {len(failed) - 1} more sources could not be read)" if len(failed) > 1 else ""
        raise ConfigError(f"{failed[0]['file']}: {failed[0]['reason']}{more}")
    playlists, joined = merge_playlists(playlists)
    report = GraphReport(
        playlists_joined=joined,
        playlists=len(playlists),
        entries=sum(len(p.entries) for p in playlists),
        urls_skipped=sum(r.urls_skipped for r in reports),
        malformed=[m for r in reports for m in r.malformed],
        failed=failed,
        duplicates_dropped=sum(r.duplicates_dropped for r in reports),
        edge_list_edges=sum(len(e.src) for e in edge_lists),
    )
    if not add_missing:
        return _build_and_store(store, sources, playlists, edge_lists, report, min_weight, max_playlist_length, False)
    # The added tracks and the graph are stored together: a killed run, or a graph refused below, adds no track.
    with store.transaction():
        report.added_tracks = _add_missing_tracks(store, playlists, edge_lists)
        return _build_and_store(store, sources, playlists, edge_lists, report, min_weight, max_playlist_length, True)


def _build_and_store(
    store, sources, playlists, edge_lists, report, min_weight, max_playlist_length, add_missing
) -> GraphReport:
    """Match the playlists to the stored tracks, build the graph and store it with them, filling `report`."""
    node_ids = store.tracks.node_ids()
    position = {t: i for i, t in enumerate(node_ids)}
    stored_playlists, unmatched = match_playlists(store, playlists, node_ids)
    report.matched = sum(len(p[4]) for p in stored_playlists)
    report.unmatched, report.unmatched_examples = len(unmatched), unmatched[:UNMATCHED_EXAMPLES]
    linked = [p for p in stored_playlists if len(p[4]) <= max_playlist_length]
    report.long_playlists, report.max_playlist_length = len(stored_playlists) - len(linked), max_playlist_length
    playlist_index = [p for p, playlist in enumerate(linked) for _ in playlist[4]]
    track_index = [position[t] for playlist in linked for t in playlist[4]]

    weights = cooccurrence_matrix(playlist_index, track_index, len(node_ids))
    weights = _add_edge_lists(weights, edge_lists, position, report)
    if report.unmatched and not report.matched:
        raise ConfigError(
            f"{', '.join(map(str, sources))}: not one of its {report.unmatched} entries matched a stored track (the"
            f" first: {report.unmatched_examples[0]}); nothing was stored"
            + (", and the stored graph is kept" if store.graph.summary() else "")
            + ("" if add_missing else "; --add-missing adds id-based entries as tracks without audio")
            + _unread(report)
        )
    if min_weight == "auto":
        report.min_weight, report.min_weight_reason = choose_min_weight(weights)
    else:
        report.min_weight = float(min_weight)
        report.min_weight_reason = f"min weight {report.min_weight:g}: set with --min-weight"
    kept = threshold(weights, report.min_weight)
    report.edges_below_min_weight = (weights.nnz - kept.nnz) // 2  # symmetric, with a zero diagonal
    report.summary = graph_summary(kept)
    report.replaced = _replace_stored_graph(store, sources, node_ids, stored_playlists, kept, report)
    return report


def _add_edge_lists(
    weights: sp.csr_matrix, edge_lists: list[EdgeList], position: dict[str, int], report: GraphReport
) -> sp.csr_matrix:
    """`weights` plus the weights of edge-list rows between stored tracks; a row with an end that is no stored
    track counts as unmatched (its id among the examples), and a track's edge to itself is dropped. Rows of one
    pair (in either order, in any edge list) add up, and are counted."""
    seen, ids = set(), TrackIds(position)
    for edges in edge_lists:
        pairs = []
        for a, b, w in zip(edges.src, edges.dst, edges.weight, strict=True):
            stored = ids.match(a), ids.match(b)
            missing = [t for t, s in zip((a, b), stored) if s is None]
            a, b = stored
            if missing:
                report.unmatched += 1
                if len(report.unmatched_examples) < UNMATCHED_EXAMPLES:
                    report.unmatched_examples.append(missing[0])
            elif a == b:
                report.self_loops_dropped += 1
            else:
                pair = (min(position[a], position[b]), max(position[a], position[b]))
                report.edge_rows_summed += pair in seen
                seen.add(pair)
                pairs.append((position[a], position[b], w))
        report.matched += len(pairs)
        if pairs:
            rows, cols, w = map(np.asarray, zip(*pairs, strict=True))
            extra = sp.coo_matrix((w.astype(np.float32), (rows, cols)), shape=weights.shape).tocsr()
            weights = weights + extra + extra.T
    if not np.isfinite(weights.data).all():
        raise ConfigError("the edge lists' weights add up beyond what float32 holds; scale them down")
    return weights


def _replace_stored_graph(
    store: Store,
    sources: list[str | os.PathLike],
    node_ids: list[str],
    stored_playlists: list[tuple[str, str, str, int, list[str]]],
    weights: sp.csr_matrix,
    report: GraphReport,
) -> dict | None:
    """Store the playlists and the graph of symmetric `weights` (never an empty graph over one with edges);
    returns the replaced summary."""
    edges = weights.tocoo()
    upper = edges.row < edges.col
    src, dst, weight = edges.row[upper], edges.col[upper], edges.data[upper].astype(np.float32)
    info = {
        "sources": [os.path.abspath(s) for s in sources],
        "min_weight": report.min_weight,
        "min_weight_reason": report.min_weight_reason,
        "built": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "summary": report.summary,
    }
    previous = store.graph.summary()
    if not len(src) and previous and previous["edges"]:
        dropped = report.edges_below_min_weight
        below = f", and the {dropped} pairs they join are all below min weight {report.min_weight:g}" if dropped else ""
        if report.unmatched_examples:
            below += f"; the first entry that matched none: {report.unmatched_examples[0]}"
        raise ConfigError(
            f"{', '.join(map(str, sources))}: the new graph has no edges ({report.playlists} playlists,"
            f" {report.matched} of {report.entries} entries matched stored tracks{below}); kept the stored graph"
            f" ({previous['playlists']} playlists, {previous['edges']} edges)" + _unread(report)
        )
    return store.graph.replace(stored_playlists, node_ids, (src, dst, weight), info)


def _unread(report: GraphReport) -> str:
    """What of the sources could not be read or used, for an error that stops the command before its report is
    shown: the playlists too long to make edges, the first source that failed and the first malformed entry."""
    said = ""
    if report.long_playlists:
        said += (
            f"; {counted(report.long_playlists, 'playlist')} of more than {report.max_playlist_length} tracks"
            " made no edges (--max-playlist-length)"
        )
    if report.failed:
        first = report.failed[0]
        more = f" and {len(report.failed) - 1} more" if len(report.failed) > 1 else ""
        said += f"; unreadable: {first['file']}: {first['reason']}{more}"
    if report.malformed:
        more = f" ({len(report.malformed)} in all)" if len(report.malformed) > 1 else ""
        said += f"; malformed: {report.malformed[0]}{more}"
    return said


class EntryMatcher:
    """Finds the stored track a playlist entry names: a file entry (M3U) by its path; an id entry (MPD, CSV)
    by its id (`TrackIds`), else as the path of a stored file, absolute or relative to its source's folder
    (a CSV of file paths, as `import-tracks` takes). Paths match in Unicode normal form C, so that a playlist
    written on macOS (which decomposes accents in file names) finds files named elsewhere."""

    def __init__(self, store: Store, node_ids: list[str] | None = None):
        self.by_path = {_nfc(t["path"]): t["id"] for t in store.tracks.rows(status="ok") if t["path"]}
        self.ids = TrackIds(store.tracks.node_ids() if node_ids is None else node_ids)

    def match(self, entry, source: str | None) -> str | None:
        """The stored track id of `entry`, read from the file `source`, or None."""
        if entry.path:
            return self._by_path(entry.path)
        found = self.ids.match(entry.track_id)
        if found is None and entry.track_id and self.by_path:
            folder = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
            found = self._by_path(os.path.normpath(os.path.join(folder, entry.track_id)))
        return found

    def _by_path(self, path: str) -> str | None:
        """The stored file at `path` as written, else at the path its links resolve to: files are stored under
        their resolved paths, and a playlist may reach them through a linked folder."""
        found = self.by_path.get(_nfc(path))
        if found is None and os.path.exists(path):
            found = self.by_path.get(_nfc(path_text(os.path.realpath(path))))
        return found


def match_playlists(
    store: Store, playlists: list[Playlist], node_ids: list[str] | None = None
) -> tuple[list[tuple[str, str, str, int, list[str]]], list[str]]:
    """Match playlist entries to stored tracks (`EntryMatcher`).

    Returns the playlists as (id, name, source, entries listed, matched track ids in order),
    and one "entry (in 'playlist')" line per unmatched entry.
    """
    matcher = EntryMatcher(store, node_ids)
    matched_playlists, unmatched = [], []
    for playlist in playlists:
        matched = []
        for entry in playlist.entries:
            track_id = matcher.match(entry, playlist.source)
            if track_id is None:
                unmatched.append(f"{entry.path or entry.track_id} (in '{playlist.name}')")
            else:
                matched.append(track_id)
        matched_playlists.append((playlist.id, playlist.name, playlist.source, len(playlist.entries), matched))
    return matched_playlists, unmatched


def _nfc(path: str) -> str:
    return unicodedata.normalize("NFC", path)


def _add_missing_tracks(store: Store, playlists: list[Playlist], edge_lists) -> int:
    """Create audio-less tracks for id-based entries that match nothing; returns how many."""
    matcher = EntryMatcher(store)
    known = matcher.ids
    new: dict[str, TrackRecord] = {}
    for playlist in playlists:
        for e in playlist.entries:
            if e.track_id and e.track_id not in new and matcher.match(e, playlist.source) is None:
                new[e.track_id] = TrackRecord(
                    id=e.track_id,
                    collection=None,
                    path=None,
                    status="imported",
                    duration=e.duration,
                    tags={"title": e.title, "artist": e.artist},
                )
    for edges in edge_lists:
        for track_id in (*edges.src, *edges.dst):
            if known.match(track_id) is None and track_id not in new:
                new[track_id] = TrackRecord(id=track_id, collection=None, path=None, status="imported")
    store.tracks.write(list(new.values()))
    return len(new)


def load_graph(store: Store, node_ids: list[str] | None = None) -> tuple[list[str], CSRGraph]:
    """(node ids, the stored co-occurrence graph over them): every usable track unless `node_ids` are given."""
    from audiograph.graph.csr import CSRGraph  # torch: not for build-graph itself

    node_ids = store.tracks.node_ids() if node_ids is None else node_ids
    src, dst, weight = store.graph.edges(node_ids)
    return node_ids, CSRGraph.from_edges(src, dst, len(node_ids), weight=weight)


def export_graphml(store: Store, path: str | os.PathLike) -> None:
    """Write the stored graph, with track titles, artists and genres, as GraphML (via networkx)."""
    import networkx as nx

    node_ids, graph = load_graph(store)
    g = nx.Graph()
    tracks = {t["id"]: t for t in store.tracks.rows(status=None)}
    for track_id in node_ids:
        t = tracks[track_id]
        g.add_node(track_id, **{k: t[k] for k in ("title", "artist", "genre") if t.get(k)})
    upper = (graph.row < graph.col).numpy()
    for i, j, w in zip(graph.row.numpy()[upper], graph.col.numpy()[upper], graph.weight.numpy()[upper]):
        g.add_edge(node_ids[i], node_ids[j], weight=float(w))
    nx.write_graphml(g, path)
