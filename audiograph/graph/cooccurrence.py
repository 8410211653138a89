"""The playlist co-occurrence graph: how many playlists each pair of tracks shares."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

# The weight histogram bins of `graph_summary` as (label, lowest weight); the last is open-ended.
WEIGHT_BINS = (("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5-9", 5), ("10+", 10))


def cooccurrence_matrix(playlist_index, track_index, num_tracks: int) -> sp.csr_matrix:
    """Symmetric float32 [num_tracks, num_tracks] CSR: (i, j) = the number of playlists holding both.

    `playlist_index` and `track_index` are parallel integer arrays, one entry per membership;
    a track listed twice in a playlist counts once. The diagonal is zero.
    """
    playlist_index = np.asarray(playlist_index, dtype=np.int64)
    track_index = np.asarray(track_index, dtype=np.int64)
    if playlist_index.shape != track_index.shape:
        raise ValueError("playlist_index and track_index must have the same length")
    playlist_ids, playlist_rows = np.unique(playlist_index, return_inverse=True)
    incidence = sp.csr_matrix(
        (np.ones(len(track_index), np.float32), (playlist_rows, track_index)),
        shape=(len(playlist_ids), num_tracks),
    )
    incidence.sum_duplicates()
    incidence.data[:] = 1.0  # binary: repeats within a playlist count once
    shared = (incidence.T @ incidence).tocoo()
    off_diagonal = shared.row != shared.col
    return sp.csr_matrix(
        (shared.data[off_diagonal], (shared.row[off_diagonal], shared.col[off_diagonal])),
        shape=(num_tracks, num_tracks),
        dtype=np.float32,
    )


def threshold(matrix: sp.spmatrix, min_weight: float) -> sp.csr_matrix:
    """A copy of `matrix` keeping only the entries >= `min_weight`."""
    kept = sp.csr_matrix(matrix, copy=True)
    kept.data[kept.data < min_weight] = 0
    kept.eliminate_zeros()
    return kept


def choose_min_weight(matrix: sp.spmatrix, candidates=(1, 2, 3, 5, 10), keep_share: float = 0.9) -> tuple[int, str]:
    """The largest candidate min weight that leaves at least `keep_share` of the connected tracks connected.

    A track is connected when it has any co-occurrence; it stays connected under a min weight
    w when its strongest edge is >= w. Returns the weight and a one-line reason.
    """
    candidates = sorted(candidates)
    strongest_edge = sp.csr_matrix(matrix).max(axis=1).toarray().ravel()
    connected = int((strongest_edge > 0).sum())
    if connected == 0:
        return candidates[0], f"min weight {candidates[0]}: no track co-occurs with another"
    kept = [int((strongest_edge >= weight).sum()) for weight in candidates]
    chosen = max((k for k, count in enumerate(kept) if count >= keep_share * connected), default=0)
    reason = (
        f"min weight {candidates[chosen]}: keeps {_percent(kept[chosen], connected)} of {connected} connected tracks"
    )
    if chosen + 1 < len(candidates):
        reason += f"; {candidates[chosen + 1]} would keep {_percent(kept[chosen + 1], connected)}"
    return candidates[chosen], reason


def _percent(part: int, whole: int) -> str:
    # Rounded down, so a share shown as 90% really is at least 90%.
    return f"{part * 100 // whole}%"


def graph_summary(adjacency: sp.spmatrix) -> dict:
    """Nodes, undirected edges, a weight histogram, connected components and isolated nodes of the graph whose
    symmetric weighted adjacency matrix (no loops, no stored zeros) is `adjacency`."""
    adjacency = sp.csr_matrix(adjacency)
    degree = np.diff(adjacency.indptr)
    coo = adjacency.tocoo()
    upper = coo.row < coo.col  # each undirected edge once
    # The graph is symmetric, so its strong components are its components, and finding them needs no
    # transposed copy (directed=False builds one: 3x the time at 2.8M edges).
    num_components, labels = connected_components(adjacency, directed=True, connection="strong")
    nodes = adjacency.shape[0]
    return {
        "nodes": nodes,
        "edges": int(upper.sum()),
        "weight_histogram": _weight_histogram(coo.data[upper]),
        "components": int(num_components),
        "largest_component": int(np.bincount(labels).max()) if nodes else 0,
        "isolated_nodes": int((degree == 0).sum()),
    }


def _weight_histogram(weights: np.ndarray) -> dict[str, int]:
    """Edge counts per WEIGHT_BINS bin, after a "<1" bin that appears only when some weight is below 1."""
    lowest = [low for _, low in WEIGHT_BINS]
    counts = np.bincount(np.searchsorted(lowest, weights, side="right"), minlength=len(WEIGHT_BINS) + 1)
    histogram = {"<1": int(counts[0])} if counts[0] else {}
    histogram.update({label: int(count) for (label, _), count in zip(WEIGHT_BINS, counts[1:])})
    return histogram
