"""Find exact and near-duplicate rows of embedding Parquet (cosine similarity >= --threshold).

    python -m pipelines.dedup --input 'embeddings/*.parquet' --output OUT_DIR [--threshold 0.95]
        [--keep first|closest-to-centroid|random] [--sweep 0.95,0.97,0.99] [--id-column id] [Beam options]

Flow (every Beam element is a whole batch; the only keys are partition numbers):
1. At launch: check the files, count rows from footers, read a small sample and choose the LSH banding
   (ae_tf.lsh: recall >= --recall at the lowest threshold, cheapest for the sample's similarities).
2. Each input batch -> band keys + sketches -> its (row, band) entries routed to P partitions by bucket
   key, one array per partition per batch -> GroupByKey(partition) -> inside a partition, entries sorted
   by (bucket, row) and pairs within buckets kept if their sketches are close (hot buckets cut into
   bounded windows) -> candidate pairs routed by their first row. On the local runner, whose shuffle is
   in memory, the bands are searched in rounds (--rounds), each waiting for the previous one.
3. Verification joins each candidate pair with both vectors (two CoGroupByKeys on row partitions) and
   computes the exact cosine: no pair below the threshold is ever reported.
4. One step sees the verified pairs only: connected components -> cluster_id (smallest row number of the
   cluster), one kept row per cluster (--keep), counts at every --sweep threshold.
5. The input is read again and annotated from that result (a side input sized by the duplicate rows).

Outputs under OUT_DIR, each a directory of part-*.parquet shards with its own `_SUCCESS`:
  annotated/     the input rows + cluster_id int64, keep bool, max_similarity float32 (null: no similar row)
  pairs/         id_a, id_b, similarity float32, exact bool: every verified pair >= --threshold, id_a first
  deduplicated/  the kept rows only, input columns unchanged
and summary.json; OUT_DIR/_SUCCESS (the same summary) is written last.

Memory: a partition holds ~4M entries (24 bytes each; --partitions); a bucket compares at most
--max-bucket rows at once; the clustering step holds the verified pairs (~30 bytes each) and the annotate
step the rows that have a duplicate (~25 bytes each). Expected result (benchmarks/dedup.py, 1M x 32 rows,
2 cores): about a minute, recall >= 0.99 at the threshold, precision 1.0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

import ae_tf
from ae_tf.duplicates import (
    EMPTY,
    KEEP_POLICIES,
    BucketStats,
    DuplicateRows,
    bucket_pairs,
    ordered_unique_pairs,
    pair_similarity,
    partition_indices,
    resolve_duplicates,
    route_entries,
    row_bits_for,
    unique_inverse,
    unit_rows,
)
from ae_tf.lsh import BandHasher, Banding, choose_banding
from pipelines.launch import add_output_flags, execute, main_with_summary, pipeline_arg_parser, prepare_launch
from pipelines.options import split_args
from pipelines.output_files import write_bytes
from pipelines.parquet import (
    METRICS_NAMESPACE,
    TEMP_DIR,
    InputError,
    ShardResult,
    WriteParquetShards,
    prepare_output,
    publish_shards,
    utc_now,
    write_manifest,
)
from pipelines.vector_input import (
    ReadNumberedBatches,
    VectorInput,
    check_columns,
    plan_vector_input,
    sample_matrix,
)

log = logging.getLogger(__name__)

CLUSTER_ID, KEEP, MAX_SIMILARITY = "cluster_id", "keep", "max_similarity"
ANNOTATED, PAIRS, DEDUPLICATED = "annotated", "pairs", "deduplicated"
SUMMARY_NAME = "summary.json"
ENTRIES_PER_PARTITION = 4_000_000  # ~100 MB of (row, band) entries to sort in one partition
ENTRY_BYTES = 24  # one (row, band) entry: bucket key and row in a uint64, 128-bit sketch
ROUND_ENTRY_BYTES = 256 << 20  # local runner: entries of one round of bands held by its in-memory shuffle
SAMPLE_ROWS = 4096


def dedup_arg_parser() -> argparse.ArgumentParser:
    parser = pipeline_arg_parser(
        "ae-tf dedup", "Find exact and near-duplicate rows of embedding Parquet by cosine similarity (a Beam pipeline).")
    parser.add_argument("--input", required=True, help="embedding Parquet: a glob or a directory (local or gs://)")
    parser.add_argument("--output", required=True, help="output directory: annotated/, pairs/, deduplicated/, summary")
    parser.add_argument("--column", default="embedding", help="vector column (default: %(default)s)")
    parser.add_argument("--id-column", default="id", help="column naming rows in the pairs output (default: %(default)s)")
    parser.add_argument("--keep-columns", default=None,
                        help="comma-separated columns of the annotated and deduplicated outputs (default: all)")
    parser.add_argument("--threshold", type=float, default=0.95,
                        help="rows at cosine similarity >= this are duplicates (default: %(default)s)")
    parser.add_argument("--sweep", default="0.95,0.97,0.99",
                        help="also count kept/removed rows at these thresholds, in the same pass (default: "
                             "%(default)s); values below --threshold make candidate generation aim at them (slower)")
    parser.add_argument("--keep", default="first", choices=KEEP_POLICIES,
                        help="which row each cluster keeps (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hyperplanes and of --keep random")
    parser.add_argument("--recall", type=float, default=0.99,
                        help="chance of finding a pair exactly at the lowest threshold (default: %(default)s)")
    parser.add_argument("--bands", type=int, default=None, help="LSH bands (default: chosen from the data)")
    parser.add_argument("--rows-per-band", type=int, default=None, help="bits per LSH band (default: chosen)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions of the candidate search (default: about 4M entries each)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="search the bands in this many sequential rounds, to bound the memory of an "
                             "in-memory shuffle (default: ~256 MB of entries per round on the local runner, "
                             "1 on other runners)")
    parser.add_argument("--max-bucket", type=int, default=256,
                        help="buckets bigger than this are compared in overlapping windows of this many rows")
    add_output_flags(parser)
    return parser


@dataclasses.dataclass(frozen=True)
class DedupPlan:
    """Everything decided at launch: checked input, thresholds, LSH banding, partitions, output layout."""

    vectors: VectorInput
    id_column: str
    id_type: pa.DataType
    keep_columns: tuple[str, ...]
    output_dir: str
    banding: Banding
    partitions: int
    threshold: float = 0.95
    sweep: tuple[float, ...] = ()
    keep_policy: str = "first"
    seed: int = 0
    max_bucket: int = 256
    rounds: int = 1
    batch_rows: int = 65536
    compression: str = "zstd"
    run_id: str = ""

    @property
    def band_rounds(self) -> list[tuple[int, int]]:
        """(first band, last band + 1) of each round."""
        bounds = np.linspace(0, self.banding.bands, self.rounds + 1).astype(int)
        return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]

    @property
    def lowest_threshold(self) -> float:
        return min((self.threshold, *self.sweep))

    @property
    def row_bits(self) -> int:
        return row_bits_for(self.vectors.rows)

    def dataset_dir(self, name: str) -> str:
        return f"{self.output_dir.rstrip('/')}/{name}"

    def temp_dir(self, name: str) -> str:
        return f"{self.dataset_dir(name)}/{TEMP_DIR}/{self.run_id}"

    def num_shards(self, name: str) -> int:
        return self.partitions if name == PAIRS else len(self.vectors.splits)

    @property
    def candidate_columns(self) -> list[str]:
        return list(dict.fromkeys([self.vectors.column, self.id_column]))

    def _metadata(self) -> dict:
        metadata = {k: v for k, v in (self.vectors.schema.metadata or {}).items() if k.startswith(b"ae_tf.")}
        metadata[b"ae_tf.dedup_threshold"] = str(self.threshold).encode()
        return metadata

    @property
    def deduplicated_schema(self) -> pa.Schema:
        return pa.schema([self.vectors.schema.field(n) for n in self.keep_columns], metadata=self._metadata())

    @property
    def annotated_schema(self) -> pa.Schema:
        return pa.schema([*self.deduplicated_schema, pa.field(CLUSTER_ID, pa.int64()), pa.field(KEEP, pa.bool_()),
                          pa.field(MAX_SIMILARITY, pa.float32())], metadata=self._metadata())

    @property
    def pairs_schema(self) -> pa.Schema:
        return pa.schema([pa.field("id_a", self.id_type), pa.field("id_b", self.id_type),
                          pa.field("similarity", pa.float32()), pa.field("exact", pa.bool_())],
                         metadata=self._metadata())


def parse_thresholds(text: str | Sequence[float] | None) -> tuple[float, ...]:
    if text is None:
        return ()
    values = [float(v) for v in text.split(",") if v.strip()] if isinstance(text, str) else list(text)
    for value in values:
        if not 0.0 < value < 1.0:
            raise InputError(f"--sweep: thresholds must be between 0 and 1 (exclusive), got {value}")
    return tuple(sorted(set(values)))


def sample_similarities(vectors: VectorInput, rows: int = SAMPLE_ROWS) -> np.ndarray:
    """Pairwise cosine similarities of a launch-time sample: what the banding's cost estimate needs."""
    units = unit_rows(sample_matrix(vectors, rows))
    if len(units) < 2:
        return np.zeros(0)
    return (units @ units.T)[np.triu_indices(len(units), 1)]


