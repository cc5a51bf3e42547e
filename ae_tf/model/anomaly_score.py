"""The model's anomaly score: what `score` returns as `anomaly_score` and what anomaly flags threshold.

Plain reconstruction error in the model's normalised space lets the features that are hard to rebuild
dominate, and it ignores where a row lands in the code space. The default rule (chosen by
`benchmarks/anomaly.py`, where it matched or beat PCA, IsolationForest and LocalOutlierFactor) adds both:

    standardized_error = mean over values j of (x_j - x̂_j)^2 / v_j
    latent_distance    = (z - m)' P (z - m) / k
    anomaly_score      = standardized_error + latent_weight * latent_distance   (latent_weight 1)

`v_j` is the mean squared residual of value j on the held-out rows (floored at VARIANCE_FLOOR times their
mean, so a value that is always rebuilt exactly cannot divide by zero); `m` and `P` are the mean and the
(ridged) inverse covariance of the codes of the training rows; `k` is the code size. Both terms are about 1
on normal rows. The spread is measured per value for scalar columns (unrelated units), once for a vector
column and once per channel for images (their numbers share one unit, as in the default normalisation;
per position, digits lost AUROC: the rarely inked pixels got the largest weights). Every constant is
written into the metadata and into the SavedModel's graph, so the score needs no project code to compute
or to check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from ae_tf.errors import InvalidInput

RECONSTRUCTION = "reconstruction_error"
STANDARDIZED = "standardized_error"
LATENT = "standardized_error+latent_distance"
RULES = (RECONSTRUCTION, STANDARDIZED, LATENT)
DEFAULT_RULE = LATENT
GRANULARITIES = ("value", "column", "channel")
DEFAULT_LATENT_WEIGHT = 1.0
VARIANCE_FLOOR = 0.01   # of the mean residual variance
COVARIANCE_RIDGE = 1e-3  # of the mean code variance, added to the diagonal before inverting
MAX_CODE_ROWS = 262_144  # training rows whose codes are accumulated (a sample suffices for a k x k matrix)
MIN_VARIANCE_ROWS = 200  # with fewer held-out rows, the residual spread also uses the training rows
# Calibration runs compiled, in sub-batches of this many rows: eager Keras calls cost ~5x the compiled
# step on a conv model, and one shape (plus the last, shorter one) keeps retracing to two graphs.
CALIBRATION_ROWS = 256


@dataclasses.dataclass(frozen=True)
class ScoreParameters:
    """The fitted constants of the anomaly score (see the module docstring)."""

    rule: str
    error_variance: np.ndarray  # [values] (scalar columns), [1] (a vector column) or [channels] (images)
    code_mean: np.ndarray       # [k]
    code_precision: np.ndarray  # [k, k]
    latent_weight: float = DEFAULT_LATENT_WEIGHT
    granularity: str = "value"  # value | column | channel: what one entry of error_variance covers
    variance_rows: int = 0
    code_rows: int = 0

    def to_metadata(self) -> dict:
        return {"rule": self.rule, "latent_weight": self.latent_weight, "granularity": self.granularity,
                "variance_floor": VARIANCE_FLOOR, "covariance_ridge": COVARIANCE_RIDGE,
                "error_variance": [float(v) for v in self.error_variance],
                "code_mean": [float(v) for v in self.code_mean],
                "code_precision": [[float(v) for v in row] for row in self.code_precision],
                "variance_rows": self.variance_rows, "code_rows": self.code_rows}

    @classmethod
    def from_metadata(cls, data: dict) -> ScoreParameters:
        return cls(rule=data["rule"], error_variance=np.asarray(data["error_variance"], np.float32),
                   code_mean=np.asarray(data["code_mean"], np.float32),
                   code_precision=np.asarray(data["code_precision"], np.float32),
                   latent_weight=float(data["latent_weight"]), granularity=data["granularity"],
                   variance_rows=int(data.get("variance_rows", 0)), code_rows=int(data.get("code_rows", 0)))


def _code_and_residual(model, x):
    """(code, squared residual) of a batch: what calibration accumulates (the prepared input stays inside)."""
    _clean, code, squared = _residuals(model, x)
    return code, squared


def _residuals(model, x):
    """(prepared input, code, squared residual [rows, ...]) in the model's own space."""
    from keras import ops

    clean = model.prepare(x)
    code = model.embed(clean)
    rebuilt = ops.cast(model.decoder(code, training=False), "float32")
    return clean, code, ops.square(clean - rebuilt)


def sub_batches(batch, rows: int = CALIBRATION_ROWS):
    """Slices of at most `rows` rows of a batch (a tensor or a dict of tensors, as tf.data yields them)."""
    import tensorflow as tf

    first = tf.nest.flatten(batch)[0]
    total = int(first.shape[0]) if first.shape[0] is not None else int(tf.shape(first)[0])
    for start in range(0, total, rows):
        yield tf.nest.map_structure(lambda t, s=start: t[s:s + rows], batch)


def calibration_passes(step, batches: Iterable) -> Iterable:
    """`step(sub-batch)` (a tf.function) as numpy over every sub-batch of `batches`."""
    import tensorflow as tf

    for batch in batches:
        for part in sub_batches(batch):
            yield tf.nest.map_structure(np.asarray, step(part))


