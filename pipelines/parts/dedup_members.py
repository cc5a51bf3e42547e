"""Members of merged kept rows, decided again (`pipelines.dedup`, between settling and annotation).

When the cross-partition merge (pipelines.parts.dedup_merge) removes a kept row that removed rows had joined,
those members lose their kept row. Each split's settled decisions name them; their rows are read again
and sent to the merging second partition, where a greedy pass in the usual priority order runs over the
merges' candidate kept rows (first; all stay kept) and then the members: a member joins the most similar
kept row at >= threshold (a candidate, or a member kept before it), or is kept. So no member is below the
threshold to its kept row, and the members that stay kept are not duplicates of each other.
Elements are whole arrays or Arrow batches; the work is sized by the members of merged rows.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa

from ae_tf.vectors.duplicates import Decisions, PartitionRows
from ae_tf.vectors.greedy import cosine64, greedy_representatives
from pipelines.io.parquet import InputError, open_parquet
from pipelines.parts.dedup_fixups import Corrections, apply_corrections, by_split
from pipelines.parts.dedup_merge import Merges
from pipelines.parts.dedup_plan import DedupPlan
from pipelines.parts.dedup_steps import RowBlock, prepare_rows

MEMBER_MARK = -3  # Decisions.fallback of a re-decided member


class SettleSplitDoFn(beam.DoFn):
    """(split, {decisions, corrections}) + Merges -> the split's settled decisions (main, keyed by split)
    and the rows of its members of merged rows ("members", keyed by the merging second partition)."""

    def __init__(self, plan: DedupPlan):
        self._plan = plan

    def process(self, element, merges: Merges):
        split, grouped = element
        decided = list(grouped["decisions"])
        if not decided:
            return
        decisions = Decisions.concat(decided)
        apply_corrections(decisions, grouped["corrections"])
        yield split, decisions
        member, via = merges.find(decisions.representative)
        member &= ~decisions.kept
        if member.any():
            order = np.argsort(decisions.rows[member])
            yield from self._members(split, decisions.rows[member][order], merges.group[via[member]][order])

    def _members(self, split: int, wanted: np.ndarray, group: np.ndarray):
        plan = self._plan
        info = plan.vectors.splits[split]
        start = int(plan.split_starts[split])
        try:
            batches = open_parquet(info.path).iter_batches(batch_size=plan.batch_rows, row_groups=info.row_groups,
                                                           columns=plan.read_columns)
            for batch in batches:
                lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
                if hi > lo:
                    rows = wanted[lo:hi]
                    rows, units, _zero, _routing, home, primary, secondary, hashes, ids = prepare_rows(
                        plan, batch.take(pa.array(rows - start)), split, start, rows)
                    block = PartitionRows(rows, units, primary, secondary, np.ones(len(rows), dtype=bool), hashes,
                                          home)
                    parts = group[lo:hi]
                    for g in np.unique(parts):
                        idx = np.flatnonzero(parts == g)
                        yield beam.pvalue.TaggedOutput("members", (int(g), RowBlock(block.take(idx),
                                                                                    ids.take(pa.array(idx)))))
                start += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{info.path}: cannot read Parquet data ({str(err).splitlines()[0]})") from err


def redecide_members(element, plan: DedupPlan, merges: Merges):
    """(second partition, member RowBlocks) -> corrections for the members (main, keyed by split) and
    their pairs ("pairs")."""
    group, blocks = element
    blocks = list(blocks)
    members = PartitionRows.concat([b.rows for b in blocks])
    ids = pa.concat_arrays([b.ids for b in blocks])
    order = np.lexsort((members.rows, members.secondary, members.primary))
    pool = np.flatnonzero(merges.pool_group == group)  # kept rows, in the second partition's priority order
    units = np.concatenate([merges.pool_units[pool], members.units[order]])
    result = greedy_representatives(units, plan.threshold)
    n = len(pool)
    rep = result.representative[n:]
    from_pool = rep < n
    rows = members.rows[order]
    representative = np.where(from_pool, merges.pool_rows[pool[np.minimum(rep, n - 1)]] if n else -1,
                              rows[np.maximum(rep - n, 0)])
    kept = representative == rows
    similarity = cosine64(units[n:], units[rep]).astype(np.float32)
    similarity[kept] = np.nan
    exact = ~kept & (units[n:] == units[rep]).all(axis=1)
    yield from by_split(Corrections(rows, representative, similarity, exact, MEMBER_MARK), plan)
    removed = np.flatnonzero(~kept)
    own = ids.take(pa.array(order))
    rep_ids = pa.concat_arrays([merges.pool_ids.take(pa.array(pool)), own]).take(pa.array(rep[removed]))
    pairs = pa.RecordBatch.from_arrays(
        [rep_ids, own.take(pa.array(removed)), pa.array(similarity[removed]), pa.array(exact[removed]),
         pa.array(np.ones(len(removed), dtype=bool))], schema=plan.pairs_schema)
    yield beam.pvalue.TaggedOutput("pairs", (2 * (plan.partitions + len(plan.vectors.splits)) + group, pairs))
