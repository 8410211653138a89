"""Evaluation reports for the recipes: a Markdown table, a bar chart, and the paper's claims checked."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from audiograph.eval.results import Evaluation, MethodResult, compare, format_results, seeds_note

CONTENT_GROUPS = ("audio", "acoustic")


def versions() -> dict[str, str]:
    """Versions of Python and of the libraries that shape the results."""
    import gensim
    import lightning
    import torch
    import torch_geometric

    from audiograph import __version__

    return {
        "audiograph": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torch_geometric": torch_geometric.__version__,
        "gensim": gensim.__version__,
        "numpy": np.__version__,
    }


def _best(results: list[MethodResult], keep) -> MethodResult | None:
    chosen = [r for r in results if keep(r)]
    return max(chosen, key=lambda r: r.mean["HR"]) if chosen else None


def _compare(claim: str, a: MethodResult | None, b: MethodResult | None) -> str:
    """One line: does `a` beat `b` on HR, by how much, and how significant (paired Wilcoxon)."""
    if a is None or b is None:
        return f"- {claim}: not testable here (a method is missing)."
    p = compare(a, b)
    verdict = "agrees" if a.mean["HR"] > b.mean["HR"] else "disagrees"
    significance = "significant" if p < 0.01 else "not significant"
    return (
        f"- {claim}: **{verdict}**: {_name(a)} HR {a.mean['HR']:.4f} vs {_name(b)} HR {b.mean['HR']:.4f}"
        f" (paired Wilcoxon p = {p:.2g}, {significance} at 0.01)."
    )


def _name(r: MethodResult) -> str:
    method, features = r.spec.display
    return method if features == "-" else f"{method}-{features}"


def check_claims(evaluation: Evaluation) -> list[str]:
    """The paper's claims, each stated as agreeing or disagreeing with these results."""
    rs = evaluation.results
    lines = []
    for group in sorted({g for r in rs for g in r.spec.groups}):
        musig = _best(
            rs, lambda r, g=group: r.spec.kind == "musig" and r.spec.groups == (g,) and r.spec.similarity is None
        )
        sage = _best(rs, lambda r, g=group: r.spec.kind == "graphsage" and r.spec.groups == (g,))
        lines.append(_compare(f"multi-task beats single-task ({group} features)", musig, sage))
    with_content = _best(
        rs,
        lambda r: (
            r.spec.kind in ("graphsage", "musig", "track2vec") and any(g in CONTENT_GROUPS for g in r.spec.groups)
        ),
    )
    without = _best(rs, lambda r: not any(g in CONTENT_GROUPS for g in r.spec.groups) and r.spec.kind != "features")
    lines.append(
        _compare(
            "content features help (best method with audio/acoustic features vs best without)", with_content, without
        )
    )
    musig = _best(rs, lambda r: r.spec.kind == "musig")
    sage = _best(rs, lambda r: r.spec.kind == "graphsage")
    shallow = _best(rs, lambda r: r.spec.kind in ("track2vec", "node2vec", "cf"))
    lines.append(_compare("on HR, MUSIG beats GraphSAGE", musig, sage))
    lines.append(_compare("on HR, GraphSAGE beats Track2Vec, Node2Vec and CF", sage, shallow))
    return lines


CHANCE_HR = 0.5


def write_chart(evaluation: Evaluation, path: Path, title: str) -> None:
    """A bar chart of HR and NDCG@10 per method, with the std over seeds as error bars, the HR of a random
    ranking as a line, and the legend above the axes."""
    fig = chart_figure(evaluation, title)
    fig.savefig(path, dpi=120)


def chart_figure(evaluation: Evaluation, title: str):
    """The figure `write_chart` saves (a matplotlib Figure, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [_name(r) for r in evaluation.results]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.55 * len(names) + 2), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for offset, metric in ((-0.2, "HR"), (0.2, "NDCG@10")):
        ax.bar(
            x + offset,
            [r.mean[metric] for r in evaluation.results],
            0.4,
            label=metric,
            yerr=[r.std[metric] for r in evaluation.results] if len(evaluation.seeds) > 1 else None,
            capsize=2,
        )
    # With as many decoys as targets, a random ranking puts half the targets in the top |targets|.
    ax.axhline(CHANCE_HR, color="black", linestyle="--", linewidth=1, label=f"HR of a random ranking ({CHANCE_HR})")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(seeds_note(evaluation))
    ax.set_title(title, pad=28)
    # Above the axes, so that it covers no bar.
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def write_report(
    evaluation: Evaluation,
    out: Path,
    *,
    title: str,
    about_data: str,
    extra: str = "",
    settings: dict | None = None,
    wall_seconds: float | None = None,
) -> Path:
    """results.md (table, claims, data notes, versions), results.json and chart.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_chart(evaluation, out / "chart.png", title)
    meta = {
        "seeds": evaluation.seeds,
        "split": evaluation.info,
        "settings": settings or {},
        "versions": versions(),
        "wall_seconds": wall_seconds,
    }
    md = [
        f"# {title}",
        "",
        format_results(evaluation, markdown=True),
        "",
        f"{seeds_note(evaluation).capitalize()}; 'p vs best' is a paired Wilcoxon test on per-playlist HR"
        " against the best method.",
        "",
        "![HR and NDCG@10](chart.png)",
        "",
    ]
    if extra:
        md += [extra, ""]
    md += [
        "## The paper's claims on these data",
        "",
        *check_claims(evaluation),
        "",
        "## What is different about the data",
        "",
        about_data,
        "",
    ]
    md += ["## Run", "", "```json", json.dumps(meta, indent=2), "```", ""]
    for note in evaluation.notes:
        md.append(f"Note: {note}")
    (out / "results.md").write_text("\n".join(md), encoding="utf-8")
    per_playlist = {r.spec.label: r.per_playlist() for r in evaluation.results}
    (out / "results.json").write_text(
        json.dumps({"results": evaluation.to_json(), "per_playlist_hr": per_playlist, **meta}, indent=2)
    )
    return out / "results.md"


def check_margins(
    evaluation: Evaluation, target: str, baselines: list[str], margin: float = 0.01, alpha: float = 0.01
) -> list[str]:
    """One line per baseline: does the method labelled `target` beat it on HR by at least `margin`,
    significantly at `alpha` (paired Wilcoxon over playlists)?"""
    by_label = {r.spec.label: r for r in evaluation.results}
    main = by_label.get(target)
    if main is None:
        return [f"- {target}: not evaluated"]
    lines = []
    for label in baselines:
        other = by_label.get(label)
        if other is None:
            lines.append(f"- vs {label}: not evaluated")
            continue
        gain, p = main.mean["HR"] - other.mean["HR"], compare(main, other)
        verdict = "**yes**" if gain >= margin and p < alpha else "**no**"
        lines.append(
            f"- {_name(main)} beats {_name(other)} by at least {margin:g} HR at p < {alpha:g}: {verdict}"
            f" (HR {main.mean['HR']:.4f} vs {other.mean['HR']:.4f}, {gain:+.4f}, paired Wilcoxon p = {p:.2g})"
        )
    playlists = evaluation.info.get("eval_playlists", 0)
    if 0 < playlists and 0.5 ** (playlists - 1) >= alpha:  # the two-sided test's smallest p: all pairs one way
        lines.append(
            f"- With {playlists} playlists evaluated, a paired Wilcoxon test cannot reach p < {alpha:g} (its smallest"
            f" p is {0.5 ** (playlists - 1):.2g}): evaluate more playlists (a lower --min-length) to decide."
        )
    return lines
