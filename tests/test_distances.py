"""Batched hop distances against networkx shortest-path lengths."""

import networkx as nx
import numpy as np
import pytest
import torch

from audiograph.errors import ConfigError
from audiograph.graph.csr import CSRGraph
from audiograph.graph.distances import hop_distances, iter_hop_distances


def random_graph(seed: int, num_nodes: int, num_edges: int, blocks: int = 1):
    """A CSRGraph and the same graph in networkx: `blocks` disconnected random parts plus isolated nodes."""
    rng = np.random.default_rng(seed)
    block_size = (num_nodes - 5) // blocks  # the last 5 (or more) nodes stay isolated
    block = rng.integers(0, blocks, num_edges)
    src = block * block_size + rng.integers(0, block_size, num_edges)
    dst = block * block_size + rng.integers(0, block_size, num_edges)
    nx_graph = nx.Graph()
    nx_graph.add_nodes_from(range(num_nodes))
    nx_graph.add_edges_from((int(a), int(b)) for a, b in zip(src, dst) if a != b)
    return CSRGraph.from_edges(src, dst, num_nodes), nx_graph


def networkx_distances(nx_graph: nx.Graph, sources, d_max: int) -> np.ndarray:
    expected = np.full((len(sources), nx_graph.number_of_nodes()), -1, np.int8)
    for k, source in enumerate(sources):
        for node, length in nx.single_source_shortest_path_length(nx_graph, int(source), cutoff=d_max).items():
            expected[k, node] = length
    return expected


@pytest.mark.parametrize("seed, num_nodes, num_edges, blocks", [(0, 60, 70, 1), (1, 120, 150, 3), (2, 200, 900, 2)])
@pytest.mark.parametrize("d_max", [0, 1, 2, 4, 7])
def test_distances_match_networkx(seed, num_nodes, num_edges, blocks, d_max):
    graph, nx_graph = random_graph(seed, num_nodes, num_edges, blocks)
    sources = np.random.default_rng(seed).permutation(num_nodes)[:90]
    distances = hop_distances(graph, sources, d_max)
    assert distances.dtype == torch.int8
    assert distances.shape == (len(sources), num_nodes)
    np.testing.assert_array_equal(distances.numpy(), networkx_distances(nx_graph, sources, d_max))


@pytest.mark.parametrize("batch_size", [1, 7, 64, 65, 200])
def test_batches_cover_the_sources_in_order(batch_size):
    graph, nx_graph = random_graph(3, 150, 200, blocks=2)
    sources = torch.arange(149, -1, -1)  # every node, including the isolated ones, in reverse
    batches = list(iter_hop_distances(graph, sources, d_max=3, batch_size=batch_size))
    assert all(len(batch) <= batch_size for batch, _ in batches)
    torch.testing.assert_close(torch.cat([batch for batch, _ in batches]), sources)
    distances = torch.cat([dist for _, dist in batches]).numpy()
    np.testing.assert_array_equal(distances, networkx_distances(nx_graph, sources.numpy(), 3))


def test_graph_without_edges_and_no_sources():
    graph = CSRGraph.from_edges([], [], 4)
    np.testing.assert_array_equal(hop_distances(graph, [2], 4).numpy(), [[-1, -1, 0, -1]])
    assert hop_distances(graph, [], 4).shape == (0, 4)


@pytest.mark.parametrize("d_max, batch_size", [(-1, 8), (128, 8), (4, 0)])
def test_invalid_settings_raise(d_max, batch_size):
    graph, _ = random_graph(0, 20, 20)
    with pytest.raises(ConfigError):
        iter_hop_distances(graph, [0], d_max=d_max, batch_size=batch_size)


def test_out_of_range_source_raises():
    graph, _ = random_graph(0, 20, 20)
    with pytest.raises(IndexError):
        hop_distances(graph, [20])
