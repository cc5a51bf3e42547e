"""The report's figures from gathered ReportData: each `fig_*` returns PNG bytes and a caption, or raises
Skip with the reason it cannot be drawn (ae_tf.report.plots does the drawing on plain arrays).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ae_tf.contracts import ModelMetadata
from ae_tf.inputs.features import IMAGE, FeatureSpec
from ae_tf.model.anomaly import describe_score, score_name
from ae_tf.report.data import ModelRun, ReportData, Skip
from ae_tf.report.html import Figure
from ae_tf.report.inputs import read_embedding_sample


def _square_side(width: int) -> int | None:
    side = math.isqrt(width)
    return side if side * side == width and side >= 2 else None


def _as_images(rows: np.ndarray, spec: FeatureSpec) -> np.ndarray | None:
    """Rows as [n, h, w(, c)] images: image models already are; a square vector is reshaped (digits)."""
    if spec.kind == IMAGE:
        return rows.reshape(len(rows), *spec.image.shape)
    side = _square_side(spec.width)
    return rows.reshape(len(rows), side, side) if side else None


def _standardise(rows: np.ndarray, metadata: ModelMetadata) -> tuple[np.ndarray, str]:
    """Rows in the model's standardised units (how it scores errors), when the metadata has the scale."""
    norm = metadata.extra.get("normalization") or {}
    scale, shift = np.asarray(norm.get("scale", []), dtype=float), np.asarray(norm.get("shift", []), dtype=float)
    if scale.shape == (rows.shape[1],) and shift.shape == scale.shape and (scale > 0).all():
        return (rows - shift) / scale, "standardised units, as the model scores"
    return rows, "raw units"


