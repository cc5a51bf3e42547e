"""Judging models on the same held-out rows: the number `ae-tf retrain` promotes on.

Why not simply compare each model's `score`: a model scores in its own normalised space, and a challenger
fitted on data with a wider spread would look better only because its scale is larger. For numeric
features both models are therefore judged in raw space: rows are encoded and decoded, and squared errors
are divided by variances of the evaluation sample itself, a scale neither model chose. The weighting
follows the default normalisation: scalar columns each by their own variance (they may be in unrelated
units), a vector column by one variance, the mean over its positions (its numbers share one unit).
Image models see pixels scaled to [0, 1] inside the model (ae_tf.inputs.images), so their own `score` is
already on a shared scale and is used as is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ae_tf.errors import InvalidInput
from ae_tf.inputs.data import ALL, VALIDATION, ParquetSource, match_files
from ae_tf.inputs.features import IMAGE, VECTOR, FeatureSpec
from ae_tf.model.export import LoadedModel, load_model_dir

SCALARS_METRIC = "mean squared reconstruction error in raw space, each column divided by its variance in the sample"
VECTOR_METRIC = "mean squared reconstruction error in raw space, divided by the sample's mean variance per position"
IMAGE_METRIC = "mean of the models' own reconstruction_error (pixels scaled to [0, 1])"
EVAL_BATCH = 16384


class EvaluationError(InvalidInput):
    """Models that cannot be judged on the same rows (e.g. different features)."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """The rows both models are judged on, with where they came from."""

    features: np.ndarray
    spec: FeatureSpec
    source: str

    @property
    def rows(self) -> int:
        return len(self.features)

    @property
    def metric(self) -> str:
        return {IMAGE: IMAGE_METRIC, VECTOR: VECTOR_METRIC}.get(self.spec.kind, SCALARS_METRIC)

    def variance(self) -> np.ndarray | float:
        """The divisor of squared errors (see the module docstring); floored so constant data cannot divide by 0."""
        per_column = self.features.astype(np.float64).var(axis=0)
        if self.spec.kind == VECTOR:
            return max(float(per_column.mean()), 1e-12)
        return np.maximum(per_column, 1e-12)


def held_out_sample(files: list[str], spec: FeatureSpec, validation_fraction: float, seed: int,
                    read_rows: int, max_rows: int) -> Sample:
    """The validation rows of the training files: the same deterministic split training held out, which
    needs the training run's fraction, seed and `read_rows` (the split is drawn per read batch)."""
    if validation_fraction <= 0:
        raise EvaluationError(f"{files[0]}: training holds no rows out (--validation-fraction 0); "
                              f"pass --eval-input to judge the models on other data")
    source = ParquetSource(files, spec, validation_fraction, seed, read_rows)
    return _collect(source.iter_arrays(VALIDATION), spec, max_rows,
                    f"held-out {validation_fraction:g} of the training input (seed {seed})")


def input_sample(pattern: str, spec: FeatureSpec, max_rows: int) -> Sample:
    """Every row (up to `max_rows`) of separate evaluation data."""
    source = ParquetSource(match_files(pattern), spec, 0.0)
    return _collect(source.iter_arrays(ALL), spec, max_rows, pattern)


def _collect(arrays, spec: FeatureSpec, max_rows: int, source: str) -> Sample:
    parts, rows = [], 0
    for matrix in arrays:
        parts.append(matrix[: max_rows - rows])
        rows += len(parts[-1])
        if rows >= max_rows:
            break
    if not rows:
        raise EvaluationError(f"{source}: no rows to evaluate on")
    return Sample(np.concatenate(parts), spec, source)


def _check_features(model: LoadedModel, sample: Sample) -> None:
    spec = model.contract.spec
    if (spec.kind, spec.columns, spec.width) != (sample.spec.kind, sample.spec.columns, sample.spec.width):
        raise EvaluationError(
            f"{model.path}: takes {spec.kind} features {','.join(spec.columns)} (width {spec.width}), the "
            f"sample has {sample.spec.kind} {','.join(sample.spec.columns)} (width {sample.spec.width}); "
            f"models on different features cannot be compared (use `ae-tf models promote` to switch)")


def reconstruction_error(model_dir: str, sample: Sample) -> float:
    """One number per model, lower is better; see the module docstring for the scale. The model runs
    through ae_tf.model.encoder.BatchEncoder, the path every other caller of a SavedModel takes."""
    from ae_tf.model.encoder import BatchEncoder

    encoder = BatchEncoder(load_model_dir(model_dir))
    _check_features(encoder.model, sample)
    x = sample.features
    if sample.spec.kind == IMAGE:
        return float(encoder.encode_array(x)[1].astype(np.float64).mean())
    variance = sample.variance()
    total = 0.0
    for i in range(0, len(x), EVAL_BATCH):  # bounds the float64 copies below, not the model calls
        chunk = x[i:i + EVAL_BATCH]
        rebuilt = encoder.decode_array(encoder.encode_array(chunk)[0]).astype(np.float64)
        total += float((np.square(chunk - rebuilt) / variance).sum())
    return total / x.size
