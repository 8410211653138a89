"""maps: the projection keeps neighbourhoods (checked with brute-force kNN and scikit-learn's
trustworthiness), the PNG is a real PNG of the stated size with its legend off the points, the HTML is
self-contained and names every point, and labels are capped."""

import html
import importlib.util
import re
import struct
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from audiograph.errors import ConfigError
from audiograph.explore import maps
from audiograph.explore.maps import build_figure, cap_labels, draw_map, project_2d, projection_method

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def clustered(n=200, dim=20, clusters=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(clusters, dim))
    cluster = rng.integers(0, clusters, size=n)
    return centres[cluster] + rng.normal(size=(n, dim)), cluster


def knn(x: np.ndarray, k: int) -> np.ndarray:
    distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    return np.argsort(distances, axis=1)[:, :k]


def check_neighbourhoods(matrix, points, cluster):
    from sklearn.manifold import trustworthiness

    k = 10
    assert points.shape == (len(matrix), 2) and np.isfinite(points).all()
    high, low = knn(matrix, k), knn(points, k)
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(high, low)])
    chance = k / (len(matrix) - 1)
    assert overlap > 5 * chance, overlap
    assert trustworthiness(matrix, points, n_neighbors=k) > 0.9
    assert (cluster[low] == cluster[:, None]).mean() > 0.9  # the clusters stay apart on the map


def test_tsne_keeps_neighbourhoods():
    matrix, cluster = clustered()
    check_neighbourhoods(matrix, project_2d(matrix, method="tsne", seed=0), cluster)


@pytest.mark.slow  # numba compiles UMAP on first use: ~20 s
@pytest.mark.skipif(importlib.util.find_spec("umap") is None, reason="umap-learn is not installed")
def test_umap_keeps_neighbourhoods_and_is_what_auto_picks():
    matrix, cluster = clustered()
    assert projection_method("auto") == "umap"
    check_neighbourhoods(matrix, project_2d(matrix, method="umap", seed=0), cluster)


def test_tsne_is_deterministic_and_works_down_to_five_points():
    matrix, _ = clustered(n=5)
    first = project_2d(matrix, "tsne", seed=3)
    assert first.shape == (5, 2) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, project_2d(matrix, "tsne", seed=3))


def test_method_choice_says_what_runs(monkeypatch):
    monkeypatch.setattr(maps, "_has_module", lambda name: name != "umap")
    assert projection_method("auto") == "tsne"
    with pytest.raises(ConfigError, match="pip install umap-learn"):
        projection_method("umap")
    monkeypatch.setattr(maps, "_has_module", lambda name: False)
    with pytest.raises(ConfigError, match="scikit-learn"):
        projection_method("auto")
    with pytest.raises(ConfigError, match="unknown projection"):
        projection_method("pca")


@pytest.mark.parametrize("bad", [np.zeros((4, 3)), np.zeros(10), np.full((6, 2), np.nan)])
def test_too_few_or_bad_points_are_config_errors(bad, tmp_path):
    with pytest.raises(ConfigError):
        project_2d(bad, method="tsne")
    if bad.ndim == 2 and bad.shape[1] == 2:
        with pytest.raises(ConfigError):
            draw_map(bad, ["a"] * len(bad), ["n"] * len(bad), tmp_path / "m.png")
    with pytest.raises(ConfigError, match="at least 5"):
        draw_map(np.zeros((4, 2)), ["a"] * 4, ["n"] * 4, tmp_path / "m.png")


def test_cap_labels_keeps_the_most_frequent():
    labels = []
    for rank in range(15):
        labels += [f"g{rank}"] * (30 - rank)
    labels += [None, "", "tie-b", "tie-a"]
    capped = cap_labels(labels, max_colours=12)
    kept = {c for c in capped} - {"other", "unknown"}
    assert kept == {f"g{rank}" for rank in range(12)}
    assert capped.count("other") == sum(30 - rank for rank in range(12, 15)) + 2
    assert capped.count("unknown") == 2
    assert cap_labels(["b", "a", "a", "b", "c"], max_colours=1) == ["b", "other", "other", "b", "other"]


