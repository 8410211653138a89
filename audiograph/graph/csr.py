"""`CSRGraph`: the one in-memory graph format shared by co-occurrence, distances, samplers and MUSIG."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch


@dataclass(frozen=True)
class CSRGraph:
    """An undirected weighted graph as symmetric CSR arrays (row i lists the neighbours of node i).

    `rowptr` is int64 [N+1], `col` int64 [E] (sorted within each row, no self loops), and
    `weight` float32 [E] or None. E counts each undirected edge twice, once per direction.
    """

    rowptr: torch.Tensor
    col: torch.Tensor
    weight: torch.Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return self.rowptr.numel() - 1

    @property
    def num_edges(self) -> int:
        """Directed entries: twice the number of undirected edges."""
        return self.col.numel()

    @cached_property
    def degree(self) -> torch.Tensor:
        return self.rowptr[1:] - self.rowptr[:-1]

    @cached_property
    def row(self) -> torch.Tensor:
        """The source node of every entry of `col` (CSR expanded to COO)."""
        return torch.repeat_interleave(torch.arange(self.num_nodes), self.degree)

    @classmethod
    def from_scipy(cls, matrix: sp.spmatrix) -> CSRGraph:
        """Wrap a symmetric scipy sparse matrix; its values become edge weights."""
        m = sp.csr_matrix(matrix, dtype=np.float32)
        if m.diagonal().any():  # setdiag rebuilds the whole matrix: only when there is a loop to drop
            m.setdiag(0)
        m.eliminate_zeros()
        m.sort_indices()
        return cls(
            rowptr=torch.from_numpy(m.indptr.astype(np.int64)),
            col=torch.from_numpy(m.indices.astype(np.int64)),
            weight=torch.from_numpy(m.data.astype(np.float32)),
        )

    @classmethod
    def from_edges(cls, src, dst, num_nodes: int, weight=None) -> CSRGraph:
        """Build from undirected edge lists; each edge may be given once or in both directions.

        Repeats of an edge (either direction) are merged keeping the largest weight, so PyG's
        usual both-directions layout keeps its weights. Self loops are dropped.
        """
        src = np.asarray(src, dtype=np.int64)
        dst = np.asarray(dst, dtype=np.int64)
        w = np.ones(len(src), np.float32) if weight is None else np.asarray(weight, np.float32)
        keep = src != dst
        lo, hi, w = np.minimum(src, dst)[keep], np.maximum(src, dst)[keep], w[keep]
        key = lo * num_nodes + hi
        order = np.lexsort((-w, key))  # by edge, largest weight first
        first = np.ones(len(order), bool)
        first[1:] = key[order][1:] != key[order][:-1]
        pick = order[first]
        upper = sp.coo_matrix((w[pick], (lo[pick], hi[pick])), shape=(num_nodes, num_nodes)).tocsr()
        return cls.from_scipy(upper + upper.T)

    def to_scipy(self) -> sp.csr_matrix:
        data = self.weight.numpy() if self.weight is not None else np.ones(self.num_edges, np.float32)
        n = self.num_nodes
        return sp.csr_matrix((data, self.col.numpy(), self.rowptr.numpy()), shape=(n, n))

    def to_edge_index(self) -> torch.Tensor:
        """COO [2, E] in PyG's convention (row 0 = source, row 1 = target)."""
        return torch.stack([self.row, self.col])

    def subgraph(self, keep: torch.Tensor) -> CSRGraph:
        """The graph with every edge touching a node outside `keep` (bool [N]) removed; ids unchanged."""
        row = self.row
        mask = keep[row] & keep[self.col]
        counts = torch.zeros(self.num_nodes, dtype=torch.int64).index_add_(
            0, row[mask], torch.ones(int(mask.sum()), dtype=torch.int64)
        )
        rowptr = torch.zeros(self.num_nodes + 1, dtype=torch.int64)
        rowptr[1:] = torch.cumsum(counts, 0)
        weight = None if self.weight is None else self.weight[mask]
        return CSRGraph(rowptr, self.col[mask], weight)
