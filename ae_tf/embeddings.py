"""The embedding Parquet contract: kept columns unchanged, `embedding` fixed_size_list<float32>[k],
`reconstruction_error` float32, and the model version in the file metadata.

Pure Arrow and numpy, so the Beam pipelines, the benchmark's plain loop and readers share one definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

EMBEDDING = "embedding"
RECONSTRUCTION_ERROR = "reconstruction_error"
IS_ANOMALY = "is_anomaly"
MODEL_VERSION_KEY = b"ae_tf.model_version"
MODEL_DIR_KEY = b"ae_tf.model_dir"
RESERVED = (EMBEDDING, RECONSTRUCTION_ERROR, IS_ANOMALY)


def output_schema(input_schema: pa.Schema, keep_columns: Sequence[str], code_size: int,
                  model_version: str, model_dir: str = "", flag_anomalies: bool = False) -> pa.Schema:
    """Schema of every output shard (known before any row is read, so empty shards have it too)."""
    fields = [input_schema.field(name) for name in keep_columns]
    fields += [pa.field(EMBEDDING, pa.list_(pa.float32(), code_size)),
               pa.field(RECONSTRUCTION_ERROR, pa.float32())]
    if flag_anomalies:
        fields.append(pa.field(IS_ANOMALY, pa.bool_()))
    return pa.schema(fields, metadata={MODEL_VERSION_KEY: model_version.encode(), MODEL_DIR_KEY: model_dir.encode()})


def embedding_array(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """[rows, k] float matrix -> fixed_size_list<float32>[k] without a per-row Python object."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def encoded_batch(source: pa.RecordBatch | pa.Table, embedding: np.ndarray, error: np.ndarray,
                  schema: pa.Schema, anomaly_threshold: float | None = None) -> pa.RecordBatch:
    """Kept columns of `source` + the model outputs, laid out as `schema` (from `output_schema`).

    With an `is_anomaly` field in the schema, rows whose error exceeds `anomaly_threshold` are flagged.
    """
    columns = []
    for field in schema:
        if field.name == EMBEDDING:
            columns.append(embedding_array(embedding))
        elif field.name == RECONSTRUCTION_ERROR:
            columns.append(pa.array(np.asarray(error, dtype=np.float32)))
        elif field.name == IS_ANOMALY:
            columns.append(pa.array(np.asarray(error) > anomaly_threshold))
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
