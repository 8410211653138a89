"""`evaluate`: every method on the playlist-completion protocol, over several seeds (the paper's Table 2).

Methods are named `KIND` or `KIND:GROUP[+GROUP...]`, e.g. `cf`, `track2vec`, `track2vec:genre`,
`node2vec`, `graphsage:audio`, `musig:popularity`, `features:acoustic` (a feature group alone);
`musig:acoustic@audio` also names the group the similarity task regresses on (the paper's Table 3).
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from audiograph.errors import ConfigError
from audiograph.eval.baselines import (
    CF,
    ContentMetric,
    EmbeddingMethod,
    FeatureOnly,
    Node2Vec,
    Track2Vec,
)
from audiograph.eval.metrics import METRICS, mean_std, summarise
from audiograph.eval.protocol import EvalSplit, completion_cases, decoy_strata, playlist_graph
from audiograph.eval.results import (
    MUSIG_PRESET_KINDS,
    Evaluation,
    MethodResult,
    MethodSpec,
    compare,
    default_methods,
    parse_methods,
    score_cases,
)
from audiograph.graph.csr import CSRGraph
from audiograph.musig.features import SIMILARITY_GROUPS, FeatureSpec, content_presence
from audiograph.musig.model import TASK_WEIGHT_PRESETS, parse_task_weights
from audiograph.options import check_options
from audiograph.pipelines.build_graph import load_graph
from audiograph.pipelines.features import GRAPH_COLUMNS, available_groups, build_features, cold_features, genre_labels
from audiograph.pipelines.fit import EPOCH_LOG_LABEL
from audiograph.runtime import leaves_process_settings
from audiograph.store import Store


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
        quiet: bool = True,
        **options,
    ):
        self.store, self.features, self.quiet = store, tuple(features), quiet
        # "auto": the paper's grid search over task-weight presets, on the split's own validation.
        self.task_weights = "auto" if task_weights == "auto" else parse_task_weights(task_weights)
        self.name = "GraphSAGE" if self.task_weights[1:] == (0.0, 0.0) else "MUSIG"
        # Training options (max_epochs, patience, ...) default to train-musig's, the ones users get.
        self.similarity, self.accelerator, self.options = similarity, accelerator, options

    def embed(self, split: EvalSplit) -> np.ndarray:
        """MUSIG (or GraphSAGE) trained with train-musig's defaults on the split's training graph and features
        (nothing registered, its run folder temporary); every node's vector from one exact pass over that graph."""
        from audiograph.models.musig import MusigModel
        from audiograph.pipelines.train_musig import train_musig
        from audiograph.training.musig_data import assemble_musig_data

        similarity = self.similarity
        if similarity == "auto":
            similarity = next((g for g in SIMILARITY_GROUPS if g in split.features), None)
        if self.task_weights != "auto" and self.task_weights[2] == 0:
            similarity = None
        x = np.concatenate([split.features[g] for g in self.features], axis=1)
        x_cold = np.concatenate([split.cold.get(g, split.features[g]) for g in self.features], axis=1)
        sim = split.features[similarity] if similarity else None
        has_sim = split.present[similarity] if similarity else None
        data = assemble_musig_data(
            split.node_ids,
            split.graph,
            x,
            split.genres,
            FeatureSpec(groups=list(self.features)),
            similarity,
            sim,
            has_sim,
            x_cold=x_cold,
            playlists=split.train_playlists,
            has_content=content_presence({g: split.present[g] for g in self.features}),
        )
        with tempfile.TemporaryDirectory(prefix="audiograph-eval-") as run_dir:
            report = train_musig(
                self.store,
                musig_data=data,
                register=False,
                models_dir=run_dir,
                task_weights=self.task_weights,
                seed=split.seed,
                accelerator=self.accelerator,
                quiet=self.quiet,
                **self.options,
            )
            model = MusigModel.load(report.checkpoint)
        return model.encode(data.data.x, data.graph)


def build_method(
    spec: MethodSpec,
    store: Store,
    task_weights="multi",
    accelerator: str = "auto",
    musig_options: dict | None = None,
    quiet: bool = True,
) -> EmbeddingMethod:
    """The embedding method behind a spec; without `quiet`, MUSIG and GraphSAGE show their training's progress
    (a fit takes minutes on real playlists)."""
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
    return MusigMethod(
        store,
        spec.groups,
        task_weights=weights,
        similarity=spec.similarity or "auto",
        accelerator=accelerator,
        quiet=quiet,
        **(musig_options or {}),
    )


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
    from audiograph.graph.readers import read_sources
    from audiograph.pipelines.build_graph import match_playlists

    playlists, _, _ = read_sources(sources)
    matched, unmatched = match_playlists(store, playlists)
    return [{"id": pid, "name": name, "tracks": tracks} for pid, name, _, _, tracks in matched], len(unmatched)


