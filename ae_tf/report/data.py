"""What `ae-tf report` works from: its config, and the data gathered once for every figure and table.

`gather` reads the model directory, the sampled input rows run through the model (`run_model`), and the
encode and dedup outputs; ae_tf.report.figures and ae_tf.report.tables draw from the ReportData it returns.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ae_tf.contracts import EncodeManifest, ModelMetadata
from ae_tf.errors import InvalidInput
from ae_tf.inputs.features import IMAGE, FeatureSpec
from ae_tf.model.encoder import BatchEncoder
from ae_tf.model.export import load_model_dir, read_history, read_model_metadata
from ae_tf.report.html import Figure
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
    metadata: ModelMetadata
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
        return self.metadata.family == "vae" or "sample" in (self.metadata.signatures or [])


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


def _input_files(config: ReportConfig, metadata: ModelMetadata) -> tuple[list[str], str]:
    """Files to sample for reconstructions; an explicit --input must exist, the training inputs may not."""
    from ae_tf.inputs.data import match_files

    if config.input:
        try:
            return match_files(config.input), f"--input {config.input}"
        except FileNotFoundError as err:
            raise ReportInputError(f"--input {err}") from None
    inputs = (metadata.data or {}).get("inputs") or []
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
    files, source = _input_files(config, loaded.contract)
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
    metadata = read_model_metadata(config.model)
    data = ReportData(config, metadata, metadata.spec, _history(config.model))
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
