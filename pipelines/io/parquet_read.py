"""Arrow-batch Parquet reading for Beam: input files matched and planned at launch, batches read on workers.

Reading plans one split per file (or per group of row groups for big files) at launch, from footers only;
workers read whole record batches.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from ae_tf import interrupts
from ae_tf.defaults import BATCH_ROWS, MAX_ROWS_PER_SPLIT
from ae_tf.errors import InvalidInput
from pipelines.io.coders import BATCH, OFFSET_BATCH
from pipelines.io.output_files import is_local
from pipelines.io.overlap import prefetched
from pipelines.runner import progress

METRICS_NAMESPACE = "ae_tf"


class InputError(InvalidInput):
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


def splits_for(footers: Sequence[FileFooter], max_rows_per_split: int = MAX_ROWS_PER_SPLIT) -> list[ParquetSplit]:
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


def plan_splits(files: Sequence[str], max_rows_per_split: int = MAX_ROWS_PER_SPLIT) -> tuple[list[ParquetSplit], pa.Schema]:
    """Read footers only; split big files at row-group boundaries. Returns splits and the first schema."""
    footers = [read_footer(path) for path in files]
    return splits_for(footers, max_rows_per_split), footers[0].schema


class _ReadSplitDoFn(beam.DoFn):
    """Yields (split index, RecordBatch), or (split index, first row's offset in the file, RecordBatch).

    An empty split still yields one empty batch so that it gets a shard. With `prefetch`, a thread reads
    that many batches ahead while the downstream steps work (pipelines.io.overlap).
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
    `progress_key` names the tally (pipelines.runner.progress) that a local run's progress line reads.
    `prefetch` batches are read ahead by a background thread (0: none).
    """

    def __init__(self, splits: Sequence[ParquetSplit], columns: Sequence[str], batch_rows: int = BATCH_ROWS,
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
