"""What `pipelines.dedup` gathers over the whole run, each in one global combine (every combine is a few
more Beam stages, so they are few): what annotation needs from every partition (the residual-check sample
and, with --clusters connected, the kept rows' components), and what the final step publishes (partition
stats, split counts, cluster count, written shards)."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import numpy as np

from ae_tf.vectors.duplicates import PartitionStats, connected_components
from pipelines.io.parquet import ShardResult
from pipelines.parts.dedup_steps import KeptSample, empty_sample

SAMPLE, LINKS = "sample", "links"  # tags of DedupPartitionDoFn's outputs that AnnotationInputsFn takes
STATS, COUNTS, CLUSTERS = "stats", "counts", "clusters"  # RunTotalsFn's tags; shards carry their dataset's name


@dataclasses.dataclass
class SplitCounts:
    """What one split's annotation found (summed into the summary)."""

    rows: int = 0
    kept: int = 0
    corrected: int = 0  # rows whose representative was removed in its own partition: joined another
    corrected_kept: int = 0  # ... or kept
    exact_removed: int = 0
    merged: int = 0  # kept rows merged into an earlier kept row of another partition
    merged_members_kept: int = 0  # their members below the threshold to the new kept row, kept instead
    residual_best: np.ndarray | None = None  # per residual-sample row: highest cosine to another kept row


def tag(value, name: str) -> tuple[str, object]:
    return name, value


@dataclasses.dataclass
class AnnotationInputs:
    """The residual-check sample of kept rows, and the connected components of kept rows (rows sorted,
    component = its smallest row; empty unless --clusters connected)."""

    sample: KeptSample
    nodes: np.ndarray
    component: np.ndarray


def connect_clusters(links: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """--clusters connected: kept rows linked through removed rows -> (rows sorted, component = smallest
    row of the component). Sized by the links (kept rows that share a removed neighbour)."""
    if not links:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return connected_components(np.concatenate([a for a, _ in links]), np.concatenate([b for _, b in links]))


class AnnotationInputsFn(beam.CombineFn):
    """(SAMPLE, KeptSample) and (LINKS, links) -> AnnotationInputs: the `size` kept rows with the smallest
    hashes over all partitions (memory: `size` rows), and the components of the links."""

    def __init__(self, size: int, width: int):
        self._size = size
        self._width = width

    def create_accumulator(self):
        return [empty_sample(self._width), []]  # the sample so far, the links (appended in place)

    def add_input(self, accumulator, element):
        name, value = element
        if name == SAMPLE:
            accumulator[0] = accumulator[0].merge(value, self._size)
        else:
            accumulator[1].append(value)
        return accumulator

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for sample, links in accumulators:
            out[0] = out[0].merge(sample, self._size)
            out[1].extend(links)
        return out

    def extract_output(self, accumulator):
        sample, links = accumulator
        return AnnotationInputs(sample, *connect_clusters(links))


def add_counts(a: SplitCounts, b: SplitCounts) -> SplitCounts:
    """Sums, and the elementwise max of the residual arrays."""
    best = b.residual_best if a.residual_best is None else (
        a.residual_best if b.residual_best is None else np.maximum(a.residual_best, b.residual_best))
    return SplitCounts(a.rows + b.rows, a.kept + b.kept, a.corrected + b.corrected, a.corrected_kept + b.corrected_kept,
                       a.exact_removed + b.exact_removed, a.merged + b.merged,
                       a.merged_members_kept + b.merged_members_kept, best)


@dataclasses.dataclass
class RunTotals:
    """Everything the final step needs."""

    stats: PartitionStats = dataclasses.field(default_factory=PartitionStats)
    counts: SplitCounts = dataclasses.field(default_factory=SplitCounts)
    clusters: int = 0
    shards: list[tuple[str, ShardResult]] = dataclasses.field(default_factory=list)  # (dataset name, shard)

    def add(self, name: str, value) -> RunTotals:
        """Adds one tagged element, in place (the combine owns its accumulator)."""
        if name == STATS:
            self.stats = self.stats.add(value)
        elif name == COUNTS:
            self.counts = add_counts(self.counts, value)
        elif name == CLUSTERS:
            self.clusters += value
        else:
            self.shards.append((name, value))
        return self

    def merge(self, other: RunTotals) -> RunTotals:
        """Adds another accumulator, in place."""
        self.stats = self.stats.add(other.stats)
        self.counts = add_counts(self.counts, other.counts)
        self.clusters += other.clusters
        self.shards.extend(other.shards)
        return self


class RunTotalsFn(beam.CombineFn):
    """(STATS, PartitionStats), (COUNTS, SplitCounts), (CLUSTERS, int) and (dataset, ShardResult) -> RunTotals."""

    def create_accumulator(self):
        return RunTotals()

    def add_input(self, accumulator, element):
        return accumulator.add(*element)

    def merge_accumulators(self, accumulators):
        out = RunTotals()
        for acc in accumulators:
            out = out.merge(acc)
        return out

    def extract_output(self, accumulator):
        return accumulator