def fig_loss(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report import plots

    if data.history is None:
        raise Skip(data.notes["loss"])
    extra, left_out = plots.loss_panels(data.history)
    return plots.loss_curves(data.history), (
        f"{len(data.history['loss'])} epochs. Loss is the training objective"
        + (f"; other panels: {', '.join(extra)}" if extra else "") + "."
        + "".join(f" {note[0].upper()}{note[1:]}." for note in left_out))


def _need_run(data: ReportData) -> ModelRun:
    if data.run is None:
        raise Skip(data.notes.get("run", "no input rows"))
    return data.run


def fig_reconstructions(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report import plots

    run = _need_run(data)
    n = min(data.config.grid_rows, len(run.features))
    originals = _as_images(run.shown[:n], data.spec)
    if originals is None:
        raise Skip(f"the features are not an image (width {data.spec.width} is not a perfect square); "
                   "see the error per feature")
    rebuilt = _as_images(run.reconstructions[:n], data.spec)
    if data.spec.kind == IMAGE:  # the model's own pixels, not shrunk into a fixed-size figure
        from ae_tf.report.image_grid import full_size_grid

        h, w = data.spec.image.height, data.spec.image.width
        errors = ", ".join(f"{e:.3g}" for e in run.errors[:n])
        return full_size_grid(originals, rebuilt), (
            f"{n} of the {run.source} at full size ({w}x{h} px each, not resampled): each row of originals "
            f"above its row of reconstructions; reconstruction errors in order: {errors}.")
    return plots.reconstruction_grid(originals, rebuilt, run.errors[:n]), (
        f"{n} of the {run.source}; each reconstruction titled with its reconstruction error.")


def fig_feature_errors(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report import plots

    if data.spec.kind == IMAGE:
        raise Skip("an image model: see the reconstruction grid")
    run = _need_run(data)
    original, unit = _standardise(run.shown.astype(np.float64), data.metadata)
    rebuilt, _ = _standardise(run.reconstructions.astype(np.float64), data.metadata)
    mse = ((original - rebuilt) ** 2).mean(axis=0)
    names = list(data.spec.columns) if data.spec.kind != "vector" else \
        [f"{data.spec.columns[0]}[{i}]" for i in range(data.spec.width)]
    worst = names[int(np.argmax(mse))]
    side = _square_side(data.spec.width) if data.spec.kind == "vector" else None
    layout = f" Drawn as the {side}x{side} image the vector holds (row by row)." if side else ""
    return plots.feature_errors(names, mse, unit, grid=(side, side) if side else None), (
        f"Mean over the {run.source}, in {unit}. Worst rebuilt: {worst}.{layout}")


def fig_embedding_map(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report import embedding_map

    sample, why = data.embeddings, ""
    if data.dedup is not None and data.dedup.has_embedding:
        sample = read_embedding_sample(data.dedup.row_files, data.config.max_points, data.config.seed,
                                       f"--dedup {data.dedup.directory}", data.config.color_by)
    elif data.dedup is not None:
        why = " (the dedup rows carry no embedding column, so clusters cannot be placed on the map)"
    if sample is not None:
        codes, source = sample.codes, f"{sample.rows:,} of {sample.total_rows:,} rows from {sample.source}"
        if sample.labels is not None:
            colouring = embedding_map.MapColouring("label", sample.labels, label=data.config.color_by)
        elif sample.cluster_id is not None:
            sizes = data.dedup.cluster_sizes_of(sample.cluster_id) if data.dedup is not None else None
            colouring = embedding_map.MapColouring("cluster", sample.cluster_id, sizes=sizes)
        elif sample.is_anomaly is not None:
            colouring = embedding_map.MapColouring("anomaly", sample.is_anomaly)
        elif sample.errors is not None:
            colouring = embedding_map.MapColouring("error", sample.errors)
        else:
            colouring = embedding_map.MapColouring("error", np.zeros(len(codes)), "no reconstruction_error column")
    elif data.run is not None:
        codes, source = data.run.codes, f"the {data.run.source} (no --embeddings)"
        colouring = embedding_map.MapColouring("error", data.run.errors)
    else:
        raise Skip(f"no --embeddings, and {data.notes.get('run', 'no input rows')}")
    if len(codes) < 3:
        raise Skip(f"only {len(codes)} rows in {source}: too few for a map")
    points, ratio = embedding_map.pca_2d(codes)
    coloured = {"cluster": f"duplicate cluster (the {embedding_map.TOP_CLUSTERS} largest in colour; grey: no duplicate)",
                "anomaly": "is_anomaly",
                "label": f"{data.config.color_by} (the {embedding_map.TOP_LABELS} most common values in colour)",
                "error": "reconstruction error"}[colouring.mode]
    return embedding_map.embedding_map(points, ratio, colouring, f"{len(codes):,} rows"), (
        f"PCA of the codes of {source}, coloured by {coloured}{why}. The two components explain "
        f"{ratio.sum():.0%} of the code variance.")


def _thresholds(data: ReportData) -> dict[str, float]:
    lines = {}
    model = data.metadata.anomaly_threshold or {}
    if model.get("value") is not None:
        lines[f"model threshold (quantile {model.get('quantile', '?')})"] = float(model["value"])
    used = (data.manifest.anomalies if data.manifest else None) or {}
    if used.get("threshold") is not None and not math.isclose(used["threshold"], model.get("value") or -1):
        lines[f"encode threshold ({used.get('rule', 'given')})"] = float(used["threshold"])
    return lines


def fig_error_histogram(data: ReportData) -> tuple[bytes, str]:
    """The score the model's threshold is on (anomaly_score; the plain error for older models)."""
    from ae_tf.report import plots

    on_error = score_name(data.metadata) == "reconstruction_error"  # a model without an anomaly_score
    emb, run, note = data.embeddings, data.run, ""
    if emb is not None and (emb.scores is not None or (on_error and emb.errors is not None)):
        values = emb.errors if on_error else emb.scores
        source = f"{len(values):,} of {emb.total_rows:,} rows from {emb.source}"
    elif run is not None:
        values = run.errors if on_error or run.scores is None else run.scores
        source = f"the {run.source}, scored with the model's `score` signature"
    else:
        raise Skip(f"no --embeddings with an anomaly_score column (encode with --flag-anomalies), and "
                   f"{data.notes.get('run', 'no input rows')}")
    thresholds = _thresholds(data)
    if not thresholds:
        note = " The model metadata has no anomaly threshold."
    name = describe_score(data.metadata)
    return plots.error_histogram(values, thresholds, f"{len(values):,} rows", xlabel=name), (
        f"{name[0].upper()}{name[1:]} of {source}. Rows right of the threshold are flagged by "
        f"`ae-tf encode --flag-anomalies`.{note}")


def fig_cluster_sizes(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report import plots

    if data.dedup is None:
        raise Skip("no --dedup directory given")
    ids = data.dedup.cluster_ids()
    if ids is None:
        raise Skip(f"no Parquet rows with cluster_id in {data.dedup.directory}")
    _, counts = np.unique(ids, return_counts=True)
    sizes = counts[counts > 1]
    singletons = int((counts == 1).sum())
    if len(sizes) == 0:
        raise Skip(f"no duplicate clusters among the {len(ids):,} rows in {data.dedup.directory}")
    return plots.cluster_sizes(sizes, singletons), (
        f"{len(ids):,} rows in {data.dedup.directory}: {len(sizes):,} clusters of two rows or more; "
        f"the largest has {int(sizes.max()):,} rows.")


def _sweep(summary: dict) -> list[dict]:
    """Per-threshold counts from the dedup summary; the main threshold's own counts are included."""
    rows = {float(r["threshold"]): r for r in summary.get("sweep") or [] if "threshold" in r}
    if summary.get("threshold") is not None and "rows_removed" in summary:
        rows.setdefault(float(summary["threshold"]), summary)
    total = summary.get("rows")
    out = []
    for threshold in sorted(rows):
        r = rows[threshold]
        removed = int(r.get("rows_removed", 0))
        kept = int(r["rows_kept"]) if "rows_kept" in r else (int(total) - removed if total is not None else None)
        if kept is not None:
            out.append({"threshold": threshold, "kept": kept, "removed": removed})
    return out


def fig_dedup_thresholds(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report import plots

    if data.dedup is None:
        raise Skip("no --dedup directory given")
    if data.dedup.summary is None:
        raise Skip(f"no dedup summary JSON in {data.dedup.directory}")
    sweep = _sweep(data.dedup.summary)
    if not sweep:
        raise Skip(f"the dedup summary {data.dedup.summary_path} has no per-threshold counts")
    main = data.dedup.summary.get("threshold")
    return plots.dedup_thresholds([r["threshold"] for r in sweep], [r["kept"] for r in sweep],
                                  [r["removed"] for r in sweep], main), (
        f"From {data.dedup.summary_path}: one row kept per cluster at each cosine threshold.")


def fig_dedup_examples(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report.dedup import dedup_examples

    if data.dedup is None:
        raise Skip("no --dedup directory given")
    try:
        return dedup_examples(data.dedup, data.spec, data.manifest)
    except ValueError as why:
        raise Skip(str(why)) from None


def fig_vae_samples(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report import plots

    if not data.is_vae:
        raise Skip(f"a {data.metadata.family} model has no prior to sample (only a VAE does)")
    if data.samples is None:
        raise Skip("the SavedModel has no `sample` signature")
    samples = data.samples
    images = _as_images(samples, data.spec)
    if images is not None:
        return plots.sample_grid(images), (
            f"{len(samples)} draws from the VAE's `sample` signature (codes from N(0, I), decoded).")
    real = data.run.shown[: min(len(samples), 32)] if data.run is not None else np.zeros((0, samples.shape[1]))
    real, unit = _standardise(real.astype(np.float64), data.metadata)
    samples, _ = _standardise(samples.astype(np.float64), data.metadata)
    return plots.sample_heatmaps(real, samples, unit), (
        f"{len(samples)} draws from the VAE's `sample` signature beside {len(real)} real rows, in {unit}.")


FIGURE_BUILDERS: dict[str, Callable[[ReportData], tuple[bytes, str]]] = {
    "loss": fig_loss,
    "reconstructions": fig_reconstructions,
    "feature_errors": fig_feature_errors,
    "embedding_map": fig_embedding_map,
    "error_histogram": fig_error_histogram,
    "cluster_sizes": fig_cluster_sizes,
    "dedup_thresholds": fig_dedup_thresholds,
    "dedup_examples": fig_dedup_examples,
    "vae_samples": fig_vae_samples,
}


def build_figures(data: ReportData) -> tuple[list[Figure], list[tuple[str, str]]]:
    """Draw every figure whose inputs are present; the others are returned with the reason."""
    from ae_tf.report.image_grid import png_size
    from ae_tf.report.plots import FIGURES

    figures, skipped = [], []
    for name, builder in FIGURE_BUILDERS.items():
        kind = FIGURES[name]
        try:
            png, caption = builder(data)
        except Skip as why:
            skipped.append((kind.title, str(why)))
            continue
        width, height = png_size(png)  # the fixed size of the kind, except a full-size image grid
        figures.append(Figure(kind.title, kind.file, png, width, height, caption))
    return figures, skipped
