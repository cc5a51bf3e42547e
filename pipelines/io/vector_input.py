"""Embedding Parquet as input of the downstream pipelines (reduce, dedup).

One vector column (`embedding` by default: fixed_size_list<float32>[k], or any list of numbers of one
length) is checked in every file at launch. Workers read whole Arrow record batches (pipelines.io.parquet);
`ReadNumberedBatches` gives each batch its global row number (input order: files sorted, rows in file
order), which dedup uses to name rows. A small sample can be read at launch for planning.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from ae_tf.defaults import BATCH_ROWS, MAX_ROWS_PER_SPLIT
from ae_tf.embeddings import EMBEDDING
from ae_tf.inputs.features import (
    VECTOR,
    FeatureSpec,
    check_finite,
    check_schema,
    features_to_array,
    infer_feature_spec,
)
from ae_tf.registry.store import current_files, is_store
from ae_tf.vectors.codes import Codec, codec_of
from pipelines.io.parquet import (
    InputError,
    ParquetSplit,
    ReadParquetBatches,
    match_files,
    open_parquet,
    plan_splits,
)


@dataclasses.dataclass(frozen=True)
class VectorInput:
    """Input files, their read splits and the vector column, all checked before any worker starts."""

    inputs: tuple[str, ...]
    splits: tuple[ParquetSplit, ...]
    schema: pa.Schema  # of the first file
    spec: FeatureSpec
    codecs: tuple[tuple[str, Codec], ...] = ()  # files whose vectors are float16/int8 codes (ae_tf.vectors.codes)

    @property
    def column(self) -> str:
        return self.spec.columns[0]

    @property
    def width(self) -> int:
        return self.spec.width

    @property
    def rows(self) -> int:
        return sum(s.num_rows for s in self.splits)

    @property
    def split_starts(self) -> tuple[int, ...]:
        """Global row number of each split's first row."""
        return tuple(int(x) for x in np.cumsum([0] + [s.num_rows for s in self.splits])[:-1])

    @property
    def file_starts(self) -> dict[str, int]:
        """Global row number of each file's first row."""
        starts: dict[str, int] = {}
        for split, start in zip(self.splits, self.split_starts, strict=True):
            starts.setdefault(split.path, start)  # a file's first split starts at its row 0
        return starts

    def source(self, split_index: int, first_row: int | None = None) -> str:
        """Names the file (and the batch's first row in it) in error messages."""
        path = self.splits[split_index].path
        if first_row is None:
            return path
        return f"{path} (batch at row {first_row - self.file_starts[path]})"

    def matrix(self, batch: pa.RecordBatch | pa.Table, split_index: int, first_row: int | None = None) -> np.ndarray:
        """The vector column of one batch -> float32 [rows, width]; nulls and NaN/inf fail naming the file."""
        source = self.source(split_index, first_row)
        codec = dict(self.codecs).get(self.splits[split_index].path)
        if codec is not None:
            matrix = codec.matrix(batch.column(self.column))
        else:
            matrix = features_to_array(batch, self.spec, source=source)
        check_finite(matrix, self.spec, source=source)
        return matrix


def plan_vector_input(pattern: str, column: str = "embedding", max_rows_per_split: int = MAX_ROWS_PER_SPLIT) -> VectorInput:
    """Match files, plan splits from footers and check the vector column in every file (one-line errors).

    A store root (`ae-tf refresh --store`) means the files its CURRENT pointer lists."""
    files = input_files(pattern)
    splits, _ = plan_splits(files, max_rows_per_split)
    schemas = {path: open_parquet(path).schema_arrow for path in files}
    first_path, first = files[0], schemas[files[0]]
    for path, schema in schemas.items():
        if column not in schema.names:
            raise InputError(f"{path}: vector column {column!r} not found (--column); columns are: "
                             f"{', '.join(schema.names)}")
    sample = None
    if not pa.types.is_fixed_size_list(first.field(column).type):
        sample = _first_rows(first_path, [column], 1024)
    spec = infer_feature_spec(first, [column], source=first_path, sample=sample)
    if spec.kind != VECTOR:
        raise InputError(f"{first_path}: column {column!r} is {first.field(column).type}, expected a list of numbers")
    for path, schema in schemas.items():
        check_schema(schema, spec, source=path)
    codecs = tuple((path, codec) for path, schema in schemas.items()
                   if column == EMBEDDING and (codec := codec_of(schema)) is not None)
    return VectorInput(tuple(files), tuple(splits), first, spec, codecs)


def input_files(pattern: str) -> list[str]:
    """The files behind --input: a store root's current files, else the glob or directory's matches."""
    if is_store(pattern):
        return current_files(pattern)
    return match_files(pattern)


def check_columns(vectors: VectorInput, names: Sequence[str], flag: str) -> None:
    """Every named column exists in every input file; else one line naming file, column and flag."""
    for path in vectors.inputs:
        schema = open_parquet(path).schema_arrow
        for name in names:
            if name not in schema.names:
                raise InputError(f"{path}: column {name!r} ({flag}) not found; columns are: {', '.join(schema.names)}")


def _first_rows(path: str, columns: Sequence[str], rows: int, row_groups: Sequence[int] | None = None) -> pa.Table:
    reader = open_parquet(path)
    for batch in reader.iter_batches(batch_size=rows, columns=list(columns), row_groups=row_groups):
        return pa.Table.from_batches([batch])
    return pa.Table.from_batches([], schema=pa.schema([reader.schema_arrow.field(c) for c in columns]))


def sample_matrix(vectors: VectorInput, max_rows: int = 4096, max_splits: int = 16) -> np.ndarray:
    """Up to `max_rows` vectors read at launch from the starts of up to `max_splits` splits, spread evenly."""
    chosen = np.unique(np.linspace(0, len(vectors.splits) - 1, min(max_splits, len(vectors.splits))).astype(int))
    per_split = math.ceil(max_rows / len(chosen))
    parts = []
    for i in chosen:
        split = vectors.splits[i]
        table = _first_rows(split.path, [vectors.column], per_split, split.row_groups)
        if table.num_rows:
            parts.append(vectors.matrix(table, int(i)))
    return np.concatenate(parts)[:max_rows] if parts else np.zeros((0, vectors.width), dtype=np.float32)


def _global_row(element, file_starts: dict[str, int], paths: tuple[str, ...]):
    """(split index, row offset in its file, batch) -> (split index, global row number, batch)."""
    index, offset, batch = element
    return index, file_starts[paths[index]] + offset, batch


class ReadNumberedBatches(beam.PTransform):
    """PBegin -> (split index, global row number of the first row, pyarrow.RecordBatch), spread over workers."""

    def __init__(self, vectors: VectorInput, columns: Sequence[str], batch_rows: int = BATCH_ROWS,
                 progress_key: str | None = None):
        super().__init__()
        self._vectors = vectors
        self._columns = list(columns)
        self._batch_rows = batch_rows
        self._progress_key = progress_key

    def expand(self, pbegin):
        vectors = self._vectors
        return (
            pbegin
            | "ReadBatchesWithOffsets" >> ReadParquetBatches(vectors.splits, self._columns, self._batch_rows,
                                                             with_offsets=True, progress_key=self._progress_key)
            | "NumberRows" >> beam.Map(_global_row, vectors.file_starts, tuple(s.path for s in vectors.splits))
        )
