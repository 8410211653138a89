"""Co-occurrence weights, thresholds, the min-weight heuristic and graph summaries."""

from itertools import combinations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from audiograph.graph.cooccurrence import choose_min_weight, cooccurrence_matrix, graph_summary, threshold
from audiograph.graph.csr import CSRGraph


def brute_force_counts(playlist_index, track_index, num_tracks) -> np.ndarray:
    tracks_of = {}
    for playlist, track in zip(playlist_index, track_index):
        tracks_of.setdefault(playlist, set()).add(track)
    counts = np.zeros((num_tracks, num_tracks))
    for tracks in tracks_of.values():
        for a, b in combinations(sorted(tracks), 2):
            counts[a, b] += 1
            counts[b, a] += 1
    return counts


@pytest.mark.parametrize("seed", range(4))
def test_weights_count_distinct_shared_playlists(seed):
    rng = np.random.default_rng(seed)
    num_tracks = 40
    playlist_ids = rng.choice(1000, 25, replace=False)  # sparse, unordered playlist ids
    playlist_index = rng.choice(playlist_ids, 300)
    track_index = rng.integers(0, num_tracks - 3, 300)  # the last 3 tracks are in no playlist
    repeats = rng.integers(0, 300, 60)  # duplicate memberships must not count twice
    playlist_index = np.concatenate([playlist_index, playlist_index[repeats]])
    track_index = np.concatenate([track_index, track_index[repeats]])

    matrix = cooccurrence_matrix(playlist_index, track_index, num_tracks)
    assert isinstance(matrix, sp.csr_matrix)
    assert matrix.dtype == np.float32
    assert matrix.shape == (num_tracks, num_tracks)
    assert matrix.diagonal().sum() == 0
    np.testing.assert_array_equal(matrix.toarray(), brute_force_counts(playlist_index, track_index, num_tracks))


def test_no_memberships_gives_an_empty_matrix():
    matrix = cooccurrence_matrix([], [], 5)
    assert matrix.shape == (5, 5) and matrix.nnz == 0


def test_threshold_keeps_entries_at_or_above_min_weight():
    rng = np.random.default_rng(0)
    dense = rng.integers(0, 6, (30, 30)).astype(np.float32)
    kept = threshold(sp.csr_matrix(dense), 3)
    np.testing.assert_array_equal(kept.toarray(), np.where(dense >= 3, dense, 0))
    assert kept.nnz == int((dense >= 3).sum())


def pairs_matrix(weighted_pairs, num_nodes) -> sp.csr_matrix:
    src, dst, weight = zip(*weighted_pairs)
    return CSRGraph.from_edges(src, dst, num_nodes, weight).to_scipy()


# Ten connected tracks whose strongest edges are 5, 5, 5, 5, 3, 3, 2, 2, 1, 1; two isolated tracks.
STRONGEST_EDGE_CASE = [(0, 1, 5), (2, 3, 5), (4, 5, 3), (6, 7, 2), (8, 9, 1), (0, 9, 1)]


@pytest.mark.parametrize(
    "keep_share, expected_weight, expected_reason",
    [
        (0.9, 1, "min weight 1: keeps 100% of 10 connected tracks; 2 would keep 80%"),
        (0.8, 2, "min weight 2: keeps 80% of 10 connected tracks; 3 would keep 60%"),
        (0.4, 5, "min weight 5: keeps 40% of 10 connected tracks; 10 would keep 0%"),
        (0.0, 10, "min weight 10: keeps 0% of 10 connected tracks"),
    ],
)
def test_choose_min_weight_picks_the_largest_keeping_the_share(keep_share, expected_weight, expected_reason):
    matrix = pairs_matrix(STRONGEST_EDGE_CASE, 12)
    assert choose_min_weight(matrix, keep_share=keep_share) == (expected_weight, expected_reason)


def test_choose_min_weight_without_edges():
    weight, reason = choose_min_weight(sp.csr_matrix((4, 4), dtype=np.float32), candidates=(2, 1))
    assert weight == 1 and "no track" in reason


def test_graph_summary_matches_networkx():
    rng = np.random.default_rng(7)
    num_nodes = 80
    pairs = {tuple(sorted(p)) for p in rng.integers(0, 70, (60, 2)) if p[0] != p[1]}  # nodes 70+ isolated
    weights = {pair: int(rng.choice([1, 2, 3, 4, 6, 9, 10, 40])) for pair in pairs}
    src, dst = zip(*pairs)
    graph = CSRGraph.from_edges(src, dst, num_nodes, [weights[p] for p in pairs])
    nx_graph = nx.Graph()
    nx_graph.add_nodes_from(range(num_nodes))
    nx_graph.add_weighted_edges_from((int(a), int(b), w) for (a, b), w in weights.items())

    summary = graph_summary(graph.to_scipy())
    assert summary["nodes"] == num_nodes
    assert summary["edges"] == nx_graph.number_of_edges()
    assert summary["components"] == nx.number_connected_components(nx_graph)
    assert summary["largest_component"] == max(len(c) for c in nx.connected_components(nx_graph))
    assert summary["isolated_nodes"] == nx.number_of_isolates(nx_graph)
    edge_weights = [w for _, _, w in nx_graph.edges(data="weight")]
    expected_histogram = {
        "1": edge_weights.count(1),
        "2": edge_weights.count(2),
        "3": edge_weights.count(3),
        "4": edge_weights.count(4),
        "5-9": sum(5 <= w < 10 for w in edge_weights),
        "10+": sum(w >= 10 for w in edge_weights),
    }
    assert summary["weight_histogram"] == expected_histogram


def test_graph_summary_of_an_unweighted_graph():
    weighted = CSRGraph.from_edges([0, 1], [1, 2], 4, [3.0, 7.0])
    graph = CSRGraph(weighted.rowptr, weighted.col)
    summary = graph_summary(graph.to_scipy())
    assert summary["weight_histogram"] == {"1": 2, "2": 0, "3": 0, "4": 0, "5-9": 0, "10+": 0}
    assert (summary["components"], summary["largest_component"], summary["isolated_nodes"]) == (2, 3, 1)


def test_graph_summary_reports_weights_below_one():
    graph = CSRGraph.from_edges([0, 1], [1, 2], 3, [0.5, 2.0])
    histogram = graph_summary(graph.to_scipy())["weight_histogram"]
    assert histogram == {"<1": 1, "1": 0, "2": 1, "3": 0, "4": 0, "5-9": 0, "10+": 0}
