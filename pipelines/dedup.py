"""Find exact and near-duplicate rows of embedding Parquet (cosine similarity >= --threshold).

    python -m pipelines.dedup --input 'embeddings/*.parquet' --output OUT_DIR [--threshold 0.95]
        [--keep first|closest-to-centroid|random] [--priority COLUMN [desc]] [--id-column id] [Beam options]

Semantics: greedy representatives in priority order (--priority, then --keep). A row is kept unless its
cosine to an earlier kept row is >= threshold; then it joins the most similar earlier kept row, whose
row number is its cluster_id. No removed row is below the threshold to its representative.

Flow (every element is a whole array or Arrow batch; keys are partition or split numbers):
1. At launch (pipelines.parts.dedup_plan): a sample is deduplicated in memory; spherical k-means on its
   representatives places the partitions; the guest margin is chosen so the sample's pairs meet.
2. Each input batch -> unit vectors -> its home partition (nearest centroid) and, near a boundary, up to
   --max-guests neighbouring partitions as a read-only guest -> GroupByKey(partition) -> greedy
   representatives in blocks of matrix products against the partition's kept rows (ae_tf.vectors.greedy).
3. A removed row whose representative was a guest is confirmed against the representative's own
   decision (a join on the representative's partition, with its kept rows); if that one was removed, the
   row takes its fallback or is checked again against that partition's kept rows, in the same step
   (pipelines.parts.dedup_fixups).
4. The kept rows alone are routed by coarser centroids and deduplicated again: a kept row covered by an
   earlier kept row of another partition is merged into it (pipelines.parts.dedup_merge); the rows that had
   joined a merged row are read again and decided again there (pipelines.parts.dedup_members).
5. Every split is read again and annotated from its decisions (a join on splits, sized by the split);
   a sample of kept rows is checked exactly against all kept rows (the residual-duplicate rate).

Outputs under OUT_DIR, each a directory of part-*.parquet shards with its own `_SUCCESS`:
  annotated/     the input rows + cluster_id int64 (the representative's row number), keep bool,
                 max_similarity float32 (cosine to the representative; for a kept row the highest cosine
                 to an earlier kept row; null: none)
  pairs/         id_a (kept), id_b (removed), similarity, exact, representative: each removed row with its
                 representative, plus up to --max-pairs-per-row further kept rows at >= threshold
  deduplicated/  the kept rows only, input columns unchanged
and summary.json; OUT_DIR/_SUCCESS (the same summary) is written last.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

import apache_beam as beam
import numpy as np

import ae_tf
from ae_tf.contracts import DatasetManifest, DedupOutput, DedupSummary
from pipelines.io.output_files import write_bytes
from pipelines.io.parquet import WriteParquetShards, publish_shards, utc_now, write_manifest
from pipelines.io.vector_input import ReadNumberedBatches
from pipelines.parts.dedup_fixups import AnnotateSplitDoFn, SettleGuestRepresentativesDoFn
from pipelines.parts.dedup_members import SettleSplitDoFn, redecide_members
from pipelines.parts.dedup_merge import collect_merges, drop_merged_pairs, merge_kept, route_kept
from pipelines.parts.dedup_plan import (
    ANNOTATED,
    DEDUPLICATED,
    PAIRS,
    SUMMARY_NAME,
    DedupPlan,
    dedup_arg_parser,
    plan_dedup,
    plan_from_args,
)
from pipelines.parts.dedup_steps import DedupPartitionDoFn, RouteRowsDoFn
from pipelines.parts.dedup_totals import (
    CLUSTERS,
    COUNTS,
    LINKS,
    SAMPLE,
    STATS,
    AnnotationInputsFn,
    RunTotals,
    RunTotalsFn,
    SplitCounts,
    tag,
)
from pipelines.runner import progress
from pipelines.runner.launch import execute, main_with_summary, prepare_launch
from pipelines.runner.options import split_args

__all__ = ["DedupParquet", "build_pipeline", "dedup_arg_parser", "main", "plan_dedup", "run", "summarize"]

log = logging.getLogger(__name__)


def residual_summary(counts: SplitCounts, plan: DedupPlan) -> dict:
    best = counts.residual_best if counts.residual_best is not None else np.zeros(0)
    checked = int(np.isfinite(best).sum() + (best == -np.inf).sum())
    duplicated = int((best >= plan.threshold).sum())
    return {"sample_kept_rows": checked, "with_kept_duplicate": duplicated,
            "rate": duplicated / checked if checked else 0.0,
            "method": "exact cosine of a hash-chosen sample of kept rows against every kept row"}


def publish(totals: RunTotals, plan: DedupPlan, started: str) -> dict:
    """Final step, run once: publish the three datasets (each with its `_SUCCESS`), check that the counts
    agree, write summary.json, then OUT_DIR/_SUCCESS."""
    stats, counts, clusters = totals.stats, totals.counts, totals.clusters
    removed = counts.rows - counts.kept
    expected = {ANNOTATED: plan.vectors.rows, DEDUPLICATED: counts.kept}
    datasets = {}
    for name in (ANNOTATED, PAIRS, DEDUPLICATED):
        results = [r for n, r in totals.shards if n == name]
        shards = publish_shards(plan.dataset_dir(name), plan.temp_dir(name), results, plan.num_shards(name),
                                require_all=name != PAIRS)
        rows = sum(s["rows"] for s in shards)
        if name in expected and rows != expected[name]:
            raise RuntimeError(f"{plan.dataset_dir(name)}: wrote {rows} rows, expected {expected[name]}; not publishing")
        write_manifest(plan.dataset_dir(name), DatasetManifest(rows=rows, shards=shards, finished_at=utc_now()).to_dict())
        datasets[name] = {"dir": plan.dataset_dir(name), "rows": rows, "shards": len(shards)}
    placement = plan.placement
    sweep = [{"threshold": t, "rows_kept": k, "rows_removed": plan.vectors.rows - k}
             for t, k in zip(plan.sweep, stats.sweep_kept, strict=True)]
    manifest = DedupSummary(
        rows=counts.rows, rows_kept=counts.kept, rows_removed=removed, threshold=plan.threshold,
        clusters=clusters, rows_in_clusters=clusters + removed, pairs=datasets[PAIRS]["rows"],
        keep_policy=plan.keep_policy, priority=plan.priority_column, descending=plan.descending,
        cluster_mode=plan.clusters, sweep=sweep,
        exact_duplicates={"rows_removed": counts.exact_removed},
        checks={"removed_below_threshold": stats.below_threshold, "residual_duplicates": residual_summary(counts, plan)},
        partitions={"count": plan.partitions, "margin": placement.margin, "max_guests": plan.max_guests,
                    "guest_rows": stats.guest_rows, "guest_rows_compared": stats.guest_rows_compared,
                    "guests_pruned": plan.prune_guests, "largest": stats.largest_partition,
                    "sample_rows": placement.sample_rows, "sample_kept": placement.sample_kept,
                    "estimated_kept": placement.estimated_kept, "sample_pairs_missed": placement.missed_pairs,
                    "threshold_pairs_missed": placement.missed_made_pairs,
                    "rows_corrected": counts.corrected, "rows_corrected_kept": counts.corrected_kept,
                    "kept_rows_merged": counts.merged, "merged_members_kept": counts.merged_members_kept},
        inputs=list(plan.vectors.inputs), output_dir=plan.output_dir, outputs=datasets,
        column=plan.vectors.column, id_column=plan.id_column, seed=plan.seed,
        started_at=started, finished_at=utc_now(), ae_tf_version=ae_tf.__version__,
    ).to_dict()
    write_bytes(f"{plan.output_dir.rstrip('/')}/{SUMMARY_NAME}",
                (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), "application/json")
    write_manifest(plan.output_dir, manifest)
    return manifest


class DedupParquet(beam.PTransform):
    """PBegin -> the summary manifest (one element), having written the three datasets of `plan`."""

    def __init__(self, plan: DedupPlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin):
        plan = self._plan
        key = f"dedup-{plan.run_id}"
        progress.expect(key, 2 * plan.vectors.rows)  # the greedy pass and the annotation pass
        decided = (
            pbegin
            | "ReadVectors" >> ReadNumberedBatches(plan.vectors, plan.read_columns, plan.batch_rows, progress_key=key)
            | "RouteRows" >> beam.ParDo(RouteRowsDoFn(plan))
            | "GroupPartitions" >> beam.GroupByKey()
            | "GreedyRepresentatives" >> beam.ParDo(DedupPartitionDoFn(plan)).with_outputs(
                "stats", "pairs", "queries", "kept", "sample", "reps", "links", main="decisions")
        )
        inputs = beam.pvalue.AsSingleton(  # the residual sample and the kept rows' components, in one combine
            (decided.sample | "TagSample" >> beam.Map(tag, SAMPLE), decided.links | "TagLinks" >> beam.Map(tag, LINKS))
            | "AllAnnotationInputs" >> beam.Flatten()
            | "AnnotationInputs" >> beam.CombineGlobally(AnnotationInputsFn(plan.residual_sample, plan.vectors.width)))
        settled_guests = (  # keyed by partition: its kept rows, and what other partitions asked of them
            {"kept": decided.kept, "queries": decided.queries, "reps": decided.reps}
            | "JoinGuestRepresentatives" >> beam.CoGroupByKey()
            | "SettleGuestRepresentatives" >> beam.ParDo(SettleGuestRepresentativesDoFn(plan)).with_outputs(
                "pairs", "kept", "clusters", main="corrections")
        )
        merges = (
            (decided.kept, settled_guests.kept)
            | "AllKeptRows" >> beam.Flatten()
            | "RouteKeptRows" >> beam.FlatMap(route_kept, plan)
            | "GroupKeptRows" >> beam.GroupByKey()
            | "MergeKeptRows" >> beam.FlatMap(merge_kept, plan)
            | "CollectMerges" >> beam.combiners.ToList()
            | "SortMerges" >> beam.Map(collect_merges, plan)
        )
        merges_view = beam.pvalue.AsSingleton(merges)
        settled = (
            {"decisions": decided.decisions, "corrections": settled_guests.corrections}
            | "JoinDecisions" >> beam.CoGroupByKey()
            | "SettleSplits" >> beam.ParDo(SettleSplitDoFn(plan), merges_view).with_outputs("members",
                                                                                           main="decisions")
        )
        members = (
            settled.members
            | "GroupMembers" >> beam.GroupByKey()
            | "RedecideMembers" >> beam.FlatMap(redecide_members, plan, merges_view).with_outputs(
                "pairs", main="corrections")
        )
        annotated = (
            {"decisions": settled.decisions, "corrections": members.corrections}
            | "JoinMemberDecisions" >> beam.CoGroupByKey()
            | "AnnotateSplits" >> beam.ParDo(AnnotateSplitDoFn(plan), inputs, merges_view).with_outputs(
                DEDUPLICATED, "counts", "pairs", main=ANNOTATED)
        )
        pairs = (
            (decided.pairs, settled_guests.pairs, members.pairs)
            | "AllPairs" >> beam.Flatten()
            | "DropMergedPairs" >> beam.FlatMap(drop_merged_pairs, merges_view)
        )
        pairs = (pairs, annotated.pairs) | "FinalPairs" >> beam.Flatten()
        # the vectors and similarities are floats that never repeat: no dictionary pages; annotated and
        # deduplicated rows are compressed on a thread while the next split is annotated
        plain = (plan.vectors.column, DedupOutput.MAX_SIMILARITY, DedupOutput.SIMILARITY)
        written = [
            annotated[ANNOTATED]
            | "WriteAnnotated" >> WriteParquetShards(plan.temp_dir(ANNOTATED), plan.annotated_schema, plan.compression,
                                                     background=True, plain_columns=plain)
            | "TagAnnotated" >> beam.Map(tag, ANNOTATED),
            annotated[DEDUPLICATED]
            | "WriteDeduplicated" >> WriteParquetShards(plan.temp_dir(DEDUPLICATED), plan.deduplicated_schema,
                                                        plan.compression, background=True, plain_columns=plain)
            | "TagDeduplicated" >> beam.Map(tag, DEDUPLICATED),
            pairs
            | "WritePairs" >> WriteParquetShards(plan.temp_dir(PAIRS), plan.pairs_schema, plan.compression,
                                                 plain_columns=plain)
            | "TagPairs" >> beam.Map(tag, PAIRS),
        ]
        # the final step's inputs, in one combine: partition stats, split counts, clusters, written shards
        totals = (
            [decided.stats | "TagStats" >> beam.Map(tag, STATS), annotated.counts | "TagCounts" >> beam.Map(tag, COUNTS),
             settled_guests.clusters | "TagClusters" >> beam.Map(tag, CLUSTERS), *written]
            | "AllResults" >> beam.Flatten()
            | "RunTotals" >> beam.CombineGlobally(RunTotalsFn())
        )
        return totals | "PublishOutput" >> beam.Map(publish, plan, utc_now())


def build_pipeline(p: beam.Pipeline, plan: DedupPlan):
    return p | "DedupParquet" >> DedupParquet(plan)


def run(argv: Sequence[str] | None = None, save_main_session: bool = True, test_pipeline=None) -> dict | None:
    """Parse flags, plan, run; returns the summary manifest (None when the runner did not execute it)."""
    args, beam_args = split_args(dedup_arg_parser(), argv)
    launch = prepare_launch(beam_args, save_main_session)
    plan = plan_from_args(args)
    placement = plan.placement
    log.info("dedup of %d rows x %d at %.3f: %d partitions, guest margin %.2f (sample: %d of %d rows kept, "
             "%.2f%% of its pairs would not meet)", plan.vectors.rows, plan.vectors.width, plan.threshold,
             plan.partitions, placement.margin, placement.sample_kept, placement.sample_rows,
             100 * placement.missed_pairs)
    return execute(launch, lambda p: build_pipeline(p, plan), plan.output_dir, f"dedup-{plan.run_id}", "dedup",
                   args.progress_interval, test_pipeline, output_dirs=plan.output_dirs)


def summarize(manifest: dict, seconds: float) -> str:
    """The short report printed after a run."""
    checks, parts = manifest["checks"], manifest["partitions"]
    residual = checks["residual_duplicates"]
    lines = [
        f"rows       {manifest['rows']:,} in, {manifest['rows_kept']:,} kept, {manifest['rows_removed']:,} removed "
        f"(similarity >= {manifest['threshold']}, keep {manifest['keep_policy']}"
        + (f", priority {manifest['priority']}" if manifest.get("priority") else "") + ")",
        f"clusters   {manifest['clusters']:,} kept rows with duplicates ({manifest['rows_in_clusters']:,} rows), "
        f"{manifest['exact_duplicates']['rows_removed']:,} removed rows identical to their kept row; "
        f"{manifest['pairs']:,} pairs",
        f"checks     {checks['removed_below_threshold']} removed rows below the threshold to their kept row; "
        f"{residual['with_kept_duplicate']} of {residual['sample_kept_rows']:,} sampled kept rows still have a "
        f"kept duplicate ({residual['rate']:.2%})",
        f"partitions {parts['count']:,} (margin {parts['margin']}, {parts['guest_rows']:,} guest rows, largest "
        f"{parts['largest']:,}); {parts['rows_corrected']:,} rows settled across partitions, "
        f"{parts['kept_rows_merged']:,} kept rows merged",
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
    from ae_tf.commands.main import run_alone
    from pipelines.commands import DEDUP

    sys.exit(run_alone(DEDUP))  # this pipeline's own row: flags checked, one-line errors, no CLI table
