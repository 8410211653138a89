"""Graph-supervised training of the audio encoder: positives and negatives by playlist-graph distance,
a multi-positive contrastive loss over in-batch negatives (or the blog's cosine triplet loss), and a
guard that compares the trained space with the descriptors and the untrained encoder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import lightning as L
import numpy as np
import torch

from audiograph.audio.config import AudioConfig
from audiograph.errors import ConfigError
from audiograph.eval.neighbours import neighbour_precision_at_k
from audiograph.models.acoustic import ACOUSTIC_KIND, AcousticModel, combine_with_descriptors
from audiograph.options import check_options
from audiograph.pipelines.build_graph import load_graph
from audiograph.pipelines.fit import FitResult, fit_and_register, split_options
from audiograph.runtime import keyword_defaults, leaves_process_settings, limit_threads, quiet_lightning
from audiograph.store import ACOUSTIC_SPACE, DESCRIPTORS_SPACE, Store, VectorIndex
from audiograph.store.index import column_statistics
from audiograph.training.audio import GUARD_K, MONITOR, AudioEncoderModule
from audiograph.training.audio_data import GraphAudioData


class CachedMels:
    """Reads a track's cached log-mel chunks from the store, with one connection per process."""

    def __init__(self, db_path: str):
        self.db_path, self._store, self._pid = db_path, None, None

    def __call__(self, track_id: str) -> list[np.ndarray]:
        if self._pid != os.getpid():  # DataLoader workers must not share the parent's connection
            self._store, self._pid = Store(self.db_path, must_exist=True), os.getpid()
        return self._store.mels.chunks([track_id])[track_id]

    def __getstate__(self):
        return {"db_path": self.db_path, "_store": None, "_pid": None}


