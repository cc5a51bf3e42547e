"""Training input streamed from Parquet through tf.data, one Arrow record batch at a time.

Nothing here holds the whole dataset in memory: files are read batch by batch, the train/validation split
is a deterministic per-row draw (same rows every epoch), and normalisation statistics are accumulated in
one streaming pass.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ae_tf.features import FeatureError, FeatureSpec, check_finite, check_schema, features_to_array

log = logging.getLogger(__name__)

TRAIN = "train"
VALIDATION = "validation"
ALL = "all"


def match_files(pattern: str) -> list[str]:
    """Expand a glob (local or gs://) into sorted file paths; a directory means every *.parquet in it."""
    import tensorflow as tf

    if tf.io.gfile.isdir(pattern):
        pattern = pattern.rstrip("/") + "/*.parquet"
    files = sorted(p for p in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(p))
    if not files:
        raise FileNotFoundError(f"{pattern}: no input file matches")
    return files


def open_parquet(path: str) -> pq.ParquetFile:
    """Local files are opened natively (fast); other schemes through tf.io.gfile."""
    if "://" not in path:
        return pq.ParquetFile(path)
    import tensorflow as tf

    return pq.ParquetFile(tf.io.gfile.GFile(path, "rb"))


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
    read_rows: int = 65536

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
                check_finite(matrix, self.spec, source=f"{path} (batch {batch_index})")
                if part != ALL:
                    held_out = validation_mask(
                        len(matrix), self.validation_fraction, self.seed, file_index, batch_index
                    )
                    matrix = matrix[held_out] if part == VALIDATION else matrix[~held_out]
                if len(matrix):
                    yield matrix

    def statistics(self, part: str = TRAIN) -> FeatureStats:
        """One streaming pass: per-column count, mean and standard deviation in float64."""
        count = 0
        total = np.zeros(self.spec.width)
        total_sq = np.zeros(self.spec.width)
        for matrix in self.iter_arrays(part):
            m = matrix.astype(np.float64)
            count += len(m)
            total += m.sum(axis=0)
            total_sq += np.square(m).sum(axis=0)
        if count == 0:
            raise FeatureError(f"{self.files[0]}: no {part} rows to train on")
        mean = total / count
        var = np.maximum(total_sq / count - np.square(mean), 0.0)
        return FeatureStats(count=count, mean=mean, std=np.sqrt(var))

    def dataset(self, part: str, batch_size: int, shuffle: bool = False, shuffle_buffer: int = 100_000,
                rows: int | None = None):
        """A re-iterable tf.data pipeline of [batch, width] float32 tensors (file order reshuffled per epoch).

        `rows` (the part's row count, known after `statistics`) lets Keras show real progress per epoch.
        """
        import tensorflow as tf

        epoch = {"n": 0}

        def generate() -> Iterator[np.ndarray]:
            order = list(range(len(self.files)))
            if shuffle:
                np.random.default_rng([self.seed, epoch["n"]]).shuffle(order)
                epoch["n"] += 1
            yield from self.iter_arrays(part, order)

        ds = tf.data.Dataset.from_generator(
            generate, output_signature=tf.TensorSpec([None, self.spec.width], tf.float32)
        )
        ds = ds.unbatch()
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=self.seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if rows is not None:
            ds = ds.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
        return ds.prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass
class FeatureStats:
    """Streaming moments of the training features, stored in the model and its metadata."""

    count: int
    mean: np.ndarray
    std: np.ndarray

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
