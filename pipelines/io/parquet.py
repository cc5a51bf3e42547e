"""Arrow-batch Parquet writing for Beam, and the `_SUCCESS` manifest written last (reading is
pipelines.io.parquet_read; its names are importable from here too).

Writing gives every split one deterministic shard name: shards are
written to a temporary directory and renamed by a single publish step, so a rerun replaces exactly the
same files and a reader that waits for `_SUCCESS` never sees partial output.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
import os
import uuid
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window

from ae_tf import interrupts
from ae_tf.contracts import SUCCESS
from pipelines.io.output_files import is_local, write_bytes
from pipelines.io.overlap import BackgroundCalls
from pipelines.io.parquet_read import (  # noqa: F401 (the reading side, importable from here)
    METRICS_NAMESPACE,
    FileFooter,
    InputError,
    ParquetSplit,
    ReadParquetBatches,
    match_files,
    open_parquet,
    plan_splits,
    read_footer,
    splits_for,
)

MANIFEST = SUCCESS  # ae_tf.contracts
TEMP_DIR = "_temporary"
SHARD_PATTERN = "part-*.parquet"
@dataclasses.dataclass(frozen=True)
class ShardResult:
    """A shard written to the temporary directory, waiting to be published."""

    index: int
    temp_path: str
    rows: int
    value_sum: float = 0.0
    value_max: float = float("-inf")
    true_count: int = 0


def shard_name(index: int, num_shards: int) -> str:
    return f"part-{index:05d}-of-{num_shards:05d}.parquet"


def float_columns(schema: pa.Schema, names: Sequence[str]) -> list[str]:
    """The float (or float-list) columns among `names`: for encode, the model's outputs, which are
    written without dictionary pages (dictionary_columns)."""
    def kind(t: pa.DataType) -> pa.DataType:
        return t.value_type if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) else t
    return [f.name for f in schema if f.name in names and pa.types.is_floating(kind(f.type))]


def dictionary_columns(schema: pa.Schema, plain_columns: Sequence[str]) -> list[str] | bool:
    """Columns to dictionary-encode: all but `plain_columns`. Dictionary pages of model outputs (random
    floats, no repeats) only cost: the writer tries one per column chunk, then falls back, spending
    about two thirds of its time and making the file ~20% larger."""
    if not plain_columns:
        return True
    return [f.name for f in schema if f.name not in plain_columns]


class _ParquetShardWriter:
    """One shard file; optionally keeps the sum and max of one float column, and the number of true
    values of one boolean column, for the manifest."""

    def __init__(self, path: str, schema: pa.Schema, compression: str, stats_column: str | None = None,
                 count_column: str | None = None, plain_columns: Sequence[str] = ()):
        self.path = path
        self.rows = 0
        self.value_sum = 0.0
        self.value_max = float("-inf")
        self.true_count = 0
        self._stats_column = stats_column
        self._count_column = count_column
        self._file = None if is_local(path) else FileSystems.create(path)
        sink = path if self._file is None else pa.PythonFile(self._file, mode="w")
        self._writer = pq.ParquetWriter(sink, schema, compression=compression,
                                        use_dictionary=dictionary_columns(schema, plain_columns))

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._writer.write_batch(batch)
            self.rows += batch.num_rows
            if self._stats_column:
                values = batch.column(self._stats_column).to_numpy(zero_copy_only=False)
                self.value_sum += float(values.sum(dtype=np.float64))
                self.value_max = max(self.value_max, float(values.max()))
            if self._count_column:
                self.true_count += int(pc.sum(batch.column(self._count_column)).as_py() or 0)

    def close(self) -> None:
        self._writer.close()
        if self._file is not None:
            self._file.close()


class _WriteShardsDoFn(beam.DoFn):
    """Writes each split's batches to its own temporary file; unique names per bundle attempt."""

    def __init__(self, temp_dir: str, schema: pa.Schema, compression: str, stats_column: str | None,
                 count_column: str | None, background: bool = False, plain_columns: Sequence[str] = ()):
        self._background = background
        self._plain_columns = tuple(plain_columns)
        self._temp_dir = temp_dir
        self._schema = schema
        self._compression = compression
        self._stats_column = stats_column
        self._count_column = count_column
        self._rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_written")

    def start_bundle(self):
        self._writers: dict[int, _ParquetShardWriter] = {}
        self._calls: dict[int, BackgroundCalls] = {}
        self._attempt = uuid.uuid4().hex[:12]

    def process(self, element):
        index, batch = element
        writer = self._writers.get(index)
        if writer is None:
            if is_local(self._temp_dir):
                os.makedirs(self._temp_dir, exist_ok=True)
            path = FileSystems.join(self._temp_dir, f"{index:05d}-{self._attempt}.parquet")
            schema = self._schema or batch.schema
            writer = self._writers[index] = _ParquetShardWriter(path, schema, self._compression,
                                                                self._stats_column, self._count_column,
                                                                self._plain_columns)
            if self._background:
                self._calls[index] = BackgroundCalls(writer.write)
        if self._background:
            self._calls[index].submit(batch)
        else:
            writer.write(batch)
        self._rows.inc(batch.num_rows)

    def finish_bundle(self):
        for index, writer in self._writers.items():
            if index in self._calls:
                self._calls.pop(index).close()
            writer.close()
            yield window.GlobalWindows.windowed_value(ShardResult(
                index, writer.path, writer.rows, writer.value_sum, writer.value_max, writer.true_count))
        self._writers = {}


