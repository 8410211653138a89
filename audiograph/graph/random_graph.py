"""Random graphs with the shape of real co-occurrence graphs, for tests and benchmarks."""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from audiograph.graph.csr import CSRGraph

# Edge weights mimic co-occurrence counts: 1 + Geometric(p), so half of all edges have weight 1.
_WEIGHT_P = 0.5


def powerlaw_graph(num_nodes: int, num_edges: int, exponent: float = 2.1, seed: int = 0) -> CSRGraph:
    """An undirected Chung-Lu graph with `num_edges` distinct edges and power-law degrees P(d) ~ d^-exponent.

    Both endpoints of an edge are drawn independently, the node of rank i with probability
    ~ (i + 1)^-a, a = 1 / (exponent - 1) (ranks are shuffled over node ids); self loops and
    repeats are dropped and rounds are drawn until there are `num_edges` distinct edges, a
    random surplus then being dropped. Weights are 1 + Geometric(0.5) "co-occurrence counts".
    Needs exponent > 2 (finite mean degree).
    """
    if exponent <= 2:
        raise ValueError(f"exponent must be > 2, got {exponent}")
    if num_edges > num_nodes * (num_nodes - 1) // 2:
        raise ValueError(f"{num_nodes} nodes cannot hold {num_edges} distinct edges")
    generator = torch.Generator().manual_seed(seed)
    node_of_rank = torch.randperm(num_nodes, generator=generator)
    b = 1 - 1 / (exponent - 1)  # > 0 for exponent > 2

    upper = sp.csr_matrix((num_nodes, num_nodes), dtype=np.float32)  # distinct edges lo < hi
    draws_per_new_edge = 1.0
    while upper.nnz < num_edges:
        num_draws = math.ceil((num_edges - upper.nnz) * draws_per_new_edge * 1.05)
        # Inverse CDF of rank density (x + 1)^-a on [0, N): F(x) = ((x + 1)^b - 1) / ((N + 1)^b - 1).
        u = torch.rand(2, num_draws, generator=generator, dtype=torch.float64)
        x = (1 + u * ((num_nodes + 1) ** b - 1)).pow_(1 / b) - 1
        src, dst = node_of_rank[x.long().clamp_(max=num_nodes - 1)]
        lo, hi = torch.minimum(src, dst), torch.maximum(src, dst)
        keep = lo != hi
        ones = np.ones(int(keep.sum()), np.float32)
        num_before = upper.nnz
        upper = upper + sp.csr_matrix((ones, (lo[keep].numpy(), hi[keep].numpy())), shape=upper.shape)
        draws_per_new_edge = num_draws / max(upper.nnz - num_before, 1)

    surplus = torch.randperm(upper.nnz, generator=generator)[: upper.nnz - num_edges]
    upper.data[surplus.numpy()] = 0
    upper.eliminate_zeros()
    u = torch.rand(upper.nnz, generator=generator, dtype=torch.float64)
    upper.data = (1 + torch.floor(torch.log(u) / math.log(1 - _WEIGHT_P))).float().numpy()
    return CSRGraph.from_scipy(upper + upper.T)
