"""Hop distances from many sources at once: a batched BFS for triplet mining."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from audiograph.errors import ConfigError
from audiograph.graph.csr import CSRGraph

# One 64-bit word per node holds the frontier bits of a whole default batch.
DEFAULT_BATCH_SIZE = 64
_ALL_BITS = np.iinfo(np.uint64).max


def hop_distances(graph: CSRGraph, sources, d_max: int = 4) -> torch.Tensor:
    """int8 [len(sources), N]: the hop distance from each source to every node, -1 beyond `d_max`."""
    batches = [distances for _, distances in iter_hop_distances(graph, sources, d_max)]
    if not batches:
        return torch.empty(0, graph.num_nodes, dtype=torch.int8)
    return torch.cat(batches)


def iter_hop_distances(
    graph: CSRGraph, sources, d_max: int = 4, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An iterator of (source ids [B], int8 distances [B, N]), one pair per batch of `sources`, in order.

    Edge weights are ignored. Memory per batch is about N * batch_size bytes for the distances
    plus one word (8 bytes) per stored edge entry for every 64 sources in the batch.
    """
    if not 0 <= d_max <= 127:
        raise ConfigError(f"d_max must be between 0 and 127 (an int8 distance), got {d_max}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    sources = torch.as_tensor(sources, dtype=torch.int64).reshape(-1)
    if sources.numel() and not (0 <= sources.min() and sources.max() < graph.num_nodes):
        raise IndexError(f"source ids must lie in [0, {graph.num_nodes})")
    adjacency = graph.to_scipy()
    # A generator expression, so that the checks above run at the call, not at the first batch.
    return (
        (batch, torch.from_numpy(_batch_distances(adjacency, batch.numpy(), d_max)))
        for batch in sources.split(batch_size)
    )


def _batch_distances(adjacency: sp.csr_matrix, sources: np.ndarray, d_max: int) -> np.ndarray:
    """int8 [B, N] distances for one batch, all B searches advanced together one hop at a time.

    Every node carries one bit per source (bit k of its row: "reached from source k"), packed
    into uint64 words. A hop is a sparse-matrix x dense-frontier product in the boolean
    semiring: a node's new bits are the OR of its neighbours' frontier bits.
    """
    num_nodes, batch = adjacency.shape[0], len(sources)
    dist = np.full((num_nodes, batch), -1, np.int8)
    if d_max >= 1:
        # Hop 1 needs no product: it is the sources' own neighbour lists.
        first_hop = adjacency[sources].tocoo()
        dist[first_hop.col, first_hop.row] = 1
    dist[sources, np.arange(batch)] = 0
    frontier = _pack(dist == 1)
    # Padding bits past the last source start out visited, so "every bit set" means done.
    visited = _pack(dist >= 0) | ~_pack(np.ones((1, batch), bool))
    nonempty_rows = np.diff(adjacency.indptr) > 0
    row_starts = adjacency.indptr[:-1][nonempty_rows]
    for hop in range(2, d_max + 1):
        if not frontier.any() or (visited == _ALL_BITS).all():
            break
        reached = np.zeros_like(frontier)
        neighbour_bits = np.take(frontier, adjacency.indices, axis=0)
        reached[nonempty_rows] = np.bitwise_or.reduceat(neighbour_bits, row_starts, axis=0)
        reached &= ~visited
        visited |= reached
        dist[_unpack(reached, batch)] = hop
        frontier = reached
    return np.ascontiguousarray(dist.T)


def _pack(bits: np.ndarray) -> np.ndarray:
    """bool [N, B] -> uint64 [N, ceil(B / 64)], bit k of row i = bits[i, k]."""
    words = -(-bits.shape[1] // 64)
    padded = np.zeros((bits.shape[0], words * 64), bool)
    padded[:, : bits.shape[1]] = bits
    return np.packbits(padded, axis=1, bitorder="little").view(np.uint64)


def _unpack(words: np.ndarray, batch: int) -> np.ndarray:
    """The inverse of `_pack`: uint64 [N, W] -> bool [N, batch]."""
    return np.unpackbits(words.view(np.uint8), axis=1, count=batch, bitorder="little").view(bool)
