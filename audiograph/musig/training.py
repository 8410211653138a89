"""train-musig: multi-task training of the aggregator in Lightning, and inductive inference for any track."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader
from torch_geometric.data import Data
from torch_geometric.loader import LinkLoader
from torchmetrics.classification import BinaryAUROC

from audiograph.errors import ConfigError, StoreError
from audiograph.eval.metrics import case_metrics, rank_candidates
from audiograph.eval.protocol import EvalCase, completion_cases
from audiograph.graph.cooccurrence import cooccurrence_matrix, threshold
from audiograph.graph.csr import CSRGraph
from audiograph.graph.sampler import UniformNeighborSampler
from audiograph.musig.features import (
    GROUP_SPACES,
    FeatureSpec,
    available_groups,
    build_features,
    cold_features,
    parse_groups,
)
from audiograph.musig.inductive import MUSIG_KIND, musig_model_row
from audiograph.musig.model import (
    MUSIG,
    TASK_WEIGHT_PRESETS,
    TASKS,
    PairHeads,
    full_adjacency,
    layer_adjacencies,
    multitask_loss,
    parse_task_weights,
)
from audiograph.runtime import inference_trainer, keyword_defaults, limit_threads, quiet_lightning, show_progress
from audiograph.store import MUSIG_SPACE, Store
from audiograph.trainer import TrainingThroughput, best_epoch_metrics, split_options

PLAYLIST_LOSSES = ("infonce", "bce")
TASK_WEIGHTINGS = ("static", "uncertainty")


@dataclass
class CompletionBatch:
    """Validation by playlist completion: node features, the training graph's adjacency, and the cases."""

    x: torch.Tensor
    adjacency: torch.Tensor
    cases: list[EvalCase]


