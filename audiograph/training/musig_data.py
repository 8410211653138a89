"""MUSIG's data: node features and task labels over a graph, and the DataModule that samples pairs and holds validation out."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch_geometric.data import Data
from torch_geometric.loader import LinkLoader
from torch_geometric.utils import k_hop_subgraph

from audiograph.errors import ConfigError
from audiograph.eval.metrics import case_metrics, rank_candidates
from audiograph.eval.protocol import EvalCase, completion_cases, decoy_strata
from audiograph.graph.cooccurrence import cooccurrence_matrix, threshold
from audiograph.graph.csr import CSRGraph
from audiograph.graph.sampler import UniformNeighborSampler
from audiograph.musig.features import FeatureSpec
from audiograph.musig.model import (
    full_adjacency,
)
from audiograph.options import check_options
from audiograph.training.distributed import ShardedBatchSampler, trainer_rank
from audiograph.training.musig import CompletionBatch


@dataclass
class MusigData:
    """Everything MUSIG trains on or embeds: nodes, graph, features and task labels.

    `data` holds `x` (node features), `x_cold` (the same tracks as if in no playlist), `genre`,
    `sim` and `has_sim`; `playlists` the node indices of the playlists the graph was built from
    (None when it came from edge lists only), which validation by playlist completion draws on;
    `has_content` which content groups each track has (bool [N, G], `content_presence`), which its
    decoys are matched on.
    """

    node_ids: list[str]
    graph: CSRGraph
    data: Data
    spec: FeatureSpec
    similarity_group: str | None
    playlists: list[np.ndarray] | None = None
    has_content: np.ndarray | None = None


def assemble_musig_data(
    node_ids: list[str],
    graph: CSRGraph,
    x: np.ndarray,
    genres: dict[str, str | None],
    spec: FeatureSpec,
    similarity_group: str | None = None,
    sim: np.ndarray | None = None,
    has_sim: np.ndarray | None = None,
    *,
    x_cold: np.ndarray | None = None,
    playlists: list[np.ndarray] | None = None,
    has_content: np.ndarray | None = None,
) -> MusigData:
    """`MusigData` from node features [N, F] (and their cold-start version, default the same), genre
    labels by track id, and the similarity task's feature rows [N, d] with a mask of the tracks that
    have them (both None: no similarity task)."""
    names = sorted({g for g in genres.values() if g})
    index = {g: i for i, g in enumerate(names)}
    genre = torch.tensor([index.get(genres.get(t), -1) for t in node_ids])
    if sim is None:
        sim_t, has_sim_t = torch.zeros(len(node_ids), 1), torch.zeros(len(node_ids), dtype=torch.bool)
    else:
        sim_t = F.normalize(torch.from_numpy(np.asarray(sim, np.float32)), dim=-1)
        has_sim_t = torch.from_numpy(np.asarray(has_sim, bool))
    x_t = torch.from_numpy(np.asarray(x, np.float32))
    x_cold_t = x_t if x_cold is None else torch.from_numpy(np.asarray(x_cold, np.float32))
    data = Data(x=x_t, x_cold=x_cold_t, genre=genre, sim=sim_t, has_sim=has_sim_t, num_nodes=len(node_ids))
    return MusigData(node_ids, graph, data, spec, similarity_group, playlists, has_content)


# Enough for a stable AUC; a share of a large graph's edges would make validation outlast training.
MAX_VAL_EDGES = 10_000


# Validation by playlist completion: playlists long enough to split into seeds and targets, and
# enough of them for a stable hit rate.
MIN_VAL_PLAYLIST = 10


MIN_VAL_PLAYLISTS = 5


MAX_VAL_PLAYLISTS = 500


def split_edges(
    graph: CSRGraph, val_fraction: float, generator: torch.Generator
) -> tuple[CSRGraph, torch.Tensor, torch.Tensor]:
    """(the graph without the held-out edges, train edges [2, E_train], validation pairs [2, 2V] with
    labels [2V]: V held-out edges (at most `MAX_VAL_EDGES`) and V random pairs, shuffled together).
    Each undirected edge counts once."""
    upper = graph.row < graph.col
    edges = torch.stack([graph.row[upper], graph.col[upper]])
    weight = graph.weight[upper] if graph.weight is not None else None
    order = torch.randperm(edges.shape[1], generator=generator)
    n_val = min(MAX_VAL_EDGES, max(1, round(val_fraction * edges.shape[1]))) if edges.shape[1] > 1 else 0
    val, train = order[:n_val], order[n_val:]
    train_graph = CSRGraph.from_edges(
        edges[0, train], edges[1, train], graph.num_nodes, None if weight is None else weight[train]
    )
    negatives = _non_edges(graph, n_val, generator)
    # Shuffled, so that every validation batch (the sanity check's included) holds both classes.
    mix = torch.randperm(2 * n_val, generator=generator)
    pairs = torch.cat([edges[:, val], negatives], dim=1)[:, mix]
    labels = torch.cat([torch.ones(n_val), torch.zeros(n_val)])[mix]
    return train_graph, edges[:, train], (pairs, labels)


def split_playlists(
    data: MusigData, val_fraction: float, generator: torch.Generator
) -> tuple[CSRGraph, list[EvalCase]] | None:
    """Hold out a `val_fraction` of the playlists (among those with at least `MIN_VAL_PLAYLIST`
    tracks) for validation by playlist completion: (the graph without their co-occurrences, their
    completion cases, with decoys matched on being in a remaining playlist and on the content groups
    they have). None when the data has
    too few such playlists (validation then falls back on held-out edges)."""
    playlists = data.playlists or []
    eligible = [k for k, p in enumerate(playlists) if len(p) >= MIN_VAL_PLAYLIST]
    wanted = min(len(eligible), MAX_VAL_PLAYLISTS, max(MIN_VAL_PLAYLISTS, round(val_fraction * len(playlists))))
    if wanted < MIN_VAL_PLAYLISTS or wanted >= len(playlists):
        return None
    chosen = [eligible[k] for k in torch.randperm(len(eligible), generator=generator)[:wanted].tolist()]
    held = [playlists[k] for k in chosen]
    n = data.graph.num_nodes
    # Subtracting the held-out playlists' co-occurrence counts keeps edges that came from edge lists.
    held_counts = cooccurrence_matrix(np.repeat(np.arange(len(held)), [len(p) for p in held]), np.concatenate(held), n)
    min_weight = float(data.graph.weight.min()) if data.graph.num_edges and data.graph.weight is not None else 1.0
    train_graph = CSRGraph.from_scipy(threshold(data.graph.to_scipy() - held_counts, min_weight))
    seen = (train_graph.degree > 0).numpy()
    rng = np.random.default_rng(int(torch.randint(1 << 31, (1,), generator=generator)))
    strata = decoy_strata(seen, data.has_content)
    cases = completion_cases([(str(k), p) for k, p in zip(chosen, held)], strata, 0.5, rng)
    return train_graph, cases


def _non_edges(graph: CSRGraph, count: int, generator: torch.Generator, tries: int = 10) -> torch.Tensor:
    """[2, count] uniform random pairs that are neither edges nor self-pairs (redrawn up to `tries` times)."""
    n = graph.num_nodes
    keys = torch.sort(graph.row * n + graph.col).values
    pairs = torch.randint(n, (2, count), generator=generator)
    for _ in range(tries):
        key = pairs[0] * n + pairs[1]
        at = torch.searchsorted(keys, key).clamp(max=max(keys.numel() - 1, 0))
        bad = (pairs[0] == pairs[1]) | (keys.numel() > 0) & (keys[at] == key)
        if not bad.any():
            break
        pairs[:, bad] = torch.randint(n, (2, int(bad.sum())), generator=generator)
    return pairs


class MusigDataModule(L.LightningDataModule):
    """MUSIG's data options and loaders: training pairs (sampled edges and random negatives) over the
    graph less the validation part, and validation by playlist completion on held-out playlists
    (`monitor` "val_hr"), or by link AUC on held-out edges when there are too few playlists
    ("val_auc")."""

    def __init__(
        self,
        data: MusigData,
        fanouts: tuple[int, ...] = (25, 10),
        batch_size: int = 512,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        check_options(val_fraction=val_fraction)
        self.save_hyperparameters(ignore=["data"])
        self.data, self.fanouts, self.batch_size, self.num_workers = data, list(fanouts), batch_size, num_workers
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        by_playlist = split_playlists(data, val_fraction, generator)
        if by_playlist is not None:
            self.train_graph, self.val_cases = by_playlist
            self.monitor, self.val_pairs = "val_hr", None
            upper = self.train_graph.row < self.train_graph.col
            self.train_edges = torch.stack([self.train_graph.row[upper], self.train_graph.col[upper]])
        else:
            self.train_graph, self.train_edges, self.val_pairs = split_edges(data.graph, val_fraction, generator)
            self.monitor, self.val_cases = "val_auc", None
        if self.train_edges.shape[1] == 0:
            raise ConfigError("no edges left to train on after holding out the validation part")
        # PyG's loaders fill a batch's edge_index only if the data has one; the sampler's graph is the truth.
        self.pyg_data = copy.copy(data.data)
        self.pyg_data.edge_index = self.train_graph.to_edge_index()

    def _link_loader(self, edges, labels=None, shuffle=False, neg_sampling=None, batch_sampler=None) -> LinkLoader:
        batching = (
            {"batch_sampler": batch_sampler} if batch_sampler else {"batch_size": self.batch_size, "shuffle": shuffle}
        )
        return LinkLoader(
            self.pyg_data,
            link_sampler=UniformNeighborSampler(self.train_graph, self.fanouts),
            edge_label_index=edges,
            edge_label=labels,
            neg_sampling=neg_sampling,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **batching,
        )

    def train_dataloader(self):
        """Training edges in shuffled batches (and as many random negatives); in a distributed run each
        rank takes its own share of every epoch's edges (`ShardedBatchSampler`)."""
        rank, world_size = trainer_rank(self.trainer)
        if world_size == 1:
            return self._link_loader(self.train_edges, shuffle=True, neg_sampling="binary")
        shards = ShardedBatchSampler(self.train_edges.shape[1], self.batch_size, world_size, rank, self.seed)
        return self._link_loader(self.train_edges, neg_sampling="binary", batch_sampler=shards)

    def val_dataloader(self):
        if self.val_cases is None:
            return self._link_loader(*self.val_pairs)
        # Tracks outside the remaining playlists are placed as new tracks are: cold features.
        seen = (self.train_graph.degree > 0)[:, None]
        x = torch.where(seen, self.data.data.x, self.data.data.x_cold)
        adjacency = full_adjacency(self.train_graph.rowptr, self.train_graph.col, self.train_graph.num_nodes)
        return DataLoader([CompletionBatch(x, adjacency, self.val_cases)], batch_size=None, collate_fn=lambda b: b)

    def features_baseline(self) -> float:
        """The `monitor` metric of the z-scored input features themselves (cosine), the bar to clear: their
        validation hit rate on held-out playlists, or their link AUC on the held-out edges and non-edges."""
        if self.val_cases is None:
            from torchmetrics.functional.classification import binary_auroc

            (i, j), labels = self.val_pairs
            x = F.normalize(self.data.data.x, dim=-1)
            return float(binary_auroc((x[i] * x[j]).sum(-1), labels.long()))
        batch = self.val_dataloader().dataset[0]
        x = batch.x.numpy()
        return float(
            np.mean([case_metrics(rank_candidates(x, c.seeds, c.candidates), c.targets)["HR"] for c in batch.cases])
        )