@leaves_process_settings
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
    if isinstance(seeds, int) or not seeds:
        raise ConfigError(f"evaluate needs a list of one seed or more, not {seeds!r}")
    check_options(min_length=min_length, seed_fraction=seed_fraction, holdout=holdout, max_playlists=max_playlists)
    if task_weights != "auto":
        parse_task_weights(task_weights)  # fail now, not after the first methods have trained
    split_options = dict(
        held_out=held_out,
        min_length=min_length,
        seed_fraction=seed_fraction,
        holdout=holdout,
        max_playlists=max_playlists,
    )
    first = make_split(store, **split_options, seed=seeds[0])
    specs, notes = _method_specs(methods, list(first.features), held_out)
    if held_out is None and not any("acoustic" in (*s.groups, s.similarity) for s in specs):
        # Nor may MUSIG's similarity task fall back on the acoustic vectors.
        first.features.pop("acoustic", None)
        first.present.pop("acoustic", None)

    def method_of(spec: MethodSpec) -> EmbeddingMethod:
        return build_method(spec, store, task_weights, accelerator, musig_options, quiet=progress is None)

    if progress:
        progress(_plan(specs, seeds, musig_options))

    per_seed, case_playlists, seconds = _score_methods(store, specs, first, seeds, split_options, method_of, progress)
    results, best = _method_results(specs, per_seed, case_playlists, seconds)
    info = {**first.info, "seeds": list(seeds), "best": best.spec.label}
    if first.info["eval_playlists"] < FEW_PLAYLISTS:
        notes.append(
            f"only {first.info['eval_playlists']} evaluation playlists: the p values (paired Wilcoxon over them) say"
            " little (with 7 or fewer none can fall below 0.01), and each playlist moves a figure by its share;"
            " hold out more playlists, or count shorter ones (--holdout, --min-length), for firmer figures"
        )
    return Evaluation(results, list(seeds), info, notes)


# Below this many evaluation playlists, a paired Wilcoxon test over them says little: its smallest two-sided p is
# 2 / 2^n (0.0156 with 7, 0.0039 with 9).
FEW_PLAYLISTS = 10


def _score_methods(
    store: Store,
    specs: list[MethodSpec],
    first: EvalSplit,
    seeds: tuple[int, ...],
    split_options: dict,
    method_of: Callable[[MethodSpec], EmbeddingMethod],
    progress,
) -> tuple[dict[MethodSpec, list[list[dict]]], list[str], dict[MethodSpec, float]]:
    """Each method fitted and scored on every seed's split: (per-seed case scores, case playlists, seconds)."""
    per_seed: dict[MethodSpec, list[list[dict]]] = {s: [] for s in specs}
    case_playlists: list[str] = []
    seconds = {s: 0.0 for s in specs}
    for seed in seeds:
        split = (
            first if seed == seeds[0] else make_split(store, groups=list(first.features), **split_options, seed=seed)
        )
        case_playlists += [c.playlist_id for c in split.cases]
        for spec in specs:
            started = time.perf_counter()
            method = method_of(spec)
            label = EPOCH_LOG_LABEL.set(f"seed {seed}, {spec.label}")
            try:
                vectors = np.asarray(method.embed(split), np.float32)
            finally:
                EPOCH_LOG_LABEL.reset(label)
            per_seed[spec].append(score_cases(vectors, split))
            seconds[spec] += time.perf_counter() - started
            if progress:
                hit_rate = summarise(per_seed[spec][-1])["HR"]
                left = _seconds_left(specs, seeds, seed, spec, seconds)
                progress(
                    f"seed {seed}: {spec.label} HR {hit_rate:.3f} ({time.perf_counter() - started:.1f} s)"
                    + (f"; about {_duration(left)} left" if left is not None else "")
                )
    return per_seed, case_playlists, seconds


def _plan(specs: list[MethodSpec], seeds: tuple[int, ...], musig_options: dict | None) -> str:
    """What `evaluate` is about to do, in one line."""
    from audiograph.pipelines.train_musig import train_musig
    from audiograph.runtime import keyword_defaults

    graph_kinds = [s for s in specs if s.kind.startswith(("musig", "graphsage"))]
    defaults = {**keyword_defaults(train_musig), **(musig_options or {})}
    training = (
        f"; MUSIG/GraphSAGE train at most {defaults['max_epochs']} epochs of {defaults['batches_per_epoch']}"
        " batches each"
        if graph_kinds
        else ""
    )
    return (
        f"plan: {len(specs)} methods x {len(seeds)} seeds = {len(specs) * len(seeds)} fits"
        f" ({', '.join(s.label for s in specs)}){training}; the time left is estimated after the first seed"
    )


