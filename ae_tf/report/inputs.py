"""What `ae-tf report` reads besides the model: samples of embedding Parquet, the encode manifest, the
dedup outputs and input rows. Arrow and numpy only (no matplotlib, no Beam), local paths or gs://.

A report must stay cheap on a billion-row output, so embeddings are sampled by whole row groups (read
only the groups needed, then thin to `max_rows`), never scanned in full.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath

import numpy as np
import pyarrow as pa

from ae_tf import storage
from ae_tf.contracts import SUCCESS, DedupOutput, DedupSummary, EncodeManifest
from ae_tf.embeddings import ANOMALY_SCORE, EMBEDDING, IS_ANOMALY, RECONSTRUCTION_ERROR
from ae_tf.errors import InvalidInput
from ae_tf.inputs.data import open_parquet
from ae_tf.inputs.features import FeatureSpec, check_schema, features_to_array, validate_rows

MANIFEST = SUCCESS
CLUSTER_ID, KEEP, MAX_SIMILARITY = DedupOutput.ANNOTATION_COLUMNS
MAX_INPUT_FILES = 8


class ReportInputError(InvalidInput):
    """A path given to `ae-tf report` that cannot be read; the message names it."""


def _join(directory: str, name: str) -> str:
    return storage.join(directory, name)


def _hidden(path: str, root: str) -> bool:
    """Beam temp dirs, dead letters and dot files (`_temporary`, `_rejected`, `.x`) are not outputs."""
    relative = path[len(root):].strip("/").split("/")
    return any(part.startswith(("_", ".")) for part in relative)


def read_json(path: str) -> dict | None:
    """The JSON object at `path`, or None when it is absent or not a JSON object."""
    if not storage.isfile(path):
        return None
    try:
        data = json.loads(storage.read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def require_dir(path: str, flag: str) -> str:
    if not storage.isdir(path):
        raise ReportInputError(f"{flag} {path}: directory not found")
    return path.rstrip("/")


def parquet_files(directory: str, recursive: bool = False) -> list[str]:
    """Parquet files of an output directory, sorted; temp, rejected and hidden files left out."""
    paths = storage.walk_files(directory) if recursive else [_join(directory, n) for n in storage.listdir(directory)]
    return sorted(p for p in paths if p.endswith(".parquet") and not _hidden(p, directory) and storage.isfile(p))


def read_encode_manifest(out_dir: str) -> EncodeManifest | None:
    """The `_SUCCESS` of an encode run (None when there is none); one that is not an encode manifest is
    a one-line error naming it."""
    path = _join(out_dir, SUCCESS)
    data = read_json(path)
    if data is None:
        return None
    try:
        return EncodeManifest.from_dict(data, source=path)
    except InvalidInput as err:
        raise ReportInputError(f"--embeddings {err}") from None


def embedding_files(out_dir: str, manifest: EncodeManifest | None) -> list[str]:
    """The shards an encode run published (from its manifest when there is one), else its *.parquet."""
    if manifest is not None and manifest.shards:
        return [_join(out_dir, name) for name in manifest.shard_files]
    return parquet_files(out_dir)


def _open(path: str):
    """The Parquet file at `path`; a file that is not Parquet (or is truncated) is a one-line error."""
    try:
        return open_parquet(path)
    except (pa.ArrowInvalid, OSError) as err:
        reason = (str(err).strip().splitlines() or ["unknown error"])[0]
        raise ReportInputError(f"{path}: not a readable Parquet file ({reason})") from None


def schema_of(path: str) -> pa.Schema:
    return _open(path).schema_arrow


def sample_table(files: list[str], columns: list[str], max_rows: int, seed: int = 0) -> tuple[pa.Table, int]:
    """At most `max_rows` rows of `columns` drawn from `files`, and the total rows the files hold.

    Whole row groups are picked at random until they hold enough rows, then rows are thinned at random:
    only the chosen groups are read.
    """
    if not files:
        raise ReportInputError("no Parquet files to sample")
    rng = np.random.default_rng(seed)
    groups = []  # (file index, row group, rows)
    readers = [_open(path) for path in files]
    for i, reader in enumerate(readers):
        for g in range(reader.metadata.num_row_groups):
            groups.append((i, g, reader.metadata.row_group(g).num_rows))
    total = sum(rows for _, _, rows in groups)
    chosen, have = [], 0
    for index in rng.permutation(len(groups)) if total > max_rows else range(len(groups)):
        chosen.append(groups[index])
        have += groups[index][2]
        if have >= max_rows and total > max_rows:
            break
    tables = [readers[i].read_row_group(g, columns=columns) for i, g, _ in sorted(chosen)]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return readers[0].schema_arrow.empty_table().select(columns), total
    table = pa.concat_tables(tables)
    if table.num_rows > max_rows:
        table = table.take(np.sort(rng.choice(table.num_rows, max_rows, replace=False)))
    return table, total


@dataclasses.dataclass
class EmbeddingSample:
    """Sampled rows of embedding Parquet: codes, errors, optional flags and dedup clusters."""

    codes: np.ndarray
    errors: np.ndarray | None
    is_anomaly: np.ndarray | None
    cluster_id: np.ndarray | None
    total_rows: int
    source: str
    labels: np.ndarray | None = None  # the --color-by column, when asked for
    scores: np.ndarray | None = None  # anomaly_score, written by `ae-tf encode --flag-anomalies`

    @property
    def rows(self) -> int:
        return len(self.codes)


def read_embedding_sample(files: list[str], max_rows: int, seed: int, source: str,
                          label_column: str | None = None) -> EmbeddingSample:
    """Sample the columns the report draws; `embedding` must be there, the rest are optional."""
    from ae_tf.embeddings import embedding_matrix

    schema = schema_of(files[0])
    if EMBEDDING not in schema.names:
        raise ReportInputError(f"{files[0]}: no {EMBEDDING!r} column; not embedding Parquet from `ae-tf encode`")
    if label_column is not None and label_column not in schema.names:
        raise ReportInputError(f"{files[0]}: --color-by column {label_column!r} not found; columns are: "
                               f"{', '.join(schema.names)}")
    wanted = [n for n in (EMBEDDING, RECONSTRUCTION_ERROR, ANOMALY_SCORE, IS_ANOMALY, CLUSTER_ID, label_column)
              if n is not None and n in schema.names]
    wanted = list(dict.fromkeys(wanted))
    table, total = sample_table(files, wanted, max_rows, seed)

    def column(name):
        return table.column(name).to_numpy(zero_copy_only=False) if name in table.column_names else None

    return EmbeddingSample(codes=embedding_matrix(table.column(EMBEDDING)), errors=column(RECONSTRUCTION_ERROR),
                           is_anomaly=column(IS_ANOMALY), cluster_id=column(CLUSTER_ID), total_rows=total,
                           source=source, labels=column(label_column) if label_column else None,
                           scores=column(ANOMALY_SCORE))


@dataclasses.dataclass
class DedupOutputs:
    """What a dedup output directory holds: the summary JSON and the Parquet rows carrying cluster_id."""

    directory: str
    summary: dict | None
    summary_path: str | None
    row_files: list[str]
    has_embedding: bool
    _cluster_ids: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def cluster_ids(self) -> np.ndarray | None:
        """Every row's cluster_id (one int64 column, cheap even for many rows); read once."""
        if not self.row_files:
            return None
        if self._cluster_ids is None:
            parts = [_open(path).read(columns=[CLUSTER_ID]).column(CLUSTER_ID) for path in self.row_files]
            self._cluster_ids = np.concatenate([p.to_numpy() for p in parts])
        return self._cluster_ids

    def cluster_sizes_of(self, cluster_id: np.ndarray) -> np.ndarray | None:
        """The whole-dataset size of each given row's cluster."""
        every = self.cluster_ids()
        if every is None:
            return None
        ids, counts = np.unique(every, return_counts=True)
        at = np.clip(np.searchsorted(ids, cluster_id), 0, len(ids) - 1)
        return np.where(ids[at] == cluster_id, counts[at], 1)


