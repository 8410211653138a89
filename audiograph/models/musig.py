"""`MusigModel`: the trained aggregators with the feature spec they read, the one object that turns track
features (and, where a track has them, its playlist neighbours) into MUSIG vectors."""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiograph.errors import ConfigError, StoreError
from audiograph.graph.csr import CSRGraph
from audiograph.models import MUSIG_KIND, as_numpy
from audiograph.models.weights import build_and_load, load_checkpoint, read_saved, save_weights
from audiograph.musig.features import SIMILARITY_GROUPS, FeatureSpec
from audiograph.musig.model import MUSIG, edge_index_adjacency, full_adjacency


def graph_adjacency(graph: CSRGraph | torch.Tensor | np.ndarray, num_nodes: int) -> torch.Tensor:
    """The [targets, sources] torch.sparse CSR adjacency MUSIG aggregates over, from a `CSRGraph`, a
    torch.sparse adjacency [N, N] (CSR or COO; its values are ignored, as MUSIG takes the plain mean over
    neighbours), or a PyG `edge_index` [2, E] (integers; an undirected graph lists both directions), for
    `num_nodes` nodes."""
    if isinstance(graph, CSRGraph):
        if graph.num_nodes != num_nodes:
            raise ValueError(f"the graph has {graph.num_nodes} nodes, and there are {num_nodes} feature rows")
        return full_adjacency(graph.rowptr, graph.col, graph.num_nodes)
    graph = torch.as_tensor(graph)
    if graph.layout in (torch.sparse_coo, torch.sparse_csr):
        if tuple(graph.shape) != (num_nodes, num_nodes):
            raise ValueError(
                f"an adjacency of {num_nodes} nodes is [{num_nodes}, {num_nodes}], not {tuple(graph.shape)}"
            )
        # The mean over neighbours, as for the other forms: values (playlist weights, or 2 where a COO
        # tensor listed an edge twice) would scale the neighbours' rows.
        if graph.layout == torch.sparse_csr:
            return full_adjacency(graph.crow_indices(), graph.col_indices(), num_nodes)
        return edge_index_adjacency(graph.coalesce().indices().flip(0), num_nodes)
    if graph.is_floating_point() or graph.dtype == torch.bool:
        raise ValueError(
            f"a dense {tuple(graph.shape)} tensor: pass an adjacency as torch.sparse (`.to_sparse_csr()`), or the"
            " graph as an integer edge_index [2, E]"
        )
    return edge_index_adjacency(graph, num_nodes)


ARCHITECTURE = ("in_channels", "hidden_channels", "out_channels", "num_layers", "dropout", "skip")


def _check_architecture(architecture: dict, spec: FeatureSpec, similarity_group) -> None:
    """Saved settings from elsewhere: sizes are whole numbers, dropout a rate, skip a flag, the input as wide
    as the spec's features and the similarity group a content group (`ConfigError` otherwise)."""
    for name in ("in_channels", "hidden_channels", "out_channels", "num_layers"):
        value = architecture.get(name, 1)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}")
    dropout = architecture.get("dropout", 0.0)
    if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be a rate in [0, 1), not {dropout!r}")
    if not isinstance(architecture["skip"], bool):
        raise ConfigError(f"skip must be true or false, not {architecture['skip']!r}")
    if spec.groups and spec.fitted and architecture.get("in_channels", spec.num_features) != spec.num_features:
        raise ConfigError(
            f"in_channels is {architecture['in_channels']}, and the features are {spec.num_features} wide"
        )
    if similarity_group is not None and similarity_group not in SIMILARITY_GROUPS:
        raise ConfigError(
            f"the similarity group must be one of {', '.join(SIMILARITY_GROUPS)}, not {similarity_group!r}"
        )