class MusigModule(L.LightningModule):
    """MUSIG trained on pairs (a sampled edge or a random negative) with three task heads.

    `cold_start_rate`: the share of a batch's seed tracks that lose every edge and their
    playlist-derived features (see `cold_features`) for that step, so that the aggregators learn
    to place a track in no playlist, the common case when completing real playlists.
    `task_weighting` "uncertainty" learns one weight per task (Kendall et al., 2018) on top of
    `task_weights`, which then only switch tasks on or off and scale them.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 256,
        out_channels: int = 128,
        num_layers: int = 2,
        fanouts: tuple[int, ...] = (25, 10),
        dropout: float = 0.0,
        skip: bool = True,
        task_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        task_weighting: str = "static",
        playlist_loss: str = "infonce",
        temperature: float = 0.1,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        cold_start_rate: float = 0.5,
        features: dict | None = None,
        similarity_group: str | None = None,
    ):
        super().__init__()
        if len(fanouts) != num_layers:
            raise ConfigError(f"need one fanout per layer: {num_layers} layers, fanouts {list(fanouts)}")
        if playlist_loss not in PLAYLIST_LOSSES:
            raise ConfigError(f"playlist loss must be one of {', '.join(PLAYLIST_LOSSES)}, got {playlist_loss!r}")
        if task_weighting not in TASK_WEIGHTINGS:
            raise ConfigError(f"task weighting must be one of {', '.join(TASK_WEIGHTINGS)}, got {task_weighting!r}")
        if not 0 <= cold_start_rate <= 1:
            raise ConfigError(f"cold_start_rate must be between 0 and 1, got {cold_start_rate}")
        self.save_hyperparameters()
        self.model = MUSIG(in_channels, hidden_channels, out_channels, num_layers, dropout, skip=skip)
        self.heads = PairHeads(out_channels)
        self.log_vars = torch.nn.Parameter(torch.zeros(len(TASKS))) if task_weighting == "uncertainty" else None
        self.val_auc = BinaryAUROC()

    def forward(self, x: torch.Tensor, adjacencies: list[torch.Tensor]) -> torch.Tensor:
        return self.model(x, adjacencies)

    def _pair_step(self, batch, stage: str) -> torch.Tensor:
        edge_index = batch.edge_index.cpu()  # the adjacencies are built on the CPU, then moved
        num_sampled_edges, x = batch.num_sampled_edges, batch.x
        if stage == "train" and self.hparams.cold_start_rate > 0:
            cold = torch.rand(batch.num_sampled_nodes[0]) < self.hparams.cold_start_rate
            edge_index, num_sampled_edges = isolate_seeds(edge_index, num_sampled_edges, cold)
            x = x.clone()
            x[: len(cold)][cold.to(x.device)] = batch.x_cold[: len(cold)][cold.to(x.device)]
        adjacencies = layer_adjacencies(edge_index, batch.num_sampled_nodes, num_sampled_edges, self.hparams.num_layers)
        z = self.model(x, [a.to(self.device) for a in adjacencies])
        i, j = batch.edge_label_index
        genre = pair_labels(batch.genre, i, j)
        similarity = pair_similarity(batch.sim, batch.has_sim, i, j)
        outputs = self.heads(z[i], z[j])
        contrast = (z[i], z[j]) if self.hparams.playlist_loss == "infonce" else None
        loss, parts = multitask_loss(outputs, batch.edge_label, genre, similarity, self.hparams.task_weights,
                                     contrast=contrast, temperature=self.hparams.temperature)  # fmt: skip
        if self.log_vars is not None:
            active = torch.tensor(self.hparams.task_weights, device=self.device) > 0
            stacked = torch.stack([parts[t] for t in TASKS])
            loss = (active * (torch.exp(-self.log_vars) * stacked + self.log_vars)).sum()
        size = len(i)
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=size)
        for task in TASKS:
            self.log(f"{stage}_{task}_loss", parts[task], batch_size=size)
        if stage == "val":
            self.val_auc.update(outputs[:, 0], batch.edge_label.long())
            self.log("val_auc", self.val_auc, prog_bar=True, batch_size=size)
        return loss

    def training_step(self, batch, batch_idx):
        return self._pair_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        if isinstance(batch, CompletionBatch):
            vectors = self.model(batch.x, [batch.adjacency] * self.hparams.num_layers).float().cpu().numpy()
            scores = [case_metrics(rank_candidates(vectors, c.seeds, c.candidates), c.targets) for c in batch.cases]
            self.log("val_hr", float(np.mean([s["HR"] for s in scores])), prog_bar=True, batch_size=1)
            self.log("val_ndcg10", float(np.mean([s["NDCG@10"] for s in scores])), batch_size=1)
        else:
            self._pair_step(batch, "val")

    def predict_step(self, batch, batch_idx):
        x, adjacency = batch
        return self.model(x, [adjacency] * self.hparams.num_layers)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def isolate_seeds(edge_index: torch.Tensor, num_sampled_edges: list[int], isolated: torch.Tensor):
    """Remove every sampled edge into or out of the seeds marked in `isolated` (bool [num_seeds]), as if
    those tracks were in no playlist; returns the kept edges and the per-hop edge counts."""
    flags = torch.zeros(int(edge_index.max()) + 1 if edge_index.numel() else 0, dtype=torch.bool)
    flags[: len(isolated)] = isolated[: len(flags)]
    keep = ~(flags[edge_index[0]] | flags[edge_index[1]])
    hop = torch.repeat_interleave(torch.arange(len(num_sampled_edges)), torch.tensor(num_sampled_edges))
    counts = torch.bincount(hop[keep], minlength=len(num_sampled_edges)).tolist()
    return edge_index[:, keep], counts


def pair_labels(genre: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """1.0 where both tracks share a genre, 0.0 where they differ, NaN where either has none."""
    same = (genre[i] == genre[j]).float()
    return torch.where((genre[i] >= 0) & (genre[j] >= 0), same, torch.nan)


def pair_similarity(sim: torch.Tensor, has_sim: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """The inner product of the pair's (normalised) similarity features; NaN where either lacks them."""
    value = (sim[i] * sim[j]).sum(-1)
    return torch.where(has_sim[i] & has_sim[j], value, torch.nan)


@dataclass
class MusigData:
    """Everything MUSIG trains on or embeds: nodes, graph, features and task labels.

    `data` holds `x` (node features), `x_cold` (the same tracks as if in no playlist), `genre`,
    `sim` and `has_sim`; `playlists` the node indices of the playlists the graph was built from
    (None when it came from edge lists only), which validation by playlist completion draws on.
    """

    node_ids: list[str]
    graph: CSRGraph
    data: Data
    spec: FeatureSpec
    similarity_group: str | None
    playlists: list[np.ndarray] | None = None


