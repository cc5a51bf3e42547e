"""Apply a loaded model directory to Arrow batches: features in, embedding, error and anomaly score out.

The one inference path: the Beam ModelHandler (pipelines.parts.inference) wraps it for the encode step,
and evaluation, the sweep, the report and the benchmarks' plain loops call it directly, so all do the
same work.
The model is called on sub-batches of `model_batch_rows` rows (ae_tf.model.batching sizes them from the network
against a memory budget), whatever the Arrow batch size. For image bytes, models that export
`prepare_images` decode each file once, inside the model, with a per-row validity flag; a background
thread decodes the next sub-batch while the network runs on the current one.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from ae_tf.inputs.features import IMAGE, FeatureError, RowCheck, features_to_array, validate_rows
from ae_tf.inputs.images import BYTES, bytes_column
from ae_tf.model.batching import auto_model_batch_rows
from ae_tf.model.export import LoadedModel, load_model_dir


class ImageDecodeError(FeatureError):
    """Some images of a batch cannot be decoded; `check` holds the per-row verdict and reasons."""

    def __init__(self, message: str, check: RowCheck):
        super().__init__(message)
        self.check = check


@dataclasses.dataclass
class CheckedEncoding:
    """The outputs for the rows of a batch that could be encoded (`check.valid`), in batch order."""

    embedding: np.ndarray  # [valid rows, k]
    error: np.ndarray  # [valid rows]
    check: RowCheck
    anomaly_score: np.ndarray | None = None  # [valid rows]; the plain error for models exported without one

    def __post_init__(self):
        if self.anomaly_score is None:
            self.anomaly_score = self.error


class BatchEncoder:
    """One loaded SavedModel; `encode(batch)` runs a whole Arrow batch through it, sub-batch by sub-batch."""

    def __init__(self, model: LoadedModel, model_batch_rows: int | None = None, memory_mb: float | None = None):
        self.model = model
        contract = model.contract
        self.spec = contract.spec
        self.code_size = int(contract.code_size)
        self.model_batch_rows = model_batch_rows or auto_model_batch_rows(contract, memory_mb)
        signatures = model.saved_model.signatures
        self._fused = signatures.get("encode_and_score")
        self._encode = model.signature("encode")
        self._score = model.signature("score")
        self._prepare = signatures.get("prepare_images")
        self._encode_images = signatures.get("encode_and_score_images")

    @classmethod
    def load(cls, model_dir: str, model_batch_rows: int | None = None, memory_mb: float | None = None) -> BatchEncoder:
        return cls(load_model_dir(model_dir), model_batch_rows, memory_mb)

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def decodes_once(self) -> bool:
        """Image bytes decoded once, by the model's `prepare_images` (models exported before it: twice)."""
        return (self.spec.kind == IMAGE and self.spec.image.encoding == BYTES
                and self._prepare is not None and self._encode_images is not None)

    def _call(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embedding, reconstruction_error, anomaly_score) of one model call."""
        import tensorflow as tf

        tensor = tf.constant(features, dtype=tf.string if features.dtype == object else tf.float32)
        if self._fused is not None:
            out = self._fused(features=tensor)
            embedding = out["embedding"].numpy()
        else:
            out = self._score(features=tensor)
            embedding = self._encode(features=tensor)["embedding"].numpy()
        return embedding, *_error_and_score(out)

    def encode_array_scored(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 [rows, width] (or encoded image bytes [rows]) -> (embedding, error, anomaly score)."""
        step = self.model_batch_rows
        if len(features) <= step:
            return self._call(features)
        parts = [self._call(features[i:i + step]) for i in range(0, len(features), step)]
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))

    def score_prepared_images(self, images: np.ndarray) -> np.ndarray:
        """Reconstruction error of images already decoded to [0, 1] [rows, h, w, c] (the training input),
        through the SavedModel's `encode_and_score_images`, in sub-batches (image-bytes models only)."""
        import tensorflow as tf

        if self._encode_images is None:
            raise TypeError("score_prepared_images needs an image-bytes model with encode_and_score_images")
        step = self.model_batch_rows
        parts = [self._encode_images(images=tf.constant(images[i:i + step], tf.float32))["reconstruction_error"]
                 .numpy() for i in range(0, len(images), step)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    @property
    def has_anomaly_score(self) -> bool:
        """The model exports an anomaly score beside the plain error (models from before it do not)."""
        outputs = (self._fused or self._score).structured_outputs
        return "anomaly_score" in outputs

    def decode_array(self, embedding: np.ndarray) -> np.ndarray:
        """Embeddings [rows, k] -> reconstructions (raw scale, or images in [0, 1]), in sub-batches."""
        import tensorflow as tf

        decode = self.model.signature("decode")
        step = self.model_batch_rows
        parts = [decode(embedding=tf.constant(embedding[i:i + step], tf.float32))["reconstruction"].numpy()
                 for i in range(0, len(embedding), step)]
        if parts:
            return np.concatenate(parts)
        return np.zeros((0, *(self.spec.image.shape if self.spec.kind == IMAGE else (self.spec.width,))), np.float32)

    def encode_array(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 [rows, width] (or encoded image bytes [rows]) -> (embedding [rows, k], error [rows])."""
        return self.encode_array_scored(features)[:2]

    def encode(self, batch: pa.RecordBatch | pa.Table, source: str = "input") -> tuple[np.ndarray, np.ndarray]:
        """Outputs for every row. An undecodable image raises an ImageDecodeError naming the rows and
        reasons (`encode_checked` encodes the other rows instead, for callers that route them elsewhere)."""
        if self.spec.kind != IMAGE:
            return self.encode_array(features_to_array(batch, self.spec, source=source))
        if self.decodes_once:
            result = self.encode_checked(batch)
            if not result.check.all_valid:
                raise self._decode_error(result.check, source)
            return result.embedding, result.error
        import tensorflow as tf

        features = features_to_array(batch, self.spec, source=source)
        try:
            return self.encode_array(features)
        except tf.errors.InvalidArgumentError:
            check = self.row_check(batch)
            if check.all_valid:
                raise
            raise self._decode_error(check, source) from None

    def _decode_error(self, check: RowCheck, source: str) -> ImageDecodeError:
        bad = np.flatnonzero(~check.valid)
        shown = "; ".join(f"row {i}: {check.reasons[i]}" for i in bad[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        return ImageDecodeError(f"{source}: {len(bad)} of {len(check.valid)} image(s) in column "
                                f"{self.spec.columns[0]!r} cannot be decoded: {shown}{more}", check)

    def encode_checked(self, batch: pa.RecordBatch | pa.Table) -> CheckedEncoding:
        """Outputs for the rows that can be encoded, and the verdict (with reasons) for every row."""
        if self.decodes_once:
            return self._encode_image_bytes(batch)
        check = validate_rows(batch, self.spec)
        valid = batch if check.all_valid else batch.filter(pa.array(check.valid))
        if valid.num_rows == 0:
            return CheckedEncoding(np.zeros((0, self.code_size), np.float32), np.zeros(0, np.float32), check)
        embedding, error, score = self.encode_array_scored(features_to_array(valid, self.spec))
        return CheckedEncoding(embedding, error, check, score)

    def _encode_image_bytes(self, batch: pa.RecordBatch | pa.Table) -> CheckedEncoding:
        """Cheap checks on the Arrow side, then one decode per file inside the model (prefetched one
        sub-batch ahead), then the network on the images that decoded."""
        from ae_tf.inputs.image_validity import cheap_image_checks, decode_failure_reason

        data = bytes_column(batch.column(self.spec.columns[0]))
        reasons = cheap_image_checks(data)
        candidates = np.flatnonzero(np.equal(reasons, None))
        if len(candidates) < len(data):
            data = data.take(pa.array(candidates))
        values = data.to_numpy(zero_copy_only=False)
        step = self.model_batch_rows
        chunks = [values[i:i + step] for i in range(0, len(values), step)]
        embeddings, errors, scores, decoded = [], [], [], []
        with ThreadPoolExecutor(1, thread_name_prefix="ae_tf-decode") as pool:
            pending = pool.submit(self._prepare_chunk, chunks[0]) if chunks else None
            for k in range(len(chunks)):
                images, valid = pending.result()
                if k + 1 < len(chunks):
                    pending = pool.submit(self._prepare_chunk, chunks[k + 1])
                decoded.append(valid)
                if valid.any():
                    out = self._encode_images(images=images)
                    embeddings.append(out["embedding"].numpy())
                    error, score = _error_and_score(out)
                    errors.append(error)
                    scores.append(score)
        if decoded:
            for i in np.flatnonzero(~np.concatenate(decoded)):
                reasons[candidates[i]] = decode_failure_reason(values[i])
        check = RowCheck(valid=np.equal(reasons, None), reasons=reasons)
        embedding = np.concatenate(embeddings) if embeddings else np.zeros((0, self.code_size), np.float32)
        error = np.concatenate(errors) if errors else np.zeros(0, np.float32)
        score = np.concatenate(scores) if scores else error
        return CheckedEncoding(embedding, error, check, score)

    def _prepare_chunk(self, chunk: np.ndarray):
        """Encoded files -> (prepared images of the rows that decoded, as a tensor; validity per row)."""
        import tensorflow as tf

        out = self._prepare(features=tf.constant(chunk, dtype=tf.string))
        valid = out["valid"].numpy()
        images = out["images"] if valid.all() else tf.boolean_mask(out["images"], valid)
        return images, valid

    def row_check(self, batch: pa.RecordBatch | pa.Table) -> RowCheck:
        """Per-row validity and reasons for this model's features (ae_tf.inputs.features.validate_rows)."""
        return validate_rows(batch, self.spec)


def _error_and_score(out: dict) -> tuple[np.ndarray, np.ndarray]:
    """(reconstruction_error, anomaly_score) of a signature's outputs; models exported before the anomaly
    score (ae_tf.model.anomaly_score) score by the plain error."""
    error = out["reconstruction_error"].numpy()
    return error, (out["anomaly_score"].numpy() if "anomaly_score" in out else error)
