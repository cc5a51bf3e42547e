"""`ae-tf report`: PNG figures and one self-contained HTML page about a model and what it produced.

    ae-tf report --model MODEL_DIR [--embeddings OUT_DIR] [--dedup DIR] [--input GLOB] --output REPORT_DIR

Figures (fixed pixel sizes, see ae_tf.report.plots.FIGURES) and what each needs:
  loss.png               800x500  the model's training history (assets/history.json)
  reconstructions.png    800x400  input rows (--input, default the training inputs) through encode+decode;
                                  an image model, or a vector whose width is a perfect square (8x8 digits);
                                  an image model's grid is at full size instead: each image at the model's
                                  own pixel size, up to 8 per row within 840 px
  feature_errors.png     800x500  the same rows, tabular models: mean squared error per feature
  embedding_map.png      800x600  codes (--embeddings, or --dedup rows carrying embeddings, else the sampled
                                  input rows), PCA to 2-D, coloured by duplicate cluster, is_anomaly or error
  error_histogram.png    800x500  reconstruction error (--embeddings, else the sampled input rows via
                                  `score`) with the model's anomaly threshold
  cluster_sizes.png      800x500  --dedup rows: how many clusters of each size
  dedup_thresholds.png   800x500  --dedup summary: kept/removed rows at each swept threshold
  dedup_examples.png     800x700  --dedup rows: the largest clusters, kept row beside its least similar
                                  members (images when the rows carry an image or square-vector input)
  vae_samples.png        800x400  a VAE's `sample` signature: decoded draws from the prior
A figure whose inputs are absent is listed under "Not drawn" with the reason; a path given on the
command line that cannot be read is an error naming it. Also written: index.html and report.json
(figure files, sizes and what was skipped, for scripts).

Needs matplotlib (`pip install 'ae-tf[report]'`); the model is loaded with plain tf.saved_model.load.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
from collections.abc import Callable

import numpy as np

from ae_tf import storage
from ae_tf.contracts import EncodeManifest
from ae_tf.errors import InvalidInput
from ae_tf.inputs.features import IMAGE, FeatureSpec
from ae_tf.model.anomaly import describe_score, score_name
from ae_tf.model.encoder import BatchEncoder
from ae_tf.model.export import load_model_dir, read_history, read_metadata
from ae_tf.report.html import Figure, Table, render
from ae_tf.report.inputs import (
    MANIFEST,
    DedupOutputs,
    EmbeddingSample,
    ReportInputError,
    embedding_files,
    find_dedup_outputs,
    input_sample,
    read_embedding_sample,
    read_encode_manifest,
    require_dir,
)

log = logging.getLogger(__name__)

INDEX = "index.html"
SUMMARY = "report.json"
CALL_ROWS = 512  # rows per SavedModel call: bounds memory for image models


class ReportError(InvalidInput):
    """A report that cannot be made as asked (bad flag value, output path taken by a file)."""


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    """What to report on and how much to read; defaults are what `ae-tf report --help` documents."""

    model: str
    output: str
    embeddings: str | None = None
    dedup: str | None = None
    input: str | None = None
    input_rows: int = 2048  # rows sampled from the input and run through the model
    image_rows: int = 256  # the same cap for image models (each row is a decoded image)
    max_points: int = 20_000  # embeddings sampled for the map and the histogram
    grid_rows: int = 16  # examples in the reconstruction grid
    vae_samples: int = 32  # draws from a VAE's prior
    seed: int = 0
    color_by: str | None = None  # a kept column (e.g. a class label) that colours the embedding map

    def validate(self) -> None:
        for name in ("input_rows", "image_rows", "max_points", "grid_rows", "vae_samples"):
            if getattr(self, name) < 1:
                raise ReportError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


@dataclasses.dataclass
class ModelRun:
    """Input rows run through the SavedModel: raw features, what to show, codes, rebuilds, errors."""

    features: np.ndarray  # what the model takes (float32 rows, or encoded image bytes)
    shown: np.ndarray  # originals as drawn: raw rows, or images in [0, 1]
    codes: np.ndarray
    reconstructions: np.ndarray
    errors: np.ndarray
    rows_read: int
    source: str
    scores: np.ndarray | None = None  # the `score` signature's anomaly_score, when the model has one


@dataclasses.dataclass
class ReportData:
    """Everything the figures are drawn from, gathered once."""

    config: ReportConfig
    metadata: dict
    spec: FeatureSpec
    history: dict | None
    manifest: EncodeManifest | None = None
    embeddings: EmbeddingSample | None = None
    dedup: DedupOutputs | None = None
    run: ModelRun | None = None
    samples: np.ndarray | None = None
    notes: dict[str, str] = dataclasses.field(default_factory=dict)  # why an input is missing, by figure

    @property
    def is_vae(self) -> bool:
        return self.metadata.get("family") == "vae" or "sample" in self.metadata.get("signatures", [])


@dataclasses.dataclass
class ReportResult:
    output: str
    html: str
    figures: list[Figure]
    skipped: list[tuple[str, str]]


class Skip(Exception):
    """Raised by a figure builder whose inputs are absent: the reason goes on the page."""


# -- gathering -------------------------------------------------------------------------------------------

def _history(model_dir: str) -> dict | None:
    try:
        history = read_history(model_dir)
    except Exception:  # absent or unreadable: the loss figure is skipped, not the report
        return None
    return history if isinstance(history, dict) and history.get("loss") else None


def _input_files(config: ReportConfig, metadata: dict) -> tuple[list[str], str]:
    """Files to sample for reconstructions; an explicit --input must exist, the training inputs may not."""
    from ae_tf.inputs.data import match_files

    if config.input:
        try:
            return match_files(config.input), f"--input {config.input}"
        except FileNotFoundError as err:
            raise ReportInputError(f"--input {err}") from None
    inputs = metadata.get("data", {}).get("inputs") or []
    files = []
    for path in inputs:
        try:
            files += match_files(path)
        except (FileNotFoundError, OSError):
            continue
    if not files:
        shown = ", ".join(inputs[:2]) + (" ..." if len(inputs) > 2 else "") if inputs else "none recorded"
        raise Skip(f"the training inputs in the model metadata are not readable here ({shown}); pass --input GLOB")
    return files, "the training inputs"


def _shown_originals(features: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Originals as the model sees them: images decoded and scaled to [0, 1] by the model's own code."""
    if spec.kind != IMAGE:
        return features
    import tensorflow as tf

    from ae_tf.inputs.images import to_model_space

    return np.concatenate([to_model_space(tf.constant(features[i:i + CALL_ROWS]), spec.image).numpy()
                           for i in range(0, len(features), CALL_ROWS)])


