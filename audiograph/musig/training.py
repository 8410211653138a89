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
from torch_geometric.data.lightning import LightningLinkData
from torchmetrics.classification import BinaryAUROC

from audiograph.trainer import TrainingThroughput, best_epoch_metrics, split_options
from audiograph.errors import ConfigError, StoreError
from audiograph.graph.csr import CSRGraph
from audiograph.graph.sampler import UniformNeighborSampler
from audiograph.musig.features import GROUP_SPACES, FeatureSpec, available_groups, build_features, parse_groups
from audiograph.musig.inductive import MUSIG_KIND, musig_model_row
from audiograph.musig.model import MUSIG, TASKS, PairHeads, full_adjacency, layer_adjacencies, multitask_loss
from audiograph.runtime import inference_trainer, quiet_lightning, show_progress
from audiograph.store import MUSIG_SPACE, Store

class MusigModule(L.LightningModule):
    """MUSIG trained on pairs (a sampled edge or a random negative) with three task heads."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int = 256,
        out_channels: int = 128,
        num_layers: int = 2,
        fanouts: tuple[int, ...] = (25, 10),
        dropout: float = 0.0,
        task_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        cold_start_rate: float = 0.1,
        features: dict | None = None,
        similarity_group: str | None = None,
    ):
        super().__init__()
        if len(fanouts) != num_layers:
            raise ConfigError(f"need one fanout per layer: {num_layers} layers, fanouts {list(fanouts)}")
        self.save_hyperparameters()
        self.model = MUSIG(in_channels, hidden_channels, out_channels, num_layers, dropout)
        self.heads = PairHeads(out_channels)
        self.val_auc = BinaryAUROC()

    def forward(self, x: torch.Tensor, adjacencies: list[torch.Tensor]) -> torch.Tensor:
        return self.model(x, adjacencies)

    def _step(self, batch, stage: str) -> torch.Tensor:
        edge_index = batch.edge_index.cpu()  # the adjacencies are built on the CPU, then moved
        if stage == "train" and self.hparams.cold_start_rate > 0:
            edge_index, batch.num_sampled_edges = _drop_seed_neighbourhoods(
                edge_index, batch.num_sampled_edges, batch.num_sampled_nodes[0], self.hparams.cold_start_rate
            )
        adjacencies = layer_adjacencies(edge_index, batch.num_sampled_nodes, batch.num_sampled_edges, self.hparams.num_layers)
        z = self.model(batch.x, [a.to(self.device) for a in adjacencies])
        i, j = batch.edge_label_index
        outputs = self.heads(z[i], z[j])
        loss, parts = multitask_loss(outputs, batch.edge_label, pair_labels(batch.genre, i, j),
                                     pair_similarity(batch.sim, batch.has_sim, i, j), self.hparams.task_weights)  # fmt: skip
        size = len(i)
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=size)
        for task in TASKS:
            self.log(f"{stage}_{task}_loss", parts[task], batch_size=size)
        if stage == "val":
            self.val_auc.update(outputs[:, 0], batch.edge_label.long())
            self.log("val_auc", self.val_auc, prog_bar=True, batch_size=size)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def predict_step(self, batch, batch_idx):
        x, adjacency = batch
        return self.model(x, [adjacency] * self.hparams.num_layers)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def _drop_seed_neighbourhoods(edge_index, num_sampled_edges, num_seeds: int, rate: float):
    """Remove every edge into a random `rate` of the seeds, so that the model also learns to embed a
    track from its own features alone (the cold-start case of a new track in no playlist)."""
    dropped = torch.rand(num_seeds) < rate
    keep = torch.ones(edge_index.shape[1], dtype=torch.bool)
    targets = edge_index[1]
    into_seed = targets < num_seeds
    keep[into_seed] = ~dropped[targets[into_seed]]
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
    """Everything MUSIG trains on or embeds: nodes, graph, features and task labels."""

    node_ids: list[str]
    graph: CSRGraph
    data: Data
    spec: FeatureSpec
    similarity_group: str | None


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
    x, spec, _ = build_features(store, node_ids, csr, groups, genres=genres, playlists=playlists, spec=spec)
    sim = has_sim = None
    if similarity_group is not None:
        # Scaled like the input features when the group is one of them, else fitted on its own.
        sim_spec = _only(spec, similarity_group) if similarity_group in spec.groups else None
        sim, _, mask = build_features(store, node_ids, csr, [similarity_group], genres=genres,
                                      playlists=playlists, spec=sim_spec)  # fmt: skip
        has_sim = mask[:, 0]
    return assemble_musig_data(node_ids, csr, x, genres, spec, similarity_group, sim, has_sim)


def assemble_musig_data(
    node_ids: list[str],
    graph: CSRGraph,
    x: np.ndarray,
    genres: dict[str, str | None],
    spec: FeatureSpec,
    similarity_group: str | None = None,
    sim: np.ndarray | None = None,
    has_sim: np.ndarray | None = None,
) -> MusigData:
    """`MusigData` from node features [N, F], genre labels by track id, and the similarity task's
    feature rows [N, d] with a mask of the tracks that have them (both None: no similarity task)."""
    names = sorted({g for g in genres.values() if g})
    index = {g: i for i, g in enumerate(names)}
    genre = torch.tensor([index.get(genres.get(t), -1) for t in node_ids])
    if sim is None:
        sim_t, has_sim_t = torch.zeros(len(node_ids), 1), torch.zeros(len(node_ids), dtype=torch.bool)
    else:
        sim_t = F.normalize(torch.from_numpy(np.asarray(sim, np.float32)), dim=-1)
        has_sim_t = torch.from_numpy(np.asarray(has_sim, bool))
    data = Data(x=torch.from_numpy(np.asarray(x, np.float32)), genre=genre, sim=sim_t, has_sim=has_sim_t,
                num_nodes=len(node_ids))  # fmt: skip
    return MusigData(node_ids, graph, data, spec, similarity_group)


def _only(spec: FeatureSpec, group: str) -> FeatureSpec:
    """The part of a spec that concerns one group."""
    return FeatureSpec(
        groups=[group],
        spaces={k: v for k, v in spec.spaces.items() if k == group},
        models={k: v for k, v in spec.models.items() if k == group},
        minimum={k: v for k, v in spec.minimum.items() if k == group},
        maximum={k: v for k, v in spec.maximum.items() if k == group},
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


def train_musig(
    store: Store,
    *,
    features: str | list[str] | None = None,
    similarity: str | None = "auto",
    max_epochs: int = 30,
    patience: int = 5,
    batch_size: int = 512,
    batches_per_epoch: int | None = None,
    val_fraction: float = 0.05,
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
    `options`: keyword arguments of `MusigModule` (task_weights, lr, hidden_channels, fanouts, ...).
    `musig_data`, `register=False` and `models_dir` (checkpoints and logs; default beside the store)
    are for evaluations that train on a held-out split.
    """
    quiet_lightning()
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    (module_options,) = split_options(options, MusigModule)
    L.seed_everything(seed, workers=True, verbose=False)
    if musig_data is None:
        groups = parse_groups(features) if features else available_groups(store)
        if similarity not in ("auto", None, *GROUP_SPACES):
            raise ConfigError(f"--similarity must be auto, none, {' or '.join(GROUP_SPACES)}; got {similarity!r}")
        similarity_group = default_similarity_group(store) if similarity == "auto" else similarity
        musig_data = prepare_musig_data(store, groups, similarity_group=similarity_group)
    data = musig_data
    if data.graph.num_edges == 0:
        raise ConfigError(f"{store.path}: the graph has no edges to train on (run `audiograph build-graph`)")

    generator = torch.Generator().manual_seed(seed)
    train_graph, train_edges, (val_pairs, val_labels) = split_edges(data.graph, val_fraction, generator)
    module = MusigModule(data.data.num_features, features=data.spec.to_dict(), similarity_group=data.similarity_group,
                         **module_options)  # fmt: skip
    sampler = UniformNeighborSampler(train_graph, list(module.hparams.fanouts))
    # PyG's loaders fill a batch's edge_index only if the data has one; the sampler's graph is the truth.
    pyg_data = copy.copy(data.data)
    pyg_data.edge_index = train_graph.to_edge_index()
    datamodule = LightningLinkData(
        pyg_data,
        input_train_edges=train_edges,
        input_val_edges=val_pairs,
        input_val_labels=val_labels,
        link_sampler=sampler,
        neg_sampling="binary",
        eval_loader_kwargs={"neg_sampling": None},
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
    models_dir = Path(models_dir) if models_dir is not None else store.models_dir
    model_id = store.new_model_id(MUSIG_KIND, models_dir)
    checkpoint = ModelCheckpoint(dirpath=models_dir / model_id / "checkpoints", monitor="val_auc", mode="max", save_last=True)
    throughput = TrainingThroughput(count=lambda batch: batch.num_sampled_nodes[0])  # seed nodes
    trainer = L.Trainer(
        max_epochs=max_epochs,
        limit_train_batches=batches_per_epoch or 1.0,
        accelerator=accelerator,
        devices=devices,
        logger=CSVLogger(models_dir, name=model_id, version=""),
        callbacks=[checkpoint, throughput, EarlyStopping(monitor="val_auc", mode="max", patience=patience)],
        enable_progress_bar=show_progress(quiet),
        enable_model_summary=False,
        log_every_n_steps=5,
    )
    trainer.fit(module, datamodule=datamodule)
    best = checkpoint.best_model_path or checkpoint.last_model_path
    metrics = best_epoch_metrics(Path(trainer.logger.log_dir) / "metrics.csv", "val_auc", mode="max")
    metrics["train_seeds_per_second"] = throughput.per_second
    report = TrainMusigReport(model_id, str(best), trainer.current_epoch, data.spec.groups, data.similarity_group,
                              tuple(module.hparams.task_weights), metrics, seeds_per_second=throughput.per_second)  # fmt: skip
    if register:
        config = {**dict(module.hparams),
                  "batch_size": batch_size, "val_fraction": val_fraction, "seed": seed, "max_epochs": max_epochs}  # fmt: skip
        store.register_model(model_id, MUSIG_KIND, MUSIG_SPACE, checkpoint=best, config=config, metrics=metrics)
        report.embedded = embed_musig(store, model_id, accelerator=accelerator)
    return report


def load_musig(store: Store, model_id: str | None = None) -> tuple[MusigModule, dict]:
    """(the trained module, its registry row) for a MUSIG model id, or the newest."""
    row = musig_model_row(store, model_id)
    return MusigModule.load_from_checkpoint(row["checkpoint"], map_location="cpu").eval(), row


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