def read_dedup_summary(directory: str) -> tuple[dict | None, str | None]:
    """The summary of a dedup output (ae_tf.contracts.DedupOutput.summary_names, in order) and its path."""
    for name in DedupOutput.summary_names():
        path = _join(directory, name)
        data = read_json(path)
        if data is None:
            continue
        try:
            return DedupSummary.from_dict(data, source=path).to_dict(), path
        except InvalidInput:  # e.g. a _SUCCESS that is not a summary
            continue
    return None, None


def _row_datasets(directory: str) -> dict[str, list[str]]:
    """Parquet files grouped by their folder, only those whose schema has cluster_id."""
    groups: dict[str, list[str]] = {}
    for path in parquet_files(directory, recursive=True):
        groups.setdefault(posixpath.dirname(path), []).append(path)
    return {folder: files for folder, files in groups.items() if CLUSTER_ID in schema_of(files[0]).names}


def find_dedup_outputs(directory: str) -> DedupOutputs:
    """Locate the summary and the annotated rows in a `pipelines.dedup` output directory.

    The layout is ae_tf.contracts.DedupOutput: the summary and annotated/. A directory laid out otherwise
    is searched: among Parquet folders whose rows carry cluster_id, the one that also has keep and
    max_similarity and the most rows (every input row annotated, not the deduplicated subset).
    """
    directory = require_dir(directory, "--dedup")
    summary, summary_path = read_dedup_summary(directory)
    annotated = DedupOutput.dataset_dir(directory, DedupOutput.ANNOTATED)
    best = parquet_files(annotated) if storage.isdir(annotated) else []
    best = best if best and CLUSTER_ID in schema_of(best[0]).names else []
    best_rank = None
    for _folder, files in ([] if best else _row_datasets(directory).items()):  # not our layout: search
        schema = schema_of(files[0])
        rows = sum(_open(p).metadata.num_rows for p in files)
        rank = (KEEP in schema.names and MAX_SIMILARITY in schema.names, rows)
        if best_rank is None or rank > best_rank:
            best, best_rank = files, rank
    if summary is None and not best:
        raise ReportInputError(f"--dedup {directory}: no dedup summary JSON and no Parquet rows with "
                               f"{CLUSTER_ID!r}; pass the output directory of `ae-tf dedup`")
    has_embedding = bool(best) and EMBEDDING in schema_of(best[0]).names
    return DedupOutputs(directory, summary, summary_path, best, has_embedding)