def plan_dedup(input_pattern: str, output_dir: str, column: str = "embedding", id_column: str = "id",
               keep_columns: Sequence[str] | None = None, threshold: float = 0.95,
               sweep: str | Sequence[float] | None = (0.95, 0.97, 0.99), keep_policy: str = "first", seed: int = 0,
               recall: float = 0.99, bands: int | None = None, rows_per_band: int | None = None,
               partitions: int | None = None, max_bucket: int = 256, rounds: int | None = None,
               batch_rows: int = 65536,
               max_rows_per_split: int = 2_000_000, compression: str = "zstd", overwrite: bool = False) -> DedupPlan:
    """Check inputs and flags, choose banding and partitions, prepare the output; one-line errors."""
    if not 0.0 < threshold < 1.0:
        raise InputError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    if not 0.0 < recall < 1.0:
        raise InputError(f"--recall must be between 0 and 1 (exclusive), got {recall}")
    if keep_policy not in KEEP_POLICIES:
        raise InputError(f"--keep must be one of {', '.join(KEEP_POLICIES)}, got {keep_policy!r}")
    if max_bucket < 2:
        raise InputError(f"--max-bucket must be at least 2, got {max_bucket}")
    sweep = parse_thresholds(sweep)
    vectors = plan_vector_input(input_pattern, column, max_rows_per_split)
    check_columns(vectors, [id_column], "--id-column")
    if keep_columns is None:
        keep_columns = list(vectors.schema.names)
    clash = [n for n in keep_columns if n in (CLUSTER_ID, KEEP, MAX_SIMILARITY)]
    if clash:
        raise InputError(f"--keep-columns: {clash[0]!r} is an output column name; leave it out or rename it in the input")
    check_columns(vectors, keep_columns, "--keep-columns")
    lowest = min((threshold, *sweep))
    sample = sample_similarities(vectors)
    try:
        banding = choose_banding(lowest, max(vectors.rows, 2), sample, recall, rows_per_band, bands)
    except ValueError as err:
        raise InputError(f"--bands/--rows-per-band: {err}") from None
    if partitions is None:
        partitions = max(4, min(4096, math.ceil(banding.bands * vectors.rows / ENTRIES_PER_PARTITION)))
    if not 1 <= partitions <= 1 << 16:
        raise InputError(f"--partitions must be between 1 and 65536, got {partitions}")
    if rounds is None:
        rounds = max(1, math.ceil(banding.bands * vectors.rows * ENTRY_BYTES / ROUND_ENTRY_BYTES))
    if rounds < 1:
        raise InputError(f"--rounds must be at least 1, got {rounds}")
    prepare_output(output_dir, overwrite)
    plan = DedupPlan(vectors, id_column, vectors.schema.field(id_column).type, tuple(keep_columns), output_dir,
                     banding, partitions, threshold, sweep, keep_policy, seed, max_bucket,
                     min(rounds, banding.bands), batch_rows, compression, run_id=time.strftime("%Y%m%d-%H%M%S"))
    for name in (ANNOTATED, PAIRS, DEDUPLICATED):  # retract the datasets' manifests of an earlier run
        prepare_output(plan.dataset_dir(name), overwrite=True)
    return plan