class WriteParquetShards(beam.PTransform):
    """(split index, RecordBatch) -> temporary shard files -> ShardResult per split.

    `schema=None` takes each shard's schema from its first batch, for outputs whose layout is fixed only
    at run time (PCA's `reduced` width chosen by `--variance`).

    `stats_column` names a float column whose sum and max each shard reports, `count_column` a boolean
    column whose true values it counts (for the manifest). `background` writes on a thread, one batch
    behind, so compression overlaps the steps before it. `plain_columns` are written without dictionary
    pages (model outputs: floats that never repeat).
    """

    def __init__(self, temp_dir: str, schema: pa.Schema | None, compression: str = "zstd",
                 stats_column: str | None = None, count_column: str | None = None, background: bool = False,
                 plain_columns: Sequence[str] = ()):
        super().__init__()
        self._background = background
        self._plain_columns = tuple(plain_columns)
        self._temp_dir = temp_dir
        self._schema = schema
        self._compression = compression
        self._stats_column = stats_column
        self._count_column = count_column

    def expand(self, batches):
        return batches | "WriteShardFiles" >> beam.ParDo(
            _WriteShardsDoFn(self._temp_dir, self._schema, self._compression, self._stats_column,
                             self._count_column, self._background, self._plain_columns))


def _left_by_unfinished_run(output_dir: str) -> bool:
    """No `_SUCCESS`, and only what a run of ours writes before it (shards, `_`-names such as
    `_temporary` or a dataset's own `_SUCCESS`, summary.json): an interrupted run, safe to replace."""
    if FileSystems.exists(FileSystems.join(output_dir, MANIFEST)):
        return False
    if is_local(output_dir):
        relative = [os.path.relpath(os.path.join(root, name), output_dir)
                    for root, _dirs, files in os.walk(output_dir) for name in files]
    else:
        prefix = output_dir.rstrip("/") + "/"
        relative = [m.path[len(prefix):] for m in FileSystems.match([prefix + "**"])[0].metadata_list]
    for path in relative:
        parts = path.replace(os.sep, "/").split("/")
        if not (any(p.startswith("_") for p in parts) or fnmatch.fnmatchcase(parts[-1], SHARD_PATTERN)
                or parts == ["summary.json"]):
            return False
    return True


def check_output(output_dir: str, overwrite: bool) -> None:
    """Refuse a non-empty output unless --overwrite (or it holds only an interrupted run's leftovers).

    Read-only: planning (and a dry run) leaves the directory as it was; `start_output` prepares it."""
    existing = [m.path for m in FileSystems.match([FileSystems.join(output_dir, "*")])[0].metadata_list] \
        if FileSystems.exists(output_dir) else []
    existing = [p for p in existing if os.path.basename(p.rstrip("/")) != TEMP_DIR]
    if existing and not overwrite and not _left_by_unfinished_run(output_dir):
        raise InputError(f"{output_dir}: output directory is not empty; choose a new one or pass --overwrite")


def start_output(*output_dirs: str) -> None:
    """When the run starts: retract each directory's old manifest before any work, create local ones."""
    for output_dir in output_dirs:
        manifest = FileSystems.join(output_dir, MANIFEST)
        if FileSystems.exists(manifest):
            FileSystems.delete([manifest])
        if is_local(output_dir):
            os.makedirs(output_dir, exist_ok=True)


def publish_shards(output_dir: str, temp_dir: str, results: Sequence[ShardResult], num_shards: int,
                   require_all: bool = True) -> list[dict]:
    """Move the committed shards to their final names, drop stale shards and the temporary directory.

    `require_all`: every split 0..num_shards-1 must have a shard (main output); False for outputs such as
    rejected rows, where only some splits write one.
    """
    results = sorted(results, key=lambda r: r.index)
    seen = [r.index for r in results]
    if require_all and seen != list(range(num_shards)):
        raise RuntimeError(f"{output_dir}: expected shards 0..{num_shards - 1}, got {seen}; output not published")
    finals = [FileSystems.join(output_dir, shard_name(r.index, num_shards)) for r in results]
    if finals:
        if is_local(output_dir):
            os.makedirs(output_dir, exist_ok=True)
        FileSystems.rename([r.temp_path for r in results], finals)
    interrupts.pause_point("publishing")  # tests: shards in place, no _SUCCESS yet
    if FileSystems.exists(output_dir):
        stale = [m.path for m in FileSystems.match([FileSystems.join(output_dir, SHARD_PATTERN)])[0].metadata_list
                 if m.path not in set(finals)]
        if stale:
            FileSystems.delete(stale)
    if FileSystems.exists(temp_dir):
        FileSystems.delete([temp_dir])
    parent = os.path.dirname(temp_dir.rstrip("/"))
    if is_local(parent) and os.path.isdir(parent) and not os.listdir(parent):
        os.rmdir(parent)  # object stores have no empty directories to remove
    return [{"file": os.path.basename(f), "rows": r.rows} for f, r in zip(finals, results, strict=True)]


def remove_temporary(output_dir: str) -> None:
    """Drop `_temporary` entirely, including leftovers of earlier killed runs."""
    temp_root = FileSystems.join(output_dir, TEMP_DIR)
    if FileSystems.exists(temp_root):
        FileSystems.delete([temp_root])


def write_manifest(output_dir: str, manifest: dict) -> str:
    """Write `_SUCCESS` last; locally through a temporary name and an atomic rename."""
    path = FileSystems.join(output_dir, MANIFEST)
    interrupts.raise_if_interrupted()  # an interrupted run publishes nothing
    write_bytes(path, json.dumps(manifest, indent=2, sort_keys=True).encode(), mime_type="application/json")
    interrupts.note_published(path)
    return path


def read_manifest(output_dir: str) -> dict:
    with FileSystems.open(FileSystems.join(output_dir, MANIFEST)) as f:
        return json.loads(f.read())


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