def run_model(config: ReportConfig, spec: FeatureSpec, loaded) -> ModelRun:
    """Sample input rows and run them through the model (ae_tf.model.encoder.BatchEncoder), then `decode`."""
    files, source = _input_files(config, loaded.metadata)
    rows = config.image_rows if spec.kind == IMAGE else config.input_rows
    features, read = input_sample(files, spec, rows, config.seed)
    if len(features) == 0:
        raise Skip(f"no valid rows in {source} ({read} read)")
    encoder = BatchEncoder(loaded)  # one pass: embedding, error and anomaly score together
    codes, errors, scores = encoder.encode_array_scored(features)
    rebuilt = encoder.decode_array(codes)
    scores = scores if encoder.has_anomaly_score else None
    return ModelRun(features, _shown_originals(features, spec), codes, rebuilt, errors, read,
                    f"{len(features):,} rows sampled from {source}", scores)


def gather(config: ReportConfig) -> ReportData:
    """Read the model's metadata and every optional input; a missing optional input becomes a note."""
    metadata = read_metadata(config.model)
    data = ReportData(config, metadata, FeatureSpec.from_dict(metadata["feature_spec"]), _history(config.model))
    if data.history is None:
        data.notes["loss"] = f"no training history in {config.model}/assets/history.json"
    if config.embeddings:
        out_dir = require_dir(config.embeddings, "--embeddings")
        data.manifest = read_encode_manifest(out_dir)
        files = embedding_files(out_dir, data.manifest)
        if not files:
            raise ReportInputError(f"--embeddings {out_dir}: no Parquet files (did `ae-tf encode` finish?)")
        data.embeddings = read_embedding_sample(files, config.max_points, config.seed, f"--embeddings {out_dir}",
                                                config.color_by)
        if data.manifest is None:
            data.notes["manifest"] = f"{out_dir} has no {MANIFEST} manifest: the encode run may not have finished"
    if config.dedup:
        data.dedup = find_dedup_outputs(config.dedup)
    loaded = load_model_dir(config.model)
    try:
        data.run = run_model(config, data.spec, loaded)
    except Skip as why:
        data.notes["run"] = str(why)
    if data.is_vae and "sample" in loaded.saved_model.signatures:
        import tensorflow as tf

        data.samples = loaded.signature("sample")(n=tf.constant(config.vae_samples, tf.int32))["samples"].numpy()
    return data


# -- figures ---------------------------------------------------------------------------------------------

def _square_side(width: int) -> int | None:
    side = math.isqrt(width)
    return side if side * side == width and side >= 2 else None