# ---- elements: whole arrays, never one row --------------------------------------------------------------

@dataclasses.dataclass
class VectorBlock:
    """Rows of one partition from one input batch: row numbers, vectors and ids."""

    rows: np.ndarray
    vectors: np.ndarray
    ids: pa.Array


@dataclasses.dataclass
class PairBlock:
    """Candidate pairs (a < b); after the first join also a's vector and id."""

    a: np.ndarray
    b: np.ndarray
    vectors_a: np.ndarray | None = None
    ids_a: pa.Array | None = None


@dataclasses.dataclass
class EdgeBlock:
    """One partition's verified pairs at or above the lowest threshold, for clustering."""

    a: np.ndarray
    b: np.ndarray
    similarity: np.ndarray
    exact: np.ndarray
    candidates: int
    member_rows: np.ndarray | None = None  # closest-to-centroid only: rows in pairs >= threshold...
    member_units: np.ndarray | None = None  # ...and their unit vectors


@dataclasses.dataclass
class Resolution:
    duplicates: DuplicateRows
    summary: dict


# ---- steps --------------------------------------------------------------------------------------------

class _HashIntoBandsDoFn(beam.DoFn):
    """A batch -> per partition, its (bucket, row) entries and their sketches, for one round's bands."""

    def __init__(self, plan: DedupPlan, first_band: int, last_band: int):
        self._plan = plan
        self._bands = (first_band, last_band)

    def setup(self):
        plan = self._plan
        self._hasher = BandHasher(plan.vectors.width, plan.banding.bands, plan.banding.rows, plan.seed)

    def process(self, element, previous_round=None):
        index, first_row, batch = element
        plan = self._plan
        keys, sketches = self._hasher.signatures(plan.vectors.matrix(batch, index, first_row), *self._bands)
        for part, entries, entry_sketches in route_entries(keys, sketches, first_row, plan.row_bits, plan.partitions):
            yield part, (entries, entry_sketches)