def input_sample(files: list[str], spec: FeatureSpec, max_rows: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Up to `max_rows` valid rows of model features from `files` (rows the model would reject are
    dropped, as encode would), and how many rows were read."""
    if len(files) > MAX_INPUT_FILES:  # each file costs a footer read (a request on gs://)
        files = sorted(np.random.default_rng(seed).choice(files, MAX_INPUT_FILES, replace=False).tolist())
    for path in files:
        check_schema(schema_of(path), spec, source=path)  # names the file and the column
    table, _ = sample_table(files, list(spec.columns), max_rows, seed)
    check = validate_rows(table, spec)
    if not check.all_valid:
        table = table.filter(pa.array(check.valid))
    return features_to_array(table, spec, source=files[0]), int(len(check.valid))


def rows_by_key(files: list[str], key: str, values: list, columns: list[str]) -> pa.Table | None:
    """The rows of `files` whose `key` is one of `values`, with `key` and `columns`, in the order of `values`.

    Only the key column is read everywhere; the other columns are read from the row groups that hold a
    wanted key (the report's dedup page fetches a few dozen thumbnails this way from a large input).
    None when a file lacks a column or a key is not found.
    """
    import pyarrow.compute as pc

    parts = []
    for path in files:
        reader = _open(path)
        schema = reader.schema_arrow
        if key not in schema.names or any(c not in schema.names for c in columns):
            return None
        try:
            wanted = pa.array(values).cast(schema.field(key).type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        for group in range(reader.metadata.num_row_groups):
            keys = reader.read_row_group(group, columns=[key]).column(key)
            hits = np.flatnonzero(pc.is_in(keys, value_set=wanted).to_numpy(zero_copy_only=False))
            if len(hits):
                parts.append(reader.read_row_group(group, columns=[key, *columns]).take(pa.array(hits)))
    if not parts:
        return None
    table = pa.concat_tables(parts)
    found = table.column(key).to_pylist()
    first = {}
    for i, value in enumerate(found):
        first.setdefault(value, i)
    if any(v not in first for v in values):
        return None
    return table.take(pa.array([first[v] for v in values]))

