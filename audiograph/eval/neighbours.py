"""Nearest-neighbour quality of a vector space: graph-neighbour recall@k and precision@k, label precision@k."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from audiograph.graph.csr import CSRGraph


def top_k_neighbours(vectors: torch.Tensor, queries: torch.Tensor, k: int, batch_size: int = 1024) -> torch.Tensor:
    """LongTensor [len(queries), k]: the rows of `vectors` most cosine-similar to each query row, the
    query row itself excluded (exact; queries index rows of `vectors`)."""
    unit = F.normalize(torch.as_tensor(vectors, dtype=torch.float32), dim=-1)
    queries = torch.as_tensor(queries, dtype=torch.int64)
    k = min(k, len(unit) - 1)
    out = []
    for part in queries.split(batch_size):
        scores = unit[part] @ unit.T
        scores[torch.arange(len(part)), part] = -torch.inf
        out.append(scores.topk(k, dim=1).indices)
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.int64)


def _neighbours_found(graph: CSRGraph, nodes, vectors, queries, k: int):
    """For each query that has a graph neighbour among `nodes`: (its neighbours, its k nearest rows),
    both as row indices of `vectors` (row i belongs to graph node `nodes[i]`)."""
    nodes = torch.as_tensor(nodes, dtype=torch.int64)
    row_of = torch.full((graph.num_nodes,), -1, dtype=torch.int64)
    row_of[nodes] = torch.arange(len(nodes))
    queries = torch.as_tensor(queries, dtype=torch.int64)
    nearest = top_k_neighbours(vectors, row_of[queries], k)
    for q, found in zip(queries.tolist(), nearest.tolist()):
        neighbours = row_of[graph.col[graph.rowptr[q] : graph.rowptr[q + 1]]]
        neighbours = set(neighbours[neighbours >= 0].tolist())
        if neighbours:
            yield neighbours, found


def neighbour_recall_at_k(graph: CSRGraph, nodes, vectors, queries, k: int = 10) -> float:
    """How many of a query's graph neighbours are among its k nearest vectors, as a share of
    min(k, its neighbours), averaged over the queries that have any.

    Row i of `vectors` belongs to graph node `nodes[i]`; neighbours and candidates are limited to
    `nodes`; `queries` are graph node ids contained in `nodes`.
    """
    recalls = [len(n.intersection(f)) / min(k, len(n)) for n, f in _neighbours_found(graph, nodes, vectors, queries, k)]
    return float(np.mean(recalls)) if recalls else 0.0


def neighbour_precision_at_k(graph: CSRGraph, nodes, vectors, queries, k: int = 5) -> float:
    """The share of a query's k nearest vectors that are its graph neighbours, averaged over the
    queries that have a neighbour among `nodes` (with album playlists: same-album precision@k).

    Row i of `vectors` belongs to graph node `nodes[i]`; candidates are the other rows; `queries`
    are graph node ids contained in `nodes`.
    """
    shares = [len(n.intersection(f)) / len(f) for n, f in _neighbours_found(graph, nodes, vectors, queries, k)]
    return float(np.mean(shares)) if shares else 0.0


def label_precision_at_k(vectors, labels, k: int = 10) -> float:
    """The share of each item's k nearest neighbours that carry its label, averaged over labelled items
    (`labels` entries of None are neither queried nor counted as matches)."""
    labels = np.asarray([None if l is None else str(l) for l in labels], dtype=object)
    labelled = np.array([l is not None for l in labels])
    queries = torch.from_numpy(np.flatnonzero(labelled))
    nearest = top_k_neighbours(vectors, queries, k).numpy()
    same = labels[nearest] == labels[queries.numpy()][:, None]
    return float(same.mean()) if len(same) else 0.0
