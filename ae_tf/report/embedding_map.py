"""The report's embedding map: codes projected to 2-D by PCA, coloured by duplicate cluster, a label column,
is_anomaly or reconstruction error. Drawn like every figure of ae_tf.report.plots (fixed size, Agg, no pyplot).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ae_tf.report.plots import _ANOMALY, _GREY, _NORMAL, FIGURES, new_figure, to_png


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their first two principal components (numpy SVD of the centred matrix).

    Returns (points [n, 2], explained variance ratio of those components). A 1-D code gets a zero
    second coordinate, so the map is still drawn.
    """
    x = np.asarray(matrix, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    components = vt[:2]
    points = x @ components.T
    variance = s**2
    ratio = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(len(components))
    if points.shape[1] < 2:
        points = np.column_stack([points, np.zeros(len(points))])
        ratio = np.r_[ratio, 0.0]
    return points, ratio


@dataclasses.dataclass
class MapColouring:
    """How the embedding map is coloured: `mode` is cluster, label, anomaly or error; `values` one per point.

    For clusters, `sizes` holds each point's cluster size in the whole dataset (a sample alone would call
    a row a singleton whenever its duplicates were not sampled).
    """

    mode: str
    values: np.ndarray
    label: str = ""
    sizes: np.ndarray | None = None


TOP_CLUSTERS = 10  # the largest clusters get their own colour; other duplicate rows share one
TOP_LABELS = 10  # --color-by: the most common values get their own colour, the rest are "other"


def _draw_labels(ax, points: np.ndarray, colouring: MapColouring, size: float) -> None:
    """One colour per common value of a label column (e.g. a class), grey for the rest."""
    from matplotlib import colormaps

    values = np.asarray([str(v) for v in colouring.values])
    kinds, counts = np.unique(values, return_counts=True)
    top = kinds[np.argsort(-counts, kind="stable")][:TOP_LABELS]
    other = ~np.isin(values, top)
    if other.any():
        ax.scatter(*points[other].T, s=size, c="lightgrey", linewidths=0, label=f"other ({int(other.sum()):,})")
    palette = colormaps["tab10"]
    for i, kind in enumerate(sorted(top, key=lambda k: (len(k), k))):
        chosen = values == kind
        ax.scatter(*points[chosen].T, s=size, color=palette(i % 10), alpha=0.7, linewidths=0,
                   label=f"{kind} ({int(chosen.sum()):,})")
    ax.legend(fontsize=7, loc="best", title=colouring.label, title_fontsize=8, markerscale=2)


def _draw_clusters(ax, points: np.ndarray, colouring: MapColouring, size: float) -> None:
    """Singletons light grey, rows of smaller clusters one muted colour, the largest clusters each a colour:
    with thousands of clusters, per-cluster colours would repeat and say nothing."""
    from matplotlib import colormaps

    clusters = np.asarray(colouring.values)
    ids, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
    sizes = np.asarray(colouring.sizes) if colouring.sizes is not None else counts[inverse]
    in_cluster = sizes > 1
    ax.scatter(*points[~in_cluster].T, s=size, c=_GREY, alpha=0.4, linewidths=0,
               label=f"no duplicate ({int((~in_cluster).sum()):,})")
    cluster_size = np.zeros(len(ids), dtype=np.int64)
    cluster_size[inverse] = sizes
    largest = [i for i in np.argsort(-cluster_size, kind="stable")[:TOP_CLUSTERS] if cluster_size[i] > 1]
    top = np.isin(inverse, largest)
    others = in_cluster & ~top
    if others.any():
        ax.scatter(*points[others].T, s=size * 1.5, c="#6b8fb3", alpha=0.6, linewidths=0,
                   label=f"in other duplicate clusters ({int(others.sum()):,})")
    for rank, index in enumerate(largest):
        mine = inverse == index
        ax.scatter(*points[mine].T, s=size * 3, color=colormaps["tab10"](rank % 10), linewidths=0,
                   label=f"cluster {ids[index]} ({int(cluster_size[index]):,} rows)")
    ax.legend(fontsize=7, loc="best", markerscale=2)




def embedding_map(points: np.ndarray, ratio: np.ndarray, colouring: MapColouring, subtitle: str = "") -> bytes:
    kind = FIGURES["embedding_map"]
    fig = new_figure(kind)
    ax = fig.subplots()
    size = max(3.0, min(16.0, 6000 / max(len(points), 1)))  # fewer points, bigger dots
    if colouring.mode == "cluster":
        _draw_clusters(ax, points, colouring, size)
    elif colouring.mode == "label":
        _draw_labels(ax, points, colouring, size)
    elif colouring.mode == "anomaly":
        flags = np.asarray(colouring.values, dtype=bool)
        ax.scatter(*points[~flags].T, s=size, c=_NORMAL, alpha=0.5, linewidths=0, label=f"normal ({int((~flags).sum()):,})")
        ax.scatter(*points[flags].T, s=size * 3, c=_ANOMALY, linewidths=0, label=f"is_anomaly ({int(flags.sum()):,})")
        ax.legend(fontsize=8, loc="best")
    else:
        values = np.asarray(colouring.values, dtype=float)
        hi = float(np.nanpercentile(values, 99)) if len(values) else 1.0
        order = np.argsort(values)  # high errors drawn last, on top
        art = ax.scatter(*points[order].T, s=size, c=values[order], cmap="viridis", vmax=hi, linewidths=0)
        fig.colorbar(art, ax=ax, label=colouring.label or "reconstruction error (clipped at 99th percentile)")
    ax.set_xlabel(f"PC 1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({ratio[1]:.0%} of variance)")
    ax.grid(alpha=0.3)
    ax.set_title(f"{kind.title}{': ' + subtitle if subtitle else ''}", fontsize=10)
    return to_png(fig, kind)