def prepare_musig_data(
    store: Store,
    groups: list[str],
    *,
    similarity_group: str | None = None,
    spec: FeatureSpec | None = None,
    genres: dict[str, str | None] | None = None,
    playlists: list[dict] | None = None,
    graph: tuple[list[str], CSRGraph] | None = None,
) -> MusigData:
    """Node features, genre labels and similarity features over the store's graph (or the given one)."""
    node_ids, csr = graph or store.graph()
    genres = genres if genres is not None else {t["id"]: t["genre"] for t in store.tracks(status=None)}
    playlists = store.playlists() if playlists is None else playlists
    x, spec, _ = build_features(store, node_ids, csr, groups, genres=genres, playlists=playlists, spec=spec)
    x_cold = cold_features(store, node_ids, spec)
    sim = has_sim = None
    if similarity_group is not None:
        # Scaled like the input features when the group is one of them, else fitted on its own.
        sim_spec = _only(spec, similarity_group) if similarity_group in spec.groups else None
        sim, _, mask = build_features(
            store, node_ids, csr, [similarity_group], genres=genres, playlists=playlists, spec=sim_spec
        )
        has_sim = mask[:, 0]
    position = {t: i for i, t in enumerate(node_ids)}
    members = [np.asarray(list(dict.fromkeys(position[t] for t in p["tracks"] if t in position))) for p in playlists]
    return assemble_musig_data(
        node_ids, csr, x, genres, spec, similarity_group, sim, has_sim, x_cold=x_cold, playlists=members
    )


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
    return MusigData(node_ids, graph, data, spec, similarity_group, playlists)


def _only(spec: FeatureSpec, group: str) -> FeatureSpec:
    """The part of a spec that concerns one group."""
    return FeatureSpec(
        groups=[group],
        spaces={k: v for k, v in spec.spaces.items() if k == group},
        models={k: v for k, v in spec.models.items() if k == group},
        center={k: v for k, v in spec.center.items() if k == group},
        scale={k: v for k, v in spec.scale.items() if k == group},
        genres=spec.genres if group == "genre" else [],
        popularity_model=spec.popularity_model if group == "popularity" else None,
    )


def default_similarity_group(store: Store) -> str | None:
    """The content group the similarity task regresses on: acoustic vectors if any, else audio features."""
    spaces = store.spaces()
    for group in ("acoustic", "audio"):
        if any(s in spaces for s in GROUP_SPACES[group]):
            return group
    return None


# Enough for a stable AUC; a share of a large graph's edges would make validation outlast training.
MAX_VAL_EDGES = 10_000
# Validation by playlist completion: playlists long enough to split into seeds and targets, and
# enough of them for a stable hit rate.
MIN_VAL_PLAYLIST = 10
MIN_VAL_PLAYLISTS = 5
MAX_VAL_PLAYLISTS = 500


def split_edges(graph: CSRGraph, val_fraction: float, generator: torch.Generator) -> tuple[CSRGraph, torch.Tensor, torch.Tensor]:
    """(the graph without the held-out edges, train edges [2, E_train], validation pairs [2, 2V] with
    labels [2V]: V held-out edges (at most `MAX_VAL_EDGES`) and V random pairs, shuffled together).
    Each undirected edge counts once."""
    upper = graph.row < graph.col
    edges = torch.stack([graph.row[upper], graph.col[upper]])
    weight = graph.weight[upper] if graph.weight is not None else None
    order = torch.randperm(edges.shape[1], generator=generator)
    n_val = min(MAX_VAL_EDGES, max(1, round(val_fraction * edges.shape[1]))) if edges.shape[1] > 1 else 0
    val, train = order[:n_val], order[n_val:]
    train_graph = CSRGraph.from_edges(edges[0, train], edges[1, train], graph.num_nodes,
                                      None if weight is None else weight[train])  # fmt: skip
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
    completion cases, with decoys matched on being in a remaining playlist). None when the data has
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
    held_counts = cooccurrence_matrix(
        np.repeat(np.arange(len(held)), [len(p) for p in held]), np.concatenate(held), n
    )
    min_weight = float(data.graph.weight.min()) if data.graph.num_edges and data.graph.weight is not None else 1.0
    train_graph = CSRGraph.from_scipy(threshold(data.graph.to_scipy() - held_counts, min_weight))
    seen = (train_graph.degree > 0).numpy()
    rng = np.random.default_rng(int(torch.randint(1 << 31, (1,), generator=generator)))
    cases = completion_cases([(str(k), p) for k, p in zip(chosen, held)], seen, 0.5, rng)
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
        if not 0 < val_fraction < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        self.data, self.fanouts, self.batch_size, self.num_workers = data, list(fanouts), batch_size, num_workers
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

    def _link_loader(self, edges, labels=None, shuffle=False, neg_sampling=None) -> LinkLoader:
        return LinkLoader(
            self.pyg_data,
            link_sampler=UniformNeighborSampler(self.train_graph, self.fanouts),
            edge_label_index=edges,
            edge_label=labels,
            neg_sampling=neg_sampling,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self):
        return self._link_loader(self.train_edges, shuffle=True, neg_sampling="binary")

    def val_dataloader(self):
        if self.val_cases is None:
            return self._link_loader(*self.val_pairs)
        # Tracks outside the remaining playlists are placed as new tracks are: cold features.
        seen = (self.train_graph.degree > 0)[:, None]
        x = torch.where(seen, self.data.data.x, self.data.data.x_cold)
        adjacency = full_adjacency(self.train_graph.rowptr, self.train_graph.col, self.train_graph.num_nodes)
        return DataLoader([CompletionBatch(x, adjacency, self.val_cases)], batch_size=None, collate_fn=lambda b: b)

    def features_baseline(self) -> float | None:
        """Validation hit rate of the z-scored input features themselves (cosine), the bar to clear."""
        if self.val_cases is None:
            return None
        batch = self.val_dataloader().dataset[0]
        x = batch.x.numpy()
        return float(np.mean([case_metrics(rank_candidates(x, c.seeds, c.candidates), c.targets)["HR"]
                              for c in batch.cases]))  # fmt: skip


