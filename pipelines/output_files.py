"""Output helpers beside pipelines.parquet: shards whose schema is known only at run time, and small
artifact files (JSON, .npz, PNG) written through Beam's filesystems (local or gs://).

`WriteShardsWithBatchSchema` follows `WriteParquetShards`' contract (one temporary file per split and
bundle attempt, a `ShardResult` per split, published later by `publish_shards`) but takes each shard's
schema from its first batch: PCA's `reduced` column is fixed_size_list<float32>[K] with K chosen by the
fit (`--variance`), so the schema cannot be given when the pipeline is built.
"""

from __future__ import annotations

import os
import uuid

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window

from pipelines.parquet import METRICS_NAMESPACE, ShardResult, is_local


class _ShardFile:
    """One Parquet shard being written (local path, or a Beam filesystem stream)."""

    def __init__(self, path: str, schema: pa.Schema, compression: str):
        self.path = path
        self.rows = 0
        self._stream = None if is_local(path) else FileSystems.create(path)
        sink = path if self._stream is None else pa.PythonFile(self._stream, mode="w")
        self._writer = pq.ParquetWriter(sink, schema, compression=compression)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> None:
        self._writer.close()
        if self._stream is not None:
            self._stream.close()


class _WriteShardsDoFn(beam.DoFn):
    def __init__(self, temp_dir: str, compression: str):
        self._temp_dir = temp_dir
        self._compression = compression
        self._rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_written")

    def start_bundle(self):
        self._files: dict[int, _ShardFile] = {}
        self._attempt = uuid.uuid4().hex[:12]

    def process(self, element):
        index, batch = element
        shard = self._files.get(index)
        if shard is None:
            if is_local(self._temp_dir):
                os.makedirs(self._temp_dir, exist_ok=True)
            path = FileSystems.join(self._temp_dir, f"{index:05d}-{self._attempt}.parquet")
            shard = self._files[index] = _ShardFile(path, batch.schema, self._compression)
        shard.write(batch)
        self._rows.inc(batch.num_rows)

    def finish_bundle(self):
        for index, shard in self._files.items():
            shard.close()
            yield window.GlobalWindows.windowed_value(ShardResult(index, shard.path, shard.rows))
        self._files = {}


class WriteShardsWithBatchSchema(beam.PTransform):
    """(split index, RecordBatch) -> temporary shard files -> ShardResult per split; schema from the batches."""

    def __init__(self, temp_dir: str, compression: str = "zstd"):
        super().__init__()
        self._temp_dir = temp_dir
        self._compression = compression

    def expand(self, batches):
        return batches | "WriteBatchSchemaShards" >> beam.ParDo(_WriteShardsDoFn(self._temp_dir, self._compression))


def write_bytes(path: str, data: bytes, mime_type: str = "application/octet-stream") -> None:
    """Write a whole small file; locally through a temporary name and an atomic rename."""
    if is_local(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        with FileSystems.create(path, mime_type=mime_type) as f:
            f.write(data)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def exists(path: str) -> bool:
    return FileSystems.exists(path)