def _as_images(rows: np.ndarray, spec: FeatureSpec) -> np.ndarray | None:
    """Rows as [n, h, w(, c)] images: image models already are; a square vector is reshaped (digits)."""
    if spec.kind == IMAGE:
        return rows.reshape(len(rows), *spec.image.shape)
    side = _square_side(spec.width)
    return rows.reshape(len(rows), side, side) if side else None


def _standardise(rows: np.ndarray, metadata: dict) -> tuple[np.ndarray, str]:
    """Rows in the model's standardised units (how it scores errors), when the metadata has the scale."""
    norm = metadata.get("normalization") or {}
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
    from ae_tf.report import plots

    sample, why = data.embeddings, ""
    if data.dedup is not None and data.dedup.has_embedding:
        sample = read_embedding_sample(data.dedup.row_files, data.config.max_points, data.config.seed,
                                       f"--dedup {data.dedup.directory}", data.config.color_by)
    elif data.dedup is not None:
        why = " (the dedup rows carry no embedding column, so clusters cannot be placed on the map)"
    if sample is not None:
        codes, source = sample.codes, f"{sample.rows:,} of {sample.total_rows:,} rows from {sample.source}"
        if sample.labels is not None:
            colouring = plots.MapColouring("label", sample.labels, label=data.config.color_by)
        elif sample.cluster_id is not None:
            sizes = data.dedup.cluster_sizes_of(sample.cluster_id) if data.dedup is not None else None
            colouring = plots.MapColouring("cluster", sample.cluster_id, sizes=sizes)
        elif sample.is_anomaly is not None:
            colouring = plots.MapColouring("anomaly", sample.is_anomaly)
        elif sample.errors is not None:
            colouring = plots.MapColouring("error", sample.errors)
        else:
            colouring = plots.MapColouring("error", np.zeros(len(codes)), "no reconstruction_error column")
    elif data.run is not None:
        codes, source = data.run.codes, f"the {data.run.source} (no --embeddings)"
        colouring = plots.MapColouring("error", data.run.errors)
    else:
        raise Skip(f"no --embeddings, and {data.notes.get('run', 'no input rows')}")
    if len(codes) < 3:
        raise Skip(f"only {len(codes)} rows in {source}: too few for a map")
    points, ratio = plots.pca_2d(codes)
    coloured = {"cluster": f"duplicate cluster (the {plots.TOP_CLUSTERS} largest in colour; grey: no duplicate)",
                "anomaly": "is_anomaly",
                "label": f"{data.config.color_by} (the {plots.TOP_LABELS} most common values in colour)",
                "error": "reconstruction error"}[colouring.mode]
    return plots.embedding_map(points, ratio, colouring, f"{len(codes):,} rows"), (
        f"PCA of the codes of {source}, coloured by {coloured}{why}. The two components explain "
        f"{ratio.sum():.0%} of the code variance.")


def _thresholds(data: ReportData) -> dict[str, float]:
    lines = {}
    model = (data.metadata.get("anomaly_threshold") or {})
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
        return dedup_examples(data.dedup, data.spec)
    except ValueError as why:
        raise Skip(str(why)) from None


def fig_vae_samples(data: ReportData) -> tuple[bytes, str]:
    from ae_tf.report import plots

    if not data.is_vae:
        raise Skip(f"a {data.metadata.get('family', '?')} model has no prior to sample (only a VAE does)")
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


# -- tables ----------------------------------------------------------------------------------------------

def _num(value, digits: int = 5) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def model_table(data: ReportData) -> Table:
    m = data.metadata
    spec = data.spec
    training = m.get("training", {})
    threshold = m.get("anomaly_threshold") or {}
    features = f"{spec.kind}: {', '.join(spec.columns)} (width {spec.width})"
    if spec.image is not None:
        features += f", images {spec.image.height}x{spec.image.width}x{spec.image.channels} ({spec.image.encoding})"
    network = (m.get("model") or {}).get("network")
    rows = [
        ("model", data.config.model),
        ("version", m.get("model_version", "-")),
        ("created", m.get("created_at", "-")),
        ("family", m.get("family", "-") + (f" ({network} network)" if network else "")),
        ("code size", _num(m.get("code_size"))),
        ("features", features),
        ("training rows", f"{_num(training.get('rows_train'))} train, {_num(training.get('rows_validation'))} validation"),
        ("epochs", f"{_num(training.get('epochs_run'))} run, best {_num(training.get('best_epoch'))}, "
                   f"{_num(training.get('seconds'))}s on {training.get('device', '-')}"),
        ("loss", f"train {_num(training.get('train_loss'))}, validation {_num(training.get('validation_loss'))}"),
        ("anomaly threshold", f"{_num(threshold.get('value'))} (quantile {_num(threshold.get('quantile'))} of "
                              f"validation {describe_score(m)})" if threshold else "-"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())),
    ]
    return Table("Model", rows)