def _duration(seconds: float) -> str:
    """A rough duration in words: seconds under two minutes, then minutes."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _seconds_left(specs, seeds, seed, spec, seconds) -> float | None:
    """Seconds the remaining fits should take, by each method's time on the seeds done so far (None during
    the first seed, when some methods have not run yet)."""
    done = seeds.index(seed) + 1
    if done == 1 and spec is not specs[-1]:
        return None
    per_seed = {s: seconds[s] / (done if specs.index(s) <= specs.index(spec) else max(done - 1, 1)) for s in specs}
    later_this_seed = sum(per_seed[s] for s in specs[specs.index(spec) + 1 :])
    return later_this_seed + (len(seeds) - done) * sum(per_seed.values())


def _method_specs(
    methods: list[str] | str | None, groups: list[str], held_out: list[dict] | None
) -> tuple[list[MethodSpec], list[str]]:
    """(the methods to evaluate over the split's feature `groups`, notes on acoustic vectors and leakage)."""
    notes = []
    if methods is None:
        if held_out is None and "acoustic" in groups:
            # The encoder learnt from every stored playlist, held-out ones included.
            groups.remove("acoustic")
            notes.append(
                "acoustic methods left out: the audio encoder was trained on the stored graph, held-out"
                " playlists included; keep evaluation playlists out of build-graph and pass them with"
                " --playlists to compare them"
            )
        specs = default_methods(groups)
    else:
        specs = parse_methods(methods, groups)
    if held_out is None and any("acoustic" in (*s.groups, s.similarity) for s in specs):
        notes.append(
            "the acoustic encoder was trained on the stored graph, held-out playlists included; for a"
            " leak-free acoustic comparison, keep evaluation playlists out of build-graph and pass them"
            " with --playlists"
        )
    return specs, notes


def _method_results(
    specs: list[MethodSpec], per_seed: dict[MethodSpec, list[list[dict]]], case_playlists: list[str], seconds: dict
) -> tuple[list[MethodResult], MethodResult]:
    """(each method's scores over all seeds, with the p-value of its difference from the best; the best by HR)."""
    results = []
    for spec in specs:
        stats = mean_std([summarise(cases) for cases in per_seed[spec]])
        flat = [c for cases in per_seed[spec] for c in cases]
        mean, std = {m: stats[m][0] for m in METRICS}, {m: stats[m][1] for m in METRICS}
        results.append(MethodResult(spec, mean, std, flat, case_playlists, len(per_seed[spec][0]), seconds[spec]))
    best = max(results, key=lambda r: r.mean["HR"])
    for r in results:
        if r is not best:
            r.p_value = compare(best, r)
    return results, best


def training_genres(store: Store, held_out: set[str]) -> dict[str, str | None]:
    """track id -> genre, never derived from a held-out playlist.

    A track whose genre came from the playlists listing it (`genre_votes`) takes the majority
    of its votes from other playlists (None if it has none left); any other track keeps its
    own genre tag.
    """
    votes = store.graph.genre_votes()
    genres = {}
    for track in store.tracks.rows(status=None):
        if track["id"] in votes:
            kept = [genre for source, genre in votes[track["id"]] if source not in held_out]
            genres[track["id"]] = Counter(kept).most_common(1)[0][0] if kept else None
        else:
            genres[track["id"]] = track["genre"]
    return genres


def make_split(
    store: Store,
    *,
    groups: list[str] | None = None,
    held_out: list[dict] | None = None,
    min_length: int = 40,
    seed_fraction: float = 0.5,
    holdout: float = 0.2,
    max_playlists: int = 10_000,
    seed: int = 0,
) -> EvalSplit:
    """The evaluation split of one repetition.

    Without `held_out`, a random `holdout` share of the stored playlists (at most `max_playlists`,
    drawn among those with at least `min_length` tracks) is held out, and everything else is
    rebuilt from the remaining playlists. With `held_out` (playlists as {id, tracks} matched to
    stored tracks, e.g. from a file never given to build-graph), every stored playlist trains
    and the given ones with at least `min_length` tracks are evaluated.
    """
    if not 0 < seed_fraction < 1:
        raise ConfigError(f"the seed fraction must be between 0 and 1, got {seed_fraction}")
    if min_length < 2:
        raise ConfigError(f"evaluation playlists need at least 2 tracks (--min-length), got {min_length}")
    node_ids, _ = load_graph(store)
    position = {t: i for i, t in enumerate(node_ids)}
    stored = [p for p in store.graph.playlists() if p["tracks"]]
    rng = np.random.default_rng(seed)
    evaluated, training = _evaluated_and_training(stored, held_out, position, min_length, holdout, max_playlists, rng)

    train_playlists = [_playlist_indices(p, position) for p in training]
    seen = np.zeros(len(node_ids), bool)
    if train_playlists:
        seen[np.concatenate(train_playlists)] = True

    graph_info = store.get_meta("graph") or {}
    graph = playlist_graph(train_playlists, len(node_ids), graph_info.get("min_weight", 1.0))
    # Every playlist kept out of training is kept out of the genre votes, evaluated or too short to be.
    kept_out = {p["id"] for p in [*evaluated, *(held_out or [])]}
    genres, cold_genres = genre_labels(store, training_genres(store, kept_out))
    groups = groups or available_groups(store)
    features, cold, present = _split_features(store, node_ids, graph, groups, genres, cold_genres, train_playlists)
    strata = decoy_strata(seen, content_presence(present))
    cases = completion_cases([(p["id"], _playlist_indices(p, position)) for p in evaluated], strata, seed_fraction, rng)
    content = {
        g: features[g][:, GRAPH_COLUMNS[g] :] for g in features if 0 < GRAPH_COLUMNS.get(g, 0) < features[g].shape[1]
    }
    info = {
        "playlists": len(stored),
        "train_playlists": len(training),
        "eval_playlists": len(cases),
        "min_length": min_length,
        "seed_fraction": seed_fraction,
        "graph_edges": graph.num_edges // 2,
        "unseen_targets": float(np.mean([not seen[t] for c in cases for t in c.targets])),
        "min_weight": graph_info.get("min_weight", 1.0),
    }
    return EvalSplit(
        node_ids,
        train_playlists,
        graph,
        features,
        genres,
        cases,
        seed=seed,
        present=present,
        info=info,
        cold=cold,
        content=content,
    )


def _playlist_indices(playlist: dict, position: dict[str, int]) -> np.ndarray:
    """The node indices of a playlist's stored tracks, distinct, in playlist order."""
    # A repeat adds nothing to a seed list or a target set.
    return np.asarray(list(dict.fromkeys(position[t] for t in playlist["tracks"] if t in position)), np.int64)


def _evaluated_and_training(
    stored: list[dict],
    held_out: list[dict] | None,
    position: dict[str, int],
    min_length: int,
    holdout: float,
    max_playlists: int,
    rng: np.random.Generator,
) -> tuple[list[dict], list[dict]]:
    """(the playlists to evaluate, the playlists to train on): see `make_split`."""
    if held_out is None:
        eligible = [i for i, p in enumerate(stored) if len(_playlist_indices(p, position)) >= min_length]
        wanted = min(len(eligible), max_playlists, max(1, round(holdout * len(stored))))
        chosen = set(rng.choice(eligible, size=wanted, replace=False).tolist()) if eligible else set()
        evaluated = [stored[i] for i in sorted(chosen)]
        training = [p for i, p in enumerate(stored) if i not in chosen]
    else:
        overlap = sorted({p["id"] for p in held_out} & {p["id"] for p in stored})
        if overlap:
            raise ConfigError(
                f"evaluation playlist(s) {', '.join(overlap[:3])} are also in the store's graph;"
                " evaluate playlists that were kept out of build-graph"
            )
        evaluated = [p for p in held_out if len(_playlist_indices(p, position)) >= min_length][:max_playlists]
        training = stored
    if not evaluated:
        candidates = held_out if held_out is not None else stored
        longest = max((len(_playlist_indices(p, position)) for p in candidates), default=0)
        raise ConfigError(
            f"no playlist has at least {min_length} tracks in the store (the longest has {longest}); lower --min-length"
        )
    return evaluated, training


def _split_features(
    store: Store,
    node_ids: list[str],
    graph: CSRGraph,
    groups: list[str],
    genres: dict[str, str | None],
    cold_genres: dict[str, str | None],
    train_playlists: list[np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(feature group -> matrix, group -> cold-start matrix, group -> which tracks have it) over `node_ids`;
    `genres` and `cold_genres` are the warm and cold labels of `genre_labels` over the training labels."""
    train_dicts = [{"tracks": [node_ids[i] for i in p]} for p in train_playlists]
    x, spec, mask = build_features(store, node_ids, graph, groups, genres=genres, playlists=train_dicts)
    bounds = np.cumsum([0, *(spec.dims[g] for g in spec.groups)])
    features = {g: x[:, a:b] for g, a, b in zip(spec.groups, bounds[:-1], bounds[1:])}
    x_cold = cold_features(store, node_ids, spec, cold_genres)
    cold = {g: x_cold[:, a:b] for g, a, b in zip(spec.groups, bounds[:-1], bounds[1:])}
    present = {g: mask[:, k] for k, g in enumerate(spec.groups)}
    return features, cold, present
