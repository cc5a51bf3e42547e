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
import os

from ae_tf import storage
from ae_tf.report.data import ReportConfig, ReportError, ReportResult, gather, run_model  # noqa: F401 (public here)
from ae_tf.report.figures import build_figures
from ae_tf.report.html import render
from ae_tf.report.tables import dedup_table, manifest_table, model_table, page_warnings

log = logging.getLogger(__name__)


INDEX = "index.html"
SUMMARY = "report.json"


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
    subtitle = (f"{config.model} ({data.metadata.family}, version {data.metadata.model_version}), "
                f"made {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    page = render("ae-tf report", subtitle, [model_table(data), manifest_table(data), dedup_table(data)],
                  figures, skipped, page_warnings(data))
    html_path = os.path.join(config.output, INDEX)
    _write(html_path, page)
    _write(os.path.join(config.output, SUMMARY), json.dumps({
        "model": config.model, "model_version": data.metadata.model_version,
        "config": dataclasses.asdict(config),
        "figures": [{"file": f.file, "title": f.title, "width": f.width, "height": f.height} for f in figures],
        "skipped": [{"title": t, "reason": r} for t, r in skipped],
    }, indent=2))
    log.info("report written to %s (%d figures, %d skipped)", html_path, len(figures), len(skipped))
    return ReportResult(config.output, html_path, figures, skipped)
