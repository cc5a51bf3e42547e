"""Training input streamed from Parquet through tf.data, one Arrow record batch at a time.

Nothing here holds the whole dataset in memory: files are read batch by batch, the train/validation split
is a deterministic per-row draw (same rows every epoch), and normalisation statistics are accumulated in
one streaming pass. Image columns stream their stored bytes (or pixel arrays); tf.data decodes them in
parallel with the same functions the SavedModel runs (ae_tf.inputs.images). TensorFlow Datasets by name go
through ae_tf.inputs.tfds_source, which offers the same interface; `open_source` (ae_tf.inputs.sources) picks one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ae_tf import storage
from ae_tf.defaults import BATCH_ROWS
from ae_tf.errors import InputNotFound
from ae_tf.inputs.features import (
    IMAGE,
    FeatureError,
    FeatureSpec,
    check_finite,
    check_schema,
    features_to_array,
    infer_feature_spec,
)

log = logging.getLogger(__name__)

TRAIN = "train"
VALIDATION = "validation"
ALL = "all"
IMAGE_SHUFFLE_BUFFER = 10_000  # encoded images are large: cap the rows held for shuffling


def match_files(pattern: str | tuple[str, ...] | list[str]) -> list[str]:
    """Expand a glob (local or gs://) into sorted file paths; a directory means every *.parquet in it.

    Several patterns (e.g. the partitions `ae-tf retrain --latest-partitions` chose) are expanded one by one.
    """

    if not isinstance(pattern, str):
        return sorted({path for one in pattern for path in match_files(one)})
    if storage.isdir(pattern):
        pattern = storage.join(pattern, "*.parquet")
    files = sorted(p for p in storage.glob(pattern) if storage.isfile(p))
    if not files:
        raise InputNotFound(f"{pattern}: no input file matches")
    return files


def open_parquet(path: str) -> pq.ParquetFile:
    """Local files are opened natively (fast); gs:// through ae_tf.storage."""
    if storage.is_local(path):
        return pq.ParquetFile(path)
    return pq.ParquetFile(storage.open_read(path))


def validation_mask(num_rows: int, fraction: float, seed: int, file_index: int, batch_index: int) -> np.ndarray:
    """Deterministic per-row split: the same rows are held out every epoch and every run with this seed."""
    if fraction <= 0:
        return np.zeros(num_rows, dtype=bool)
    rng = np.random.default_rng([seed, file_index, batch_index])
    return rng.random(num_rows) < fraction


@dataclasses.dataclass
class ParquetSource:
    """Parquet files that feed one model: the files, their feature spec and the split settings."""

    files: list[str]
    spec: FeatureSpec
    validation_fraction: float = 0.1
    seed: int = 0
    read_rows: int = BATCH_ROWS

    def __post_init__(self) -> None:
        self.num_rows = 0
        for path in self.files:
            meta = open_parquet(path)
            check_schema(meta.schema_arrow, self.spec, source=path)
            self.num_rows += meta.metadata.num_rows

    def iter_arrays(self, part: str = ALL, file_order: list[int] | None = None) -> Iterator[np.ndarray]:
        """Yield float32 feature matrices of up to `read_rows` rows from the requested part of the split."""
        order = file_order if file_order is not None else range(len(self.files))
        for file_index in order:
            path = self.files[file_index]
            reader = open_parquet(path)
            for batch_index, batch in enumerate(
                reader.iter_batches(batch_size=self.read_rows, columns=list(self.spec.columns))
            ):
                matrix = features_to_array(batch, self.spec, source=path)
                if matrix.dtype != object:  # encoded images are checked when decoded
                    check_finite(matrix, self.spec, source=f"{path} (batch {batch_index})")
                if part != ALL:
                    held_out = validation_mask(
                        len(matrix), self.validation_fraction, self.seed, file_index, batch_index
                    )
                    matrix = matrix[held_out] if part == VALIDATION else matrix[~held_out]
                if len(matrix):
                    yield matrix

    @property
    def inputs(self) -> list[str]:
        return list(self.files)

    def fingerprint(self) -> str:
        return fingerprint(self.files, self.num_rows)

    def count_rows(self, part: str = TRAIN) -> int:
        """Rows in one part of the split, reading only the feature column (no decoding)."""
        count = sum(len(m) for m in self.iter_arrays(part))
        if count == 0:
            raise FeatureError(f"{self.files[0]}: no {part} rows to train on")
        return count

    def statistics(self, part: str = TRAIN) -> FeatureStats:
        """One streaming pass: per-column count, mean and standard deviation in float64.

        Images need no statistics (they are scaled to [0, 1] inside the model): only the count.
        """
        if self.spec.kind == IMAGE:
            return FeatureStats.count_only(self.count_rows(part))
        return FeatureStats.accumulate(self.iter_arrays(part), self.spec.width, f"{self.files[0]}: no {part} rows")

    @property
    def groups(self) -> int:
        """Files: the units whose order is reshuffled every epoch."""
        return len(self.files)

    def group_order(self, epoch: int, shuffle: bool) -> list[int]:
        """The file order of one epoch (the same with and without the in-memory cache)."""
        order = list(range(len(self.files)))
        if shuffle:
            np.random.default_rng([self.seed, epoch]).shuffle(order)
        return order

    def stored_rows(self, part: str, groups: Sequence[int] | None = None):
        """A re-iterable tf.data of single stored rows (vectors, pixel arrays or image bytes), files in order.

        Called with `groups=None`, each iteration is one epoch with its own file order (see group_order).
        """
        import tensorflow as tf

        from ae_tf.inputs.images import model_input_signature

        epoch = {"n": 0}

        def generate() -> Iterator[np.ndarray]:
            if groups is not None:
                order = list(groups)
            else:
                order = self.group_order(epoch["n"], shuffle=True)
                epoch["n"] += 1
            yield from self.iter_arrays(part, order)

        return tf.data.Dataset.from_generator(generate, output_signature=model_input_signature(self.spec)).unbatch()

    def dataset(self, part: str, batch_size: int, shuffle: bool = False, shuffle_buffer: int = 100_000,
                rows: int | None = None):
        """A re-iterable tf.data pipeline of [batch, width] float32 tensors (file order reshuffled per epoch).

        `rows` (the part's row count, known after `statistics`) lets Keras show real progress per epoch.
        Image features come out as prepared float32 [batch, h, w, c] images in [0, 1].
        """
        rows_ds = self.stored_rows(part, None if shuffle else range(len(self.files)))
        return batch_rows(rows_ds, self.spec, batch_size, shuffle, shuffle_buffer, self.seed, rows)


def shuffle_buffer_for(spec: FeatureSpec, shuffle_buffer: int) -> int:
    """Encoded images are large: cap the rows held for shuffling (the cache uses the same buffer)."""
    return min(shuffle_buffer, IMAGE_SHUFFLE_BUFFER) if spec.kind == IMAGE else shuffle_buffer


def batch_rows(rows_ds, spec: FeatureSpec, batch_size: int, shuffle: bool, shuffle_buffer: int, seed: int,
               rows: int | None = None):
    """A dataset of single stored rows -> shuffled, prepared training batches (shared by every source).

    Encoded images are decoded row by row in parallel; a row that fails to decode is dropped with a
    logged warning rather than ending a long training run (the row count is then not asserted).
    """
    import tensorflow as tf

    from ae_tf.inputs.images import BYTES

    if shuffle:
        rows_ds = rows_ds.shuffle(shuffle_buffer_for(spec, shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    ds = prepare_batches(rows_ds, spec, batch_size)
    if rows is not None and not (spec.kind == IMAGE and spec.image.encoding == BYTES):
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
    return ds.prefetch(tf.data.AUTOTUNE)


def prepare_batches(rows_ds, spec: FeatureSpec, batch_size: int):
    """Single stored rows -> batches of model input: images decoded (in parallel) and scaled to [0, 1]."""
    import tensorflow as tf

    from ae_tf.inputs.images import BYTES, arrays_to_images, image_decoder

    if spec.kind == IMAGE and spec.image.encoding == BYTES:
        ds = rows_ds.map(image_decoder(spec.image), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.ignore_errors(log_warning=True).batch(batch_size)
    ds = rows_ds.batch(batch_size)
    if spec.kind == IMAGE:
        ds = ds.map(lambda x: arrays_to_images(x, spec.image), num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def fingerprint(files: list[str], num_rows: int) -> str:
    """Identifies the training data cheaply: file names, sizes and the row count."""

    digest = hashlib.sha256(str(num_rows).encode())
    for path in files:
        digest.update(path.encode())
        digest.update(str(storage.size(path)).encode())
    return digest.hexdigest()[:16]


def resolve_spec(files: list[str], features: Sequence[str], image=None) -> FeatureSpec:
    """The FeatureSpec of `features` in these files, from the first file's schema and first rows.

    `image` (an ae_tf.inputs.images.ImageRequest) asks for an image feature with a given size/channels.
    """
    first = open_parquet(files[0])
    sample = next(first.iter_batches(batch_size=64 if image else 1024, columns=list(features)), None)
    sample_table = pa.Table.from_batches([sample]) if sample is not None else None
    return infer_feature_spec(first.schema_arrow, features, source=files[0], sample=sample_table, image=image)


def image_request(model) -> object | None:
    """The ImageRequest implied by a ModelConfig: a conv network or explicit image flags ask for images."""
    from ae_tf.inputs.images import ImageRequest

    wants_conv = model.family == "conv" or model.base == "conv"
    if not (wants_conv or model.image_size or model.channels):
        return None
    return ImageRequest(model.image_size, model.channels, 2 ** len(model.filters) if wants_conv else 1)


@dataclasses.dataclass
class FeatureStats:
    """Streaming moments of the training features, stored in the model and its metadata."""

    count: int
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def accumulate(cls, matrices: Iterator[np.ndarray], width: int, empty_message: str) -> FeatureStats:
        """One streaming pass over float matrices: count, mean and standard deviation in float64."""
        count, total, total_sq = 0, np.zeros(width), np.zeros(width)
        for matrix in matrices:
            m = matrix.astype(np.float64)
            count += len(m)
            total += m.sum(axis=0)
            total_sq += np.square(m).sum(axis=0)
        if count == 0:
            raise FeatureError(f"{empty_message} to train on")
        mean = total / count
        return cls(count=count, mean=mean, std=np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0)))

    @classmethod
    def count_only(cls, count: int) -> FeatureStats:
        return cls(count, np.zeros(1), np.ones(1))

    def scales(self, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """(shift, scale) per feature for `feature` (per-column), `global` (one for all) or `none`."""
        width = len(self.mean)
        if mode == "none":
            return np.zeros(width), np.ones(width)
        if mode == "global":
            mean = float(self.mean.mean())
            var = float(np.mean(np.square(self.std) + np.square(self.mean - mean)))
            return np.full(width, mean), np.full(width, max(np.sqrt(var), 1e-6))
        # Near-constant columns would otherwise blow up tiny deviations; floor their scale.
        floor = max(1e-3 * float(self.std.mean()), 1e-6)
        return self.mean.copy(), np.maximum(self.std, floor)


def table_from_arrays(columns: dict[str, np.ndarray]) -> pa.Table:
    """Small helper for tests and demo data: numpy columns -> Arrow table (2-D arrays become vectors)."""
    arrays = {}
    for name, values in columns.items():
        values = np.asarray(values)
        if values.ndim == 2:
            flat = pa.array(values.reshape(-1).astype(np.float32))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            arrays[name] = pa.array(values)
    return pa.table(arrays)
