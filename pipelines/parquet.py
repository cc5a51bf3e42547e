"""Arrow-batch Parquet reading and writing for Beam, and the `_SUCCESS` manifest written last.

Reading plans one split per file (or per group of row groups for big files) at launch, from footers only;
workers read whole record batches. Writing gives every split one deterministic shard name: shards are
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
from pipelines import progress
from pipelines.coders import BATCH, OFFSET_BATCH
from pipelines.output_files import is_local, write_bytes
from pipelines.overlap import BackgroundCalls, prefetched

MANIFEST = "_SUCCESS"
TEMP_DIR = "_temporary"
SHARD_PATTERN = "part-*.parquet"
METRICS_NAMESPACE = "ae_tf"


class InputError(ValueError):
    """Input or output locations that cannot be used; the message names the path."""


def match_files(pattern: str) -> list[str]:
    """Glob (local or any Beam filesystem) -> sorted files; a directory means its *.parquet files."""
    if _is_dir(pattern) or _is_remote_dir(pattern):
        pattern = FileSystems.join(pattern.rstrip("/"), "*.parquet")
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # Beam raises for a pattern with no match on some filesystems
        matched = []
    files = sorted(m.path for m in matched if not _is_dir(m.path))
    if not files:
        raise InputError(f"{pattern}: no input file matches")
    return files


def _is_dir(path: str) -> bool:
    return os.path.isdir(path) if is_local(path) else path.endswith("/")


def _is_remote_dir(path: str) -> bool:
    """gs://B/dir (no trailing slash): a prefix with objects under it, not an object itself."""
    if is_local(path) or any(c in path for c in "*?[") or FileSystems.exists(path):
        return False
    try:
        return bool(FileSystems.match([path.rstrip("/") + "/*"], limits=[1])[0].metadata_list)
    except Exception:  # nothing there: Beam raises for an empty match on some filesystems
        return False


def open_parquet(path: str) -> pq.ParquetFile:
    """Native reader for local files (fastest); Beam's filesystem for gs:// and others."""
    if is_local(path):
        return pq.ParquetFile(path)
    return pq.ParquetFile(FileSystems.open(path, compression_type="uncompressed"))


@dataclasses.dataclass(frozen=True)
class ParquetSplit:
    """One unit of reading work: a file, or some of its row groups; `index` names its output shard."""

    index: int
    path: str
    num_rows: int
    row_groups: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class FileFooter:
    """What planning needs from one file, read from its footer only."""

    path: str
    schema: pa.Schema
    num_rows: int
    row_group_rows: tuple[int, ...]


