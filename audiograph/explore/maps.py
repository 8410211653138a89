"""2-D maps of a vector space: `project_2d` (UMAP or t-SNE) and `draw_map` (a PNG, or a light one-file HTML).

Pure numpy here; umap-learn, scikit-learn and matplotlib are imported inside the functions that need them,
so that importing this module costs nothing.
"""

from __future__ import annotations

import html
import importlib.util
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from audiograph.errors import ConfigError
from audiograph.runtime import free_cores
from audiograph.tables import shortened

MIN_POINTS = 5
OTHER = "other"  # labels beyond the `max_colours` most frequent ones
UNKNOWN = "unknown"  # points without a label
GREYS = {OTHER: "#a6a6a6", UNKNOWN: "#d4d4d4"}
MATPLOTLIB_FORMATS = {".png", ".svg", ".pdf"}
DPI = 120
LABEL_WIDTH = 42  # characters of a point's label on the map


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def projection_method(method: str = "auto") -> str:
    """The projection `project_2d(method=...)` runs: "umap" or "tsne"; "auto" is UMAP when umap-learn is installed.

    Raises ConfigError naming the package to install when the requested one is missing.
    """
    if method not in ("auto", "umap", "tsne"):
        raise ConfigError(f"map: unknown projection method {method!r} (use auto, umap or tsne)")
    if method == "umap" or (method == "auto" and _has_module("umap")):
        if not _has_module("umap"):
            raise ConfigError("map: UMAP needs umap-learn (pip install umap-learn), or use the tsne method")
        return "umap"
    if not _has_module("sklearn"):
        raise ConfigError("map: t-SNE needs scikit-learn (pip install scikit-learn)")
    return "tsne"