@dataclass
class TrainMusigReport:
    """The outcome of `train_musig`."""

    model_id: str
    checkpoint: str
    epochs: int
    features: list[str]
    similarity_group: str | None
    task_weights: tuple[float, float, float]
    metrics: dict = field(default_factory=dict)
    embedded: int = 0
    seeds_per_second: float = 0.0
    warnings: list[str] = field(default_factory=list)
    hparams: dict = field(default_factory=dict)  # the trained module's hyperparameters


def train_musig(
    store: Store,
    *,
    features: str | list[str] | None = None,
    similarity: str | None = "auto",
    task_weights: str | tuple = "multi",
    max_epochs: int = 30,
    patience: int = 5,
    batch_size: int = 512,
    batches_per_epoch: int | None = 100,
    val_fraction: float = 0.1,
    num_workers: int = 0,
    seed: int = 0,
    accelerator: str = "auto",
    devices="auto",
    quiet: bool = False,
    musig_data: MusigData | None = None,
    register: bool = True,
    models_dir: str | Path | None = None,
    **options,
) -> TrainMusigReport:
    """Train MUSIG on the store's graph, register it, and write every track's vector into the `musig` space.

    `features`: feature groups (default: every group the store has); `similarity`: the group the
    similarity task regresses on ("auto": acoustic, else audio; None: no similarity labels);
    `task_weights`: c1,c2,c3, a preset name, or "auto" (the paper's grid search: every preset is
    trained and the best on validation kept); `options`: keyword arguments of `MusigModule`
    (lr, hidden_channels, fanouts, cold_start_rate, playlist_loss, ...).
    `musig_data`, `register=False` and `models_dir` (checkpoints and logs; default beside the store)
    are for evaluations that train on a held-out split.
    """
    quiet_lightning()
    limit_threads()
    (module_options,) = split_options(options, MusigModule)
    if musig_data is None:
        groups = parse_groups(features) if features else available_groups(store)
        if similarity not in ("auto", None, *GROUP_SPACES):
            raise ConfigError(f"--similarity must be auto, none, {' or '.join(GROUP_SPACES)}; got {similarity!r}")
        similarity_group = default_similarity_group(store) if similarity == "auto" else similarity
        musig_data = prepare_musig_data(store, groups, similarity_group=similarity_group)
    data = musig_data
    if data.graph.num_edges == 0:
        raise ConfigError(f"{store.path}: the graph has no edges to train on (run `audiograph build-graph`)")
    fanouts = tuple(module_options.get("fanouts", keyword_defaults(MusigModule)["fanouts"]))
    datamodule = MusigDataModule(data, fanouts, batch_size, val_fraction, num_workers, seed)
    models_dir = Path(models_dir) if models_dir is not None else store.models_dir
    candidates = list(TASK_WEIGHT_PRESETS.values()) if task_weights == "auto" else [parse_task_weights(task_weights)]
    runs = []
    for weights in candidates:
        model_id = store.new_model_id(MUSIG_KIND, models_dir)
        module = MusigModule(data.data.num_features, features=data.spec.to_dict(),
                             similarity_group=data.similarity_group, task_weights=weights, **module_options)  # fmt: skip
        runs.append(_fit(module, datamodule, models_dir, model_id, max_epochs, patience, batches_per_epoch, seed,
                         accelerator, devices, quiet))  # fmt: skip
    report = max(runs, key=lambda r: r.metrics.get(datamodule.monitor, float("-inf")))
    report.features, report.similarity_group = data.spec.groups, data.similarity_group
    baseline = datamodule.features_baseline()
    if baseline is not None and "val_hr" in report.metrics:
        report.metrics["val_hr_features"] = baseline
        if report.metrics["val_hr"] < baseline:
            report.warnings.append(
                f"MUSIG's validation hit rate {report.metrics['val_hr']:.3f} is below that of its own z-scored input"
                f" features ({baseline:.3f}): its vectors rank held-out playlists worse than the features alone"
            )
    if register:
        config = {**report.hparams, "batch_size": batch_size, "val_fraction": val_fraction, "seed": seed,
                  "max_epochs": max_epochs, "batches_per_epoch": batches_per_epoch}  # fmt: skip
        store.register_model(report.model_id, MUSIG_KIND, MUSIG_SPACE, checkpoint=report.checkpoint, config=config,
                             metrics=report.metrics)  # fmt: skip
        report.embedded = embed_musig(store, report.model_id, accelerator=accelerator)
    return report


