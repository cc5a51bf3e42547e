"""The last settling step of `pipelines.dedup`: kept rows that are duplicates across partitions.

Boundary misses leave a few kept rows at >= threshold to each other. The kept rows (a small set on
duplicated data) are routed again by a second set of centroids, fewer (each second partition holds about
sqrt(WORK_PER_PARTITION) kept rows; often one for all), so rows split by the first partitioning mostly
meet, and the greedy pass runs over them in the same priority order: a kept row that an earlier kept row
covers is merged into it, whether or not removed rows joined it. Its members are decided again by
annotation (from a side input sized by the merges): each joins the most similar of the merged row's
candidates (its new kept row and up to CANDIDATES more kept rows of the second partition that could be at
>= threshold to a member: cosine to the merged row >= 2 t^2 - 1, the triangle inequality on angles), when
that one is at >= threshold; otherwise it is kept. Pairs written before, whose kept side was merged, are
dropped; annotation writes their new ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ae_tf.contracts import DedupOutput
from ae_tf.vectors.duplicates import PartitionRows
from ae_tf.vectors.greedy import cosine64, decision_margin, greedy_representatives
from pipelines.parts.dedup_plan import DedupPlan
from pipelines.parts.dedup_steps import RowBlock

CANDIDATES = 16  # kept rows per merged row that its members may join (the new kept row first)
MERGE_BUCKET = 16  # second partitions that travel and are merged in one element


@dataclasses.dataclass
class Merges:
    """Kept rows merged into an earlier kept row, sorted by row. Kept rows they point at (their new kept
    row and their members' candidates) are in the pool: `target` and `candidates` index it."""

    rows: np.ndarray
    ids: pa.Array
    group: np.ndarray  # int64 [merges]: the second partition that merged it
    target: np.ndarray  # int64 [merges] into the pool
    similarity: np.ndarray  # float32 cosine to the target
    exact: np.ndarray
    candidates: np.ndarray  # int64 [merges, CANDIDATES] into the pool; -1: none; column 0 is the target
    pool_rows: np.ndarray
    pool_ids: pa.Array
    pool_units: np.ndarray  # float32 [pool, width]
    pool_group: np.ndarray  # int64 [pool]

    @property
    def targets(self) -> np.ndarray:
        """Row numbers of the new kept rows."""
        return self.pool_rows[self.target]

    def find(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, index into the merges) for row numbers."""
        if len(self.rows) == 0:
            return np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=np.int64)
        at = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
        return self.rows[at] == rows, at

    def best_candidate(self, units: np.ndarray, via: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Members (unit rows) of merged rows `via`: (pool index of the most similar candidate at >=
        threshold, -1: none; its float64 cosine)."""
        cand = self.candidates[via]
        sims = np.einsum("ij,ikj->ik", units, self.pool_units[np.maximum(cand, 0)]) if len(via) else np.zeros(cand.shape)
        sims[cand < 0] = -np.inf
        arg = sims.argmax(axis=1) if len(via) else np.zeros(0, dtype=np.int64)
        chosen = cand[np.arange(len(via)), arg]
        ok = sims[np.arange(len(via)), arg] >= threshold + decision_margin(units.shape[1])
        exact = cosine64(units, self.pool_units[np.maximum(chosen, 0)])
        ok &= exact >= threshold
        return np.where(ok, chosen, -1), exact


def no_merges(plan: DedupPlan) -> Merges:
    empty = np.zeros(0, dtype=np.int64)
    ids = pa.array([], type=plan.id_type)
    return Merges(empty, ids, empty, empty, np.zeros(0, np.float32), np.zeros(0, dtype=bool),
                  np.zeros((0, CANDIDATES), dtype=np.int64), empty, ids, np.zeros((0, plan.vectors.width), np.float32),
                  empty)


def second_partition(rows: PartitionRows, plan: DedupPlan) -> np.ndarray:
    """The second partition of each kept row: nearest second centroid; zero vectors get one of their own."""
    second = (rows.units @ plan.placement.second_centroids.T).argmax(axis=1)
    second[rows.partition == plan.partitions - 1] = len(plan.placement.second_centroids)  # zero vectors
    return second


def route_kept(element, plan: DedupPlan):
    """(partition, kept RowBlock) -> (bucket, RowBlock): the kept rows go to their second partitions, which
    travel in buckets of MERGE_BUCKET (one element per partition and bucket, not per second partition:
    on data where most rows are kept, that would be partitions x second partitions tiny elements)."""
    _part, block = element
    rows = block.rows
    if len(rows.rows) == 0:
        return
    bucket = second_partition(rows, plan) // MERGE_BUCKET
    for b in np.unique(bucket):
        idx = np.flatnonzero(bucket == b)
        locked = block.locked[idx] if block.locked is not None else np.zeros(len(idx), dtype=bool)
        yield int(b), RowBlock(rows.take(idx), block.ids.take(pa.array(idx)), locked)


def _candidates(units: np.ndarray, gone: np.ndarray, final: np.ndarray, target: np.ndarray,
                threshold: float) -> np.ndarray:
    """Positions (into `final`) of up to CANDIDATES kept rows per merged row that a member could be at >=
    threshold to, most similar first after the target; -1 pads. Bounded blocks of products."""
    floor = 2 * threshold**2 - 1 - decision_margin(units.shape[1])
    out = np.full((len(gone), CANDIDATES), -1, dtype=np.int64)
    out[:, 0] = target
    k = min(CANDIDATES - 1, len(final) - 1)
    step = max(1, (1 << 22) // max(len(final), 1))
    for lo in range(0, len(gone) if k > 0 else 0, step):
        sims = units[gone[lo:lo + step]] @ units[final].T
        sims[np.arange(len(sims)), target[lo:lo + step]] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        values = np.take_along_axis(sims, top, axis=1)
        rank = np.argsort(-values, axis=1, kind="stable")
        top, values = np.take_along_axis(top, rank, axis=1), np.take_along_axis(values, rank, axis=1)
        out[lo:lo + step, 1:k + 1] = np.where(values >= floor, top, -1)
    return out


def merge_kept(element, plan: DedupPlan):
    """(bucket, kept RowBlocks) -> Merges of the kept rows an earlier kept row covers, one per second
    partition of the bucket that merged any."""
    _bucket, blocks = element
    blocks = list(blocks)
    rows = PartitionRows.concat([b.rows for b in blocks])
    ids = pa.concat_arrays([b.ids for b in blocks])
    locked = np.concatenate([b.locked for b in blocks])
    second = second_partition(rows, plan)
    for part in np.unique(second):
        at = np.flatnonzero(second == part)
        yield from _merge_second_partition(int(part), rows.take(at), ids.take(pa.array(at)), locked[at], plan)


def _merge_second_partition(part: int, rows: PartitionRows, ids: pa.Array, locked: np.ndarray, plan: DedupPlan):
    """One second partition's kept rows (a bucket's share) -> Merges, if any kept row is covered."""
    # kept rows with members go first: merging one of them moves its members, merging a row without
    # members moves nothing; among each kind, the priority order
    order = np.lexsort((rows.rows, rows.secondary, rows.primary, ~locked))
    units = rows.units[order]
    result = greedy_representatives(units, plan.threshold)
    gone = np.flatnonzero(~result.kept)
    if len(gone) == 0:
        return
    final = np.flatnonzero(result.kept)  # priority positions of the rows that stay kept
    target = np.searchsorted(final, result.representative[gone])
    cand = _candidates(units, gone, final, target, plan.threshold)
    used = np.unique(cand[cand >= 0])
    pool = order[final[used]]  # into `rows`
    cand = np.where(cand >= 0, np.searchsorted(used, np.maximum(cand, 0)), -1)
    at, to = order[gone], order[final[target]]
    sims = cosine64(rows.units[at], rows.units[to]).astype(np.float32)
    yield Merges(rows.rows[at], ids.take(pa.array(at)), np.full(len(at), part, dtype=np.int64), cand[:, 0].copy(), sims,
                 rows.hashes[at] == rows.hashes[to], cand, rows.rows[pool], ids.take(pa.array(pool)), rows.units[pool],
                 np.full(len(pool), part, dtype=np.int64))


def collect_merges(found: list[Merges], plan: DedupPlan) -> Merges:
    if not found:
        return no_merges(plan)
    offsets = np.cumsum([0] + [len(m.pool_rows) for m in found])
    rows = np.concatenate([m.rows for m in found])
    order = np.argsort(rows)
    cand = np.concatenate([np.where(m.candidates >= 0, m.candidates + off, -1) for m, off in zip(found, offsets,
                                                                                                  strict=False)])
    return Merges(rows[order], pa.concat_arrays([m.ids for m in found]).take(pa.array(order)),
                  np.concatenate([m.group for m in found])[order],
                  np.concatenate([m.target + off for m, off in zip(found, offsets, strict=False)])[order],
                  np.concatenate([m.similarity for m in found])[order], np.concatenate([m.exact for m in found])[order],
                  cand[order], np.concatenate([m.pool_rows for m in found]),
                  pa.concat_arrays([m.pool_ids for m in found]), np.concatenate([m.pool_units for m in found]),
                  np.concatenate([m.pool_group for m in found]))


def drop_merged_pairs(element, merges: Merges):
    """Pairs whose kept side was merged away are rewritten by annotation: drop them here."""
    index, batch = element
    if len(merges.rows) == 0 or batch.num_rows == 0:
        return [(index, batch)]
    stale = pc.is_in(batch.column(DedupOutput.ID_A), value_set=merges.ids)
    return [(index, batch.filter(pc.invert(stale)))]
