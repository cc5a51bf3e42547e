"""Apply a loaded model directory to Arrow batches: features in, embedding, error and anomaly score out.

Shared by the Beam ModelHandler and the benchmark's plain loop so both do exactly the same work.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from ae_tf.export import LoadedModel, load_model_dir
from ae_tf.features import IMAGE, FeatureError, FeatureSpec, RowCheck, features_to_array, validate_rows


class ImageDecodeError(FeatureError):
    """Some images of a batch cannot be decoded; `check` holds the per-row verdict and reasons."""

    def __init__(self, message: str, check: RowCheck):
        super().__init__(message)
        self.check = check


@dataclasses.dataclass(frozen=True)
class Encoded:
    """The model's outputs for one batch, row-aligned; `anomaly_score` is what anomaly flags threshold."""

    embedding: np.ndarray            # [rows, k]
    reconstruction_error: np.ndarray  # [rows]
    anomaly_score: np.ndarray         # [rows] (the plain error for models exported without one)


class BatchEncoder:
    """One loaded SavedModel; `encode(batch)` runs a whole Arrow batch through `encode_and_score`."""

    def __init__(self, model: LoadedModel):
        self.model = model
        self.spec = FeatureSpec.from_dict(model.metadata["feature_spec"])
        self.code_size = int(model.metadata["code_size"])
        signatures = model.saved_model.signatures
        self._fused = signatures.get("encode_and_score")
        self._encode = model.signature("encode")
        self._score = model.signature("score")

    @classmethod
    def load(cls, model_dir: str) -> BatchEncoder:
        return cls(load_model_dir(model_dir))

    @property
    def version(self) -> str:
        return self.model.version

    def encode_array(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 [rows, width] (or encoded image bytes [rows]) -> (embedding [rows, k], error [rows])."""
        out = self.run_array(features)
        return out.embedding, out.reconstruction_error

    def run_array(self, features: np.ndarray) -> Encoded:
        """Every output of one model call on a feature array."""
        import tensorflow as tf

        is_bytes = features.dtype == object
        tensor = tf.constant(features, dtype=tf.string if is_bytes else tf.float32)
        if self._fused is not None:
            out = self._fused(features=tensor)
            embedding = out["embedding"].numpy()
        else:
            out = self._score(features=tensor)
            embedding = self._encode(features=tensor)["embedding"].numpy()
        error = out["reconstruction_error"].numpy()
        score = out["anomaly_score"].numpy() if "anomaly_score" in out else error
        return Encoded(embedding, error, score)

    def encode(self, batch: pa.RecordBatch | pa.Table, source: str = "input") -> tuple[np.ndarray, np.ndarray]:
        """(embedding, reconstruction_error) of one batch; see `run`."""
        out = self.run(batch, source)
        return out.embedding, out.reconstruction_error

    def run(self, batch: pa.RecordBatch | pa.Table, source: str = "input") -> Encoded:
        """One model call for the batch. An undecodable image fails the whole call inside TensorFlow; it is
        then re-raised as an ImageDecodeError naming the rows and reasons (`row_check` finds them first
        when a caller wants to route such rows elsewhere)."""
        features = features_to_array(batch, self.spec, source=source)
        if self.spec.kind != IMAGE:
            return self.run_array(features)
        import tensorflow as tf

        try:
            return self.run_array(features)
        except tf.errors.InvalidArgumentError:
            check = self.row_check(batch)
            if check.all_valid:
                raise
            bad = np.flatnonzero(~check.valid)
            shown = "; ".join(f"row {i}: {check.reasons[i]}" for i in bad[:5])
            more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise ImageDecodeError(f"{source}: {len(bad)} of {len(features)} image(s) in column "
                                   f"{self.spec.columns[0]!r} cannot be decoded: {shown}{more}", check) from None

    def row_check(self, batch: pa.RecordBatch | pa.Table) -> RowCheck:
        """Per-row validity and reasons for this model's features (ae_tf.features.validate_rows)."""
        return validate_rows(batch, self.spec)