def _check_points(matrix: np.ndarray, what: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ConfigError(f"map: the {what} must be a 2-D array (got shape {matrix.shape})")
    if matrix.shape[0] < MIN_POINTS:
        raise ConfigError(f"map: a map needs at least {MIN_POINTS} points (got {matrix.shape[0]})")
    if not np.isfinite(matrix).all():
        raise ConfigError(f"map: the {what} hold values that are not finite")
    return matrix


def project_2d(matrix: np.ndarray, method: str = "auto", seed: int = 0) -> np.ndarray:
    """The rows of `matrix` placed in 2-D so that neighbours stay neighbours: an (n, 2) float array.

    `method` is "umap" (umap-learn), "tsne" (scikit-learn's t-SNE) or "auto" (UMAP when installed, else
    t-SNE); `projection_method(method)` tells which one runs. Distances are Euclidean, so pass unit
    vectors for cosine spaces and z-scored columns for raw features. The same seed gives the same map.
    """
    matrix = _check_points(matrix, "vectors")
    n = matrix.shape[0]
    if projection_method(method) == "umap":
        import umap

        reducer = umap.UMAP(
            n_components=2,
            n_neighbors=min(15, n - 1),
            init="spectral" if n > 50 else "random",  # spectral init is unstable on tiny graphs
            random_state=seed,
            n_jobs=1,  # a random_state forces one thread anyway; say so rather than be warned about it
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            return np.asarray(reducer.fit_transform(matrix), dtype=np.float64)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
    # t-SNE's OpenMP threads spin while they wait: on busy cores, one thread per free core is many times
    # faster (200 points at load 5 on 2 cores: 29 s with 2 threads, 1.1 s with 1). OMP_NUM_THREADS wins.
    with threadpool_limits(limits=None if os.environ.get("OMP_NUM_THREADS") else free_cores()):
        return np.asarray(tsne.fit_transform(matrix), dtype=np.float64)


def cap_labels(labels: Sequence[str | None], max_colours: int = 12) -> list[str]:
    """Each label, with all but the `max_colours` most frequent replaced by "other" and missing ones by "unknown".

    Ties in frequency go to the label seen first, so the result does not depend on hash order.
    """
    if max_colours < 1:
        raise ConfigError(f"map: at least one colour is needed (got {max_colours})")
    present = [label for label in labels if label not in (None, "")]
    kept = {label for label, _ in Counter(present).most_common(max_colours)}
    return [UNKNOWN if label in (None, "") else label if label in kept else OTHER for label in labels]


def _palette(count: int) -> list[str]:
    """Up to 18 distinct colours: tab20's strong ones first, then its light ones, without its greys."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    tab20 = [to_hex(c) for c in colormaps["tab20"].colors]
    strong, light = tab20[0::2], tab20[1::2]
    colours = [c for c in strong if c != "#7f7f7f"] + [c for c in light if c != "#c7c7c7"]
    return [colours[i % len(colours)] for i in range(count)]


def _groups(capped: list[str]) -> list[str]:
    """Coloured groups, largest first (ties by first appearance); "other" and "unknown" are not groups."""
    counts = Counter(label for label in capped if label not in GREYS)
    first = {}
    for i, label in enumerate(capped):
        first.setdefault(label, i)
    return sorted(counts, key=lambda label: (-counts[label], first[label]))


def representative_points(points: np.ndarray, capped: list[str], groups: list[str]) -> dict[str, int]:
    """For each group, the index of its most typical point on the map.

    Typical means most of its k nearest map neighbours share its label (it sits where its colour
    dominates; k is 2% of the points, at least 15, so that a small tight clump does not win over the
    group's main region), ties broken by nearness to the group's median point.
    """
    from scipy.spatial import cKDTree

    labels = np.array(capped, dtype=object)
    k = min(max(15, len(points) // 50), len(points) - 1)
    _, neighbours = cKDTree(points).query(points, k=k + 1)
    same_label_share = (labels[neighbours[:, 1:]] == labels[:, None]).mean(axis=1)
    chosen = {}
    for group in groups:
        members = np.flatnonzero(labels == group)
        to_median = np.linalg.norm(points[members] - np.median(points[members], axis=0), axis=1)
        best = np.lexsort((to_median, -same_label_share[members]))[0]
        chosen[group] = int(members[best])
    return chosen


def _prepare(points, labels, names, max_colours):
    points = _check_points(points, "points")
    if points.shape[1] != 2:
        raise ConfigError(f"map: points must have 2 columns (got {points.shape[1]})")
    if len(labels) != len(points) or len(names) != len(points):
        raise ConfigError(f"map: {len(points)} points, {len(labels)} labels and {len(names)} names")
    capped = cap_labels(labels, max_colours)
    groups = _groups(capped)
    colours = dict(zip(groups, _palette(len(groups))), **GREYS)
    legend = groups + [grey for grey in GREYS if grey in capped]
    return points, capped, groups, colours, legend


def build_figure(
    points: np.ndarray,
    labels: Sequence[str | None],
    names: Sequence[str],
    title: str = "",
    n_labelled: int = 12,
    max_colours: int = 12,
    legend_title: str = "",
    figsize: tuple[float, float] = (11.0, 8.0),
):
    """The map as a matplotlib Figure (see `draw_map`); the legend sits right of the axes, outside them. Names,
    labels and titles are shown as written: a `$` in a tag starts no math text."""
    import matplotlib

    # Math text is read when a Text is made: a tag like "$\\frac{" failed the whole map, and nested math
    # can take a long time to lay out.
    with matplotlib.rc_context({"text.parse_math": False}):
        return _build_figure(points, labels, names, title, n_labelled, max_colours, legend_title, figsize)


def _build_figure(points, labels, names, title, n_labelled, max_colours, legend_title, figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points, capped, groups, colours, legend = _prepare(points, labels, names, max_colours)
    labels_array = np.array(capped, dtype=object)
    counts = Counter(capped)
    size = float(np.clip(30000 / len(points), 6, 40))
    fig = Figure(figsize=figsize, layout="constrained")  # no pyplot: no global state, no GUI backend
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    # Greys first, then the largest groups, so that small groups stay visible on top.
    for label in [grey for grey in GREYS if grey in capped] + groups:
        mask = labels_array == label
        ax.scatter(
            points[mask, 0],
            points[mask, 1],
            s=size,
            c=colours[label],
            alpha=0.75,
            linewidths=0,
            label=f"{label} ({counts[label]})",
            zorder=1 if label in GREYS else 2,
        )
    low, high = points.min(axis=0), points.max(axis=0)
    span, middle = np.maximum(high - low, 1e-12), (low + high) / 2
    ax.set_xlim(low[0] - 0.02 * span[0], high[0] + 0.02 * span[0])
    ax.set_ylim(low[1] - 0.07 * span[1], high[1] + 0.07 * span[1])  # room for a label above or below the rim
    annotations = _annotate(ax, points, capped, groups, names, colours, size, span, middle, n_labelled)
    handles, texts = ax.get_legend_handles_labels()
    order = [texts.index(f"{label} ({counts[label]})") for label in legend]
    fig.legend(
        [handles[i] for i in order],
        [
            f"{shortened(label, 32)} ({counts[label]})" for label in legend
        ],  # a long playlist name must not squeeze the map
        loc="outside right upper",
        title=legend_title or None,
        markerscale=max(1.0, 6 / np.sqrt(size)),
        frameon=False,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    _separate_labels(fig, ax, annotations, span[1])
    return fig


def _annotate(ax, points, capped, groups, names, colours, size, span, middle, n_labelled):
    """Label the representative point of each of the first `n_labelled` groups; returns (annotation, is above)."""
    annotations = []
    for group, index in list(representative_points(points, capped, groups).items())[:n_labelled]:
        point = points[index]
        # The label sits above or below its point, away from the middle, and runs towards the middle
        # horizontally, so that it never leaves the axes.
        up = point[1] >= middle[1]
        annotation = ax.annotate(
            shortened(names[index], LABEL_WIDTH),
            tuple(point),
            xytext=(point[0], point[1] + (0.05 if up else -0.05) * span[1]),
            ha="left" if point[0] < middle[0] else "right",
            va="bottom" if up else "top",
            fontsize=8,
            zorder=4,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colours[group], "lw": 1, "alpha": 0.9},
            arrowprops={"arrowstyle": "-", "color": "black", "lw": 0.6},
        )
        annotations.append((annotation, up))
        ax.scatter(*point, s=size * 3, facecolors="none", edgecolors="black", linewidths=0.8, zorder=3)
    return annotations


def _label_box(annotation, renderer):
    """The pixel extent of an annotation's text (with its box's padding), without its arrow."""
    from matplotlib.text import Text

    return Text.get_window_extent(annotation, renderer).padded(4)


def _separate_labels(fig, ax, annotations, y_span: float) -> None:
    """Move each label that would overlap an earlier one, or leave the axes, to the nearest free height.

    Heights are tried moving away from the point first, then over it; when none is free, the label goes
    where it overlaps least, still inside the axes.
    """
    from matplotlib.transforms import Bbox

    fig.draw_without_rendering()  # settles the layout, so that pixel extents are final
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    steps = [0.05 + 0.04 * i for i in range(8)] + [-0.05 - 0.04 * i for i in range(8)]
    placed = []
    for annotation, up in annotations:
        x, y = annotation.xy
        best = None
        for step in steps:
            position = (x, y + (step if up else -step) * y_span)
            annotation.set_position(position)
            box = _label_box(annotation, renderer)
            if not axes_box.contains(box.x0, box.y0) or not axes_box.contains(box.x1, box.y1):
                continue
            overlap = sum(
                (inter.width * inter.height) for other in placed if (inter := Bbox.intersection(box, other)) is not None
            )
            if best is None or overlap < best[0]:
                best = (overlap, position)
            if overlap == 0:
                break
        annotation.set_position(best[1] if best else (x, y + (0.05 if up else -0.05) * y_span))
        placed.append(_label_box(annotation, renderer))


def _html_map(points, capped, groups, colours, legend, names, *, title, legend_title, n_labelled) -> str:
    width, height, margin = 900, 700, 20
    low, high = points.min(axis=0), points.max(axis=0)
    extent = np.maximum(high - low, 1e-12)
    scale = min((width - 2 * margin) / extent[0], (height - 2 * margin) / extent[1])
    x = margin + (points[:, 0] - low[0]) * scale
    y = height - margin - (points[:, 1] - low[1]) * scale  # SVG's y grows downwards
    radius = float(np.clip(150 / np.sqrt(len(points)), 2, 6))
    counts = Counter(capped)
    layers = []
    for label in [grey for grey in GREYS if grey in capped] + groups:
        circles = "".join(
            f'<circle cx="{x[i]:.1f}" cy="{y[i]:.1f}" r="{radius:.1f}"><title>{html.escape(names[i])} · '
            f"{html.escape(label)}</title></circle>"
            for i in range(len(points))
            if capped[i] == label
        )
        layers.append(f'<g fill="{colours[label]}">{circles}</g>')
    for index in list(representative_points(points, capped, groups).values())[:n_labelled]:
        left = x[index] < width / 2  # labels run towards the middle, so that they stay on the map
        layers.append(
            f'<text x="{x[index] + (radius + 2 if left else -radius - 2):.1f}" y="{y[index] + 4:.1f}" '
            f'text-anchor="{"start" if left else "end"}">{html.escape(shortened(names[index], LABEL_WIDTH))}</text>'
        )
    legend_items = "".join(
        f'<li><span style="background:{colours[label]}"></span>{html.escape(label)} ({counts[label]})</li>'
        for label in legend
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title or "map")}</title>
<style>
body{{font:14px sans-serif;margin:1em}} h1{{font-size:1.2em}} h2{{font-size:1em;margin:0 0 .3em}}
.map{{display:flex;gap:1em;align-items:flex-start}}
svg{{border:1px solid #ddd;max-width:100%;height:auto}} circle{{fill-opacity:.75}}
circle:hover{{stroke:#000;stroke-width:1.5;fill-opacity:1}}
text{{font-size:11px;paint-order:stroke;stroke:#fff;stroke-width:3px;pointer-events:none}}
ul{{list-style:none;padding:0;margin:0}} li span{{display:inline-block;width:.9em;height:.9em;margin-right:.4em}}
</style></head><body>
<h1>{html.escape(title)}</h1><p>Hover a point for its name.</p>
<div class="map">
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">
{"".join(layers)}
</svg><div>{f"<h2>{html.escape(legend_title)}</h2>" if legend_title else ""}<ul>{legend_items}</ul></div></div>
</body></html>
"""


def draw_map(
    points: np.ndarray,
    labels: Sequence[str | None],
    names: Sequence[str],
    out: str | Path,
    title: str = "",
    n_labelled: int = 12,
    max_colours: int = 12,
    legend_title: str = "",
) -> Path:
    """Write the map of `points` (n, 2) to `out`: a PNG (or .svg/.pdf) with matplotlib, or a self-contained .html.

    Points are coloured by `labels` (genre, playlist; None is "unknown"); the `max_colours` most frequent
    labels get a colour each and the rest are grey "other". The legend (titled `legend_title`), with
    counts, sits outside the axes. The most typical point of each of the `n_labelled` largest groups
    is labelled with its name (see `representative_points`). The HTML is one file with an inline SVG
    (no script, nothing downloaded): hovering a point shows its name and label. Returns `out`.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in MATPLOTLIB_FORMATS | {".html"}:
        raise ConfigError(f"{out}: a map is written as .png, .svg, .pdf or .html")
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: the folder {out.parent} does not exist")
    if suffix == ".html":
        prepared = _prepare(points, labels, names, max_colours)
        page = _html_map(*prepared, list(names), title=title, legend_title=legend_title, n_labelled=n_labelled)
        out.write_text(page, encoding="utf-8")
        return out
    fig = build_figure(
        points, labels, names, title=title, n_labelled=n_labelled, max_colours=max_colours, legend_title=legend_title
    )
    fig.savefig(out, dpi=DPI)
    return out
