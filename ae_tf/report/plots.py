"""The report's figures: numpy arrays in, PNG bytes of a fixed pixel size out.

Nothing here reads files or models (ae_tf.report.report gathers the data), so every figure can be tested and
reused alone. Figures are drawn on a bare `matplotlib.figure.Figure` with the Agg renderer: no pyplot
global state, no display needed, safe on a headless worker.

Every figure has a fixed, documented size (`FIGURES`), saved at `DPI` without tight cropping, so the
PNG is exactly that many pixels whatever its content; pages and tests can rely on it.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np

DPI = 100


@dataclasses.dataclass(frozen=True)
class FigureKind:
    """One figure of the report: its file name, pixel size and title."""

    name: str
    file: str
    width: int
    height: int
    title: str

    @property
    def inches(self) -> tuple[float, float]:
        return self.width / DPI, self.height / DPI


_KINDS = [
    FigureKind("loss", "loss.png", 800, 500, "Training and validation loss"),
    FigureKind("reconstructions", "reconstructions.png", 800, 400, "Reconstructions next to originals"),
    FigureKind("feature_errors", "feature_errors.png", 800, 500, "Reconstruction error per feature"),
    FigureKind("embedding_map", "embedding_map.png", 800, 600, "Embeddings: 2-D PCA map"),
    FigureKind("error_histogram", "error_histogram.png", 800, 500, "Reconstruction error and anomaly threshold"),
    FigureKind("cluster_sizes", "cluster_sizes.png", 800, 500, "Duplicate cluster sizes"),
    FigureKind("dedup_thresholds", "dedup_thresholds.png", 800, 500, "Kept and removed rows per threshold"),
    FigureKind("dedup_examples", "dedup_examples.png", 800, 700, "Largest duplicate clusters"),
    FigureKind("vae_samples", "vae_samples.png", 800, 400, "Samples from the prior (VAE)"),
]
FIGURES: dict[str, FigureKind] = {kind.name: kind for kind in _KINDS}

_GREY = "#b0b0b0"
_ANOMALY = "#d62728"
_NORMAL = "#1f77b4"


def new_figure(kind: FigureKind):
    from matplotlib.figure import Figure

    return Figure(figsize=kind.inches, dpi=DPI, layout="constrained")


def to_png(fig, kind: FigureKind) -> bytes:
    """PNG bytes of exactly kind.width x kind.height pixels (no bbox cropping, which would change them)."""
    fig.set_size_inches(*kind.inches)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _positive_log_scale(values: np.ndarray, ratio: float = 30.0) -> bool:
    """Log axis when every value is positive and they span more than `ratio`: loss curves drop by decades."""
    values = values[np.isfinite(values)]
    return bool(len(values) and values.min() > 0 and values.max() / values.min() > ratio)


LEARNING_RATE_KEYS = ("learning_rate", "lr")


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))


def loss_panels(history: Mapping[str, Sequence[float]]) -> tuple[list[str], list[str]]:
    """(metrics drawn beside the loss, notes on those left out): a learning rate that never changed is a
    flat line, and a plain autoencoder's `reconstruction` is its loss, so neither gets a panel."""
    extras, notes = [], []
    for key in sorted(k for k in history if not k.startswith("val_") and k != "loss"):
        values = np.asarray(history[key], dtype=float)
        if key in LEARNING_RATE_KEYS and len(values) and np.allclose(values, values[0]):
            notes.append(f"the learning rate stayed at {values[0]:.3g} (not plotted)")
        elif key == "reconstruction" and _same(values, history.get("loss", [])) and \
                _same(history.get("val_reconstruction", []), history.get("val_loss", [])):
            notes.append("reconstruction error equals the loss for this model (not plotted twice)")
        else:
            extras.append(key)
    return extras[:5], notes


def loss_curves(history: Mapping[str, Sequence[float]]) -> bytes:
    """Loss and validation loss per epoch; every other metric in the history (a VAE's kl/nll/elbo, the
    `reconstruction` error when it differs from the loss, a sparse model's penalty, a learning rate that
    changed) in its own small panel, since their scales differ."""
    from matplotlib.ticker import MaxNLocator

    kind = FIGURES["loss"]
    fig = new_figure(kind)
    extras, _ = loss_panels(history)
    panels = 1 + len(extras)
    cols = 1 if panels == 1 else (2 if panels <= 4 else 3)
    rows = math.ceil(panels / cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, ["loss", *extras], strict=False):
        plotted = []
        for name, style in ((key, "-o"), (f"val_{key}", "--s")):
            values = np.asarray(history.get(name, []), dtype=float)
            if len(values):
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, markersize=3, label="validation" if name.startswith("val_") else "train")
                plotted.append(values)
        if plotted and _positive_log_scale(np.concatenate(plotted)):
            ax.set_yscale("log")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(kind.title)
    return to_png(fig, kind)


