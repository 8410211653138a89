"""MUSIG's aggregator (the paper's Eq. 1-3), its pairwise task heads and the multi-task loss (Eq. 4-6)."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from audiograph.errors import ConfigError

TASKS = ("playlist", "genre", "audio")
MAX_LAYERS = 16  # deeper than any use, and a bound on what a model folder from elsewhere can make a load build
# The paper's grid of task weights (c1, c2, c3); (1, 0, 0) is single-task GraphSAGE.
TASK_WEIGHT_PRESETS = {
    "multi": (1.0, 1.0, 1.0),
    "graphsage": (1.0, 0.0, 0.0),
    "playlist-heavy": (0.7, 0.1, 0.2),
    "content-heavy": (0.4, 0.2, 0.4),
}


def parse_task_weights(text: str | tuple) -> tuple[float, float, float]:
    """A preset name or "c1,c2,c3" -> the three task weights."""
    if isinstance(text, (tuple, list)):
        weights = tuple(float(w) for w in text)
    elif text in TASK_WEIGHT_PRESETS:
        weights = TASK_WEIGHT_PRESETS[text]
    else:
        try:
            weights = tuple(float(w) for w in text.split(","))
        except ValueError:
            weights = ()
    if len(weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) == 0:
        presets = ", ".join(f"{k}={','.join(f'{w:g}' for w in v)}" for k, v in TASK_WEIGHT_PRESETS.items())
        raise ConfigError(
            f"task weights must be three non-negative numbers, not all 0, or a preset ({presets}); got {text!r}"
        )
    return weights


def layer_adjacencies(
    edge_index: torch.Tensor, num_sampled_nodes: list[int], num_sampled_edges: list[int], num_layers: int
) -> list[torch.Tensor]:
    """Per-layer mean-aggregation adjacencies [targets, sources] (torch.sparse CSR) of a sampled subgraph.

    Needs PyG's sampler layout: nodes grouped by hop, seeds first, and edges grouped by hop and sorted
    by target (as `UniformNeighborSampler` emits them). Layer l updates the nodes of hops
    0..K-1-l from the edges of hops 1..K-l, so no layer computes a vector nobody reads.
    """
    src, dst = edge_index
    node_ends = torch.tensor(num_sampled_nodes).cumsum(0).tolist()
    edge_ends = torch.tensor(num_sampled_edges).cumsum(0).tolist()
    adjacencies = []
    for layer in range(num_layers):
        hops = num_layers - layer
        targets, sources, edges = node_ends[hops - 1], node_ends[hops], edge_ends[hops - 1]
        crow = torch.zeros(targets + 1, dtype=torch.int64)
        crow[1:] = torch.bincount(dst[:edges], minlength=targets).cumsum(0)
        adjacencies.append(sparse_csr(crow, src[:edges], (targets, sources)))
    return adjacencies


def sparse_csr(crow: torch.Tensor, col: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A 0/1 torch.sparse CSR matrix of `size` with the given structure."""
    with warnings.catch_warnings():
        # torch.sparse CSR matmul with reduce="mean" is stable for what MUSIG uses; the notice (given once per
        # process, at the first CSR tensor) is noise. Ignored here only, not in the user's own code.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(
            crow, col, torch.ones(col.numel(), device=col.device), size=size, check_invariants=False
        )


def full_adjacency(rowptr: torch.Tensor, col: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """The whole graph's adjacency as torch.sparse CSR, for exact full-neighbourhood passes."""
    return sparse_csr(rowptr, col, (num_nodes, num_nodes))


def edge_index_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """A PyG `edge_index` [2, E] (messages flow from row 0 to row 1; an undirected graph lists both directions)
    as the [targets, sources] torch.sparse CSR adjacency that `MUSIG` aggregates over."""
    edge_index = torch.as_tensor(edge_index, device="cpu")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.is_floating_point():
        raise ValueError(f"edge_index must be an integer tensor of shape [2, E], not {tuple(edge_index.shape)}")
    src, dst = edge_index.long()
    if len(src) and (min(int(src.min()), int(dst.min())) < 0 or max(int(src.max()), int(dst.max())) >= num_nodes):
        raise ValueError(f"edge_index names nodes outside 0..{num_nodes - 1}")
    order = torch.argsort(dst, stable=True)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.int64)
    rowptr[1:] = torch.bincount(dst, minlength=num_nodes).cumsum(0)
    return full_adjacency(rowptr, src[order], num_nodes)


