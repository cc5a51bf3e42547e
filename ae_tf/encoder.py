"""Apply a loaded model directory to Arrow batches: features in, embedding and error out.

Shared by the Beam ModelHandler and the benchmark's plain loop so both do exactly the same work.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ae_tf.export import LoadedModel, load_model_dir
from ae_tf.features import FeatureSpec, features_to_array


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
        """float32 [rows, width] -> (embedding [rows, k], reconstruction_error [rows])."""
        import tensorflow as tf

        tensor = tf.constant(features, dtype=tf.float32)
        if self._fused is not None:
            out = self._fused(features=tensor)
            return out["embedding"].numpy(), out["reconstruction_error"].numpy()
        return self._encode(features=tensor)["embedding"].numpy(), \
            self._score(features=tensor)["reconstruction_error"].numpy()

    def encode(self, batch: pa.RecordBatch | pa.Table, source: str = "input") -> tuple[np.ndarray, np.ndarray]:
        return self.encode_array(features_to_array(batch, self.spec, source=source))