class _PairsInBucketsDoFn(beam.DoFn):
    """A partition's entries -> candidate pairs, routed by their first row; bucket statistics aside."""

    def __init__(self, plan: DedupPlan):
        self._plan = plan
        self._hits = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "dedup_pair_hits")
        self._survivors = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "dedup_sketch_survivors")
        self._oversize = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "dedup_oversize_buckets")

    def process(self, element):
        _part, arrays = element
        arrays = list(arrays)
        plan = self._plan
        entries = np.concatenate([e for e, _ in arrays])
        sketches = np.concatenate([s for _, s in arrays])
        total = BucketStats()
        for a, b, stats in bucket_pairs(entries, sketches, plan.row_bits, plan.banding.sketch_max_distance,
                                        plan.max_bucket):
            total = total.add(stats)
            for part, idx in partition_indices(a % plan.partitions, plan.partitions):
                yield part, PairBlock(a[idx], b[idx])
        self._hits.inc(total.pair_hits)
        self._survivors.inc(total.sketch_survivors)
        self._oversize.inc(total.oversize_buckets)
        yield beam.pvalue.TaggedOutput("stats", total)


def key_vectors(element, plan: DedupPlan):
    """A batch -> one VectorBlock per row partition (row % partitions)."""
    index, first_row, batch = element
    matrix = plan.vectors.matrix(batch, index, first_row)
    rows = np.arange(first_row, first_row + len(matrix), dtype=np.int64)
    ids = batch.column(plan.id_column)
    for part, idx in partition_indices(rows % plan.partitions, plan.partitions):
        yield part, VectorBlock(rows[idx], matrix[idx], ids.take(pa.array(idx)))


