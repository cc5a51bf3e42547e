"""The DoFns and combiners of `pipelines.dedup`; every element is a whole array or Arrow batch, never a row.

Keys are partition numbers (k-means partitions) or split numbers (input splits, which also number the
annotated and deduplicated shards). Decisions for a row are keyed by the split the row was read from.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import numpy as np
import pyarrow as pa

from ae_tf.malloc import tune_malloc
from ae_tf.vectors.duplicates import (
    Decisions,
    PartitionRows,
    dedup_partition,
    priority_keys,
)
from ae_tf.vectors.greedy import unit_rows32
from ae_tf.vectors.hashing import mix64, row_hash
from ae_tf.vectors.kmeans import route_rows
from pipelines.io.parquet import METRICS_NAMESPACE
from pipelines.parts.dedup_plan import DedupPlan
from pipelines.runner import progress


@dataclasses.dataclass
class RowBlock:
    """Rows of one partition from one input batch, with their ids (for the pairs output)."""

    rows: PartitionRows
    ids: pa.Array
    locked: np.ndarray | None = None  # kept rows only: some removed row joined it


@dataclasses.dataclass
class Fallbacks:
    """For removed rows whose representative is decided elsewhere: the most similar earlier kept row of
    their own partition at >= threshold (`representative`, -1: none), its cosine, and whether identical."""

    rows: np.ndarray
    representative: np.ndarray
    similarity: np.ndarray
    exact: np.ndarray

    def take(self, idx: np.ndarray) -> Fallbacks:
        return Fallbacks(self.rows[idx], self.representative[idx], self.similarity[idx], self.exact[idx])

    @staticmethod
    def concat(parts: list[Fallbacks]) -> Fallbacks:
        return Fallbacks(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Fallbacks)))


@dataclasses.dataclass
class GuestQuery:
    """Pairs whose kept side (`kept_rows`) is decided in another partition: written only if it stays kept.
    For each removed row whose own representative is among them (`representative`), what to do if it
    is not kept: `fallback` (another kept row of the row's home partition) or, without one, recheck the
    row (`orphans`) in the representative's partition. Plain arrays, not record batches: a query is
    pickled at each shuffle, and Arrow batches pickle slowly."""

    kept_rows: np.ndarray  # per pair
    kept_ids: pa.Array  # per pair
    removed_ids: pa.Array  # per pair
    similarity: np.ndarray  # per pair, float32
    exact: np.ndarray  # per pair
    representative: np.ndarray  # bool per pair
    fallback: Fallbacks  # one per representative pair
    fallback_ids: pa.Array  # one per representative pair: the id of its fallback row (meaningless without one)
    orphans: PartitionRows  # one per representative pair: the removed row

    def pairs(self, mask: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
        """The pairs where `mask` holds, in the pairs layout."""
        chosen = pa.array(mask)
        return pa.RecordBatch.from_arrays(
            [self.kept_ids.filter(chosen), self.removed_ids.filter(chosen), pa.array(self.similarity[mask]),
             pa.array(self.exact[mask]), pa.array(self.representative[mask])], schema=schema)

    def _own_ids(self, idx: np.ndarray) -> pa.Array:
        """Ids of the removed rows of representative pairs `idx` (positions among the representative pairs)."""
        return self.removed_ids.filter(pa.array(self.representative)).take(pa.array(idx))

    def fallback_pairs(self, idx: np.ndarray, schema: pa.Schema) -> pa.RecordBatch:
        """The pairs of representative pairs `idx` with their fallbacks."""
        return pa.RecordBatch.from_arrays(
            [self.fallback_ids.take(pa.array(idx)), self._own_ids(idx), pa.array(self.fallback.similarity[idx]),
             pa.array(self.fallback.exact[idx]), pa.array(np.ones(len(idx), dtype=bool))], schema=schema)

    def orphan_block(self, idx: np.ndarray) -> RowBlock:
        """The removed rows of representative pairs `idx`, to be decided again."""
        return RowBlock(self.orphans.take(idx), self._own_ids(idx))


@dataclasses.dataclass
class KeptSample:
    """The kept rows with the smallest hashes of their row numbers: a uniform, mergeable sample."""

    hashes: np.ndarray
    rows: np.ndarray
    units: np.ndarray

    def merge(self, other: KeptSample, size: int) -> KeptSample:
        hashes = np.concatenate([self.hashes, other.hashes])
        order = np.argsort(hashes, kind="stable")[:size]
        return KeptSample(hashes[order], np.concatenate([self.rows, other.rows])[order],
                          np.concatenate([self.units, other.units])[order])


def empty_sample(width: int) -> KeptSample:
    return KeptSample(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), np.zeros((0, width), np.float32))


def key_split(decisions: Decisions, plan: DedupPlan):
    """Decisions -> (split, decisions of its rows), one element per split touched."""
    split = plan.split_of(decisions.rows)
    for s in np.unique(split):
        yield int(s), decisions.take(np.flatnonzero(split == s))


def prepare_rows(plan: DedupPlan, batch: pa.RecordBatch, split: int, first_row: int, rows: np.ndarray | None = None):
    """One batch -> (rows, units, zero mask, routing, home partition, primary, secondary, hashes, ids): what
    every partition that sees a row needs, computed the same way wherever it is needed. `rows`: the row
    numbers of a batch taken from rows that start at `first_row` (default: consecutive)."""
    matrix = plan.vectors.matrix(batch, split, first_row)
    if rows is None:
        rows = np.arange(first_row, first_row + len(matrix), dtype=np.int64)
    units, zero = unit_rows32(matrix)
    routing = route_rows(units, plan.centroids, plan.margin, plan.max_guests)
    home = np.where(zero, plan.partitions - 1, routing.home)
    units[zero, 0] = 1.0  # zero vectors meet only each other, in the last partition, as identical rows
    column = None
    if plan.priority_column:
        values = batch.column(plan.priority_column)
        if pa.types.is_temporal(values.type):
            values = values.cast(pa.int64())
        column = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    primary, secondary = priority_keys(rows, plan.keep_policy, plan.seed, routing.home_cosine, column,
                                       plan.descending)
    ids = batch.column(plan.id_column).cast(plan.id_type)
    return rows, units, zero, routing, home, primary, secondary, row_hash(matrix), ids


class RouteRowsDoFn(beam.DoFn):
    """A numbered batch -> (partition, RowBlock) for each partition its rows go to, home or guest."""

    def __init__(self, plan: DedupPlan):
        self._plan = plan

    def process(self, element):
        index, first_row, batch = element
        plan = self._plan
        rows, units, zero, routing, home, primary, secondary, hashes, ids = prepare_rows(plan, batch, index, first_row)
        guest = ~zero[routing.guest_rows]
        guest_rows, guest_parts = routing.guest_rows[guest], routing.guest_partitions[guest]
        at = np.concatenate([np.arange(len(rows)), guest_rows])
        parts = np.concatenate([home, guest_parts])
        is_home = np.r_[np.ones(len(rows), dtype=bool), np.zeros(len(guest_rows), dtype=bool)]
        order = np.argsort(parts, kind="stable")
        bounds = np.flatnonzero(np.r_[True, parts[order][1:] != parts[order][:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            idx = order[lo:hi]
            i = at[idx]
            block = PartitionRows(rows[i], units[i], primary[i], secondary[i], is_home[idx], hashes[i], home[i])
            yield int(parts[idx[0]]), RowBlock(block, ids.take(pa.array(i)))


class DedupPartitionDoFn(beam.DoFn):
    """(partition, RowBlocks) -> greedy representatives of the partition. Outputs: decisions of its home
    rows keyed by split (main); "pairs" (final ones) keyed by partition; "queries" and "reps" keyed by the
    partition that decides the kept row they depend on; "kept" (its kept home rows); "stats"; "sample"
    (kept rows for the residual check); "links" (--clusters connected)."""

    def __init__(self, plan: DedupPlan):
        self._plan = plan
        self._rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "dedup_rows_decided")

    def setup(self):
        tune_malloc()  # a worker process of its own reuses freed blocks too (ae_tf.malloc)

    def process(self, element):
        part, blocks = element
        plan = self._plan
        blocks = list(blocks)
        rows = PartitionRows.concat([b.rows for b in blocks])
        ids = pa.concat_arrays([b.ids for b in blocks])
        key, total, home = f"dedup-{plan.run_id}", len(rows.rows), int(rows.home.sum())
        reported = [0]

        def on_block(done: int) -> None:  # progress in home rows, as the greedy pass moves
            now = home * done // max(total, 1)
            progress.add(key, now - reported[0])
            reported[0] = now

        decisions, stats = dedup_partition(rows, plan.threshold, plan.max_pairs_per_row, plan.sweep, on_block,
                                           links=plan.clusters == "connected", prune_guests=plan.prune_guests)
        self._rows.inc(home)
        yield from key_split(decisions, plan)
        yield beam.pvalue.TaggedOutput("stats", stats)
        yield from self._pairs(part, rows, ids, decisions)
        kept = decisions.rows[decisions.kept]
        by_row = np.argsort(rows.rows)
        kept_at = by_row[np.searchsorted(rows.rows[by_row], kept)]
        locked = np.isin(kept, decisions.representative[~decisions.kept])
        yield beam.pvalue.TaggedOutput("kept", (part, RowBlock(rows.take(kept_at), ids.take(pa.array(kept_at)),
                                                               locked)))
        hashes = mix64(kept.astype(np.uint64) ^ np.uint64(0x5DEECE66D))
        order = np.argsort(hashes, kind="stable")[: plan.residual_sample]
        yield beam.pvalue.TaggedOutput("sample", KeptSample(hashes[order], kept[order], rows.units[kept_at[order]]))

    def _pairs(self, part, rows: PartitionRows, ids: pa.Array, decisions: Decisions):
        plan = self._plan
        removed = ~decisions.kept
        home_rows = rows.rows[rows.home]
        # a removed row whose representative is decided elsewhere may end up kept: list no further pairs
        settled = ~np.isin(decisions.extra_rows, decisions.rows[removed & decisions.guest_representative])
        if decisions.links is not None:
            yield beam.pvalue.TaggedOutput("links", decisions.links)
        extra_rows, extra_nbrs = decisions.extra_rows[settled], decisions.extra_neighbours[settled]
        a = np.concatenate([decisions.representative[removed], extra_nbrs])
        b = np.concatenate([decisions.rows[removed], extra_rows])
        similarity = np.concatenate([decisions.similarity[removed], decisions.extra_similarity[settled]])
        is_rep = np.r_[np.ones(int(removed.sum()), dtype=bool), np.zeros(len(extra_rows), dtype=bool)]
        exact = np.r_[decisions.exact[removed], np.zeros(len(extra_rows), dtype=bool)]
        order = np.argsort(rows.rows, kind="stable")
        sorted_rows = rows.rows[order]
        def at(values):
            return order[np.searchsorted(sorted_rows, values)]

        reps = np.unique(decisions.representative[removed])
        owner = rows.partition[at(reps)]  # the partition that decides each representative: its home
        for p in np.unique(owner):
            yield beam.pvalue.TaggedOutput("reps", (int(p), reps[owner == p]))
        elsewhere = ~np.isin(a, home_rows)  # the kept side is a guest: its own partition decides

        batch = pa.RecordBatch.from_arrays([ids.take(pa.array(at(a))), ids.take(pa.array(at(b))), pa.array(similarity),
                                            pa.array(exact), pa.array(is_rep)], schema=plan.pairs_schema)
        final = np.flatnonzero(~elsewhere)
        final = final[np.lexsort((a[final], b[final]))]
        yield beam.pvalue.TaggedOutput("pairs", (part, batch.take(pa.array(final))))
        ask = np.flatnonzero(elsewhere)
        owner = rows.partition[at(a[ask])]
        removed_decisions = decisions.take(np.flatnonzero(removed))
        kept_ids, removed_ids = batch.column(0), batch.column(1)  # id_a, id_b of every pair
        for p in np.unique(owner):
            idx = ask[owner == p]
            reps = idx[is_rep[idx]]  # pair positions below len(removed rows) are the rows' representatives
            own = removed_decisions.take(reps)
            has = own.fallback >= 0
            fb_at = at(np.where(has, own.fallback, b[reps]))
            fallback = Fallbacks(own.rows, own.fallback, own.fallback_similarity,  # `take` made them copies
                                 has & (rows.hashes[fb_at] == rows.hashes[at(b[reps])]))
            chosen = pa.array(idx)
            yield beam.pvalue.TaggedOutput("queries", (int(p), GuestQuery(
                a[idx], kept_ids.take(chosen), removed_ids.take(chosen), similarity[idx], exact[idx], is_rep[idx],
                fallback, ids.take(pa.array(fb_at)), rows.take(at(b[reps])))))