def map_data(n=240, groups=15, seed=1):
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, size=n)
    angle = 2 * np.pi * group / groups
    points = np.c_[np.cos(angle), np.sin(angle)] * 10 + rng.normal(size=(n, 2))
    labels = [None if i % 17 == 0 else f"genre {g}" for i, g in enumerate(group)]
    names = [f"Artist {i} – Title <{i}> & “more”" for i in range(n)]
    return points, labels, names


def test_png_is_a_png_of_the_stated_size(tmp_path):
    import matplotlib.image

    points, labels, names = map_data()
    out = draw_map(points, labels, names, tmp_path / "map.png", title="test map", legend_title="genre")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (11 * maps.DPI, 8 * maps.DPI)
    assert matplotlib.image.imread(out).shape[:2] == (height, width)


def test_legend_and_labels_cover_nothing():
    from matplotlib.text import Text

    points, labels, names = map_data()
    fig = build_figure(points, labels, names, title="t", n_labelled=12, max_colours=12)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    axes_box = ax.get_window_extent(renderer)
    (legend,) = fig.legends
    assert not legend.get_window_extent(renderer).overlaps(axes_box)
    entries = [t.get_text() for t in legend.get_texts()]
    assert len(entries) == 12 + 2 and entries[-2].startswith("other (") and entries[-1].startswith("unknown (")
    assert all(re.search(r"\(\d+\)$", e) for e in entries)
    annotations = [child for child in ax.texts]
    assert len(annotations) == 12
    boxes = [Text.get_window_extent(a, renderer) for a in annotations]  # the text, without its arrow
    for i, box in enumerate(boxes):
        assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1
        assert not any(box.overlaps(other) for other in boxes[:i])
    labelled = [names.index(a.get_text()) for a in annotations]
    for a, index in zip(annotations, labelled):  # each label sits on the point it names
        np.testing.assert_allclose(a.xy, points[index])
    kept = set(cap_labels(labels)) - {"other", "unknown"}
    assert {labels[index] for index in labelled} == kept  # one label per coloured group


def test_html_is_self_contained_and_names_every_point(tmp_path):
    points, labels, names = map_data(n=60, groups=4)
    out = draw_map(points, labels, names, tmp_path / "map.html", title="Map <test>", legend_title="genre")
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page and "src=" not in page and "href=" not in page
    svg = ET.fromstring(re.search(r"<svg.*</svg>", page, re.S).group(0))
    titles = [c.find("{http://www.w3.org/2000/svg}title").text for c in svg.iter("{http://www.w3.org/2000/svg}circle")]
    assert len(titles) == len(names)
    shown = {t.rsplit(" · ", 1)[0]: t.rsplit(" · ", 1)[1] for t in titles}
    assert shown == {name: label or "unknown" for name, label in zip(names, labels)}
    for name in names:
        assert html.escape(name) in page
    assert "Map &lt;test&gt;" in page


def test_unknown_suffix_and_mismatched_lengths_are_config_errors(tmp_path):
    points, labels, names = map_data(n=20)
    with pytest.raises(ConfigError, match="png"):
        draw_map(points, labels, names, tmp_path / "map.jpg")
    with pytest.raises(ConfigError, match="20 points, 19 labels"):
        draw_map(points, labels[:-1], names, tmp_path / "map.png")
    with pytest.raises(ConfigError, match="does not exist"):
        draw_map(points, labels, names, tmp_path / "missing" / "map.png")


def test_dollar_signs_in_tags_are_text_not_math(tmp_path):
    """A tag with a `$` was laid out as math text: "$\\frac{" failed the whole map. Every text of the figure
    shows its string as written."""
    points, cluster = clustered(n=60, clusters=3)
    labels = ["$\\frac{", "$x^2$ Band", "$$"] * 20
    names = [f"{label} song $a_{{{i}" for i, label in enumerate(labels)]
    draw_map(points[:, :2], labels, names, tmp_path / "map.png", title="$\\sqrt{", legend_title="$")
    fig = build_figure(points[:, :2], labels, names, title="$\\sqrt{", legend_title="$")
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_parse_math")) if t.get_text()]
    assert {t.get_text() for t in texts} >= {"$\\sqrt{", "$", "$\\frac{ (20)", "$$ (20)"}
    assert not any(t.get_parse_math() for t in texts)