def raw_descriptors(store: Store, track_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """(ids, rows) of the descriptor space for those of `track_ids` that have descriptors, as stored."""
    ids, matrix = store.vectors.matrix(DESCRIPTORS_SPACE)
    row = {t: i for i, t in enumerate(ids)}
    keep = [t for t in track_ids if t in row]
    return keep, matrix[[row[t] for t in keep]]


def standardised_descriptors(store: Store, track_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """(ids, rows) of the descriptor space for those of `track_ids` that have descriptors, z-scored over
    them and L2-normalised: the space a descriptor search uses."""
    keep, rows = raw_descriptors(store, track_ids)
    return keep, VectorIndex(keep, rows, standardize=True).matrix


@dataclass
class TrainAudioReport:
    """The outcome of `train_audio`. `guard`: validation graph-neighbour precision@k of the trained
    space, the descriptors and the untrained encoder, and whether the trained space is worse (then said in
    `warnings`)."""

    model_id: str
    checkpoint: str
    epochs: int
    metrics: dict = field(default_factory=dict)
    embedded: int = 0
    crops_per_second: float = 0.0
    guard: dict = field(default_factory=dict)
    space: str = ACOUSTIC_SPACE
    warnings: list[str] = field(default_factory=list)

    def guard_line(self) -> str:
        """The guard's figures in one line: the trained space (and, where it joins the descriptors, the encoder
        alone), the descriptors and the untrained encoder, on the same validation tracks."""
        return f"graph-neighbour precision@{GUARD_K} of {self.guard['val_tracks']} validation tracks: {_figures(self.guard)}"


# The descriptor weights `descriptor_weight="auto"` chooses from on the validation tracks.
DESCRIPTOR_WEIGHTS = (0.0, 0.25, 0.5, 0.75)


def parse_descriptor_weight(value: float | str) -> float | str:
    """ "auto", or a number in [0, 1) (given as a number or as text)."""
    if value == "auto":
        return value
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = float("nan")
    if not 0 <= weight < 1:
        raise ConfigError(f"descriptor weight must be auto or a number in [0, 1), got {value!r}")
    return weight


def compare_with_inputs(
    store: Store,
    datamodule: GraphAudioData,
    module: AudioEncoderModule,
    seed: int,
    k: int = GUARD_K,
    *,
    descriptor_weight: float | str,
) -> dict:
    """Graph-neighbour precision@k of the validation tracks in three spaces over the same tracks: the
    trained acoustic space of `module`, the z-scored descriptors and the same encoder untrained (seeded
    by `seed`, with the trained encoder's input statistics).

    The trained space joins the descriptors with `descriptor_weight` ("auto": the one of
    `DESCRIPTOR_WEIGHTS` with the best validation precision, 0 on a tie), which this sets on `module`'s
    model; the guard also reports the encoder alone (`encoder_precision_at_k`) and the weight."""
    trained = module.model
    ids = datamodule.eligible_ids()
    described, raw = raw_descriptors(store, ids)
    mean, scale = column_statistics(raw)
    position = {t: i for i, t in enumerate(datamodule.node_ids)}
    nodes = torch.tensor([position[t] for t in described], dtype=torch.int64)
    in_nodes = torch.zeros(len(datamodule.node_ids), dtype=torch.bool)
    in_nodes[nodes] = True
    queries = datamodule.val_nodes[in_nodes[datamodule.val_nodes]]
    row = {t: i for i, t in enumerate(ids)}
    keep = [row[t] for t in described]

    torch.manual_seed(seed)
    untrained = AcousticModel(trained.config, trained.encoder_options)
    if untrained.encoder.input_norm_kind == "collection":
        untrained.encoder.set_input_statistics(trained.encoder.band_mean, trained.encoder.band_std)
    encoded = datamodule.embed_eligible(trained)[keep]
    standardised = torch.from_numpy((raw - mean) / scale)

    def precision(vectors: torch.Tensor) -> float:
        return neighbour_precision_at_k(datamodule.graph, nodes, vectors, queries, k)

    by_weight = {w: precision(combine_with_descriptors(encoded, standardised, w)) for w in DESCRIPTOR_WEIGHTS}
    weight = max(by_weight, key=lambda w: (by_weight[w], -w)) if descriptor_weight == "auto" else descriptor_weight
    if weight not in by_weight:
        by_weight[weight] = precision(combine_with_descriptors(encoded, standardised, weight))
    trained.combine_descriptors(weight, mean, scale)
    guard = {
        f"trained_precision_at_{k}": by_weight[weight],
        f"descriptors_precision_at_{k}": precision(standardised),
        f"untrained_precision_at_{k}": precision(datamodule.embed_eligible(untrained)[keep]),
        f"encoder_precision_at_{k}": by_weight[0.0],
        "descriptor_weight": weight,
    }
    guard["val_tracks"] = len(queries)
    trained_value = guard[f"trained_precision_at_{k}"]
    guard["worse_than"] = [s for s in ("descriptors", "untrained") if trained_value < guard[f"{s}_precision_at_{k}"]]
    return guard


def audio_data(store: Store, audio: AudioConfig | None = None, **options) -> GraphAudioData:
    """The encoder's training data over the store's graph and log-mel cache (`options`: keyword
    arguments of `GraphAudioData`)."""
    audio = audio or AudioConfig()
    node_ids, graph = load_graph(store)
    cached = store.mels.states()
    signature = audio.signature()
    eligible = torch.tensor([cached.get(t, (None, None))[1] == signature for t in node_ids])
    return GraphAudioData(node_ids, graph, eligible, CachedMels(str(store.path)), audio, **options)


@leaves_process_settings
def train_audio(
    store: Store,
    *,
    space: str | None = None,
    max_epochs: int = 10,
    patience: int = 4,
    accelerator: str = "auto",
    devices="auto",
    strategy="auto",
    num_nodes: int = 1,
    quiet: bool = False,
    descriptor_weight: float | str = 0.25,
    **options,
) -> TrainAudioReport | None:
    """Train the acoustic model on the store's graph and mel cache, register it as filling `space`
    (default: acoustic), re-embed every cached track into it, and compare the trained space with the
    descriptors and the untrained encoder on the validation tracks (printed, with a warning on stderr
    when the trained space is worse).

    `accelerator`, `devices`, `strategy` and `num_nodes` go to Lightning (`strategy="ddp"`: every process
    runs this call). Only global rank 0 measures the guard, registers, re-embeds and gets a report: the
    other ranks get None.

    `descriptor_weight`: how much of the trained space's cosine comes from the standardised descriptors
    (`AcousticModel`), from 0 (the encoder alone) to below 1, or "auto": the best of `DESCRIPTOR_WEIGHTS`
    on the validation tracks. The default, 0.25, helped on every fold of the real-music benchmark, where
    "auto", choosing on a few validation tracks, sometimes chose worse.

    `options` are keyword arguments of `AudioEncoderModule` (loss, lr, temperature, encoder, ...)
    and of `GraphAudioData` (batch_size, crop_seconds, views, d_pos, weight_power, seed, ...).
    """
    check_options(max_epochs=max_epochs, patience=patience, num_nodes=num_nodes, **options)
    descriptor_weight = parse_descriptor_weight(descriptor_weight)
    quiet_lightning()
    limit_threads()
    space = space or ACOUSTIC_SPACE
    store.models.check_space(space, ACOUSTIC_KIND)
    store.check_writable()
    module_options, data_options = split_options(options, AudioEncoderModule, GraphAudioData)
    seed = data_options.get("seed", keyword_defaults(GraphAudioData)["seed"])
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = audio_data(store, **data_options)
    datamodule.setup()
    # Its setup takes the collection's band statistics from the data module, and reloads examples every epoch.
    module = AudioEncoderModule(audio=datamodule.audio.to_dict(), **module_options)
    config = {**datamodule.hparams, "max_epochs": max_epochs, "patience": patience, **_split_sizes(datamodule)}
    guard = {}

    def compare(fit: FitResult, _runs: list[FitResult]) -> dict:
        guard.update(compare_with_inputs(store, datamodule, fit.module, seed, descriptor_weight=descriptor_weight))
        fit.module.model.save(fit.saved)  # with the descriptor weight and statistics just chosen
        figures = {f"val_{k}": v for k, v in guard.items() if k.endswith(f"_at_{GUARD_K}")}
        return {"train_crops_per_second": fit.per_second, **figures}

    def vectors(fit: FitResult) -> dict | None:
        return cached_track_vectors(store, fit.module.model, datamodule.eligible_ids()) if fit.writer else None

    fit = fit_and_register(
        store,
        [module],
        datamodule,
        kind=ACOUSTIC_KIND,
        space=space,
        monitor=MONITOR,
        config=config,
        add_metrics=compare,
        vectors=vectors,
        max_epochs=max_epochs,
        patience=patience,
        seed=seed,
        count=_crops,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        quiet=quiet,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
    )
    if not fit.writer:
        return None
    report = TrainAudioReport(
        fit.model_id, str(fit.saved), fit.epochs, fit.metrics, fit.embedded, fit.per_second, guard, space
    )
    if guard["worse_than"]:
        report.warnings.append(
            f"the trained acoustic space is worse than the {' and the '.join(guard['worse_than'])} on its"
            f" validation tracks ({_figures(guard)}); more playlists, or other training options, may help"
        )
    return report


def _split_sizes(datamodule: GraphAudioData) -> dict:
    return {"train_tracks": int(datamodule.train_eligible.sum()), "val_tracks": len(datamodule.val_nodes)}


def _crops(batch) -> int:
    """Crops in a batch: three per triplet; the views of a contrastive batch."""
    return sum(map(len, batch)) if len(batch) == 3 else len(batch[0])


def _figures(guard: dict) -> str:
    k = GUARD_K
    trained = f"trained encoder {guard[f'trained_precision_at_{k}']:.3f}"
    if guard.get("descriptor_weight"):  # the space it fills joins the descriptors: say what each part scores
        trained = (
            f"acoustic space {guard[f'trained_precision_at_{k}']:.3f} (the trained encoder joined with the"
            f" descriptors at weight {guard['descriptor_weight']:g}; the trained encoder alone"
            f" {guard[f'encoder_precision_at_{k}']:.3f})"
        )
    return (
        f"{trained},"
        f" descriptors {guard[f'descriptors_precision_at_{k}']:.3f},"
        f" untrained encoder {guard[f'untrained_precision_at_{k}']:.3f}"
    )


def cached_track_vectors(
    store: Store, model: AcousticModel, track_ids: list[str], batch_size: int = 32
) -> dict[str, np.ndarray]:
    """Vectors of tracks from the mel cache (no decoding) and, for a model that joins them, the stored
    descriptors (tracks without are left out)."""
    mels = CachedMels(str(store.path))
    descriptors = None
    if model.uses_descriptors:
        track_ids, described = raw_descriptors(store, track_ids)
        descriptors = dict(zip(track_ids, described))
    vectors = {}
    for start in range(0, len(track_ids), batch_size):
        part = track_ids[start : start + batch_size]
        rows = np.stack([descriptors[t] for t in part]) if descriptors is not None else None
        encoded = model.encode_chunks([mels(t) for t in part], descriptors=rows)
        vectors.update(zip(part, encoded.numpy()))
    return vectors