def _gather(blocks, plan: DedupPlan) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """A partition's VectorBlocks -> (rows sorted, vectors, ids) aligned with them."""
    blocks = list(blocks)
    if not blocks:
        return EMPTY, np.zeros((0, plan.vectors.width), dtype=np.float32), pa.array([], type=plan.id_type)
    rows = np.concatenate([b.rows for b in blocks])
    order = np.argsort(rows)
    ids = pa.concat_arrays([b.ids.cast(plan.id_type) for b in blocks]).take(pa.array(order))
    return rows[order], np.concatenate([b.vectors for b in blocks])[order], ids


def attach_first_vectors(element, plan: DedupPlan):
    """(partition of a, {vectors, pairs}) -> pairs with a's vector and id, routed by b's partition."""
    _part, grouped = element
    rows, vectors, ids = _gather(grouped["vectors"], plan)
    blocks = list(grouped["pairs"])
    if not blocks:
        return
    a, b = ordered_unique_pairs(np.concatenate([p.a for p in blocks]), np.concatenate([p.b for p in blocks]))
    at = np.searchsorted(rows, a)
    for part, idx in partition_indices(b % plan.partitions, plan.partitions):
        yield part, PairBlock(a[idx], b[idx], vectors[at[idx]], ids.take(pa.array(at[idx])))


class _VerifyPairsDoFn(beam.DoFn):
    """(partition of b, {vectors, pairs, slot}) -> the pairs-file batch (>= threshold) of this partition,
    and aside the verified edges (>= lowest threshold) for clustering. Exactly one of each per partition."""

    def __init__(self, plan: DedupPlan):
        self._plan = plan
        self._candidates = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "dedup_candidates_verified")

    def process(self, element):
        part, grouped = element
        plan = self._plan
        rows, vectors, ids = _gather(grouped["vectors"], plan)
        blocks = [p for p in grouped["pairs"] if len(p.a)]
        if blocks:
            a = np.concatenate([p.a for p in blocks])
            b = np.concatenate([p.b for p in blocks])
            order = np.lexsort((b, a))
            a, b = a[order], b[order]
            vectors_a = np.concatenate([p.vectors_a for p in blocks])[order]
            ids_a = pa.concat_arrays([p.ids_a for p in blocks]).take(pa.array(order))
        else:
            a = b = EMPTY
            vectors_a = np.zeros((0, plan.vectors.width), dtype=np.float32)
            ids_a = pa.array([], type=plan.id_type)
        at = np.searchsorted(rows, b)
        vectors_b = vectors[at]
        similarity, exact = pair_similarity(vectors_a, vectors_b)
        self._candidates.inc(len(a))
        reported = similarity >= plan.threshold
        mask = pa.array(reported)
        pairs = pa.RecordBatch.from_arrays(
            [ids_a.filter(mask), ids.take(pa.array(at[reported])),
             pa.array(similarity[reported].astype(np.float32)), pa.array(exact[reported])], schema=plan.pairs_schema)
        yield part, pairs
        kept = similarity >= plan.lowest_threshold
        edges = EdgeBlock(a[kept], b[kept], similarity[kept], exact[kept], candidates=len(a))
        if plan.keep_policy == "closest-to-centroid":
            members = np.concatenate([a[reported], b[reported]])
            units = unit_rows(np.concatenate([vectors_a[reported], vectors_b[reported]]))
            edges.member_rows, first = np.unique(members, return_index=True)
            edges.member_units = units[first]
        yield beam.pvalue.TaggedOutput("edges", edges)


def resolve_clusters(blocks: list[EdgeBlock], plan: DedupPlan) -> Resolution:
    """All verified edges -> clusters, kept rows and the summary (one step; memory ~ the verified pairs)."""
    def joined(name, dtype):
        parts = [getattr(e, name) for e in blocks]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    member_rows = member_units = None
    if plan.keep_policy == "closest-to-centroid":
        with_members = [e for e in blocks if e.member_rows is not None and len(e.member_rows)]
        if with_members:
            member_rows, first = unique_inverse(np.concatenate([e.member_rows for e in with_members]))
            units = np.concatenate([e.member_units for e in with_members])
            member_units = np.zeros((len(member_rows), units.shape[1]))
            member_units[first] = units
        else:
            member_rows, member_units = EMPTY, np.zeros((0, plan.vectors.width))
    duplicates, summary = resolve_duplicates(
        joined("a", np.int64), joined("b", np.int64), joined("similarity", np.float64), joined("exact", bool),
        plan.vectors.rows, plan.threshold, plan.sweep, plan.keep_policy, plan.seed, member_rows, member_units)
    summary["candidate_pairs_verified"] = int(sum(e.candidates for e in blocks))
    return Resolution(duplicates, summary)


