"""The second half of `pipelines.dedup`: settling rows whose representative was decided in another
partition, then annotating every split. Elements are whole arrays or Arrow batches, keyed by split.

A removed row whose representative is a guest (a row of a neighbouring partition) depends on that row
staying kept at home. If it did not, the row takes its fallback (the most similar earlier kept row of
its own partition at >= threshold) or, without one, is checked again against the kept rows of the
representative's partition ("orphans"), where it joins the most similar earlier kept row or is kept.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import numpy as np
import pyarrow as pa

from ae_tf.vectors.duplicates import (
    Decisions,
    PartitionRows,
    in_sorted,
    max_similarity_to,
    recheck_orphans,
    sorted_unique,
)
from ae_tf.vectors.greedy import unit_rows32
from pipelines.io.parquet import METRICS_NAMESPACE, InputError, open_parquet
from pipelines.parts.dedup_merge import Merges
from pipelines.parts.dedup_plan import DEDUPLICATED, DedupPlan
from pipelines.parts.dedup_steps import Fallbacks, RowBlock
from pipelines.parts.dedup_totals import AnnotationInputs, SplitCounts
from pipelines.runner import progress


@dataclasses.dataclass
class Corrections:
    """New decisions for some rows of one split (they replace the partition's first decision)."""

    rows: np.ndarray
    representative: np.ndarray
    similarity: np.ndarray  # float32 cosine to the representative (NaN when kept)
    exact: np.ndarray
    mark: int = -2  # written to Decisions.fallback: -2 settled across partitions, -3 member of a merged row


def apply_corrections(decisions: Decisions, fixes) -> tuple[np.ndarray, np.ndarray]:
    """Corrections -> decisions, in place (a row is corrected at most once by each step, later steps
    last); returns (order, rows sorted) to find rows in them."""
    order = np.argsort(decisions.rows)
    rows_sorted = decisions.rows[order]
    for fix in fixes:
        at = order[np.searchsorted(rows_sorted, fix.rows)]
        decisions.representative[at] = fix.representative
        decisions.kept[at] = fix.representative == fix.rows
        decisions.max_similarity[at] = fix.similarity
        decisions.exact[at] = fix.exact
        decisions.guest_representative[at] = False
        decisions.fallback[at] = fix.mark
    return order, rows_sorted


def by_split(corrections: Corrections, plan: DedupPlan):
    split = plan.split_of(corrections.rows)
    for s in np.unique(split):
        idx = np.flatnonzero(split == s)
        yield int(s), Corrections(corrections.rows[idx], corrections.representative[idx],
                                  corrections.similarity[idx], corrections.exact[idx], corrections.mark)


class SettleGuestRepresentativesDoFn(beam.DoFn):
    """(partition, {kept, queries, reps}): the partition's kept rows (RowBlocks), the pairs of other
    partitions whose kept side is one of its rows (GuestQuery), and the representatives of their removed
    rows. -> confirmed pairs ("pairs"), corrections (main, keyed by the removed row's split): the fallback
    of a row whose representative was not kept here, or, without one, its decision against this
    partition's kept rows (the orphans, rechecked here; those that stay kept: "kept"), and the number of
    kept rows that some removed row joined ("clusters", before corrections)."""

    def __init__(self, plan: DedupPlan):
        self._plan = plan

    def process(self, element):
        part, grouped = element
        plan = self._plan
        kept = list(grouped["kept"])
        kept_rows = np.sort(np.concatenate([k.rows.rows for k in kept])) if kept else np.zeros(0, dtype=np.int64)
        reps = list(grouped["reps"])
        if reps:
            yield beam.pvalue.TaggedOutput("clusters", int(in_sorted(sorted_unique(np.concatenate(reps)), kept_rows).sum()))
        pairs, fixes, orphans = [], [], []  # gathered over the queries: one element each per partition
        for query in grouped["queries"]:
            confirmed = in_sorted(query.kept_rows, kept_rows)
            pairs.append(query.pairs(confirmed, plan.pairs_schema))
            lost = ~confirmed[query.representative]  # aligned with query.fallback
            has = query.fallback.representative >= 0
            take = np.flatnonzero(lost & has)
            if len(take):
                fixes.append(query.fallback.take(take))
                pairs.append(query.fallback_pairs(take, plan.pairs_schema))
            orphan = np.flatnonzero(lost & ~has)
            if len(orphan):
                orphans.append(query.orphan_block(orphan))
        if fixes:
            fb = Fallbacks.concat(fixes)
            yield from by_split(Corrections(fb.rows, fb.representative, fb.similarity, fb.exact), plan)
        if pairs:
            yield beam.pvalue.TaggedOutput("pairs", (self._pairs_key(part), pa.concat_batches(pairs)))
        if orphans:
            yield from self._recheck(part, kept, orphans)

    def _pairs_key(self, part: int) -> int:
        return self._plan.partitions + len(self._plan.vectors.splits) + part

    def _recheck(self, part: int, kept: list[RowBlock], orphans: list[RowBlock]):
        """Orphans (removed rows whose representative here was not kept, with no fallback at home) against
        this partition's kept rows: each joins the most similar earlier kept row at >= threshold, or is kept."""
        plan = self._plan
        orphan_rows = PartitionRows.concat([o.rows for o in orphans])
        orphan_ids = pa.concat_arrays([o.ids for o in orphans])
        kept_rows = PartitionRows.concat([k.rows for k in kept]) if kept else orphan_rows.take(np.zeros(0, int))
        kept_ids = pa.concat_arrays([k.ids for k in kept]) if kept else orphan_ids.slice(0, 0)
        now_kept, rep, similarity = recheck_orphans(kept_rows, orphan_rows, plan.threshold)
        every = PartitionRows.concat([kept_rows, orphan_rows])
        every_ids = pa.concat_arrays([kept_ids, orphan_ids])
        order = np.argsort(every.rows, kind="stable")
        rep_at = order[np.searchsorted(every.rows[order], rep)]
        exact = ~now_kept & (every.hashes[rep_at] == orphan_rows.hashes)
        sims = np.where(now_kept, np.nan, similarity).astype(np.float32)
        yield from by_split(Corrections(orphan_rows.rows, rep, sims, exact), plan)
        stay = np.flatnonzero(now_kept)
        yield beam.pvalue.TaggedOutput("kept", (part, RowBlock(orphan_rows.take(stay), orphan_ids.take(pa.array(stay)),
                                                               np.isin(orphan_rows.rows[stay], rep[~now_kept]))))
        removed = np.flatnonzero(~now_kept)
        pairs = pa.RecordBatch.from_arrays(
            [every_ids.take(pa.array(rep_at[removed])), orphan_ids.take(pa.array(removed)),
             pa.array(sims[removed]), pa.array(exact[removed]), pa.array(np.ones(len(removed), dtype=bool))],
            schema=plan.pairs_schema)
        yield beam.pvalue.TaggedOutput("pairs", (self._pairs_key(part), pairs))


class AnnotateSplitDoFn(beam.DoFn):
    """(split, {decisions, corrections}) + the residual sample -> the split's rows read again and annotated
    (main, keyed by split), its kept rows ("deduplicated"), pairs changed by merges ("pairs"), and its
    counts ("counts")."""

    def __init__(self, plan: DedupPlan):
        self._plan = plan
        self._written = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_read")

    def process(self, element, inputs: AnnotationInputs, merges: Merges):
        split, grouped = element
        plan = self._plan
        sample, merged = inputs.sample, (inputs.nodes, inputs.component)
        decided = list(grouped["decisions"])
        decisions = Decisions.concat(decided) if decided else None
        order = rows_sorted = np.zeros(0, dtype=np.int64)
        if decisions is not None:  # settled decisions, then the re-decided members of merged rows
            order, rows_sorted = apply_corrections(decisions, grouped["corrections"])
        info = plan.vectors.splits[split]
        start = int(plan.split_starts[split])
        counts = SplitCounts(residual_best=np.full(len(sample.rows), -np.inf))
        try:
            reader = open_parquet(info.path)
            batches = reader.iter_batches(batch_size=plan.batch_rows, row_groups=info.row_groups,
                                          columns=plan.output_columns)
            for batch in batches:
                yield from self._annotate(split, batch, start, rows_sorted, order, decisions, sample, counts, merged,
                                          merges)
                start += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{info.path}: cannot read Parquet data ({str(err).splitlines()[0]})") from err
        gone, _ = merges.find(sample.rows)  # sampled kept rows merged away: not kept, so not checked
        counts.residual_best[gone] = np.nan
        yield beam.pvalue.TaggedOutput("counts", counts)

    def _annotate(self, split, batch, start, rows_sorted, order, decisions, sample, counts, merged, merges):
        plan = self._plan
        n = batch.num_rows
        wanted = np.arange(start, start + n, dtype=np.int64)
        at = np.searchsorted(rows_sorted, wanted)
        if n and (at.max(initial=0) >= len(rows_sorted) or not np.array_equal(rows_sorted[at], wanted)):
            raise RuntimeError(f"{plan.vectors.inputs}: split {split} has rows without a dedup decision")
        idx = order[at]
        cluster = decisions.representative[idx].copy() if n else np.zeros(0, dtype=np.int64)
        keep = decisions.kept[idx].copy() if n else np.zeros(0, dtype=bool)
        similarity = decisions.max_similarity[idx].copy() if n else np.zeros(0, dtype=np.float32)
        exact = decisions.exact[idx].copy() if n else np.zeros(0, dtype=bool)
        units = None
        if n and len(merges.rows):
            units, _ = unit_rows32(plan.vectors.matrix(batch.select([plan.vectors.column]), split, start))
            yield from self._apply_merges(split, batch, wanted, units, cluster, keep, similarity, exact, merges,
                                          counts)
        nodes, component = merged
        if len(nodes) and n:  # --clusters connected: one kept row (the smallest row number) per component
            at_node = np.minimum(np.searchsorted(nodes, cluster), len(nodes) - 1)
            linked = nodes[at_node] == cluster
            cluster[linked] = component[at_node[linked]]
            keep &= cluster == wanted
        counts.rows += n
        counts.kept += int(keep.sum())
        if n:
            corrected = decisions.fallback[idx] == -2
            counts.corrected += int(corrected.sum())
            counts.corrected_kept += int((corrected & keep).sum())
            counts.merged_members_kept += int(((decisions.fallback[idx] == -3) & keep).sum())
            counts.exact_removed += int((exact & ~keep).sum())
        if len(sample.rows) and keep.any():
            if units is None:
                units, _ = unit_rows32(plan.vectors.matrix(batch.select([plan.vectors.column]), split, start))
            best = max_similarity_to(sample.units, sample.rows, units[keep], wanted[keep])
            counts.residual_best = np.maximum(counts.residual_best, best)
        progress.add(f"dedup-{plan.run_id}", n)
        self._written.inc(n)
        columns = []
        for field in plan.deduplicated_schema:
            column = batch.column(field.name)
            columns.append(column.cast(field.type) if column.type != field.type else column)
        annotated = pa.RecordBatch.from_arrays(
            [*columns, pa.array(cluster), pa.array(keep), pa.array(similarity, mask=np.isnan(similarity))],
            schema=plan.annotated_schema)
        yield split, annotated
        kept = pa.RecordBatch.from_arrays(columns, schema=plan.deduplicated_schema).filter(pa.array(keep))
        yield beam.pvalue.TaggedOutput(DEDUPLICATED, (split, kept))


    def _apply_merges(self, split, batch, wanted, units, cluster, keep, similarity, exact, merges: Merges, counts):
        """Kept rows merged into an earlier kept row follow it; their members join the most similar of the
        merged row's candidates at >= threshold, or are kept. Yields the new pairs ("pairs")."""
        plan = self._plan
        merged, at = merges.find(wanted)
        merged &= keep
        keep[merged], cluster[merged] = False, merges.targets[at[merged]]
        similarity[merged], exact[merged] = merges.similarity[at[merged]], merges.exact[at[merged]]
        target = np.where(merged, merges.target[at], -1)
        member, via = merges.find(cluster)
        member &= ~keep & ~merged
        moved = np.zeros(len(wanted), dtype=bool)
        if member.any():
            rows = np.flatnonzero(member)
            chosen, sims = merges.best_candidate(units[rows], via[rows], plan.threshold)
            ok = chosen >= 0
            go = rows[ok]
            moved[go], target[go] = True, chosen[ok]
            cluster[go], similarity[go] = merges.pool_rows[chosen[ok]], sims[ok]
            exact[go] = (units[go] == merges.pool_units[chosen[ok]]).all(axis=1)
            stay = rows[~ok]
            keep[stay], cluster[stay], similarity[stay], exact[stay] = True, wanted[stay], np.nan, False
        counts.merged += int(merged.sum())
        counts.merged_members_kept += int((member & ~moved).sum())  # none: RedecideMembers settled them
        new = np.flatnonzero(merged | moved)
        if len(new):
            own_ids = batch.column(plan.id_column).cast(plan.id_type).take(pa.array(new))
            pairs = pa.RecordBatch.from_arrays(
                [merges.pool_ids.take(pa.array(target[new])), own_ids, pa.array(similarity[new].astype(np.float32)),
                 pa.array(exact[new]), pa.array(np.ones(len(new), dtype=bool))], schema=plan.pairs_schema)
            yield beam.pvalue.TaggedOutput("pairs", (2 * plan.partitions + len(plan.vectors.splits) + split, pairs))