def _show_image(ax, image: np.ndarray, vmin: float, vmax: float) -> None:
    if image.ndim == 3 and image.shape[-1] == 3:
        ax.imshow(np.clip((image - vmin) / max(vmax - vmin, 1e-12), 0, 1), interpolation="nearest")
    else:
        ax.imshow(image.reshape(image.shape[:2]), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _value_range(images: np.ndarray) -> tuple[float, float]:
    """One grey scale for originals and reconstructions alike, so that they can be compared by eye."""
    lo, hi = np.nanpercentile(images, [0.5, 99.5]) if images.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def reconstruction_grid(originals: np.ndarray, reconstructions: np.ndarray, errors: np.ndarray | None = None) -> bytes:
    """Originals (odd rows of the grid) above their reconstructions (even rows): [n, h, w] or [n, h, w, c]."""
    kind = FIGURES["reconstructions"]
    fig = new_figure(kind)
    n = len(originals)
    cols = min(8, max(n, 1))
    pairs = max(1, math.ceil(n / cols))
    axes = fig.subplots(2 * pairs, cols, squeeze=False)
    lo, hi = _value_range(originals)
    for i in range(2 * pairs * cols):
        grid_row, col = divmod(i, cols)
        ax = axes[grid_row, col]
        index = (grid_row // 2) * cols + col
        if index >= n:
            ax.set_visible(False)
            continue
        is_original = grid_row % 2 == 0
        _show_image(ax, originals[index] if is_original else reconstructions[index], lo, hi)
        if col == 0:
            ax.set_ylabel("original" if is_original else "rebuilt", fontsize=8)
        if not is_original and errors is not None:
            ax.set_title(f"err {errors[index]:.3g}", fontsize=7)
    fig.suptitle(f"{kind.title}: original row above, reconstruction below")
    return to_png(fig, kind)


def feature_errors(names: Sequence[str], mse: np.ndarray, unit: str, grid: tuple[int, int] | None = None) -> bytes:
    """Mean squared reconstruction error of each feature: which columns the model rebuilds badly.

    `grid` (rows, cols): the features are the pixels of an image-like vector (64 = 8x8), drawn as a
    heatmap in that layout, where the badly rebuilt region shows at a glance.
    """
    kind = FIGURES["feature_errors"]
    fig = new_figure(kind)
    ax = fig.subplots()
    if grid is not None:
        art = ax.imshow(np.asarray(mse, dtype=float).reshape(grid), cmap="magma", interpolation="nearest")
        fig.colorbar(art, ax=ax, label=f"mean squared error ({unit})")
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        ax.set_title(f"{kind.title}, as the {grid[0]}x{grid[1]} image")
        return to_png(fig, kind)
    positions = np.arange(len(mse))
    ax.bar(positions, mse, color=_NORMAL)
    if len(names) <= 40:
        ax.set_xticks(positions, names, rotation=90 if max(len(n) for n in names) > 4 else 0, fontsize=8)
    else:
        ax.set_xlabel(f"feature index (0..{len(names) - 1})")
    ax.set_ylabel(f"mean squared error ({unit})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(kind.title)
    return to_png(fig, kind)


def error_histogram(errors: np.ndarray, thresholds: Mapping[str, float], subtitle: str = "",
                    xlabel: str = "reconstruction error") -> bytes:
    """Histogram of reconstruction error with each threshold as a vertical line (and the rows above it).

    Errors are skewed (a long tail of bad rows): with a wide positive range the bins and axis are
    logarithmic so that both the bulk and the tail stay visible.
    """
    kind = FIGURES["error_histogram"]
    fig = new_figure(kind)
    ax = fig.subplots()
    errors = np.asarray(errors, dtype=float)
    errors = errors[np.isfinite(errors)]
    log = _positive_log_scale(errors, ratio=100.0)
    bins = np.geomspace(errors.min(), errors.max(), 60) if log else 60
    ax.hist(errors, bins=bins, color=_NORMAL, alpha=0.8)
    if log:
        ax.set_xscale("log")
    for (label, value), style in zip(thresholds.items(), ("-", "--", ":"), strict=False):
        above = int((errors > value).sum())
        ax.axvline(value, color=_ANOMALY, linestyle=style, linewidth=2,
                   label=f"{label} {value:.4g} ({above:,} rows above, {above / max(len(errors), 1):.1%})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if thresholds:
        ax.legend(fontsize=8)
    ax.set_title(f"{kind.title}{': ' + subtitle if subtitle else ''}", fontsize=10)
    return to_png(fig, kind)


def cluster_sizes(sizes: np.ndarray, singletons: int) -> bytes:
    """How many duplicate clusters there are of each size (rows with no duplicate noted in the title)."""
    kind = FIGURES["cluster_sizes"]
    fig = new_figure(kind)
    ax = fig.subplots()
    sizes = np.asarray(sizes, dtype=np.int64)
    values, counts = np.unique(sizes, return_counts=True)
    if len(values) <= 30:
        ax.bar([str(v) for v in values], counts, color=_NORMAL)
        ax.set_xlabel("rows in the cluster")
    else:  # many sizes: log-spaced integer bins, so both pairs and huge clusters show
        edges = np.unique(np.geomspace(values.min(), values.max() + 1, 40).astype(np.int64))
        ax.hist(sizes, bins=edges, color=_NORMAL)
        ax.set_xscale("log")
        ax.set_xlabel("rows in the cluster (log-spaced bins)")
    ax.set_yscale("log")
    ax.set_ylabel("clusters")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{kind.title}: {int(counts.sum()):,} clusters of 2+ rows; {singletons:,} rows without a duplicate",
                 fontsize=10)
    return to_png(fig, kind)


def dedup_thresholds(thresholds: Sequence[float], kept: Sequence[int], removed: Sequence[int],
                     main_threshold: float | None = None) -> bytes:
    """Kept and removed rows at each swept cosine threshold: what a stricter or looser cut would give."""
    kind = FIGURES["dedup_thresholds"]
    fig = new_figure(kind)
    ax = fig.subplots()
    positions = np.arange(len(thresholds))
    width = 0.4
    kept_bars = ax.bar(positions - width / 2, kept, width, color=_NORMAL, label="kept")
    removed_bars = ax.bar(positions + width / 2, removed, width, color=_ANOMALY, label="removed")
    ax.bar_label(kept_bars, [f"{int(v):,}" for v in kept], fontsize=8)
    ax.bar_label(removed_bars, [f"{int(v):,}" for v in removed], fontsize=8)
    labels = [f"{t:g}" + (" (used)" if main_threshold is not None and math.isclose(t, main_threshold) else "")
              for t in thresholds]
    ax.set_xticks(positions, labels)
    ax.set_xlabel("cosine similarity threshold")
    ax.set_ylabel("rows")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(kind.title, fontsize=10)
    return to_png(fig, kind)


def sample_grid(samples: np.ndarray) -> bytes:
    """Images [n, h, w(, c)] decoded from codes drawn from the VAE's prior, in a grid of 4 x 8."""
    kind = FIGURES["vae_samples"]
    fig = new_figure(kind)
    cols = 8
    rows = max(1, math.ceil(len(samples) / cols))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    lo, hi = _value_range(samples)
    for i, ax in enumerate(axes):
        if i < len(samples):
            _show_image(ax, samples[i], lo, hi)
        else:
            ax.set_visible(False)
    fig.suptitle(f"{kind.title}: {len(samples)} codes drawn from N(0, I), decoded")
    return to_png(fig, kind)


def sample_heatmaps(real: np.ndarray, samples: np.ndarray, unit: str) -> bytes:
    """Tabular VAE: rows sampled from the prior beside real rows, one row per line, features across."""
    kind = FIGURES["vae_samples"]
    fig = new_figure(kind)
    axes = fig.subplots(1, 2, sharey=True)
    both = np.concatenate([real, samples]) if len(real) else samples
    lo, hi = _value_range(both)
    art = None
    for ax, data, title in ((axes[0], real, "real rows"), (axes[1], samples, "samples from the prior")):
        if len(data):
            art = ax.imshow(data, aspect="auto", cmap="coolwarm", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("feature")
    axes[0].set_ylabel("row")
    if art is not None:
        fig.colorbar(art, ax=axes, label=unit)
    fig.suptitle(kind.title)
    return to_png(fig, kind)
