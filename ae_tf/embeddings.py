"""The embedding Parquet contract: kept columns unchanged, `embedding` fixed_size_list<float32>[k],
`reconstruction_error` float32, and the model version in the file metadata. With anomaly flags, also
`anomaly_score` float32 (the model's default score, ae_tf.model.anomaly_score) and `is_anomaly` bool.

Pure Arrow and numpy, so the Beam pipelines, the benchmark's plain loop and readers share one definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ae_tf.contracts import SUCCESS
from ae_tf.errors import InputNotFound, InvalidInput
from ae_tf.vectors.codes import Codec, codec_of, with_codec

EMBEDDING = "embedding"
RECONSTRUCTION_ERROR = "reconstruction_error"
IS_ANOMALY = "is_anomaly"
ANOMALY_SCORE = "anomaly_score"
MODEL_VERSION_KEY = b"ae_tf.model_version"
MODEL_DIR_KEY = b"ae_tf.model_dir"
RESERVED = (EMBEDDING, RECONSTRUCTION_ERROR, ANOMALY_SCORE, IS_ANOMALY)


def output_schema(input_schema: pa.Schema, keep_columns: Sequence[str], code_size: int,
                  model_version: str, model_dir: str = "", flag_anomalies: bool = False,
                  codec: Codec | None = None) -> pa.Schema:
    """Schema of every output shard (known before any row is read, so empty shards have it too);
    `codec` stores the embedding as float16 or int8 (ae_tf.vectors.codes)."""
    fields = [input_schema.field(name) for name in keep_columns]
    fields += [pa.field(EMBEDDING, pa.list_(pa.float32(), code_size)),
               pa.field(RECONSTRUCTION_ERROR, pa.float32())]
    if flag_anomalies:
        fields += [pa.field(ANOMALY_SCORE, pa.float32()), pa.field(IS_ANOMALY, pa.bool_())]
    schema = pa.schema(fields, metadata={MODEL_VERSION_KEY: model_version.encode(), MODEL_DIR_KEY: model_dir.encode()})
    return with_codec(schema, codec) if codec is not None else schema


def embedding_array(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """[rows, k] float matrix -> fixed_size_list<float32>[k] without a per-row Python object."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def encoded_batch(source: pa.RecordBatch | pa.Table, embedding: np.ndarray, error: np.ndarray,
                  schema: pa.Schema, anomaly_threshold: float | None = None,
                  anomaly_score: np.ndarray | None = None) -> pa.RecordBatch:
    """Kept columns of `source` + the model outputs, laid out as `schema` (from `output_schema`).

    With an `is_anomaly` field in the schema, rows whose `anomaly_score` (default: the error) exceeds
    `anomaly_threshold` are flagged.
    """
    score = np.asarray(error if anomaly_score is None else anomaly_score, dtype=np.float32)
    columns = []
    codec = codec_of(schema)
    for field in schema:
        if field.name == EMBEDDING:
            columns.append(embedding_array(embedding) if codec is None else codec.array(embedding))
        elif field.name == RECONSTRUCTION_ERROR:
            columns.append(pa.array(np.asarray(error, dtype=np.float32)))
        elif field.name == ANOMALY_SCORE:
            columns.append(pa.array(score))
        elif field.name == IS_ANOMALY:
            columns.append(pa.array(score > anomaly_threshold))
        else:
            column = source.column(field.name)
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            columns.append(column.cast(field.type) if column.type != field.type else column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def embedding_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """fixed_size_list column -> float32 [rows, k] (slice-safe: uses flatten, not .values)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width)


class IncompleteOutputError(InvalidInput):
    """A pipeline output directory read before its `_SUCCESS` manifest was written."""


def _embedding_files(path: str) -> list[str]:
    """A store root (its CURRENT files), a directory (its *.parquet), a glob or one file -> sorted Parquet
    files; names starting with _ or . (manifests, _pca/, temporary files) are skipped. A directory of ae-tf
    shards must have `_SUCCESS`."""
    import glob
    import os

    from ae_tf.registry.store import current_files, is_store

    if is_store(path):
        return current_files(path)
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.parquet")))
        shards = [f for f in files if os.path.basename(f).startswith("part-")]
        if shards and not os.path.exists(os.path.join(path, SUCCESS)):
            raise IncompleteOutputError(f"{path}: no _SUCCESS yet: the output is incomplete (a pipeline is still "
                                        "writing it, or it failed); wait for _SUCCESS, or pass a glob to read it anyway")
    elif any(ch in path for ch in "*?["):
        files = sorted(glob.glob(path))
    else:
        files = [path] if os.path.exists(path) else []
    files = [f for f in files if not os.path.basename(f).startswith(("_", "."))]
    if not files:
        raise InputNotFound(f"{path}: no Parquet file found")
    return files


def _read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    import pyarrow.parquet as pq

    from ae_tf import storage

    if storage.is_gcs(path):
        with storage.open_read(path) as f:
            return pq.read_table(f, columns=columns)
    return pq.read_table(path, columns=columns)


def _read_schema(path: str) -> pa.Schema:
    import pyarrow.parquet as pq

    from ae_tf import storage

    if storage.is_gcs(path):
        with storage.open_read(path) as f:
            return pq.read_schema(f)
    return pq.read_schema(path)


def read_embeddings(path: str, column: str = EMBEDDING, id_column: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Embedding Parquet (an output directory, a glob or one file) -> (ids, float32 matrix [rows, k]).

    A store root (`ae-tf refresh --store`) is read through its CURRENT pointer. float16 and int8 codes
    (ae_tf.vectors.codes) come back as float32. Rows come in file order. `id_column` defaults to `id` when present,
    else the first column that is neither the vector nor `reconstruction_error`; with no such column the ids
    are row numbers. Works for any list-of-numbers column, e.g. `column="reduced"` on `ae-tf reduce` output.
    """
    from ae_tf.inputs.features import features_to_array, infer_feature_spec

    files = _embedding_files(path)
    schema = _read_schema(files[0])
    if column not in schema.names:
        raise InvalidInput(f"{files[0]}: column {column!r} not found; columns are: {', '.join(schema.names)}")
    if id_column is None:
        others = [n for n in schema.names if n not in (column, RECONSTRUCTION_ERROR)]
        id_column = "id" if "id" in schema.names else (others[0] if others else None)
    columns = [column] if id_column is None else [id_column, column]
    tables = [_read_table(f, columns=columns) for f in files]
    codecs = [codec_of(t.schema) if column == EMBEDDING else None for t in tables]
    if any(codecs):  # float16 / int8 codes: each file decoded with the codec in its own metadata
        matrix = np.concatenate([(c or Codec()).matrix(t.column(column)) for t, c in zip(tables, codecs, strict=True)])
        tables = [t.drop_columns([column]) for t in tables]
    table = pa.concat_tables(tables, promote_options="permissive")
    if not any(codecs):
        spec = infer_feature_spec(table.schema, [column], source=path, sample=table)
        matrix = features_to_array(table, spec, source=path)
    if id_column is None:
        return np.arange(table.num_rows), matrix
    return table.column(id_column).to_numpy(), matrix