class MusigModel(nn.Module):
    """`MUSIG` over the node features a `FeatureSpec` describes (its input width is the spec's, unless
    `in_channels` says otherwise, for features built elsewhere)."""

    kind = MUSIG_KIND

    def __init__(
        self,
        spec: FeatureSpec,
        hidden_channels: int = 256,
        out_channels: int = 128,
        num_layers: int = 2,
        dropout: float = 0.0,
        skip: bool = True,
        similarity_group: str | None = None,
        in_channels: int | None = None,
    ):
        super().__init__()
        self.spec, self.similarity_group = spec, similarity_group
        in_channels = in_channels or spec.num_features
        if in_channels < 1:
            raise ConfigError("a MUSIG model reads node features: give a FeatureSpec with groups, or in_channels")
        values = (in_channels, hidden_channels, out_channels, num_layers, dropout, skip)
        self.architecture = dict(zip(ARCHITECTURE, values))
        self.aggregator = MUSIG(in_channels, hidden_channels, out_channels, num_layers, dropout, skip=skip)

    @property
    def num_layers(self) -> int:
        return len(self.aggregator.convs)

    def forward(self, x: torch.Tensor, adjacencies: list[torch.Tensor] | torch.Tensor | CSRGraph) -> torch.Tensor:
        """Vectors of the nodes of `x` [N, F] over `adjacencies`: one torch.sparse CSR adjacency per layer (a
        sampled subgraph's blocks, `layer_adjacencies`), or one graph for every layer (`graph_adjacency`: a
        `CSRGraph`, a torch.sparse adjacency [N, N], or a PyG `edge_index` [2, E])."""
        # In the parameters' dtype, as Lightning's "64-true" or "bf16-true" makes them; it casts no PyG batch.
        x = torch.as_tensor(x).to(next(self.parameters()).dtype)
        if not isinstance(adjacencies, (list, tuple)):
            adjacencies = [graph_adjacency(adjacencies, len(x))] * self.num_layers
        return self.aggregator(x, [a.to(x.device) for a in adjacencies])

    @torch.no_grad()
    def encode(
        self,
        x: np.ndarray | torch.Tensor,
        graph: CSRGraph | torch.Tensor | None = None,
        *,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | torch.Tensor:
        """Unit vectors [N, D] of N tracks' feature rows `x` [N, F] (built as `spec` says): one exact pass with
        every neighbour in `graph` (see `graph_adjacency`), or, without a graph, each track on its own (a new
        track in no playlist aggregates an empty neighbourhood). `x` may also be a PyG `Data` with `x` and
        `edge_index`. A numpy array, as `AcousticModel.encode` gives; with `convert_to_tensor`, a tensor on
        the model's device."""
        if graph is None and hasattr(x, "x") and hasattr(x, "edge_index"):  # a torch_geometric.data.Data
            x, graph = x.x, x.edge_index
        weight = next(self.parameters())
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if x.dim() != 2 or x.shape[1] != self.architecture["in_channels"]:
            raise ValueError(
                f"x must be feature rows [N, {self.architecture['in_channels']}] (built as the model's spec says),"
                f" not {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            rows = torch.nonzero(~torch.isfinite(x).all(dim=1)).flatten()
            raise ValueError(f"x holds values that are not finite, in {len(rows)} rows (the first: {int(rows[0])})")
        x = x.to(weight.device, weight.dtype)
        was_training = self.training
        self.eval()
        try:
            vectors = self(x, CSRGraph.from_edges([], [], len(x)) if graph is None else graph)
        finally:
            self.train(was_training)
        return vectors if convert_to_tensor else as_numpy(vectors)

    def settings(self) -> dict:
        """What rebuilds this model: kind, architecture, feature spec and similarity group."""
        return {
            "kind": self.kind,
            **self.architecture,
            "features": self.spec.to_dict(),
            "similarity_group": self.similarity_group,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the settings (config.json) and the weights (weights.pt) into `folder`."""
        return save_weights(self, Path(folder), self.settings())

    @classmethod
    def from_settings(cls, settings: dict) -> MusigModel:
        """An untrained model shaped as `settings()` (or a `MusigModule`'s hyperparameters) say."""
        architecture = {k: settings[k] for k in ARCHITECTURE if k in settings}
        architecture.setdefault("skip", False)  # models saved before the skip path had none
        spec = FeatureSpec.from_dict(settings["features"]) if settings.get("features") else FeatureSpec([])
        _check_architecture(architecture, spec, settings.get("similarity_group"))
        return cls(spec, similarity_group=settings.get("similarity_group"), **architecture)

    @classmethod
    def load(cls, path: str | os.PathLike, what: str = "model") -> MusigModel:
        """A model saved by `save` (a folder), or a training checkpoint of a `MusigModule` (a file);
        weights are read weights-only, so loading never runs code."""
        if Path(path).is_dir():
            settings, state = read_saved(path, what, kind=cls.kind)
        else:
            checkpoint = load_checkpoint(path, what)
            settings = checkpoint.get("hyper_parameters", {})
            if "in_channels" not in settings or "hidden_channels" not in settings:
                raise StoreError(f"{what}: {path} is not a training checkpoint of a MUSIG model")
            prefixes = ("model.aggregator.", "model.")
            state = checkpoint.get("state_dict")
            if isinstance(state, dict):
                kept = {}
                for k, v in state.items():
                    prefix = next((p for p in prefixes if str(k).startswith(p)), None)
                    if prefix is not None:
                        kept[f"aggregator.{k.removeprefix(prefix)}"] = v
                state = kept
        return build_and_load(lambda: cls.from_settings(settings), state, path, what).eval()