class NeighbourhoodChunks(torch.utils.data.Dataset):
    """Exact MUSIG inference in pieces: item i is chunk i of the nodes (`chunk_size` of them) with the
    subgraph it needs, (node ids [C], their positions in the subgraph [C], the subgraph's node features,
    its adjacency as torch.sparse CSR). The subgraph is induced on every node within `num_hops` of the
    chunk, so each chunk node's whole K-hop neighbourhood is in it, with its full degree at every hop but
    the last: its vector equals that of one pass over the whole graph."""

    def __init__(self, x: torch.Tensor, graph: CSRGraph, num_hops: int, chunk_size: int = 4096):
        self.x, self.graph, self.num_hops = x, graph, num_hops
        self.chunks = list(torch.arange(graph.num_nodes).split(chunk_size))
        self.edge_index, self.matrix = graph.to_edge_index(), graph.to_scipy()

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int):
        nodes = self.chunks[i]
        subset, _, positions, _ = k_hop_subgraph(nodes, self.num_hops, self.edge_index, num_nodes=self.graph.num_nodes)
        sub = CSRGraph.from_scipy(self.matrix[subset.numpy()][:, subset.numpy()])
        return nodes, positions, self.x[subset], full_adjacency(sub.rowptr, sub.col, sub.num_nodes)
