"""`evaluate`: every method on the playlist-completion protocol, over several seeds (the paper's Table 2).

Methods are named `KIND` or `KIND:GROUP[+GROUP...]`, e.g. `cf`, `track2vec`, `track2vec:genre`,
`node2vec`, `graphsage:audio`, `musig:popularity`, `features:acoustic` (a feature group alone);
`musig:acoustic@audio` also names the group the similarity task regresses on (the paper's Table 3).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from audiograph.errors import ConfigError
from audiograph.eval.baselines import (
    CF,
    ContentMetric,
    EmbeddingMethod,
    FeatureOnly,
    Node2Vec,
    Track2Vec,
    l2_normalize,
)
from audiograph.eval.metrics import METRICS, case_metrics, mean_std, paired_test, rank_candidates, summarise
from audiograph.eval.protocol import EvalSplit, make_split
from audiograph.musig.features import FEATURE_GROUPS, FeatureSpec
from audiograph.musig.model import TASK_WEIGHT_PRESETS, parse_task_weights
from audiograph.store import Store

# "musig-PRESET" is MUSIG with a preset's task weights (e.g. musig-content-heavy:audio), "musig" with evaluate's.
MUSIG_PRESET_KINDS = tuple(f"musig-{name}" for name in ("multi", "playlist-heavy", "content-heavy", "auto"))
METHOD_KINDS = ("cf", "track2vec", "node2vec", "graphsage", "musig", "features", "content", *MUSIG_PRESET_KINDS)
# Kinds that need feature groups, and those that take none.
_NEEDS_GROUPS = {"graphsage", "musig", "features", "content", *MUSIG_PRESET_KINDS}
_NO_GROUPS = {"cf", "node2vec"}
DISPLAY_NAMES = {"cf": "CF", "track2vec": "Track2Vec", "node2vec": "Node2Vec", "graphsage": "GraphSAGE",
                 "musig": "MUSIG", "features": "Features only", "content": "Content metric",
                 **{kind: f"MUSIG ({kind[len('musig-'):]})" for kind in MUSIG_PRESET_KINDS}}  # fmt: skip


class MusigMethod(EmbeddingMethod):
    """MUSIG (or, with task weights (1, 0, 0), single-task GraphSAGE) trained on the split's graph only.

    The similarity task regresses on `similarity` ("auto": acoustic vectors where the split has
    them, else audio features).
    """

    def __init__(
        self,
        store: Store,
        features: tuple[str, ...],
        task_weights: str | tuple = "multi",
        similarity: str | None = "auto",
        accelerator: str = "auto",
        **options,
    ):
        self.store, self.features = store, tuple(features)
        # "auto": the paper's grid search over task-weight presets, on the split's own validation.
        self.task_weights = "auto" if task_weights == "auto" else parse_task_weights(task_weights)
        self.name = "GraphSAGE" if self.task_weights[1:] == (0.0, 0.0) else "MUSIG"
        # Training options (max_epochs, patience, ...) default to train-musig's, the ones users get.
        self.similarity, self.accelerator, self.options = similarity, accelerator, options

    def embed(self, split: EvalSplit) -> np.ndarray:
        from audiograph.musig.training import MusigModule, assemble_musig_data, musig_vectors, train_musig

        similarity = self.similarity
        if similarity == "auto":
            similarity = next((g for g in ("acoustic", "audio") if g in split.features), None)
        if self.task_weights != "auto" and self.task_weights[2] == 0:
            similarity = None
        x = np.concatenate([split.features[g] for g in self.features], axis=1)
        x_cold = np.concatenate([split.cold.get(g, split.features[g]) for g in self.features], axis=1)
        sim = split.features[similarity] if similarity else None
        has_sim = split.present[similarity] if similarity else None
        data = assemble_musig_data(split.node_ids, split.graph, x, split.genres, FeatureSpec(groups=list(self.features)),
                                   similarity, sim, has_sim, x_cold=x_cold, playlists=split.train_playlists)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="audiograph-eval-") as run_dir:
            report = train_musig(
                self.store, musig_data=data, register=False, models_dir=run_dir, task_weights=self.task_weights,
                seed=split.seed, accelerator=self.accelerator, quiet=True, **self.options,
            )  # fmt: skip
            from audiograph.weights import weights_only_loading

            with weights_only_loading(report.checkpoint):
                module = MusigModule.load_from_checkpoint(report.checkpoint, map_location="cpu", weights_only=True)
            module.eval()
        return musig_vectors(module, data, self.accelerator).numpy()


@dataclass(frozen=True)
class MethodSpec:
    """A method of the results table: its kind and the feature groups it uses."""

    kind: str
    groups: tuple[str, ...] = ()
    similarity: str | None = None  # MUSIG's similarity-task group, when not the default

    @property
    def label(self) -> str:
        return self.kind + (":" + "+".join(self.groups) if self.groups else "") + (f"@{self.similarity}" if self.similarity else "")

    @property
    def display(self) -> tuple[str, str]:
        """(method, features) as the results table prints them."""
        method = DISPLAY_NAMES[self.kind] + (f" ({self.similarity.upper()} task)" if self.similarity else "")
        return method, "+".join(g.upper() for g in self.groups) or "-"


def parse_methods(names: list[str] | str, available: list[str]) -> list[MethodSpec]:
    """Method names ("musig:audio", comma-separated or a list) -> specs, checked against the groups
    the store can supply."""
    if isinstance(names, str):
        names = [names]
    specs = []
    for name in (n.strip() for text in names for n in text.split(",") if n.strip()):
        kind, _, groups_text = name.lower().partition(":")
        groups_text, _, similarity = groups_text.partition("@")
        groups = tuple(g for g in groups_text.split("+") if g)
        if kind not in METHOD_KINDS:
            raise ConfigError(f"unknown method '{name}'; choose from {', '.join(METHOD_KINDS)} (e.g. musig:audio)")
        if similarity and (not kind.startswith("musig") or similarity not in ("audio", "acoustic")):
            raise ConfigError(f"method '{name}': only musig takes a similarity task, @audio or @acoustic")
        unknown = [g for g in groups if g not in FEATURE_GROUPS]
        if unknown:
            raise ConfigError(f"method '{name}': unknown feature group(s) {', '.join(unknown)}")
        missing = [g for g in (*groups, *([similarity] if similarity else [])) if g not in available]
        if missing:
            raise ConfigError(f"method '{name}': the store has no {', '.join(missing)} features (it has {', '.join(available)})")
        if kind in _NEEDS_GROUPS and not groups:
            raise ConfigError(f"method '{name}' needs feature groups, e.g. {kind}:{available[0]}")
        if kind in _NO_GROUPS and groups:
            raise ConfigError(f"method '{kind}' takes no feature groups")
        specs.append(MethodSpec(kind, groups, similarity or None))
    if not specs:
        raise ConfigError("no method given")
    return specs


def default_methods(groups: list[str]) -> list[MethodSpec]:
    """The paper's Table 2 for the groups at hand, plus the content-only references: each group's
    z-scored features alone and together, and the learnt content metric on all groups."""
    specs = [MethodSpec("cf"), MethodSpec("track2vec"), MethodSpec("node2vec")]
    for kind in ("track2vec", "graphsage", "musig", "features"):
        specs += [MethodSpec(kind, (g,)) for g in groups]
        if len(groups) > 1:
            specs.append(MethodSpec(kind, tuple(groups)))  # all of Table 1 at once
    specs.append(MethodSpec("content", tuple(groups)))
    return specs


def build_method(spec: MethodSpec, store: Store, task_weights="multi", accelerator: str = "auto",
                 musig_options: dict | None = None) -> EmbeddingMethod:  # fmt: skip
    """The embedding method behind a spec."""
    if spec.kind == "cf":
        return CF()
    if spec.kind == "track2vec":
        return Track2Vec(features=spec.groups)
    if spec.kind == "node2vec":
        return Node2Vec()
    if spec.kind == "features":
        return FeatureOnly(spec.groups[0]) if len(spec.groups) == 1 else _Concatenated(spec.groups)
    if spec.kind == "content":
        return ContentMetric(spec.groups)
    weights = TASK_WEIGHT_PRESETS["graphsage"] if spec.kind == "graphsage" else task_weights
    if spec.kind in MUSIG_PRESET_KINDS:
        weights = spec.kind[len("musig-") :]
    return MusigMethod(store, spec.groups, task_weights=weights, similarity=spec.similarity or "auto",
                       accelerator=accelerator, **(musig_options or {}))  # fmt: skip


class _Concatenated(EmbeddingMethod):
    """Several z-scored feature groups side by side (a content-only reference): every dimension
    weighs the same in the cosine, as in a model's input layer."""

    def __init__(self, groups: tuple[str, ...]):
        self.name, self.features = "Features", tuple(groups)

    def embed(self, split: EvalSplit) -> np.ndarray:
        return np.concatenate([FeatureOnly(g).embed(split) for g in self.features], axis=1)


