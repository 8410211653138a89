"""`UniformNeighborSampler`: GraphSAGE neighbour sampling in pure torch behind PyG's `BaseSampler`.

PyG's own `NeighborSampler` needs pyg-lib or torch-sparse; this one needs neither and plugs into
`NodeLoader(node_sampler=...)`, `LinkLoader(link_sampler=...)`, `LightningNodeData(node_sampler=...)`
and `LightningLinkData(link_sampler=...)`.

Output conventions are pyg-lib's (`neighbor_sample` with `csc=True`, non-disjoint):

* `node`: the seeds exactly as given (a repeated seed keeps every slot, so `node[:batch_size]`
  lines up with the batch), then the new nodes of hop 1 sorted by id, then those of hop 2, ...
* `row[e]`: local index of the sampled neighbour, the message *source*; `col[e]`: local index
  of the node that sampled it, the message *target*. The loaders turn this into
  `edge_index = [row, col]`, so messages flow from sampled neighbours to their samplers.
* `edge[e]`: position of the sampled entry in the `CSRGraph`'s `col` array, so
  `graph.weight[edge]` is its weight. Entry p lies in row u = the target and names
  col[p] = v = the source; the graph is symmetric, so it is also the undirected edge (u, v).
* `num_sampled_nodes = [num_seeds, new nodes of hop 1, ...]`,
  `num_sampled_edges = [edges of hop 1, ...]`, as `trim_to_layer` expects.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    NegativeSampling,
    NodeSamplerInput,
    SamplerOutput,
)
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample

from audiograph.graph.csr import CSRGraph


class UniformNeighborSampler(BaseSampler):
    """Samples, hop by hop, min(degree, fanout) distinct neighbours of every frontier node,
    uniformly and without replacement (all of them for fanout -1).

    `graph` is a `CSRGraph` or a PyG `Data` (its `edge_index`, either or both directions per
    undirected edge, goes through `CSRGraph.from_edges`). A sampled edge's `e_id` is its column of
    that `Data`'s `edge_index`, so that loaders pick its `edge_attr` or `edge_weight`; built from a
    `CSRGraph`, it is the edge's position in the graph's CSR arrays, which match a `Data` of
    `edge_index=graph.to_edge_index()` and `edge_weight=graph.weight`, and not one whose
    `edge_index` lists the edges in another order. Only the CSR index arrays are kept,
    shared copy-on-write with forked DataLoader workers. Randomness comes from `generator` or,
    by default, torch's global RNG, which DataLoader seeds per worker (reproducible under
    `seed_everything(workers=True)`); a `generator` is copied into each worker as is, so give
    one only with `num_workers=0`. Negative links are drawn by PyG from the global RNG.
    """

    def __init__(self, graph: CSRGraph | Data, num_neighbors: list[int], generator: torch.Generator | None = None):
        self.perm = None
        if isinstance(graph, Data):
            data = graph
            graph = CSRGraph.from_edges(data.edge_index[0], data.edge_index[1], data.num_nodes)
            self.perm = _edge_permutation(graph, data.edge_index)
        self.rowptr = graph.rowptr
        self.col = graph.col
        self.num_nodes = graph.num_nodes
        self.num_neighbors = list(num_neighbors)
        self.generator = generator

    @property
    def edge_permutation(self) -> Tensor | None:
        """For a sampler built from a `Data`: the `edge_index` column of every CSR entry (None otherwise).
        PyG's loaders read it (`BaseSampler.edge_permutation`) to give sampled edges their `e_id`."""
        return self.perm

    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> SamplerOutput:
        return node_sample(inputs, self._sample)

    def sample_from_edges(
        self, inputs: EdgeSamplerInput, neg_sampling: NegativeSampling | None = None
    ) -> SamplerOutput:
        return edge_sample(inputs, self._sample, self.num_nodes, False, None, neg_sampling)

    def _sample(self, seed: Tensor, seed_time: Tensor | None = None) -> SamplerOutput:
        if seed_time is not None:
            raise ValueError("UniformNeighborSampler does not do temporal sampling")
        # Global -> local index, -1 if not sampled yet: a dense map, as pyg-lib's Mapper uses
        # for graphs of up to a million nodes. A repeated seed maps to its first slot.
        local = torch.full((self.num_nodes,), -1)
        local.scatter_reduce_(0, seed, torch.arange(seed.numel()), "amin", include_self=False)
        nodes, rows, cols, edges = [seed], [], [], []
        num_sampled_nodes, num_sampled_edges = [seed.numel()], []
        begin = 0
        for fanout in self.num_neighbors:
            frontier = nodes[-1]
            target, edge = self._sample_edges(frontier, fanout)
            neighbor = self.col.index_select(0, edge)
            hit = torch.zeros(self.num_nodes, dtype=torch.bool).index_fill_(0, neighbor, True)
            new = (hit & (local < 0)).nonzero().squeeze(1)
            end = begin + frontier.numel()
            local[new] = torch.arange(end, end + new.numel())
            rows.append(local.index_select(0, neighbor))
            cols.append(target + begin)
            edges.append(edge)
            nodes.append(new)
            num_sampled_nodes.append(new.numel())
            num_sampled_edges.append(edge.numel())
            begin = end
        return SamplerOutput(
            node=torch.cat(nodes),
            row=torch.cat(rows),
            col=torch.cat(cols),
            edge=torch.cat(edges),
            num_sampled_nodes=num_sampled_nodes,
            num_sampled_edges=num_sampled_edges,
        )

    def _sample_edges(self, nodes: Tensor, fanout: int) -> tuple[Tensor, Tensor]:
        """min(degree, fanout) distinct CSR entries per node (all for fanout < 0), grouped by node.

        Returns the position in `nodes` of the node that sampled each entry, and the entry id.
        """
        start = self.rowptr[nodes]
        degree = self.rowptr[nodes + 1] - start
        count = degree if fanout < 0 else degree.clamp(max=fanout)
        first = count.cumsum(0) - count
        target = torch.repeat_interleave(count)
        offset = torch.arange(target.numel()) - first.index_select(0, target)
        # Rows longer than the fanout: overwrite their 0..fanout-1 offsets by a random subset.
        long_rows = (count < degree).nonzero().squeeze(1)
        if long_rows.numel() > 0:
            slots = first[long_rows].unsqueeze(1) + torch.arange(fanout)
            offset[slots] = self._random_subsets(degree[long_rows], fanout)
        return target, start.index_select(0, target) + offset

    def _random_subsets(self, n: Tensor, k: int) -> Tensor:
        """Row i: k distinct offsets drawn uniformly from range(n[i]) (Floyd's algorithm, n >= k).

        Step s draws t uniformly from 0..j, j = n - k + s, and takes t unless an earlier step
        took it, else j (which no earlier step can have taken); O(k^2) work per row, none O(n).
        """
        j = (n - k).unsqueeze(1) + torch.arange(k)
        # Column s starts as step s's draw t; the modulo bias, < n / 2^62, is negligible.
        picks = torch.randint(1 << 62, j.shape, generator=self.generator) % (j + 1)
        for s in range(1, k):
            taken = (picks[:, :s] == picks[:, s : s + 1]).any(1)
            picks[:, s] = torch.where(taken, j[:, s], picks[:, s])
        return picks


def _edge_permutation(graph: CSRGraph, edge_index: Tensor) -> Tensor:
    """The `edge_index` column holding each CSR entry's edge: the column col[p] -> row[p]
    (the sampled message's direction) if there is one, else the reverse column."""
    n = graph.num_nodes
    keys, order = torch.sort(edge_index[0] * n + edge_index[1])

    def column(src: Tensor, dst: Tensor) -> Tensor:
        i = torch.searchsorted(keys, src * n + dst).clamp_(max=keys.numel() - 1)
        return torch.where(keys[i] == src * n + dst, order[i], -1)

    row = graph.row
    perm = column(graph.col, row)
    missing = perm < 0
    perm[missing] = column(row[missing], graph.col[missing])
    return perm
