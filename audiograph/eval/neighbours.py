"""Nearest-neighbour quality of a vector space: graph-neighbour precision@k, label precision@k."""

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
    labels = np.asarray([None if label is None else str(label) for label in labels], dtype=object)
    labelled = np.array([label is not None for label in labels])
    queries = torch.from_numpy(np.flatnonzero(labelled))
    nearest = top_k_neighbours(vectors, queries, k).numpy()
    same = labels[nearest] == labels[queries.numpy()][:, None]
    return float(same.mean()) if len(same) else 0.0


def embedding_diagnostics(vectors, sample: int = 4000, seed: int = 0) -> dict:
    """Collapse diagnosis of a space: the distribution of pairwise cosines between distinct rows
    (mean, std, 5/50/95th percentiles) and the effective rank (exp of the entropy of the normalised
    singular values of the centred matrix; Roy & Vetterli 2007). At most `sample` rows are used."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) > sample:
        x = x[np.random.default_rng(seed).choice(len(x), sample, replace=False)]
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cosines = (unit @ unit.T)[np.triu_indices(len(unit), k=1)]
    singular = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = singular / singular.sum() if singular.sum() > 0 else np.ones(1)
    p = p[p > 0]
    p5, p50, p95 = np.percentile(cosines, [5, 50, 95]) if len(cosines) else (np.nan,) * 3
    return {
        "cosine_mean": float(cosines.mean()) if len(cosines) else float("nan"),
        "cosine_std": float(cosines.std()) if len(cosines) else float("nan"),
        "cosine_p5": float(p5),
        "cosine_p50": float(p50),
        "cosine_p95": float(p95),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "dimensions": int(x.shape[1]),
    }
