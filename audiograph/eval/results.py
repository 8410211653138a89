"""Evaluation methods by name, and results: per-method scores over seeds, paired tests, the results table."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audiograph.errors import ConfigError
from audiograph.eval.metrics import METRICS, case_metrics, paired_test, rank_candidates
from audiograph.eval.protocol import EvalSplit
from audiograph.musig.features import FEATURE_GROUPS

# "musig-PRESET" is MUSIG with a preset's task weights (e.g. musig-content-heavy:audio), "musig" with evaluate's.
MUSIG_PRESET_KINDS = tuple(f"musig-{name}" for name in ("multi", "playlist-heavy", "content-heavy", "auto"))


METHOD_KINDS = ("cf", "track2vec", "node2vec", "graphsage", "musig", "features", "content", *MUSIG_PRESET_KINDS)


# Kinds that need feature groups, and those that take none.
_NEEDS_GROUPS = {"graphsage", "musig", "features", "content", *MUSIG_PRESET_KINDS}


_NO_GROUPS = {"cf", "node2vec"}


DISPLAY_NAMES = {
    "cf": "CF",
    "track2vec": "Track2Vec",
    "node2vec": "Node2Vec",
    "graphsage": "GraphSAGE",
    "musig": "MUSIG",
    "features": "Features only",
    "content": "Content metric",
    **{kind: f"MUSIG ({kind[len('musig-') :]})" for kind in MUSIG_PRESET_KINDS},
}


@dataclass(frozen=True)
class MethodSpec:
    """A method of the results table: its kind and the feature groups it uses."""

    kind: str
    groups: tuple[str, ...] = ()
    similarity: str | None = None  # MUSIG's similarity-task group, when not the default

    @property
    def label(self) -> str:
        return (
            self.kind
            + (":" + "+".join(self.groups) if self.groups else "")
            + (f"@{self.similarity}" if self.similarity else "")
        )

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
            raise ConfigError(
                f"method '{name}': the store has no {', '.join(missing)} features (it has {', '.join(available)})"
            )
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
        return {
            "method": method,
            "features": features,
            **{m: self.mean[m] for m in METRICS},
            "n_playlists": self.n_playlists,
            "std": self.std,
            "p_value_vs_best": self.p_value,
            "seconds": round(self.seconds, 2),
            "label": self.spec.label,
        }

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


def seeds_note(evaluation: Evaluation) -> str:
    """What the table's cells are: a mean ± std over the seeds, or one seed's figures (no spread to show)."""
    seeds = ", ".join(map(str, evaluation.seeds))
    return f"mean ± std over seeds {seeds}" if len(evaluation.seeds) > 1 else f"seed {seeds} (one seed: no spread)"


def format_results(evaluation: Evaluation, markdown: bool = False) -> str:
    """The results as the paper's Table 2: method, features, HR, MRR, P@1/5/10, NDCG@1/5/10 (mean ± std over
    seeds, or the figures of one seed)."""
    from audiograph.tables import format_table, markdown_table

    headers = ["method", "features", *METRICS, "p vs best"]
    rows, spread = [], len(evaluation.seeds) > 1
    for r in evaluation.results:
        cells = [f"{r.mean[m]:.4f} ± {r.std[m]:.4f}" if spread else f"{r.mean[m]:.4f}" for m in METRICS]
        p = "best" if r.p_value is None else f"{r.p_value:.2g}"
        rows.append([*r.spec.display, *cells, p])
    return markdown_table(headers, rows) if markdown else format_table(headers, rows)