def read_footer(path: str) -> FileFooter:
    """Footer of one Parquet file; an empty, truncated or non-Parquet file is an InputError naming it."""
    try:
        reader = open_parquet(path)
        meta = reader.metadata
        return FileFooter(path, reader.schema_arrow, meta.num_rows,
                          tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups)))
    except (pa.ArrowException, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: not a readable Parquet file ({reason})") from None


def splits_for(footers: Sequence[FileFooter], max_rows_per_split: int = 2_000_000) -> list[ParquetSplit]:
    """One split per file, or per run of row groups holding about `max_rows_per_split` rows."""
    splits: list[ParquetSplit] = []
    for footer in footers:
        group: list[int] = []
        rows = 0
        for rg, rg_rows in enumerate(footer.row_group_rows):
            group.append(rg)
            rows += rg_rows
            if rows >= max_rows_per_split:
                splits.append(ParquetSplit(len(splits), footer.path, rows, tuple(group)))
                group, rows = [], 0
        if group or not footer.row_group_rows:
            whole = len(group) == len(footer.row_group_rows)
            splits.append(ParquetSplit(len(splits), footer.path, rows, None if whole else tuple(group)))
    return splits


def plan_splits(files: Sequence[str], max_rows_per_split: int = 2_000_000) -> tuple[list[ParquetSplit], pa.Schema]:
    """Read footers only; split big files at row-group boundaries. Returns splits and the first schema."""
    footers = [read_footer(path) for path in files]
    return splits_for(footers, max_rows_per_split), footers[0].schema


class _ReadSplitDoFn(beam.DoFn):
    """Yields (split index, RecordBatch), or (split index, first row's offset in the file, RecordBatch).

    An empty split still yields one empty batch so that it gets a shard. With `prefetch`, a thread reads
    that many batches ahead while the downstream steps work (pipelines.overlap).
    """

    def __init__(self, columns: Sequence[str], batch_rows: int, with_offsets: bool = False,
                 progress_key: str | None = None, prefetch: int = 0):
        self._prefetch = prefetch
        self._columns = list(columns)
        self._batch_rows = batch_rows
        self._with_offsets = with_offsets
        self._progress_key = progress_key
        self._rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_read")
        self._batches = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "batches_read")

    def process(self, split: ParquetSplit):
        try:
            reader = open_parquet(split.path)
            offset = 0
            if split.row_groups:
                offset = sum(reader.metadata.row_group(i).num_rows for i in range(split.row_groups[0]))
            batches = reader.iter_batches(batch_size=self._batch_rows, row_groups=split.row_groups,
                                          columns=self._columns)
            if self._prefetch:
                batches = prefetched(batches, self._prefetch)
            emitted = False
            for batch in batches:
                self._rows.inc(batch.num_rows)
                self._batches.inc()
                if self._progress_key:
                    progress.add(self._progress_key, batch.num_rows)
                emitted = True
                interrupts.pause_point("batches")  # tests: a signal while batches flow
                yield (split.index, offset, batch) if self._with_offsets else (split.index, batch)
                offset += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{split.path}: cannot read Parquet data ({str(err).splitlines()[0]})") from err
        if not emitted:
            schema = pa.schema([reader.schema_arrow.field(c) for c in self._columns])
            empty = pa.RecordBatch.from_pylist([], schema=schema)
            yield (split.index, offset, empty) if self._with_offsets else (split.index, empty)


class ReadParquetBatches(beam.PTransform):
    """Planned splits -> (split index, pyarrow.RecordBatch) elements, spread over workers.

    With `with_offsets=True` elements are (split index, row offset in the file, RecordBatch).
    `progress_key` names the tally (pipelines.progress) that a local run's progress line reads.
    `prefetch` batches are read ahead by a background thread (0: none).
    """

    def __init__(self, splits: Sequence[ParquetSplit], columns: Sequence[str], batch_rows: int = 65536,
                 with_offsets: bool = False, progress_key: str | None = None, prefetch: int = 0):
        super().__init__()
        self._prefetch = prefetch
        self._splits = list(splits)
        self._columns = list(columns)
        self._batch_rows = batch_rows
        self._with_offsets = with_offsets
        self._progress_key = progress_key

    def expand(self, pbegin):
        if self._progress_key:
            progress.expect(self._progress_key, sum(s.num_rows for s in self._splits))
        return (
            pbegin
            | "PlanSplits" >> beam.Create(self._splits)
            | "SpreadSplits" >> beam.Reshuffle()
            | "ReadRecordBatches" >> beam.ParDo(
                _ReadSplitDoFn(self._columns, self._batch_rows, self._with_offsets, self._progress_key,
                               self._prefetch)
            ).with_output_types(OFFSET_BATCH if self._with_offsets else BATCH)
        )


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


def prepare_output(output_dir: str, overwrite: bool) -> None:
    """Refuse a non-empty output unless --overwrite (or it holds only an interrupted run's leftovers);
    retract the old manifest before any work."""
    existing = [m.path for m in FileSystems.match([FileSystems.join(output_dir, "*")])[0].metadata_list] \
        if FileSystems.exists(output_dir) else []
    existing = [p for p in existing if os.path.basename(p.rstrip("/")) != TEMP_DIR]
    if existing and not overwrite and not _left_by_unfinished_run(output_dir):
        raise InputError(f"{output_dir}: output directory is not empty; choose a new one or pass --overwrite")
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