def mean_aggregate(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each target's mean over its sources' rows of `x` (`adjacency` [targets, sources], torch.sparse CSR);
    0 for a target without sources."""
    if adjacency.dtype != x.dtype:  # built as float32; a model in float64 (or under Lightning's "64-true")
        adjacency = adjacency.to(x.dtype)
    if adjacency.is_cuda:  # CUDA's sparse mm has no reduce argument
        degree = adjacency.crow_indices().diff().clamp(min=1).view(-1, 1)
        return torch.sparse.mm(adjacency, x) / degree.to(x.dtype)
    return torch.sparse.mm(adjacency, x, "mean")


class SAGEMean(nn.Module):
    """One GraphSAGE mean layer, W [h_v || mean(h_u, u in N(v))] with W split in two: `lin_r` on the node's
    own vector, `lin_l` (with the bias) on its neighbours' mean. It has PyG's `SAGEConv(aggr="mean")`
    parameters, names and initialisation (a test holds the two equal), without importing PyG, whose import
    costs a one-file query seconds."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lin_l = nn.Linear(in_channels, out_channels)
        self.lin_r = nn.Linear(in_channels, out_channels, bias=False)
        # SAGEConv initialises its linear maps twice (on creation and in reset_parameters); so does this,
        # so that a seed gives the same model either way.
        self.lin_l.reset_parameters()
        self.lin_r.reset_parameters()

    def forward(self, x: tuple[torch.Tensor, torch.Tensor], adjacency: torch.Tensor) -> torch.Tensor:
        """(source rows, target rows) and their [targets, sources] adjacency -> the targets' new vectors."""
        sources, targets = x
        return self.lin_l(mean_aggregate(adjacency, sources)) + self.lin_r(targets)


class MUSIG(nn.Module):
    """K GraphSAGE mean layers (`SAGEMean`): h_v^k = W^k [h_v^(k-1) || mean(h_u^(k-1), u in N(v))], ReLU
    between layers, L2-normalised output.

    With `skip`, a linear map of the node's own input features is added to the last layer's output,
    so a track's own features reach its vector directly: on real playlists most tracks to place are
    in no playlist, and their vector is all they have.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 256,
        out_channels: int = 128,
        num_layers: int = 2,
        dropout: float = 0.0,
        skip: bool = True,
    ):
        super().__init__()
        if not 1 <= num_layers <= MAX_LAYERS:
            raise ConfigError(f"num_layers must be 1..{MAX_LAYERS}, got {num_layers}")
        sizes = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.convs = nn.ModuleList(SAGEMean(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.skip = nn.Linear(in_channels, out_channels, bias=False) if skip else None
        self.dropout = dropout

    def forward(self, x: torch.Tensor, adjacencies: list[torch.Tensor]) -> torch.Tensor:
        """Vectors of the first `adjacencies[-1].shape[0]` nodes; one adjacency per layer, either per-layer
        bipartite blocks from `layer_adjacencies` or the same full-graph adjacency K times."""
        inputs = x
        for layer, (conv, adj) in enumerate(zip(self.convs, adjacencies)):
            x = conv((x[: adj.shape[1]], x[: adj.shape[0]]), adj)
            if layer < len(self.convs) - 1:
                x = F.dropout(F.relu(x), self.dropout, self.training)
        if self.skip is not None:
            x = x + self.skip(inputs[: x.shape[0]])
        return F.normalize(x, dim=-1)


class PairHeads(nn.Module):
    """One head per task on a pair of vectors: f_t(s_i, s_j) = w_t . (s_i * s_j) + b_t.

    A weighted inner product: every task reads the shared space through the geometry that
    retrieval uses (cosine), with its own weighting of dimensions. The classification heads start
    as a cosine scaled by `init_scale` (a logit range that can express confidence); the similarity
    head starts as the plain cosine, the same scale as the inner products it regresses on.
    """

    def __init__(self, dim: int, init_scale: float = 5.0):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([init_scale, init_scale, 1.0]).repeat_interleave(dim).view(3, dim))
        self.bias = nn.Parameter(torch.zeros(len(TASKS)))

    def forward(self, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
        return (zi * zj) @ self.weight.T + self.bias


def info_nce(zi: torch.Tensor, zj: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of positive pairs: each pair's other end against every other
    pair's, by cosine / temperature (the in-batch negatives of CLIP and SimCLR)."""
    logits = zi @ zj.T / temperature
    target = torch.arange(len(zi), device=zi.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def batch_genre_loss(z: torch.Tensor, genre: torch.Tensor, heads: PairHeads) -> torch.Tensor:
    """The genre task on every pair of a batch's tracks (z [n, D], genre [n] class ids, -1 unknown): the
    genre head's same-genre BCE over all pairs, not only the sampled edges and negatives, which are
    nearly all same-genre pairs and random pairs and so repeat the playlist task."""
    known = genre >= 0
    z, genre = z[known], genre[known]
    if len(z) < 2:
        return z.sum() * 0
    same = (genre[:, None] == genre[None, :]).float()
    off_diagonal = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z * heads.weight[1]) @ z.T + heads.bias[1]
    return F.binary_cross_entropy_with_logits(logits[off_diagonal], same[off_diagonal])


def classify_genre_loss(z: torch.Tensor, genre: torch.Tensor, classifier: nn.Linear) -> torch.Tensor:
    """The genre task as classification (z [n, D], genre [n] class ids, -1 unknown): cross-entropy of a
    linear genre classifier on the tracks' vectors, which pulls each genre's tracks to one side of the
    space without asking that every pair of a genre be close."""
    known = genre >= 0
    if not known.any():
        return z.sum() * 0
    return F.cross_entropy(classifier(z[known]), genre[known])


def multitask_loss(
    outputs: torch.Tensor,
    playlist: torch.Tensor,
    genre: torch.Tensor,
    similarity: torch.Tensor,
    weights: tuple[float, float, float],
    *,
    contrast: tuple[torch.Tensor, torch.Tensor] | None = None,
    temperature: float = 0.1,
    genre_loss: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """c1 * L_playlist + c2 * BCE(same genre) + c3 * RMSE(similarity), the paper's Eq. 6.

    `outputs` [B, 3] are the heads' outputs (logits, logits, regression) on B pairs, and `playlist`
    [B] says which pairs are edges. L_playlist is the paper's BCE on the first head, or, given
    `contrast` (the pairs' vectors zi, zj [B, D]), InfoNCE of each edge against the batch's other
    edges (in-batch negatives). `genre` and `similarity` hold NaN for pairs without a label (a track
    without genre or features), which are left out of that task's mean. `genre_loss`, when given,
    replaces the genre task's loss on the B pairs (see `batch_genre_loss` and `classify_genre_loss`).
    """
    if contrast is None:
        parts = {"playlist": F.binary_cross_entropy_with_logits(outputs[:, 0], playlist.float())}
    else:
        edges = playlist > 0.5
        zi, zj = contrast
        parts = {"playlist": info_nce(zi[edges], zj[edges], temperature) if edges.sum() > 1 else outputs.sum() * 0}
    known = ~torch.isnan(genre)
    if genre_loss is not None:
        parts["genre"] = genre_loss
    elif known.any():
        parts["genre"] = F.binary_cross_entropy_with_logits(outputs[known, 1], genre[known])
    else:
        parts["genre"] = outputs.sum() * 0
    known = ~torch.isnan(similarity)
    parts["audio"] = (
        torch.sqrt(F.mse_loss(outputs[known, 2], similarity[known]) + 1e-12) if known.any() else outputs.sum() * 0
    )
    total = sum(w * parts[t] for w, t in zip(weights, TASKS))
    return total, parts