def _fit(module, datamodule, models_dir, model_id, max_epochs, patience, batches_per_epoch, seed, accelerator,
         devices, quiet) -> TrainMusigReport:  # fmt: skip
    """One training run: fit with early stopping on the data module's validation metric."""
    L.seed_everything(seed, workers=True, verbose=False)
    monitor = datamodule.monitor
    checkpoint = ModelCheckpoint(dirpath=models_dir / model_id / "checkpoints", monitor=monitor, mode="max",
                                 save_last=True)  # fmt: skip
    throughput = TrainingThroughput(count=lambda batch: batch.num_sampled_nodes[0])  # seed nodes
    trainer = L.Trainer(
        max_epochs=max_epochs,
        limit_train_batches=batches_per_epoch or 1.0,
        accelerator=accelerator,
        devices=devices,
        deterministic=True,
        logger=CSVLogger(models_dir, name=model_id, version=""),
        callbacks=[checkpoint, throughput, EarlyStopping(monitor=monitor, mode="max", patience=patience)],
        enable_progress_bar=show_progress(quiet),
        enable_model_summary=False,
        log_every_n_steps=5,
    )
    trainer.fit(module, datamodule=datamodule)
    best = checkpoint.best_model_path or checkpoint.last_model_path
    metrics = best_epoch_metrics(Path(trainer.logger.log_dir) / "metrics.csv", monitor, mode="max")
    metrics["train_seeds_per_second"] = throughput.per_second
    return TrainMusigReport(model_id, str(best), trainer.current_epoch, [], None, tuple(module.hparams.task_weights),
                            metrics, seeds_per_second=throughput.per_second, hparams=dict(module.hparams))  # fmt: skip


def load_musig(store: Store, model_id: str | None = None) -> tuple[MusigModule, dict]:
    """(the trained module, its registry row) for a MUSIG model id, or the newest."""
    from audiograph.weights import weights_only_loading

    row = musig_model_row(store, model_id)
    path = store.checkpoint_file(row)  # only from the store's models folder
    with weights_only_loading(path, f"model '{row['id']}'"):
        return MusigModule.load_from_checkpoint(path, map_location="cpu", weights_only=True).eval(), row


def musig_vectors(module: MusigModule, data: MusigData, accelerator: str = "auto") -> torch.Tensor:
    """Every node's MUSIG vector: one full-neighbourhood pass (mean over all neighbours) on a CSR adjacency."""
    adjacency = full_adjacency(data.graph.rowptr, data.graph.col, data.graph.num_nodes)
    loader = DataLoader([(data.data.x, adjacency)], batch_size=None)
    (vectors,) = inference_trainer(accelerator, devices=1).predict(module, dataloaders=loader)
    return vectors


def embed_musig(store: Store, model_id: str | None = None, accelerator: str = "auto") -> int:
    """Write the MUSIG vector of every track in the store (new ones included, no retraining)."""
    module, row = load_musig(store, model_id)
    spec = FeatureSpec.from_dict(module.hparams.features)
    for group, model in spec.models.items():
        if model not in store.spaces().get(spec.spaces[group], {}):
            raise StoreError(
                f"model '{row['id']}' was trained on {spec.spaces[group]} vectors of model '{model}', which the"
                " store no longer holds; retrain with `audiograph train-musig`"
            )
    data = prepare_musig_data(store, spec.groups, spec=spec)
    vectors = musig_vectors(module, data, accelerator)
    store.put_vectors(MUSIG_SPACE, row["id"], dict(zip(data.node_ids, vectors.numpy())))
    return len(data.node_ids)