def held_out_playlists(store: Store, sources: list) -> tuple[list[dict], int]:
    """Playlists read from `sources` and matched to stored tracks, as {id, name, tracks}; and how many
    entries matched nothing."""
    from audiograph.graph.build import match_playlists
    from audiograph.graph.readers import read_sources

    playlists, _, _ = read_sources(sources)
    matched, unmatched = match_playlists(store, playlists)
    return [{"id": pid, "name": name, "tracks": tracks} for pid, name, _, _, tracks in matched], len(unmatched)


def score_cases(vectors: np.ndarray, split: EvalSplit) -> list[dict[str, float]]:
    """Per-playlist metrics of one method's vectors on a split's cases."""
    return [case_metrics(rank_candidates(vectors, c.seeds, c.candidates), c.targets) for c in split.cases]


@dataclass
class MethodResult:
    """One row of the results table: mean and std over seeds, and every per-playlist score."""

    spec: MethodSpec
    mean: dict[str, float]
    std: dict[str, float]
    per_case: list[dict[str, float]]  # over all seeds, in (seed, playlist) order
    playlists: list[str]  # the playlist of each entry of per_case
    n_playlists: int
    seconds: float
    p_value: float | None = None  # paired Wilcoxon on per-playlist HR against the best method

    def to_json(self) -> dict:
        method, features = self.spec.display
        return {"method": method, "features": features, **{m: self.mean[m] for m in METRICS},
                "n_playlists": self.n_playlists, "std": self.std, "p_value_vs_best": self.p_value,
                "seconds": round(self.seconds, 2), "label": self.spec.label}  # fmt: skip

    def per_playlist(self, metric: str = "HR") -> dict[str, float]:
        """playlist id -> its score averaged over the seeds that evaluated it (for paired tests)."""
        sums: dict[str, list[float]] = {}
        for playlist, scores in zip(self.playlists, self.per_case):
            sums.setdefault(playlist, []).append(scores[metric])
        return {p: float(np.mean(v)) for p, v in sums.items()}


