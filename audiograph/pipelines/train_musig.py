"""train-musig: multi-task training of the aggregator in Lightning, and inductive inference for any track."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch

from audiograph.errors import ConfigError, StoreError
from audiograph.graph.csr import CSRGraph
from audiograph.models.musig import MUSIG_KIND, MusigModel
from audiograph.musig.features import GROUP_SPACES, SIMILARITY_GROUPS, FeatureSpec, content_presence, parse_groups
from audiograph.musig.model import (
    TASK_WEIGHT_PRESETS,
    parse_task_weights,
)
from audiograph.options import check_options
from audiograph.pipelines.build_graph import load_graph
from audiograph.pipelines.features import available_groups, build_features, cold_features, genre_labels
from audiograph.pipelines.fit import FitResult, fit_and_register, split_options
from audiograph.runtime import (
    inference_trainer,
    keyword_defaults,
    leaves_process_settings,
    limit_threads,
    quiet_lightning,
)
from audiograph.spaces import GRAPHSAGE_SPACE, MUSIG_SPACE
from audiograph.store import Store
from audiograph.training.distributed import barrier, check_strategy, gather_to_rank_zero
from audiograph.training.musig import MusigModule
from audiograph.training.musig_data import (
    MusigData,
    MusigDataModule,
    NeighbourhoodChunks,
    assemble_musig_data,
)


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
    node_ids, csr = graph or load_graph(store)
    genres, cold_genres = genre_labels(store, genres)
    playlists = store.graph.playlists() if playlists is None else playlists
    x, spec, present = build_features(store, node_ids, csr, groups, genres=genres, playlists=playlists, spec=spec)
    x_cold = cold_features(store, node_ids, spec, cold_genres)
    sim = has_sim = None
    if similarity_group is not None:
        # Scaled like the input features when the group is one of them, else fitted on its own.
        sim_spec = spec.only(similarity_group) if similarity_group in spec.groups else None
        sim, _, mask = build_features(
            store, node_ids, csr, [similarity_group], genres=genres, playlists=playlists, spec=sim_spec
        )
        has_sim = mask[:, 0]
    position = {t: i for i, t in enumerate(node_ids)}
    members = [np.asarray(list(dict.fromkeys(position[t] for t in p["tracks"] if t in position))) for p in playlists]
    return assemble_musig_data(
        node_ids,
        csr,
        x,
        genres,
        spec,
        similarity_group,
        sim,
        has_sim,
        x_cold=x_cold,
        playlists=members,
        has_content=content_presence(dict(zip(spec.groups, present.T))),
    )


def default_similarity_group(store: Store) -> str | None:
    """The content group the similarity task regresses on: acoustic vectors if any, else audio features."""
    spaces = store.vectors.spaces()
    for group in SIMILARITY_GROUPS:
        if any(s in spaces for s in GROUP_SPACES[group]):
            return group
    return None


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
    space: str = MUSIG_SPACE
    imported_groups: list[str] = field(default_factory=list)  # groups a new audio file lacks (`query FILE` cannot)

    @property
    def model_name(self) -> str:
        """ "GraphSAGE" for the playlist task alone (task weights c, 0, 0), else "MUSIG"."""
        return "GraphSAGE" if self.task_weights[1] == self.task_weights[2] == 0 else "MUSIG"

    @property
    def similarity_task(self) -> str | None:
        """The group the similarity task regresses on, or None where its weight is 0."""
        return self.similarity_group if self.task_weights[2] > 0 else None


@leaves_process_settings
def train_musig(
    store: Store,
    *,
    features: str | list[str] | None = None,
    similarity: str | None = "auto",
    task_weights: str | tuple = "multi",
    max_epochs: int = 30,
    patience: int = 5,
    batches_per_epoch: int | None = 100,
    accelerator: str = "auto",
    devices="auto",
    strategy="auto",
    num_nodes: int = 1,
    quiet: bool = False,
    musig_data: MusigData | None = None,
    register: bool = True,
    models_dir: str | Path | None = None,
    space: str | None = None,
    **options,
) -> TrainMusigReport | None:
    """Train MUSIG on the store's graph, register it, and write every track's vector into its space.

    `accelerator`, `devices`, `strategy` and `num_nodes` go to Lightning (`strategy="ddp"`: every process
    runs this call). Only global rank 0 registers the model and writes vectors, and only it gets a
    report: the other ranks get None.

    `features`: groups (default: all the store has); `similarity`: the similarity task's group ("auto":
    acoustic, else audio); `task_weights`: c1,c2,c3, a preset, or "auto" (every preset, best kept);
    `options`: of `MusigModule` (lr, fanouts, ...) and `MusigDataModule` (batch_size, val_fraction, seed).
    `musig_data`, `register=False` and `models_dir` are for evaluations that train on a held-out split.
    """
    check_options(max_epochs=max_epochs, patience=patience, batches_per_epoch=batches_per_epoch, **options)
    quiet_lightning()
    limit_threads()
    distributed = {"accelerator": accelerator, "devices": devices, "strategy": strategy, "num_nodes": num_nodes}
    module_options, data_options = split_options(options, MusigModule, MusigDataModule)
    data_options = {**keyword_defaults(MusigDataModule), **data_options}
    data = musig_data or store_musig_data(store, features, similarity)
    if data.graph.num_edges == 0:
        raise ConfigError(f"{store.path}: the graph has no edges to train on (run `audiograph build-graph`)")
    datamodule = MusigDataModule(data, **data_options)
    L.seed_everything(data_options["seed"], workers=True, verbose=False)  # the modules' initial weights too
    space = space or (GRAPHSAGE_SPACE if task_weights == "graphsage" else MUSIG_SPACE)
    if register:
        store.models.check_space(space, MUSIG_KIND)
        store.check_writable()
    best = fit_and_register(
        store,
        _candidate_modules(data, task_weights, module_options),
        datamodule,
        kind=MUSIG_KIND,
        space=space,
        monitor=datamodule.monitor,
        register=register,
        config={**data_options, "max_epochs": max_epochs, "batches_per_epoch": batches_per_epoch},
        add_metrics=functools.partial(_added_metrics, datamodule.monitor, datamodule.features_baseline()),
        vectors=functools.partial(_kept_model_vectors, store, distributed),
        count=_seed_nodes,
        max_epochs=max_epochs,
        patience=patience,
        seed=data_options["seed"],
        quiet=quiet,
        models_dir=models_dir,
        **distributed,
        limit_train_batches=batches_per_epoch or 1.0,
        log_every_n_steps=5,
    )
    report = _report(best, data, space) if best.writer else None
    if report is not None:
        _guard(report)
        report.embedded = best.embedded
    return report


def store_musig_data(store: Store, features: str | list[str] | None, similarity: str | None) -> MusigData:
    """MUSIG's data over the store: `features` groups (default: all it has), and the similarity task on
    `similarity` ("auto": acoustic, else audio; None or "none": none)."""
    groups = parse_groups(features) if features else available_groups(store)
    similarity = None if similarity == "none" else similarity
    if similarity not in ("auto", None, *GROUP_SPACES):
        raise ConfigError(f"similarity must be auto, none, {' or '.join(GROUP_SPACES)}; got {similarity!r}")
    similarity_group = default_similarity_group(store) if similarity == "auto" else similarity
    return prepare_musig_data(store, groups, similarity_group=similarity_group)


def _report(best: FitResult, data: MusigData, space: str) -> TrainMusigReport:
    hparams = dict(best.module.hparams)
    return TrainMusigReport(
        best.model_id,
        str(best.saved),
        best.epochs,
        data.spec.groups,
        data.similarity_group,
        tuple(hparams["task_weights"]),
        best.metrics,
        seeds_per_second=best.per_second,
        hparams=hparams,
        space=space,
        imported_groups=data.spec.imported_groups(),
    )


def _candidate_modules(data: MusigData, task_weights, module_options: dict) -> list[MusigModule]:
    """One module per candidate task weighting: every preset for "auto" (the paper's grid search)."""
    candidates = list(TASK_WEIGHT_PRESETS.values()) if task_weights == "auto" else [parse_task_weights(task_weights)]
    return [
        MusigModule(
            data.data.num_features,
            features=data.spec.to_dict(),
            similarity_group=data.similarity_group,
            task_weights=weights,
            num_genres=int(data.data.genre.max()) + 1 if len(data.node_ids) else 0,
            **module_options,
        )
        for weights in candidates
    ]


def _seed_nodes(batch) -> int:
    return batch.num_sampled_nodes[0]


def _added_metrics(monitor: str, baseline: float, fit: FitResult, runs: list[FitResult]) -> dict:
    """Metrics recorded with the model: its training throughput, the z-scored input features' `monitor` metric
    (`val_hr_features` or `val_auc_features`: the bar it must clear), and single-task GraphSAGE's hit rate when
    the grid search (`--task-weights auto`) trained it anyway, and each of the grid's runs' `monitor` metric
    (`val_hr_grid_multi`, ...)."""
    added = {"train_seeds_per_second": fit.per_second}
    if monitor in fit.metrics:
        added[f"{monitor}_features"] = baseline
    graphsage = TASK_WEIGHT_PRESETS["graphsage"]
    presets = {weights: name for name, weights in TASK_WEIGHT_PRESETS.items()}
    for run in runs:
        weights = tuple(run.module.hparams["task_weights"])
        if run is not fit and weights == graphsage and "val_hr" in run.metrics:
            added["val_hr_graphsage"] = run.metrics["val_hr"]
        if len(runs) > 1 and monitor in run.metrics:  # what the grid search saw: its other runs are not kept
            added[f"{monitor}_grid_{presets.get(weights, ','.join(map(str, weights)))}"] = run.metrics[monitor]
    return added


def _guard(report: TrainMusigReport) -> None:
    """Warn when MUSIG's validation metric (hit rate on held-out playlists, else link AUC on held-out edges) is
    below that of its own z-scored input features. (Against GraphSAGE there is nothing to warn of: the grid
    that measures it keeps the best of its runs.)"""
    m = report.metrics
    for metric, what, worse in [
        ("val_hr", "validation hit rate", "rank held-out playlists"),
        ("val_auc", "held-out link AUC", "separate held-out co-occurrences from random pairs"),
    ]:
        baseline = m.get(f"{metric}_features")
        if metric in m and baseline is not None and m[metric] < baseline:
            report.warnings.append(
                f"{report.model_name}'s {what} {m[metric]:.3f} is below that of its own z-scored input features"
                f" ({baseline:.3f}):"
                f" its vectors {worse} worse than the features alone"
            )


def musig_model_row(store: Store, model_id: str | None = None, space: str = MUSIG_SPACE) -> dict:
    """The registry row of a MUSIG model id, or of the newest MUSIG model filling `space`."""
    if model_id is None:
        row = (store.models.rows(kind=MUSIG_KIND, space=space) or [None])[-1]
        if row is None:
            raise StoreError(f"{store.path}: no MUSIG model fills space '{space}' (run `audiograph train-musig`)")
        return row
    return store.models.require(model_id, MUSIG_KIND, "MUSIG")


def load_musig(store: Store, model_id: str | None = None, space: str = MUSIG_SPACE) -> tuple[MusigModel, dict]:
    """(the trained model, its registry row) for a MUSIG model id, or the newest filling `space`; only from the
    store's models folder, and weights-only."""
    row = musig_model_row(store, model_id, space)
    return MusigModel.load(store.models.checkpoint_file(row), f"model '{row['id']}'"), row


class MusigPredictor(L.LightningModule):
    """A trained `MusigModel` in Lightning's predict loop over `NeighbourhoodChunks`: each step returns
    the chunk's node ids and their vectors."""

    def __init__(self, model: MusigModel):
        super().__init__()
        self.model = model

    def predict_step(self, batch, batch_idx):
        nodes, positions, x, adjacency = batch
        z = self.model(x, [adjacency] * self.model.num_layers)
        return nodes.cpu(), z[positions].float().cpu()


def predict_musig(
    model: MusigModel,
    x: torch.Tensor,
    graph: CSRGraph,
    *,
    accelerator: str = "auto",
    devices="auto",
    strategy="auto",
    num_nodes: int = 1,
    chunk_size: int = 4096,
) -> torch.Tensor | None:
    """Every node's vector [N, D] from one exact full-neighbourhood pass, as `MusigModel.encode` makes it,
    run through Lightning's predict loop in chunks of `chunk_size` nodes. Under a distributed strategy each
    rank predicts its share of the chunks and global rank 0 gets the whole matrix; the others get None."""
    check_strategy(strategy)
    trainer = inference_trainer(accelerator, devices, strategy=strategy, num_nodes=num_nodes)
    # At least one chunk per rank: Lightning's predict sampler refuses a rank with nothing to do.
    chunk_size = max(1, min(chunk_size, -(-graph.num_nodes // trainer.world_size)))
    chunks = NeighbourhoodChunks(x, graph, model.num_layers, chunk_size)
    loader = torch.utils.data.DataLoader(chunks, batch_size=None)
    outputs = trainer.predict(MusigPredictor(model.eval()), dataloaders=loader)
    gathered = gather_to_rank_zero(outputs)
    if gathered is None:
        return None
    parts = [part for rank_outputs in gathered for part in rank_outputs]
    nodes = torch.cat([p[0] for p in parts])
    if len(nodes) != graph.num_nodes or not torch.equal(torch.sort(nodes).values, torch.arange(graph.num_nodes)):
        raise RuntimeError(f"the predict ranks returned {len(nodes)} vectors for {graph.num_nodes} nodes")
    vectors = torch.empty(graph.num_nodes, parts[0][1].shape[1])
    vectors[nodes] = torch.cat([p[1] for p in parts])
    return vectors


@leaves_process_settings
def embed_musig(
    store: Store,
    model_id: str | None = None,
    *,
    space: str = MUSIG_SPACE,
    accelerator: str = "auto",
    devices="auto",
    strategy="auto",
    num_nodes: int = 1,
) -> int | None:
    """Write the MUSIG vector of every track in the store (new ones included, no retraining) into the
    model's space, by `model_id` or by the newest model filling `space`; returns how many. Under a distributed
    strategy (`predict_musig`) every rank computes a share, and only global rank 0 writes and gets the count
    (the others get None)."""
    model, row = load_musig(store, model_id, space)
    spec = model.spec
    for group, vectors_model in spec.models.items():
        if vectors_model not in store.vectors.spaces().get(spec.spaces[group], {}):
            raise StoreError(
                f"model '{row['id']}' was trained on {spec.spaces[group]} vectors of model '{vectors_model}', which"
                " the store no longer holds; retrain with `audiograph train-musig`"
            )
    vectors = musig_vectors(
        store, model, accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes
    )
    if vectors is None:
        return None
    store.vectors.put(row["space"], row["id"], vectors)
    return len(vectors)


def musig_vectors(store: Store, model: MusigModel, **distributed) -> dict[str, np.ndarray] | None:
    """Every stored track's vector (track id -> vector) from `model`, by `predict_musig` (whose `distributed`
    options it takes): on global rank 0; the other ranks get None."""
    quiet_lightning()
    limit_threads()
    data = prepare_musig_data(store, model.spec.groups, spec=model.spec)
    vectors = predict_musig(model, data.data.x, data.graph, **distributed)
    return None if vectors is None else dict(zip(data.node_ids, vectors.numpy()))


def _kept_model_vectors(store: Store, distributed: dict, fit: FitResult) -> dict[str, np.ndarray] | None:
    """`musig_vectors` of the model a training kept, on every rank: rank 0 has restored and saved it."""
    barrier()
    return musig_vectors(store, MusigModel.load(fit.saved, f"model '{fit.model_id}'"), **distributed)
