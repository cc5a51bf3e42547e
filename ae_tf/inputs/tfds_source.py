"""TensorFlow Datasets by name: as training input (`ae-tf train --tfds mnist`) and as Parquet
(`ae-tf tfds-to-parquet mnist OUT_DIR`) for the Beam encode pipeline.

Images are read from TFDS still encoded (`SkipDecoding`): the model trains on the very bytes a Parquet
export holds, decoded by the same function the SavedModel runs, so a model trained from TFDS encodes the
exported Parquet with identical numbers. The train/validation split is a deterministic per-row draw
from the row index (as for Parquet), so it needs no split metadata and works on any split.
TFDS downloads and prepares a dataset on first use (into `--tfds-data-dir`, default ~/tensorflow_datasets);
tests use `tfds.testing.mock_data`, which replaces both with generated rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ae_tf import storage
from ae_tf.errors import InvalidInput, OutputExists
from ae_tf.inputs.data import ALL, TRAIN, VALIDATION, FeatureStats
from ae_tf.inputs.features import IMAGE, VECTOR, FeatureError, FeatureSpec
from ae_tf.inputs.images import BYTES, ImageRequest, ImageSpec

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^\d+(\.(\d+|\*)){0,2}$")


def parse_tfds_name(text: str, default_split: str = "train") -> tuple[str, str]:
    """`mnist` -> (mnist, train); `mnist:test` -> (mnist, test); `mnist:3.0.1` keeps the version in the name."""
    parts = text.strip().split(":")
    if not parts[0]:
        raise InvalidInput("--tfds names no dataset")
    name, rest = parts[0], parts[1:]
    if rest and _VERSION.match(rest[0]):
        name = f"{name}:{rest.pop(0)}"
    return name, ":".join(rest) or default_split


def _builder(name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # DatasetNotFoundError and friends: say which name, keep it one line
        raise InvalidInput(f"--tfds {name}: {str(err).splitlines()[0]}") from None
    builder.download_and_prepare()
    return builder


def _choose_feature(features, wanted: Sequence[str], name: str) -> tuple[str, object]:
    """The feature to train on: the one named, else the first image, else the first 1-D float tensor."""
    import tensorflow_datasets as tfds

    if wanted:
        if len(wanted) != 1 or wanted[0] not in features:
            raise FeatureError(f"--tfds {name}: --features must name one of {', '.join(features.keys())}")
        return wanted[0], features[wanted[0]]
    for key, feature in features.items():
        if isinstance(feature, tfds.features.Image):
            return key, feature
    for key, feature in features.items():
        if isinstance(feature, tfds.features.Tensor) and len(feature.shape) == 1 and feature.shape[0]:
            return key, feature
    raise FeatureError(f"--tfds {name}: no image or 1-D tensor feature; pass --features")


def _spec_for(key: str, feature, request: ImageRequest | None, name: str) -> FeatureSpec:
    import tensorflow_datasets as tfds

    request = request or ImageRequest()
    if isinstance(feature, tfds.features.Image):
        h, w, c = feature.shape
        if request.size is None and (h is None or w is None):
            raise FeatureError(f"--tfds {name}: images in {key!r} vary in size; pass --image-size")
        size = request.size or (h, w)
        channels = request.channels or (1 if c == 1 else 3)
        image = ImageSpec(size[0], size[1], channels, BYTES)
        if image.height % request.multiple_of or image.width % request.multiple_of:
            raise FeatureError(f"--tfds {name}: image size {image.height}x{image.width} must be a multiple of "
                               f"{request.multiple_of} for this model; pass --image-size")
        return FeatureSpec(IMAGE, (key,), image.size, image=image)
    if isinstance(feature, tfds.features.Tensor) and len(feature.shape) == 1 and feature.shape[0]:
        return FeatureSpec(VECTOR, (key,), int(feature.shape[0]))
    raise FeatureError(f"--tfds {name}: feature {key!r} is {feature}; expected an image or a 1-D tensor")


@dataclasses.dataclass
class TfdsSource:
    """One split of a TFDS dataset feeding one model; same interface as ae_tf.inputs.data.ParquetSource."""

    builder: object
    split: str
    spec: FeatureSpec
    validation_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        self.num_rows = self.count_rows(ALL)

    @classmethod
    def open(cls, tfds_name: str, data_dir: str | None, features: Sequence[str] = (),
             request: ImageRequest | None = None, validation_fraction: float = 0.1, seed: int = 0) -> TfdsSource:
        name, split = parse_tfds_name(tfds_name)
        builder = _builder(name, data_dir)
        key, feature = _choose_feature(builder.info.features, list(features), name)
        return cls(builder, split, _spec_for(key, feature, request, name), validation_fraction, seed)

    @property
    def key(self) -> str:
        return self.spec.columns[0]

    @property
    def inputs(self) -> list[str]:
        return [f"tfds:{self.builder.info.full_name}:{self.split}"]

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{self.inputs[0]}|{self.num_rows}".encode())
        return digest.hexdigest()[:16]

    def rows(self, part: str = ALL):
        """tf.data of single stored rows (encoded image bytes, or float vectors) of one part of the split."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        decoders = {self.key: tfds.decode.SkipDecoding()} if self.spec.kind == IMAGE else None
        ds = self.builder.as_dataset(split=self.split, shuffle_files=False, decoders=decoders)
        key, fraction, seed = self.key, self.validation_fraction, self.seed
        ds = ds.map(lambda ex: ex[key])
        if self.spec.kind == VECTOR:
            ds = ds.map(lambda x: tf.cast(x, tf.float32))
        if part == ALL or fraction <= 0:
            return ds if part != VALIDATION else ds.take(0)

        def keep(index, _row):
            held_out = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed, tf.int64), index])) < fraction
            return held_out if part == VALIDATION else tf.logical_not(held_out)

        return ds.enumerate().filter(keep).map(lambda _i, row: row)

    @property
    def groups(self) -> int:
        return 1  # one stream: nothing to reorder between epochs

    def group_order(self, epoch: int, shuffle: bool) -> list[int]:
        return [0]

    def stored_rows(self, part: str, groups=None):
        return self.rows(part)

    def count_rows(self, part: str = TRAIN) -> int:
        count = int(self.rows(part).reduce(np.int64(0), lambda n, _row: n + 1))
        if count == 0 and part != VALIDATION:
            raise FeatureError(f"{self.inputs[0]}: no {part} rows to train on")
        return count

    def iter_arrays(self, part: str = ALL, batch_rows: int = 4096) -> Iterator[np.ndarray]:
        yield from self.rows(part).batch(batch_rows).as_numpy_iterator()

    def statistics(self, part: str = TRAIN) -> FeatureStats:
        if self.spec.kind == IMAGE:
            return FeatureStats.count_only(self.count_rows(part))
        return FeatureStats.accumulate(self.iter_arrays(part), self.spec.width, f"{self.inputs[0]}: no {part} rows")

    def dataset(self, part: str, batch_size: int, shuffle: bool = False, shuffle_buffer: int = 100_000,
                rows: int | None = None):
        from ae_tf.inputs.data import batch_rows

        return batch_rows(self.rows(part), self.spec, batch_size, shuffle, shuffle_buffer, self.seed, rows)