def compiled_step(model, fn):
    """`fn(model, x)` as one tf.function: traced once per input shape (the sub-batch and the last, shorter one)."""
    import tensorflow as tf

    return tf.function(lambda x: fn(model, x), reduce_retracing=True)


def score_outputs(model, x, params: ScoreParameters | None) -> dict:
    """Every score of a batch of raw features, as tensors: what the `score` signature returns.

    Without parameters (a model exported before this score existed) `anomaly_score` is the plain error.
    """
    import tensorflow as tf

    clean, code, squared = _residuals(model, x)
    rows = tf.shape(squared)[0]
    flat = tf.reshape(squared, (rows, -1))
    error = tf.reduce_mean(flat, axis=-1)
    out = {"embedding": model.embedding(clean, code), RECONSTRUCTION: error}
    if params is None:
        out["anomaly_score"] = error
        return out
    variance = tf.constant(params.error_variance, tf.float32)
    # images: [rows, h, w, c] / [c] broadcasts over the pixels; numbers: [rows, width] / [width] or [1]
    standardized = tf.reduce_mean(tf.reshape(squared / variance, (rows, -1)), axis=-1)
    centred = code - tf.constant(params.code_mean, tf.float32)
    latent = tf.reduce_sum(tf.matmul(centred, tf.constant(params.code_precision, tf.float32)) * centred,
                           axis=-1) / float(len(params.code_mean))
    combined = {RECONSTRUCTION: error, STANDARDIZED: standardized,
                LATENT: standardized + params.latent_weight * latent}[params.rule]
    out.update({STANDARDIZED: standardized, "latent_distance": latent, "anomaly_score": combined})
    return out


def granularity_for(kind: str) -> str:
    """Scalar columns -> per value, a vector column -> one, images -> per channel (module docstring)."""
    from ae_tf.inputs.features import IMAGE, VECTOR

    return {IMAGE: "channel", VECTOR: "column"}.get(kind, "value")


def fit_parameters(model, train_batches: Iterable, validation_batches: Iterable | None,
                   rule: str = DEFAULT_RULE, latent_weight: float = DEFAULT_LATENT_WEIGHT,
                   granularity: str = "value") -> ScoreParameters:
    """One pass over held-out rows (residual spread) and one over training rows (code moments).

    With fewer than MIN_VARIANCE_ROWS held-out rows the residual spread is measured on both, so a tiny
    validation split cannot leave a value with a spread estimated from a handful of rows.
    """
    if granularity not in GRANULARITIES:
        raise InvalidInput(f"error spread granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    if rule not in RULES:
        raise InvalidInput(f"anomaly score rule must be one of {', '.join(RULES)}, got {rule!r}")
    step = compiled_step(model, _code_and_residual)  # one graph for both passes
    residual = _Moments()
    if validation_batches is not None:
        for _code, squared in calibration_passes(step, validation_batches):
            residual.add_squared(squared, granularity)
    pooled = residual.rows < MIN_VARIANCE_ROWS
    codes = _Moments()
    for code, squared in calibration_passes(step, train_batches):
        if codes.rows >= MAX_CODE_ROWS and not pooled:
            break
        if codes.rows < MAX_CODE_ROWS:
            codes.add_codes(code)
        if pooled:
            residual.add_squared(squared, granularity)
    variance = residual.sum / max(residual.rows, 1)
    variance = np.maximum(variance, VARIANCE_FLOOR * max(float(variance.mean()), 1e-12))
    mean = codes.sum / max(codes.rows, 1)
    covariance = codes.outer / max(codes.rows, 1) - np.outer(mean, mean)
    ridge = COVARIANCE_RIDGE * max(float(np.trace(covariance)) / len(mean), 1e-12)
    precision = np.linalg.inv(covariance + ridge * np.eye(len(mean)))
    return ScoreParameters(rule, variance.astype(np.float32), mean.astype(np.float32),
                           ((precision + precision.T) / 2).astype(np.float32), float(latent_weight), granularity,
                           variance_rows=residual.rows, code_rows=codes.rows)


class _Moments:
    """Streaming sums in float64: squared residuals per value (or channel), code sums and outer products."""

    def __init__(self):
        self.rows, self.sum, self.outer = 0, 0.0, 0.0

    def add_squared(self, squared: np.ndarray, granularity: str) -> None:
        squared = squared.astype(np.float64)
        rows = len(squared)
        per_row = {"channel": lambda: squared.reshape(rows, -1, squared.shape[-1]).mean(axis=1),
                   "column": lambda: squared.reshape(rows, -1).mean(axis=1, keepdims=True),
                   "value": lambda: squared.reshape(rows, -1)}[granularity]()
        self.rows += len(squared)
        self.sum = self.sum + per_row.sum(axis=0)

    def add_codes(self, code: np.ndarray) -> None:
        code = code.astype(np.float64)
        self.rows += len(code)
        self.sum = self.sum + code.sum(axis=0)
        self.outer = self.outer + code.T @ code
