"""Anomaly thresholds on the model's anomaly score, calibrated on held-out rows at training time.

Training stores a quantile table of the validation anomaly scores (ae_tf.model.anomaly_score) in the model
metadata; encode turns `--flag-anomalies`, `--anomaly-threshold X` or `--anomaly-quantile Q` into one
threshold from it, so flagging needs a single pass over the data. Models exported before the anomaly score
existed have only the reconstruction error's table, and their `anomaly_score` is that error.
"""

from __future__ import annotations

import numpy as np

from ae_tf.contracts import ModelMetadata
from ae_tf.errors import InvalidInput

LEVELS = [round(x, 4) for x in [*np.arange(0.0, 0.99, 0.01), *np.arange(0.99, 0.999, 0.001), 0.999, 0.9999, 1.0]]


def quantile_table(scores: np.ndarray) -> dict:
    """Quantiles of held-out errors at fixed levels (fine-grained in the upper tail, where thresholds live)."""
    if len(scores) == 0:
        return {"levels": [], "values": []}
    return {"levels": LEVELS, "values": [float(v) for v in np.quantile(scores, LEVELS)]}


def resolve_threshold(metadata: ModelMetadata, threshold: float | None = None, quantile: float | None = None) -> tuple[float, str]:
    """(threshold, how it was chosen): an explicit value, a quantile of validation errors, or the model's own."""
    if threshold is not None:
        return float(threshold), "--anomaly-threshold"
    if quantile is not None:
        if not 0 < quantile < 1:
            raise InvalidInput(f"--anomaly-quantile must be within (0, 1), got {quantile}")
        name = score_name(metadata)
        table = (metadata.extra.get(name) or {}).get("quantiles") or {}
        if not table.get("levels"):
            raise InvalidInput("--anomaly-quantile: the model metadata has no quantile table of validation scores; "
                             "use --anomaly-threshold")
        value = float(np.interp(quantile, table["levels"], table["values"]))
        return value, f"quantile {quantile} of validation {describe_score(metadata)}"
    model_threshold = metadata.anomaly_threshold or {}
    if model_threshold.get("value") is None:
        raise InvalidInput("--flag-anomalies: the model has no calibrated threshold; use --anomaly-threshold")
    return float(model_threshold["value"]), (
        f"model threshold (quantile {model_threshold.get('quantile')} of validation {describe_score(metadata)})")


def score_name(metadata: ModelMetadata) -> str:
    """The metadata section whose quantiles the threshold came from: `anomaly_score`, or for models exported
    before it existed, `reconstruction_error`."""
    return "anomaly_score" if "anomaly_score" in metadata.extra else "reconstruction_error"


def describe_score(metadata: ModelMetadata) -> str:
    """E.g. 'anomaly_score (standardized_error+latent_distance)' or 'reconstruction_error'."""
    if "anomaly_score" in metadata.extra:
        return f"anomaly_score ({metadata.extra['anomaly_score'].get('rule')})"
    return "reconstruction error"