# ---------------------------------------------------------------------------------------------------------
# TFDS -> Parquet
# ---------------------------------------------------------------------------------------------------------


def _arrow_column(values: list, feature) -> pa.Array:
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.Image):
        return pa.array(values, type=pa.binary())
    first = np.asarray(values[0]) if values else np.zeros(0)
    if first.ndim == 0:
        if first.dtype.kind in "SO":
            return pa.array([v.decode() if isinstance(v, bytes) else v for v in values], type=pa.string())
        return pa.array(np.asarray(values))
    flat = np.stack([np.asarray(v) for v in values]).reshape(len(values), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def tfds_to_parquet(tfds_name: str, out_dir: str, data_dir: str | None = None, rows_per_file: int = 50_000,
                    overwrite: bool = False, limit: int | None = None) -> dict:
    """Write one TFDS split as Parquet: `id` (row index), images as encoded bytes (binary), scalars as
    columns, fixed-shape tensors as fixed_size_list. Returns a summary {rows, files, columns}.

    Images keep the bytes TFDS stores (PNG for mnist): lossless, and what ae-tf image models take.
    """
    import tensorflow_datasets as tfds

    name, split = parse_tfds_name(tfds_name)
    if storage.isdir(out_dir) and storage.listdir(out_dir) and not overwrite:
        raise OutputExists(f"{out_dir}: not empty; choose a new directory or pass --overwrite")
    if rows_per_file < 1:
        raise InvalidInput(f"--rows-per-file must be at least 1, got {rows_per_file}")
    builder = _builder(name, data_dir)
    features = builder.info.features
    usable = {k: f for k, f in features.items()
              if isinstance(f, (tfds.features.Image, tfds.features.ClassLabel, tfds.features.Tensor,
                                tfds.features.Text))
              and not (isinstance(f, tfds.features.Tensor) and None in f.shape)}
    skipped = sorted(set(features.keys()) - set(usable))
    if skipped:
        log.warning("tfds-to-parquet: skipping nested or variable-shape features %s", ", ".join(skipped))
    decoders = {k: tfds.decode.SkipDecoding() for k, f in usable.items() if isinstance(f, tfds.features.Image)}
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
    if limit is not None:
        ds = ds.take(limit)
    if storage.isdir(out_dir):
        for old in storage.glob(storage.join(out_dir, "part-*.parquet")):
            storage.remove(old)
    storage.makedirs(out_dir)
    paths, rows = [], 0
    for chunk in ds.batch(rows_per_file).as_numpy_iterator():
        n = len(next(iter(chunk.values())))
        columns = {"id": pa.array(np.arange(rows, rows + n, dtype=np.int64))}
        for key, feature in usable.items():
            columns[key] = _arrow_column(list(chunk[key]), feature)
        path = storage.join(out_dir, f"part-{len(paths):05d}.parquet")
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.table(columns), buffer, row_group_size=min(rows_per_file, 4096), compression="zstd")
        storage.write_bytes(path, buffer.getvalue().to_pybytes())  # local or gs://
        paths.append(path)
        rows += n
    if not rows:
        raise FeatureError(f"--tfds {tfds_name}: split {split!r} has no rows")
    return {"rows": rows, "files": paths, "columns": ["id", *usable], "dataset": builder.info.full_name,
            "split": split}
