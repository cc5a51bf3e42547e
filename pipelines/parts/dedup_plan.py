"""Flags and launch-time planning of `pipelines.dedup`: checked input, priority order, partitions.

At launch a sample of rows (spread over the splits) is deduplicated in memory; spherical k-means on the
sample's representatives gives the partition centroids, and the sample's kept fraction sizes the
partitions so that each partition's work (rows x kept rows) stays small.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ae_tf.contracts import DedupOutput
from ae_tf.defaults import BATCH_ROWS, MAX_ROWS_PER_SPLIT
from ae_tf.vectors.duplicates import KEEP_POLICIES
from ae_tf.vectors.greedy import greedy_representatives, unit_rows32
from ae_tf.vectors.kmeans import fit_spherical_kmeans, route_rows
from pipelines.io.parquet import TEMP_DIR, InputError, check_output
from pipelines.io.vector_input import VectorInput, check_columns, plan_vector_input, sample_matrix
from pipelines.runner.launch import add_output_flags, pipeline_arg_parser

CLUSTER_ID, KEEP, MAX_SIMILARITY = DedupOutput.ANNOTATION_COLUMNS  # the output's layout: ae_tf.contracts
ANNOTATED, PAIRS, DEDUPLICATED = DedupOutput.DATASETS
CLUSTER_MODES = ("greedy", "connected")
SUMMARY_NAME = DedupOutput.SUMMARY
SAMPLE_ROWS = 10_000  # rows deduplicated at launch to place the centroids
WORK_PER_PARTITION = 3e7  # rows x kept rows compared in one partition (~0.3-1 s of matrix products)
MARGINS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
DENSE_KEPT_FRACTION = 0.05  # below this estimated kept fraction, partitions grow with the square of the ratio
SPARSE_KEPT_FRACTION = 0.5  # above this estimated kept fraction, guests that meet no home row are pruned
MISSED_REAL = 0.001  # of the sample's duplicate pairs
MISSED_MADE = 0.05  # of pairs at exactly the threshold
LSH_FLAGS = ("--recall", "--bands", "--rows-per-band", "--rounds", "--max-bucket")


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
    parser.add_argument("--sweep", default="",
                        help="also count kept/removed rows at these comma-separated thresholds (each one costs "
                             "another greedy pass inside every partition; default: none)")
    parser.add_argument("--keep", default="first", choices=KEEP_POLICIES,
                        help="priority order of the greedy pass: the earlier row is kept (default: %(default)s)")
    parser.add_argument("--priority", nargs="+", default=None, metavar="COLUMN [desc]",
                        help="order rows by this numeric column first (ascending; add 'desc' for descending), "
                             "then by --keep")
    parser.add_argument("--clusters", default="greedy", choices=CLUSTER_MODES,
                        help="greedy: each removed row joins its most similar kept row (default); connected: "
                             "transitive groups, which chain unrelated rows together on dense data")
    parser.add_argument("--max-pairs-per-row", type=int, default=0,
                        help="pairs/ also lists up to this many further kept rows at >= threshold per removed row")
    parser.add_argument("--seed", type=int, default=0, help="seed of the k-means and of --keep random")
    parser.add_argument("--partitions", type=int, default=None,
                        help="k-means partitions (default: from the sample, ~4M row comparisons each)")
    parser.add_argument("--margin", type=float, default=None,
                        help="a row is also compared in up to --max-guests other partitions whose centroid "
                             "cosine is within this of its own (default: chosen on the launch sample, see README)")
    parser.add_argument("--max-guests", type=int, default=6, help="(default: %(default)s)")
    parser.add_argument("--residual-sample", type=int, default=2000,
                        help="kept rows checked exactly against all kept rows for the summary (default: %(default)s)")
    for flag in LSH_FLAGS:
        parser.add_argument(flag, default=None, help=argparse.SUPPRESS)
    add_output_flags(parser)
    return parser


@dataclasses.dataclass(frozen=True)
class DedupPlan:
    """Everything decided at launch: checked input, thresholds, order, centroids, output layout."""

    vectors: VectorInput
    id_column: str
    id_type: pa.DataType
    keep_columns: tuple[str, ...]
    output_dir: str
    placement: Placement  # centroids (float32 [partitions, width]; one more partition holds zero vectors)
    threshold: float = 0.95
    sweep: tuple[float, ...] = ()
    keep_policy: str = "first"
    priority_column: str | None = None
    descending: bool = False
    clusters: str = "greedy"
    max_pairs_per_row: int = 0
    seed: int = 0
    max_guests: int = 6
    residual_sample: int = 2000
    prune_guests: bool = False  # most rows kept: drop guests that cannot change a home decision
    batch_rows: int = BATCH_ROWS
    compression: str = "zstd"
    run_id: str = ""

    @property
    def centroids(self) -> np.ndarray:
        return self.placement.centroids

    @property
    def margin(self) -> float:
        return self.placement.margin

    @property
    def partitions(self) -> int:
        """k-means partitions plus the one for zero vectors."""
        return len(self.centroids) + 1

    @property
    def read_columns(self) -> list[str]:
        names = [self.vectors.column, self.id_column] + ([self.priority_column] if self.priority_column else [])
        return list(dict.fromkeys(names))

    @property
    def output_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.keep_columns, self.vectors.column, self.id_column]))

    @property
    def split_starts(self) -> np.ndarray:
        return np.asarray(self.vectors.split_starts, dtype=np.int64)

    def split_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.split_starts, rows, side="right") - 1

    def dataset_dir(self, name: str) -> str:
        return DedupOutput.dataset_dir(self.output_dir, name)

    @property
    def output_dirs(self) -> tuple[str, ...]:
        """What the run prepares when it starts: OUT_DIR and each dataset (their manifests retracted)."""
        return (self.output_dir, *(self.dataset_dir(name) for name in (ANNOTATED, PAIRS, DEDUPLICATED)))

    def temp_dir(self, name: str) -> str:
        return f"{self.dataset_dir(name)}/{TEMP_DIR}/{self.run_id}"

    def num_shards(self, name: str) -> int:
        if name == PAIRS:  # keyed by partition, split, partition, split, then second partition (< partitions)
            return 3 * self.partitions + 2 * len(self.vectors.splits)
        return len(self.vectors.splits)

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
        out = DedupOutput
        return pa.schema([pa.field(out.ID_A, self.id_type), pa.field(out.ID_B, self.id_type),
                          pa.field(out.SIMILARITY, pa.float32()), pa.field(out.EXACT, pa.bool_()),
                          pa.field(out.REPRESENTATIVE, pa.bool_())], metadata=self._metadata())


def parse_thresholds(text: str | Sequence[float] | None) -> tuple[float, ...]:
    if text is None:
        return ()
    values = [float(v) for v in text.split(",") if v.strip()] if isinstance(text, str) else list(text)
    for value in values:
        if not 0.0 < value < 1.0:
            raise InputError(f"--sweep: thresholds must be between 0 and 1 (exclusive), got {value}")
    return tuple(sorted(set(values)))


@dataclasses.dataclass(frozen=True)
class Placement:
    """What the launch sample decided: centroids, guest margin, and the figures behind them."""

    centroids: np.ndarray
    margin: float
    sample_rows: int
    sample_kept: int
    estimated_kept: int
    missed_pairs: float  # share of the sample's duplicate pairs whose kept row the other row's partition lacks
    missed_made_pairs: float  # the same for pairs made at exactly the threshold from sample rows
    second_centroids: np.ndarray | None = None  # another seed: routes the kept rows for the last merge


def _pair_misses(earlier: np.ndarray, later: np.ndarray, centroids: np.ndarray, margin: float,
                 max_guests: int) -> float:
    """Share of pairs (earlier row kept, later row compared) that would not meet: the later row's home
    partition must hold the earlier row, at home or as a guest."""
    if len(earlier) == 0 or len(centroids) < 2:
        return 0.0
    first = route_rows(earlier, centroids, margin, max_guests)
    home = route_rows(later, centroids, 0.0, 0).home
    seen = first.home == home
    guest_key = first.guest_rows * len(centroids) + first.guest_partitions
    seen |= np.isin(np.arange(len(earlier)) * len(centroids) + home, guest_key)
    return float(1.0 - seen.mean())


def at_cosine(units: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """Unit rows at exactly `cosine` to the given unit rows, in random directions."""
    d = np.random.default_rng(seed).standard_normal(units.shape)
    d -= np.einsum("ij,ij->i", d, units)[:, None] * units
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-30)
    return (cosine * units + math.sqrt(1 - cosine**2) * d).astype(np.float32)


def place_partitions(sample: np.ndarray, rows: int, threshold: float, partitions: int | None,
                     margin: float | None, max_guests: int, seed: int) -> Placement:
    """Centroids from k-means on the sample's greedy representatives. Partitions: enough that each one
    compares about WORK_PER_PARTITION (rows x kept rows), with the kept count extrapolated from the sample
    and its first half. Margin: the smallest that lets the sample's own pairs (all but MISSED_REAL) and
    pairs made at exactly the threshold from sample rows (all but MISSED_MADE) meet."""
    units, zero = unit_rows32(sample)
    units = units[~zero]
    if len(units) < 2:
        one = np.zeros((1, sample.shape[1]), dtype=np.float32)
        return Placement(one, 0.0, len(units), len(units), rows, 0.0, 0.0, one)
    result = greedy_representatives(units, threshold)
    kept = result.rows_kept
    half = int(result.kept[: len(units) // 2].sum())  # greedy on the first half decides its rows the same way
    growth = min(1.0, max(0.0, math.log2(max(kept, 1) / max(half, 1))))  # kept ~ rows ** growth
    estimated = int(min(rows, kept * (rows / len(units)) ** growth))
    if partitions is None:  # heavily duplicated data: few kept rows, so bigger partitions and fewer boundaries
        work = WORK_PER_PARTITION * max(1.0, (DENSE_KEPT_FRACTION * rows / max(estimated, 1)) ** 2)
        partitions = math.ceil(math.sqrt(rows * max(estimated, 1) / work))
        partitions = max(1, min(partitions, kept // 4, 4096))
    centroids = fit_spherical_kmeans(units[result.kept], partitions, seed)
    removed = np.flatnonzero(~result.kept)  # the sample's own pairs, and pairs made at the threshold
    real = (units[result.representative[removed]], units[removed])
    made = (units, at_cosine(units, threshold, seed))

    def misses(candidate: float) -> tuple[float, float]:
        return (_pair_misses(*real, centroids, candidate, max_guests),
                _pair_misses(*made, centroids, candidate, max_guests))

    if margin is None:
        margin = MARGINS[-1]
        for candidate in MARGINS:
            real_missed, made_missed = misses(candidate)
            if real_missed <= MISSED_REAL and made_missed <= MISSED_MADE:
                margin = candidate
                break
    real_missed, made_missed = misses(margin)
    merge_partitions = max(1, min(len(centroids), math.ceil(estimated / math.sqrt(WORK_PER_PARTITION))))
    second = fit_spherical_kmeans(units[result.kept], merge_partitions, seed + 1)
    return Placement(centroids, margin, len(units), kept, estimated, real_missed, made_missed, second)


def plan_dedup(input_pattern: str, output_dir: str, column: str = "embedding", id_column: str = "id",
               keep_columns: Sequence[str] | None = None, threshold: float = 0.95,
               sweep: str | Sequence[float] | None = (), keep_policy: str = "first",
               priority: Sequence[str] | None = None, clusters: str = "greedy", max_pairs_per_row: int = 0,
               seed: int = 0, partitions: int | None = None, margin: float | None = None, max_guests: int = 6,
               residual_sample: int = 2000, batch_rows: int = BATCH_ROWS, max_rows_per_split: int = MAX_ROWS_PER_SPLIT,
               compression: str = "zstd", overwrite: bool = False) -> DedupPlan:
    """Check inputs and flags and the output (read-only), place the partitions; one-line errors."""
    if not 0.0 < threshold < 1.0:
        raise InputError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    if keep_policy not in KEEP_POLICIES:
        raise InputError(f"--keep must be one of {', '.join(KEEP_POLICIES)}, got {keep_policy!r}")
    if clusters not in CLUSTER_MODES:
        raise InputError(f"--clusters must be one of {', '.join(CLUSTER_MODES)}, got {clusters!r}")
    for flag, value, low in (("--max-pairs-per-row", max_pairs_per_row, 0), ("--max-guests", max_guests, 0),
                             ("--residual-sample", residual_sample, 0)):
        if value < low:
            raise InputError(f"{flag} must be at least {low}, got {value}")
    if margin is not None and not 0.0 <= margin <= 2.0:
        raise InputError(f"--margin must be between 0 and 2, got {margin}")
    if partitions is not None and not 1 <= partitions <= 1 << 16:
        raise InputError(f"--partitions must be between 1 and 65536, got {partitions}")
    sweep = parse_thresholds(sweep)
    priority_column, descending = None, False
    if priority:
        if len(priority) > 2 or (len(priority) == 2 and priority[1].lower() not in ("asc", "desc")):
            raise InputError(f"--priority takes a column and optionally 'desc', got {' '.join(priority)!r}")
        priority_column, descending = priority[0], len(priority) == 2 and priority[1].lower() == "desc"
    vectors = plan_vector_input(input_pattern, column, max_rows_per_split)
    check_columns(vectors, [id_column], "--id-column")
    if priority_column:
        check_columns(vectors, [priority_column], "--priority")
        kind = vectors.schema.field(priority_column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_temporal(kind)):
            raise InputError(f"{vectors.inputs[0]}: --priority column {priority_column!r} is {kind}, expected numbers")
    if keep_columns is None:
        keep_columns = list(vectors.schema.names)
    clash = [n for n in keep_columns if n in (CLUSTER_ID, KEEP, MAX_SIMILARITY)]
    if clash:
        raise InputError(f"--keep-columns: {clash[0]!r} is an output column name; leave it out or rename it in the input")
    check_columns(vectors, keep_columns, "--keep-columns")
    placement = place_partitions(sample_matrix(vectors, SAMPLE_ROWS, max_splits=64), vectors.rows,
                                 min((threshold, *sweep)), partitions, margin, max_guests, seed)
    check_output(output_dir, overwrite)  # read-only: the run prepares it (pipelines.launch.execute)
    return DedupPlan(vectors, id_column, vectors.schema.field(id_column).type, tuple(keep_columns), output_dir,
                     placement, threshold, sweep, keep_policy, priority_column, descending, clusters,
                     max_pairs_per_row, seed, max_guests, residual_sample,
                     placement.estimated_kept > SPARSE_KEPT_FRACTION * vectors.rows, batch_rows,
                     compression, run_id=time.strftime("%Y%m%d-%H%M%S"))


def plan_from_args(args: argparse.Namespace) -> DedupPlan:
    used = [f for f in LSH_FLAGS if getattr(args, f.lstrip("-").replace("-", "_")) is not None]
    if used:
        raise InputError(f"{used[0]} belonged to the LSH search, which greedy partitioned dedup replaced; "
                         f"drop it (see --partitions, --margin, --max-guests)")
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    return plan_dedup(args.input, args.output, args.column, args.id_column, keep, args.threshold, args.sweep,
                      args.keep, args.priority, args.clusters, args.max_pairs_per_row, args.seed, args.partitions,
                      args.margin, args.max_guests, args.residual_sample, args.batch_rows, args.max_rows_per_split,
                      args.compression, args.overwrite)
