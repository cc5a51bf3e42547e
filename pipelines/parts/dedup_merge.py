"""The last settling step of `pipelines.dedup`: kept rows that are duplicates across partitions.

Boundary misses leave a few kept rows at >= threshold to each other. The kept rows (a small set on
duplicated data) are routed again by a second set of centroids, fewer (each second partition holds about
sqrt(WORK_PER_PARTITION) kept rows; often one for all), so rows split by the first partitioning mostly
meet, and the greedy pass runs over them in the same priority order: a kept
row that an earlier kept row covers is merged into it. Its members follow it when they are at >= threshold
to the new kept row, and are kept otherwise (annotation applies this, from a side input sized by the
merges); kept rows that removed rows of their own partition joined are never merged, so that only
members from other partitions can be left behind. Pairs written before, whose kept side was merged, are dropped; annotation writes their new ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ae_tf.contracts import DedupOutput
from ae_tf.vectors.duplicates import PartitionRows
from ae_tf.vectors.greedy import cosine64, greedy_representatives
from pipelines.parts.dedup_plan import DedupPlan
from pipelines.parts.dedup_steps import RowBlock


@dataclasses.dataclass
class Merges:
    """Kept rows merged into an earlier kept row, sorted by row."""

    rows: np.ndarray
    ids: pa.Array
    targets: np.ndarray
    target_ids: pa.Array
    target_units: np.ndarray
    similarity: np.ndarray  # float32
    exact: np.ndarray

    def find(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, index into the merges) for row numbers."""
        if len(self.rows) == 0:
            return np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=np.int64)
        at = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
        return self.rows[at] == rows, at


def no_merges(plan: DedupPlan) -> Merges:
    empty = np.zeros(0, dtype=np.int64)
    ids = pa.array([], type=plan.id_type)
    return Merges(empty, ids, empty, ids, np.zeros((0, plan.vectors.width), np.float32), np.zeros(0, np.float32),
                  np.zeros(0, dtype=bool))


def route_kept(element, plan: DedupPlan):
    """(partition, kept RowBlock) -> (second partition, RowBlock) by the second centroids."""
    _part, block = element
    rows = block.rows
    if len(rows.rows) == 0:
        return
    second = (rows.units @ plan.placement.second_centroids.T).argmax(axis=1)
    second[rows.partition == plan.partitions - 1] = len(plan.placement.second_centroids)  # zero vectors
    for p in np.unique(second):
        idx = np.flatnonzero(second == p)
        locked = block.locked[idx] if block.locked is not None else np.zeros(len(idx), dtype=bool)
        yield int(p), RowBlock(rows.take(idx), block.ids.take(pa.array(idx)), locked)


def merge_kept(element, plan: DedupPlan):
    """(second partition, kept RowBlocks) -> Merges of the kept rows an earlier kept row covers."""
    _part, blocks = element
    blocks = list(blocks)
    rows = PartitionRows.concat([b.rows for b in blocks])
    ids = pa.concat_arrays([b.ids for b in blocks])
    locked = np.concatenate([b.locked for b in blocks])
    order = np.lexsort((rows.rows, rows.secondary, rows.primary))
    result = greedy_representatives(rows.units[order], plan.threshold)
    gone = np.flatnonzero(~result.kept & ~locked[order])  # a row with members stays: they would lose their kept row
    if len(gone) == 0:
        return
    at, target = order[gone], order[result.representative[gone]]
    sims = cosine64(rows.units[at], rows.units[target]).astype(np.float32)
    yield Merges(rows.rows[at], ids.take(pa.array(at)), rows.rows[target], ids.take(pa.array(target)),
                 rows.units[target], sims, rows.hashes[at] == rows.hashes[target])


def collect_merges(found: list[Merges], plan: DedupPlan) -> Merges:
    if not found:
        return no_merges(plan)
    rows = np.concatenate([m.rows for m in found])
    order = np.argsort(rows)
    return Merges(rows[order], pa.concat_arrays([m.ids for m in found]).take(pa.array(order)),
                  np.concatenate([m.targets for m in found])[order],
                  pa.concat_arrays([m.target_ids for m in found]).take(pa.array(order)),
                  np.concatenate([m.target_units for m in found])[order],
                  np.concatenate([m.similarity for m in found])[order], np.concatenate([m.exact for m in found])[order])


def drop_merged_pairs(element, merges: Merges):
    """Pairs whose kept side was merged away are rewritten by annotation: drop them here."""
    index, batch = element
    if len(merges.rows) == 0 or batch.num_rows == 0:
        return [(index, batch)]
    stale = pc.is_in(batch.column(DedupOutput.ID_A), value_set=merges.ids)
    return [(index, batch.filter(pc.invert(stale)))]