def manifest_table(data: ReportData) -> Table:
    man = data.manifest
    if not man:
        return Table("Embeddings", [("embeddings", data.config.embeddings)] if data.config.embeddings else [])
    error = man.reconstruction_error or {}
    rows = [
        ("output", man.output_dir if man.output_dir is not None else data.config.embeddings),
        ("rows", f"in {_num(man.rows_in)}, out {_num(man.rows_out)}, rejected {_num(man.rows_rejected)}"),
        ("reconstruction error", f"mean {_num(error.get('mean'))}, max {_num(error.get('max'))}"),
        ("shards", _num(len(man.shards))),
        ("encoded with", f"{man.model_dir or '-'} (version {man.model_version or '-'})"),
        ("finished", man.finished_at or "-"),
    ]
    if man.anomalies:
        a = man.anomalies
        rows.append(("anomalies", f"{_num(a.get('rows_flagged'))} rows above {_num(a.get('threshold'))} "
                                  f"({a.get('rule', '-')})"))
    return Table("Embeddings (encode manifest)", rows)


def dedup_table(data: ReportData) -> Table:
    if data.dedup is None or data.dedup.summary is None:
        return Table("Duplicates", [])
    s = data.dedup.summary
    keys = ("rows", "threshold", "pairs", "clusters", "rows_in_clusters", "rows_removed", "rows_kept", "keep_policy")
    rows = [(k.replace("_", " "), _num(s[k])) for k in keys if k in s]
    exact = s.get("exact_duplicates") or {}
    if exact:
        rows.append(("identical rows removed", _num(exact.get("rows_removed"))))
    checks = s.get("checks") or {}
    if checks:
        residual = checks.get("residual_duplicates") or {}
        rows.append(("removed rows below the threshold", _num(checks.get("removed_below_threshold"))))
        rows.append(("kept rows with a kept duplicate", f"{_num(residual.get('with_kept_duplicate'))} of "
                                                        f"{_num(residual.get('sample_kept_rows'))} sampled"))
    return Table(f"Duplicates ({data.dedup.summary_path})", rows)


def _warnings(data: ReportData) -> list[str]:
    notes = []
    if data.manifest and data.manifest.model_version not in (None, data.metadata.get("model_version")):
        notes.append(f"The embeddings were made by model version {data.manifest.model_version}, not this "
                     f"model's {data.metadata.get('model_version')}: its threshold may not fit them.")
    if "manifest" in data.notes:
        notes.append(data.notes["manifest"])
    return notes


# -- writing ---------------------------------------------------------------------------------------------

def _check_output(path: str) -> None:
    """Before any work: the report directory may exist (figures are replaced) but must not be a file."""
    if storage.isfile(path):
        raise ReportError(f"--output {path}: exists and is a file; give a directory")


def _write(path: str, data: bytes | str) -> None:
    storage.write_bytes(path, data)


def _remove_stale_figures(output: str, drawn: set[str]) -> None:
    """An earlier report in the same directory may have drawn a figure this one skips: remove it, so the
    directory never shows a figure of other data than the page describes."""
    from ae_tf.report.plots import FIGURES

    for kind in FIGURES.values():
        path = storage.join(output, kind.file)
        if kind.file not in drawn and storage.isfile(path):
            storage.remove(path)


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


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError("ae-tf report needs matplotlib: pip install 'ae-tf[report]'") from None


def make_report(config: ReportConfig) -> ReportResult:
    """Gather, draw, and write the PNGs, index.html and report.json into config.output."""

    config.validate()
    _require_matplotlib()
    _check_output(config.output)
    data = gather(config)
    figures, skipped = build_figures(data)
    storage.makedirs(config.output)
    for figure in figures:
        _write(os.path.join(config.output, figure.file), figure.png)
    _remove_stale_figures(config.output, {figure.file for figure in figures})
    subtitle = (f"{config.model} ({data.metadata.get('family', '?')}, version {data.metadata.get('model_version')}), "
                f"made {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    page = render("ae-tf report", subtitle, [model_table(data), manifest_table(data), dedup_table(data)],
                  figures, skipped, _warnings(data))
    html_path = os.path.join(config.output, INDEX)
    _write(html_path, page)
    _write(os.path.join(config.output, SUMMARY), json.dumps({
        "model": config.model, "model_version": data.metadata.get("model_version"),
        "config": dataclasses.asdict(config),
        "figures": [{"file": f.file, "title": f.title, "width": f.width, "height": f.height} for f in figures],
        "skipped": [{"title": t, "reason": r} for t, r in skipped],
    }, indent=2))
    log.info("report written to %s (%d figures, %d skipped)", html_path, len(figures), len(skipped))
    return ReportResult(config.output, html_path, figures, skipped)