def compare(a: MethodResult, b: MethodResult, metric: str = "HR") -> float:
    """p-value of a paired Wilcoxon test between two methods' per-playlist scores (seeds averaged)."""
    x, y = a.per_playlist(metric), b.per_playlist(metric)
    common = sorted(set(x) & set(y))
    return paired_test(np.array([x[p] for p in common]), np.array([y[p] for p in common]))


@dataclass
class Evaluation:
    """`evaluate`'s outcome: one `MethodResult` per method, and how the splits were made."""

    results: list[MethodResult]
    seeds: list[int]
    info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> list[dict]:
        return [r.to_json() for r in self.results]


def evaluate(
    store: Store,
    *,
    methods: list[str] | str | None = None,
    held_out: list[dict] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    min_length: int = 40,
    seed_fraction: float = 0.5,
    holdout: float = 0.2,
    max_playlists: int = 10_000,
    task_weights: str | tuple = "multi",
    musig_options: dict | None = None,
    accelerator: str = "auto",
    progress=None,
) -> Evaluation:
    """Score every method on the playlist-completion protocol once per seed.

    Each seed makes its own split (`make_split`), on which every method is fitted from scratch;
    `held_out` fixes the evaluation playlists (see `make_split`). `progress(text)` is called as
    each method finishes.
    """
    if not seeds:
        raise ConfigError("evaluate needs at least one seed")
    if task_weights != "auto":
        parse_task_weights(task_weights)  # fail now, not after the first methods have trained
    first = make_split(store, held_out=held_out, min_length=min_length, seed_fraction=seed_fraction,
                       holdout=holdout, max_playlists=max_playlists, seed=seeds[0])  # fmt: skip
    groups = list(first.features)
    notes = []
    if methods is None:
        if held_out is None and "acoustic" in groups:
            # The encoder learnt from every stored playlist, held-out ones included.
            groups.remove("acoustic")
            notes.append("acoustic methods left out: the audio encoder was trained on the stored graph, held-out"
                          " playlists included; keep evaluation playlists out of build-graph and pass them with"
                          " --playlists to compare them")  # fmt: skip
        specs = default_methods(groups)
    else:
        specs = parse_methods(methods, groups)
    if held_out is None and any("acoustic" in (*s.groups, s.similarity) for s in specs):
        notes.append("the acoustic encoder was trained on the stored graph, held-out playlists included; for a"
                     " leak-free acoustic comparison, keep evaluation playlists out of build-graph and pass them"
                     " with --playlists")  # fmt: skip
    elif held_out is None:
        # Nor may MUSIG's similarity task fall back on the acoustic vectors.
        first.features.pop("acoustic", None)
        first.present.pop("acoustic", None)
    per_seed: dict[MethodSpec, list[list[dict]]] = {s: [] for s in specs}
    case_playlists: list[str] = []
    seconds = {s: 0.0 for s in specs}
    for seed in seeds:
        split = first if seed == seeds[0] else make_split(
            store, groups=list(first.features), held_out=held_out, min_length=min_length, seed_fraction=seed_fraction,
            holdout=holdout, max_playlists=max_playlists, seed=seed)  # fmt: skip
        case_playlists += [c.playlist_id for c in split.cases]
        for spec in specs:
            started = time.perf_counter()
            method = build_method(spec, store, task_weights, accelerator, musig_options)
            vectors = np.asarray(method.embed(split), np.float32)
            per_seed[spec].append(score_cases(vectors, split))
            seconds[spec] += time.perf_counter() - started
            if progress:
                progress(f"seed {seed}: {spec.label} HR {summarise(per_seed[spec][-1])['HR']:.3f}"
                         f" ({time.perf_counter() - started:.1f} s)")  # fmt: skip

    results = []
    for spec in specs:
        stats = mean_std([summarise(cases) for cases in per_seed[spec]])
        flat = [c for cases in per_seed[spec] for c in cases]
        results.append(MethodResult(spec, {m: stats[m][0] for m in METRICS}, {m: stats[m][1] for m in METRICS},
                                    flat, case_playlists, len(per_seed[spec][0]), seconds[spec]))  # fmt: skip
    best = max(results, key=lambda r: r.mean["HR"])
    for r in results:
        if r is not best:
            r.p_value = compare(best, r)
    info = {**first.info, "seeds": list(seeds), "best": best.spec.label}
    return Evaluation(results, list(seeds), info, notes)


def format_results(evaluation: Evaluation, markdown: bool = False) -> str:
    """The results as the paper's Table 2: method, features, HR, MRR, P@1/5/10, NDCG@1/5/10 (mean ± std)."""
    from audiograph.tables import format_table

    headers = ["method", "features", *METRICS, "p vs best"]
    rows = []
    for r in evaluation.results:
        cells = [f"{r.mean[m]:.4f} ± {r.std[m]:.4f}" for m in METRICS]
        p = "best" if r.p_value is None else f"{r.p_value:.2g}"
        rows.append([*r.spec.display, *cells, p])
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
        return "\n".join(lines)
    return format_table(headers, rows)