class _AnnotateRowsDoFn(beam.DoFn):
    """A batch + the resolution -> (annotated batch, and aside its kept rows); one of each per batch."""

    def __init__(self, plan: DedupPlan):
        self._plan = plan

    def process(self, element, resolution: Resolution):
        index, first_row, batch = element
        plan = self._plan
        cluster, keep, similarity, found = resolution.duplicates.lookup(first_row, batch.num_rows)
        dedup_schema = plan.deduplicated_schema
        columns = []
        for field in dedup_schema:
            column = batch.column(field.name)
            columns.append(column.cast(field.type) if column.type != field.type else column)
        annotated = pa.RecordBatch.from_arrays(
            [*columns, pa.array(cluster), pa.array(keep), pa.array(similarity, mask=~found)],
            schema=plan.annotated_schema)
        yield index, annotated
        kept = pa.RecordBatch.from_arrays(columns, schema=dedup_schema).filter(pa.array(keep))
        yield beam.pvalue.TaggedOutput(DEDUPLICATED, (index, kept))


def tag_shard(result: ShardResult, name: str) -> tuple[str, ShardResult]:
    return name, result


def publish(tagged: list[tuple[str, ShardResult]], plan: DedupPlan, started: str, resolution: Resolution,
            bucket_stats: list[BucketStats]) -> dict:
    """Final step, run once: publish the three datasets (each with its `_SUCCESS`), check that the counts
    agree with the summary, write summary.json, then OUT_DIR/_SUCCESS."""
    summary = resolution.summary
    expected = {ANNOTATED: plan.vectors.rows, DEDUPLICATED: summary["rows_kept"], PAIRS: summary["pairs"]}
    datasets = {}
    for name in (ANNOTATED, PAIRS, DEDUPLICATED):
        results = [r for n, r in tagged if n == name]
        shards = publish_shards(plan.dataset_dir(name), plan.temp_dir(name), results, plan.num_shards(name))
        rows = sum(s["rows"] for s in shards)
        if rows != expected[name]:
            raise RuntimeError(f"{plan.dataset_dir(name)}: wrote {rows} rows, expected {expected[name]}; not publishing")
        write_manifest(plan.dataset_dir(name), {"rows": rows, "shards": shards, "finished_at": utc_now()})
        datasets[name] = {"dir": plan.dataset_dir(name), "rows": rows, "shards": len(shards)}
    total = BucketStats()
    for stats in bucket_stats:
        total = total.add(stats)
    manifest = {
        **summary, "inputs": list(plan.vectors.inputs), "output_dir": plan.output_dir, "outputs": datasets,
        "column": plan.vectors.column, "id_column": plan.id_column, "seed": plan.seed,
        "candidates": {"lsh": plan.banding.to_dict(), "partitions": plan.partitions, "rounds": plan.rounds,
                       "max_bucket": plan.max_bucket,
                       "lowest_threshold": plan.lowest_threshold, **total.to_dict(),
                       "pairs_verified": summary["candidate_pairs_verified"]},
        "started_at": started, "finished_at": utc_now(), "ae_tf_version": ae_tf.__version__,
    }
    manifest.pop("candidate_pairs_verified")
    write_bytes(f"{plan.output_dir.rstrip('/')}/{SUMMARY_NAME}",
                (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), "application/json")
    write_manifest(plan.output_dir, manifest)
    return manifest


# ---- transforms ---------------------------------------------------------------------------------------

