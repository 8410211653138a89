"""Triplets (anchor, positive, negative) and positive pairs chosen by hop distance in the co-occurrence graph."""

from __future__ import annotations

import scipy.sparse as sp
import torch

from audiograph.errors import ConfigError
from audiograph.graph.csr import CSRGraph
from audiograph.graph.distances import iter_hop_distances
from audiograph.options import check_options


def sample_triplets(
    graph: CSRGraph,
    eligible: torch.Tensor,
    *,
    per_anchor: int = 4,
    d_pos: int = 1,
    d_neg: int = 3,
    d_max: int = 4,
    hard_share: float = 0.2,
    weight_power: float = 1.0,
    anchors=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LongTensor [T, 3] of (anchor, positive, negative) node ids, `per_anchor` rows per anchor.

    Only `eligible` nodes (bool [N]) are drawn, but distances run over the whole graph.
    Anchors: the eligible nodes (or those among `anchors`, ids or a bool mask) that have an
    eligible positive and an eligible negative, in ascending order.
    Positives lie 1..d_pos hops away. The hop-1 shell carries mass 1, split in proportion to
    edge weight ** `weight_power` (1: in proportion to shared playlists; 2 or more favours the
    strongest co-occurrences, where one shared playlist is mostly noise); each farther shell k
    carries mass 2^-(k-1), split evenly (so with d_pos=2 a positive is a neighbour two times in
    three when both shells are non-empty).
    Negatives are uniform over the easy ones (d_neg or more hops away, or unreachable); a
    `hard_share` of them come from the intermediate hops d_pos < d < d_neg instead. An anchor
    with no hard candidate takes easy ones, and one with no easy candidate hard ones.
    `d_max` only bounds d_neg: the search stops after d_neg - 1 hops, since every node it has
    not reached by then is an easy negative whatever its distance.
    """
    if not 1 <= d_pos < d_neg <= d_max + 1:
        raise ConfigError(
            f"triplet distances need 1 <= d_pos < d_neg <= d_max + 1, got d_pos={d_pos}, d_neg={d_neg}, d_max={d_max}"
        )
    check_options(hard_share=hard_share, per_anchor=per_anchor, weight_power=weight_power)
    eligible = torch.as_tensor(eligible, dtype=torch.bool)
    if eligible.shape != (graph.num_nodes,):
        raise ValueError(f"eligible must have shape [{graph.num_nodes}], got {tuple(eligible.shape)}")

    candidates = eligible & (graph.degree > 0)
    if anchors is not None:
        candidates &= _as_mask(anchors, graph.num_nodes)
    adjacency = graph.to_scipy()
    adjacency.data = adjacency.data**weight_power  # a new array: to_scipy shares the graph's weights
    batches = [
        _sample_batch(batch, dist, adjacency[batch.numpy()], eligible, per_anchor, d_pos, hard_share, generator)
        for batch, dist in iter_hop_distances(graph, candidates.nonzero().squeeze(1), d_neg - 1)
    ]
    return torch.cat(batches) if batches else torch.empty(0, 3, dtype=torch.int64)


def sample_positive_pairs(
    graph: CSRGraph,
    eligible: torch.Tensor,
    *,
    per_anchor: int = 4,
    d_pos: int = 1,
    weight_power: float = 1.0,
    anchors=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """LongTensor [P, 2] of (anchor, positive) node ids, `per_anchor` rows per anchor: the positive
    half of `sample_triplets`, for losses whose negatives are the rest of the batch.

    Anchors are the eligible nodes (or those among `anchors`) with an eligible positive within
    `d_pos` hops, in ascending order; positives are drawn as in `sample_triplets`.
    """
    check_options(d_pos=d_pos, per_anchor=per_anchor, weight_power=weight_power)
    eligible = torch.as_tensor(eligible, dtype=torch.bool)
    if eligible.shape != (graph.num_nodes,):
        raise ValueError(f"eligible must have shape [{graph.num_nodes}], got {tuple(eligible.shape)}")
    candidates = eligible & (graph.degree > 0)
    if anchors is not None:
        candidates &= _as_mask(anchors, graph.num_nodes)
    adjacency = graph.to_scipy()
    adjacency.data = adjacency.data**weight_power
    pairs = []
    for batch, dist in iter_hop_distances(graph, candidates.nonzero().squeeze(1), d_pos):
        weight = _positive_weights(dist, torch.from_numpy(adjacency[batch.numpy()].toarray()), eligible, d_pos)
        keep = weight.sum(1) > 0
        if keep.any():
            positives = torch.multinomial(weight[keep], per_anchor, replacement=True, generator=generator)
            pairs.append(torch.stack([batch[keep].repeat_interleave(per_anchor), positives.reshape(-1)], dim=1))
    return torch.cat(pairs) if pairs else torch.empty(0, 2, dtype=torch.int64)


def _as_mask(nodes, num_nodes: int) -> torch.Tensor:
    """bool [num_nodes] from node ids or an existing bool mask."""
    nodes = torch.as_tensor(nodes)
    if nodes.dtype == torch.bool:
        return nodes
    return torch.zeros(num_nodes, dtype=torch.bool).index_fill_(0, nodes.long().reshape(-1), True)


def _sample_batch(
    batch: torch.Tensor,
    dist: torch.Tensor,
    anchor_rows: sp.csr_matrix,
    eligible: torch.Tensor,
    per_anchor: int,
    d_pos: int,
    hard_share: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Triplets for one batch of candidate anchors, given their distance rows [B, N] (-1 from d_neg on)."""
    positive_weight = _positive_weights(dist, torch.from_numpy(anchor_rows.toarray()), eligible, d_pos)
    negative_weight = _negative_weights(dist, eligible, d_pos, hard_share)
    keep = (positive_weight.sum(1) > 0) & (negative_weight.sum(1) > 0)
    if not keep.any():
        return torch.empty(0, 3, dtype=torch.int64)
    positives = torch.multinomial(positive_weight[keep], per_anchor, replacement=True, generator=generator)
    negatives = torch.multinomial(negative_weight[keep], per_anchor, replacement=True, generator=generator)
    anchors = batch[keep].repeat_interleave(per_anchor)
    return torch.stack([anchors, positives.reshape(-1), negatives.reshape(-1)], dim=1)


def _positive_weights(
    dist: torch.Tensor, edge_weight: torch.Tensor, eligible: torch.Tensor, d_pos: int
) -> torch.Tensor:
    """Positive sampling weights [B, N]: see `sample_triplets` for the shells' masses."""
    weight = edge_weight * eligible  # non-zero exactly at hop 1
    weight /= weight.sum(1, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny)
    for hop in range(2, d_pos + 1):
        shell = (eligible & (dist == hop)).float()
        weight += shell * 0.5 ** (hop - 1) / shell.sum(1, keepdim=True).clamp_min(1)
    return weight


def _negative_weights(dist: torch.Tensor, eligible: torch.Tensor, d_pos: int, hard_share: float) -> torch.Tensor:
    """Negative sampling weights [B, N]: `hard_share` of the mass on the hard candidates, the rest on the easy.

    Each kind's mass is spread evenly over its candidates, and all of it goes to one kind when
    the anchor has none of the other. One draw from this mixture is hard with probability
    `hard_share`: the same as a coin flip between two uniform draws, with one multinomial.
    """
    easy = (eligible & (dist < 0)).float()  # d_neg or more hops away, or unreachable
    hard = (eligible & (dist > d_pos)).float()  # the BFS stopped at d_neg - 1 hops
    easy_count, hard_count = easy.sum(1, keepdim=True), hard.sum(1, keepdim=True)
    hard_mass = torch.where(easy_count == 0, 1.0, torch.where(hard_count == 0, 0.0, hard_share))
    return easy * ((1 - hard_mass) / easy_count.clamp_min(1)) + hard * (hard_mass / hard_count.clamp_min(1))