class FindCandidatePairs(beam.PTransform):
    """Numbered batches -> {"pairs": (partition of a, PairBlock), "stats": BucketStats per partition}, for
    bands first_band..last_band-1. `after` (a side input) makes hashing wait for an earlier round."""

    def __init__(self, plan: DedupPlan, first_band: int, last_band: int, after=None):
        super().__init__()
        self._plan = plan
        self._bands = (first_band, last_band)
        self._after = after

    def expand(self, batches):
        plan = self._plan
        hash_fn = _HashIntoBandsDoFn(plan, *self._bands)
        found = (
            batches
            | "HashIntoBands" >> (beam.ParDo(hash_fn, self._after) if self._after else beam.ParDo(hash_fn))
            | "GroupBuckets" >> beam.GroupByKey()
            | "PairsInBuckets" >> beam.ParDo(_PairsInBucketsDoFn(plan)).with_outputs("stats", main="pairs")
        )
        return {"pairs": found.pairs, "stats": found.stats}


class VerifyPairs(beam.PTransform):
    """{"pairs", "vectors"} -> {"pairs": (partition, pairs-file RecordBatch), "edges": EdgeBlock}."""

    def __init__(self, plan: DedupPlan):
        super().__init__()
        self._plan = plan

    def expand(self, inputs):
        plan = self._plan
        vectors = inputs["vectors"]
        slots = vectors.pipeline | "PartitionSlots" >> beam.Create([(p, None) for p in range(plan.partitions)])
        with_first = (
            {"vectors": vectors, "pairs": inputs["pairs"]}
            | "JoinFirstRows" >> beam.CoGroupByKey()
            | "AttachFirstVectors" >> beam.FlatMap(attach_first_vectors, plan)
        )
        verified = (
            {"vectors": vectors, "pairs": with_first, "slot": slots}
            | "JoinSecondRows" >> beam.CoGroupByKey()
            | "ComputeCosines" >> beam.ParDo(_VerifyPairsDoFn(plan)).with_outputs("edges", main="pairs")
        )
        return {"pairs": verified.pairs, "edges": verified.edges}


class DedupParquet(beam.PTransform):
    """PBegin -> the summary manifest (one element), having written the three datasets of `plan`."""

    def __init__(self, plan: DedupPlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin):
        plan = self._plan
        pair_sets, stat_sets, previous = [], [], None
        for i, (first_band, last_band) in enumerate(plan.band_rounds):
            numbered = pbegin | f"ReadForCandidates{i}" >> ReadNumberedBatches(
                plan.vectors, plan.candidate_columns, plan.batch_rows, progress_key=f"dedup-{plan.run_id}")
            if i == 0:
                vectors = numbered | "KeyVectorsByRow" >> beam.FlatMap(key_vectors, plan)
            found = numbered | f"FindCandidatePairs{i}" >> FindCandidatePairs(plan, first_band, last_band, previous)
            pair_sets.append(found["pairs"])
            stat_sets.append(found["stats"])
            previous = beam.pvalue.AsSingleton(found["stats"] | f"FinishRound{i}" >> beam.combiners.Count.Globally())
        candidates = {"pairs": pair_sets | "AllCandidatePairs" >> beam.Flatten(),
                      "stats": stat_sets | "AllBucketStats" >> beam.Flatten()}
        verified = {"pairs": candidates["pairs"], "vectors": vectors} | "VerifyPairs" >> VerifyPairs(plan)
        resolution = (
            verified["edges"]
            | "CollectEdges" >> beam.combiners.ToList()
            | "ResolveClusters" >> beam.Map(resolve_clusters, plan)
        )
        resolution_view = beam.pvalue.AsSingleton(resolution)
        annotated = (
            pbegin
            | "ReadForOutput" >> ReadNumberedBatches(plan.vectors, plan.keep_columns, plan.batch_rows,
                                                 progress_key=f"dedup-{plan.run_id}")
            | "AnnotateRows" >> beam.ParDo(_AnnotateRowsDoFn(plan), resolution_view).with_outputs(
                DEDUPLICATED, main=ANNOTATED)
        )
        written = [
            annotated[ANNOTATED]
            | "WriteAnnotated" >> WriteParquetShards(plan.temp_dir(ANNOTATED), plan.annotated_schema, plan.compression)
            | "TagAnnotated" >> beam.Map(tag_shard, ANNOTATED),
            annotated[DEDUPLICATED]
            | "WriteDeduplicated" >> WriteParquetShards(plan.temp_dir(DEDUPLICATED), plan.deduplicated_schema,
                                                        plan.compression)
            | "TagDeduplicated" >> beam.Map(tag_shard, DEDUPLICATED),
            verified["pairs"]
            | "WritePairs" >> WriteParquetShards(plan.temp_dir(PAIRS), plan.pairs_schema, plan.compression)
            | "TagPairs" >> beam.Map(tag_shard, PAIRS),
        ]
        return (
            written
            | "AllShards" >> beam.Flatten()
            | "CollectShards" >> beam.combiners.ToList()
            | "PublishOutput" >> beam.Map(publish, plan, utc_now(), resolution_view,
                                          beam.pvalue.AsList(candidates["stats"]))
        )


def build_pipeline(p: beam.Pipeline, plan: DedupPlan):
    return p | "DedupParquet" >> DedupParquet(plan)


def plan_from_args(args: argparse.Namespace, local_runner: bool = True) -> DedupPlan:
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    rounds = args.rounds if args.rounds is not None or local_runner else 1  # a service shuffle needs no rounds
    return plan_dedup(args.input, args.output, args.column, args.id_column, keep, args.threshold, args.sweep,
                      args.keep, args.seed, args.recall, args.bands, args.rows_per_band, args.partitions,
                      args.max_bucket, rounds, args.batch_rows, args.max_rows_per_split, args.compression,
                      args.overwrite)


def run(argv: Sequence[str] | None = None, save_main_session: bool = True, test_pipeline=None) -> dict | None:
    """Parse flags, plan, run; returns the summary manifest (None when the runner did not execute it)."""
    args, beam_args = split_args(dedup_arg_parser(), argv)
    launch = prepare_launch(beam_args, save_main_session)
    plan = plan_from_args(args, local_runner=launch.local or test_pipeline is not None)
    banding = plan.banding
    log.info("dedup of %d rows x %d: %d bands x %d bits (recall %.4f at %.3f), %d partitions, %d round(s)",
             plan.vectors.rows, plan.vectors.width, banding.bands, banding.rows, banding.recall,
             plan.lowest_threshold, plan.partitions, plan.rounds)
    return execute(launch, lambda p: build_pipeline(p, plan), plan.output_dir, f"dedup-{plan.run_id}", "dedup",
                   args.progress_interval, test_pipeline)


def summarize(manifest: dict, seconds: float) -> str:
    """The short report printed after a run."""
    lsh = manifest["candidates"]["lsh"]
    lines = [
        f"rows       {manifest['rows']:,} in, {manifest['rows_kept']:,} kept, {manifest['rows_removed']:,} removed "
        f"(similarity >= {manifest['threshold']}, keep {manifest['keep_policy']})",
        f"clusters   {manifest['clusters']:,} with duplicates ({manifest['rows_in_clusters']:,} rows), "
        f"{manifest['pairs']:,} pairs, {manifest['exact_duplicates']['pairs']:,} of them identical",
        f"search     {lsh['bands']} bands x {lsh['rows']} bits, recall {lsh['recall']:.4f} at {lsh['threshold']}; "
        f"{manifest['candidates']['pairs_verified']:,} candidate pairs verified",
    ]
    for entry in manifest["sweep"]:
        lines.append(f"sweep      >= {entry['threshold']:<5}  kept {entry['rows_kept']:,}  removed {entry['rows_removed']:,}")
    lines += [
        f"speed      {manifest['rows'] / max(seconds, 1e-9):,.0f} rows/s ({seconds:.1f}s wall, launch included)",
        f"output     {manifest['output_dir']}/{{{ANNOTATED},{PAIRS},{DEDUPLICATED}}}/part-*.parquet, {SUMMARY_NAME}, _SUCCESS",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`ae-tf dedup` / `python -m pipelines.dedup`: run and print the summary."""
    return main_with_summary(run, summarize, argv)


if __name__ == "__main__":
    from ae_tf.cli import main as cli_main

    sys.exit(cli_main(["dedup", *sys.argv[1:]]))
