"""Near duplicates inside one partition, on whole arrays: priority order, greedy representatives, the
per-row decisions the dedup pipeline writes, and the exact checks its summary reports.

Rows are named by their global row number (int64, input order). A partition holds its home rows (decided
here) and guests (rows of neighbouring partitions, compared with but decided at home). Every row carries
the same priority keys wherever it goes, so all partitions agree on the order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ae_tf.errors import InvalidInput
from ae_tf.vectors.greedy import cosine64, decision_margin, greedy_representatives
from ae_tf.vectors.guests import needed_guests
from ae_tf.vectors.hashing import mix64

KEEP_POLICIES = ("first", "closest-to-centroid", "random")
EMPTY = np.zeros(0, dtype=np.int64)


def priority_keys(rows: np.ndarray, policy: str, seed: int = 0, home_cosine: np.ndarray | None = None,
                  column: np.ndarray | None = None, descending: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(primary, secondary) float64 sort keys; rows sort by primary, then secondary, then row number.

    primary: the --priority column (ascending, or descending; missing values last), else 0.
    secondary: the --keep policy. first: row number. random: a seeded hash of the row number.
    closest-to-centroid: minus the cosine to the home partition's centroid (NeMo Curator's "easy").
    """
    rows = np.asarray(rows, dtype=np.int64)
    if column is None:
        primary = np.zeros(len(rows))
    else:
        primary = np.asarray(column, dtype=np.float64) * (-1.0 if descending else 1.0)
        primary = np.where(np.isnan(primary), np.inf, primary)
    if policy == "first":
        secondary = rows.astype(np.float64)
    elif policy == "random":
        secondary = (mix64(rows.astype(np.uint64) ^ mix64(np.uint64(seed))) >> np.uint64(11)).astype(np.float64)
    elif policy == "closest-to-centroid":
        if home_cosine is None:
            raise ValueError("keep policy closest-to-centroid needs each row's cosine to its centroid")
        secondary = -np.asarray(home_cosine, dtype=np.float64)
    else:
        raise InvalidInput(f"--keep must be one of {', '.join(KEEP_POLICIES)}, got {policy!r}")
    return primary, secondary


@dataclasses.dataclass
class PartitionRows:
    """Rows of one partition (home rows and guests) from one or more input batches."""

    rows: np.ndarray  # int64 global row numbers
    units: np.ndarray  # float32 unit vectors
    primary: np.ndarray  # float64 priority keys
    secondary: np.ndarray
    home: np.ndarray  # bool: decided in this partition
    hashes: np.ndarray  # uint64 hash of the raw vector: equal vectors, equal hashes
    partition: np.ndarray  # int64: the row's home partition

    def take(self, index: np.ndarray) -> PartitionRows:
        return PartitionRows(*(getattr(self, f.name)[index] for f in dataclasses.fields(PartitionRows)))

    @staticmethod
    def concat(parts: Sequence[PartitionRows]) -> PartitionRows:
        return PartitionRows(*(np.concatenate([getattr(p, f.name) for p in parts])
                               for f in dataclasses.fields(PartitionRows)))


@dataclasses.dataclass
class Decisions:
    """What one partition decided for its home rows, plus further neighbour pairs of removed rows."""

    rows: np.ndarray  # int64
    representative: np.ndarray  # int64 row number; the row itself when kept
    similarity: np.ndarray  # float32 cosine (float64 computed) to the representative; 1.0 when kept
    max_similarity: np.ndarray  # float32 highest cosine to an earlier kept row (NaN: none)
    kept: np.ndarray  # bool
    exact: np.ndarray  # bool: identical vector to the representative
    guest_representative: np.ndarray  # bool: the representative's own partition decides whether it is kept
    fallback: np.ndarray  # int64: the most similar earlier kept home row at >= threshold (-1: none), used
    fallback_similarity: np.ndarray  # float32      when a guest representative turns out removed at home
    extra_rows: np.ndarray = dataclasses.field(default_factory=lambda: EMPTY)
    extra_neighbours: np.ndarray = dataclasses.field(default_factory=lambda: EMPTY)
    extra_similarity: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    links: tuple[np.ndarray, np.ndarray] | None = None  # --clusters connected: kept rows joined by a row

    def take(self, index: np.ndarray) -> Decisions:
        """The decisions of some rows (no extra pairs)."""
        return Decisions(self.rows[index], self.representative[index], self.similarity[index],
                         self.max_similarity[index], self.kept[index], self.exact[index],
                         self.guest_representative[index], self.fallback[index], self.fallback_similarity[index])

    @staticmethod
    def concat(parts: Sequence[Decisions]) -> Decisions:
        return Decisions(*(np.concatenate([getattr(p, f.name) for p in parts])
                           for f in dataclasses.fields(Decisions) if f.name != "links"))


@dataclasses.dataclass
class PartitionStats:
    """Summed into the dedup summary."""

    partitions: int = 0
    home_rows: int = 0
    guest_rows: int = 0
    largest_partition: int = 0
    kept_rows: int = 0
    below_threshold: int = 0  # removed rows whose float64 cosine to their representative is < threshold
    sweep_kept: tuple[int, ...] = ()
    guest_rows_compared: int = 0  # guests left after pruning (ae_tf.vectors.guests)

    def add(self, other: PartitionStats) -> PartitionStats:
        sweep = tuple(a + b for a, b in zip(self.sweep_kept, other.sweep_kept, strict=True)) \
            if self.sweep_kept and other.sweep_kept else (self.sweep_kept or other.sweep_kept)
        return PartitionStats(self.partitions + other.partitions, self.home_rows + other.home_rows,
                              self.guest_rows + other.guest_rows,
                              max(self.largest_partition, other.largest_partition),
                              self.kept_rows + other.kept_rows, self.below_threshold + other.below_threshold, sweep,
                              self.guest_rows_compared + other.guest_rows_compared)


def dedup_partition(part: PartitionRows, threshold: float, extra_per_row: int = 0, sweep: Sequence[float] = (),
                    on_block=None, links: bool = False, prune_guests: bool = False) -> tuple[Decisions, PartitionStats]:
    """Greedy representatives over a partition in priority order; decisions for its home rows.

    `prune_guests`: first drop the guests that cannot change a home decision (ae_tf.vectors.guests); the
    decisions are the same, faster where few rows are duplicates. Not with `links`, which also counts
    rows later than both kept rows they join."""
    order = np.lexsort((part.rows, part.secondary, part.primary))
    routed = len(order)
    if prune_guests and not links and not part.home.all():
        order = order[needed_guests(part.units[order], part.home[order], min((threshold, *sweep)))]
    units, rows, home, hashes = part.units[order], part.rows[order], part.home[order], part.hashes[order]
    result = greedy_representatives(units, threshold, extra_per_row, on_block)
    at = np.flatnonzero(home)
    rep = result.representative[at]
    similarity = cosine64(units[at], units[rep])
    kept = result.kept[at]
    similarity[kept] = 1.0
    exact = (hashes[at] == hashes[rep]) & ~kept
    best = result.best[at].astype(np.float32)
    best[~np.isfinite(best)] = np.nan
    guest_rep = ~home[rep]
    fallback, fallback_similarity = _home_fallback(units, result.kept & home, at[guest_rep], threshold)
    fallback_rows = np.full(len(at), -1, dtype=np.int64)
    fallback_sims = np.full(len(at), np.nan, dtype=np.float32)
    fallback_rows[guest_rep] = np.where(fallback >= 0, rows[np.maximum(fallback, 0)], -1)
    fallback_sims[guest_rep] = fallback_similarity
    decisions = Decisions(rows[at], rows[rep], similarity.astype(np.float32), best, kept, exact, guest_rep,
                          fallback_rows, fallback_sims)
    extra = home[result.extra_rows]
    if extra.any():
        i, j = result.extra_rows[extra], result.extra_neighbours[extra]
        decisions.extra_rows, decisions.extra_neighbours = rows[i], rows[j]
        decisions.extra_similarity = cosine64(units[i], units[j]).astype(np.float32)
    if links:
        decisions.links = _kept_links(units, result.kept, result.representative, home, threshold, rows)
    sweep_kept = tuple(int(greedy_representatives(units, t).kept[at].sum()) for t in sweep)
    stats = PartitionStats(1, len(at), routed - len(at), routed, int(kept.sum()),
                           int((similarity[~kept] < threshold).sum()), sweep_kept, len(rows) - len(at))
    return decisions, stats


def _kept_links(units: np.ndarray, kept: np.ndarray, rep: np.ndarray, home: np.ndarray, threshold: float,
                rows: np.ndarray, limit: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """--clusters connected: pairs of kept home rows (row numbers) joined through a row at >= threshold to
    both, earlier or later; up to `limit` per row. Removed rows are not compared with each other."""
    columns = np.flatnonzero(kept & home)
    t = threshold + decision_margin(units.shape[1])
    a_all, b_all = [], []
    for lo in range(0, len(units), 4096):
        sims = units[lo:lo + 4096] @ units[columns].T
        sims[rep[lo:lo + 4096, None] == columns[None, :]] = -np.inf
        k = min(limit, len(columns))
        if k == 0:
            break
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        i, j = np.nonzero(np.take_along_axis(sims, top, axis=1) >= t)
        mine = home[rep[lo + i]]
        a_all.append(rows[rep[lo + i[mine]]])
        b_all.append(rows[columns[top[i[mine], j[mine]]]])
    if not a_all:
        return EMPTY, EMPTY
    return np.concatenate(a_all), np.concatenate(b_all)


def _home_fallback(units: np.ndarray, kept_home: np.ndarray, positions: np.ndarray,
                   threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """For rows at `positions` (priority order), the most similar earlier kept home row at >= threshold
    (position, -1: none) and its float64 cosine."""
    columns = np.flatnonzero(kept_home)
    if len(positions) == 0 or len(columns) == 0:
        return np.full(len(positions), -1, dtype=np.int64), np.full(len(positions), np.nan, dtype=np.float32)
    arg = np.zeros(len(positions), dtype=np.int64)
    value = np.full(len(positions), -np.inf, dtype=np.float32)
    for lo in range(0, len(positions), max(1, (1 << 22) // len(columns))):  # bounded blocks of products
        at = positions[lo:lo + max(1, (1 << 22) // len(columns))]
        sims = units[at] @ units[columns].T
        sims[columns[None, :] >= at[:, None]] = -np.inf
        arg[lo:lo + len(at)] = sims.argmax(axis=1)
        value[lo:lo + len(at)] = sims[np.arange(len(at)), arg[lo:lo + len(at)]]
    found = value >= threshold + decision_margin(units.shape[1])
    chosen = np.where(found, columns[arg], -1)
    exact = cosine64(units[positions], units[columns[arg]]).astype(np.float32)
    return chosen, np.where(found, exact, np.nan).astype(np.float32)


def recheck_orphans(kept: PartitionRows, orphans: PartitionRows, threshold: float) -> tuple[np.ndarray, np.ndarray,
                                                                                             np.ndarray]:
    """Rows whose representative was removed in its own partition, checked again there: each joins the most
    similar earlier kept row of that partition (or an earlier orphan kept here), else is kept.
    Returns, aligned with `orphans`: kept, representative row, float64 cosine to it."""
    both = PartitionRows.concat([kept, orphans])
    order = np.lexsort((both.rows, both.secondary, both.primary))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    kept_rank, orphan_rank = rank[: len(kept.rows)], rank[len(kept.rows):]
    n = len(orphans.rows)
    rep = orphans.rows.copy()
    similarity = np.ones(n)
    open_rows = np.ones(n, dtype=bool)
    t = threshold + decision_margin(orphans.units.shape[1])
    if len(kept.rows) and n:
        sims = orphans.units @ kept.units.T
        sims[kept_rank[None, :] >= orphan_rank[:, None]] = -np.inf
        arg = sims.argmax(axis=1)
        found = sims[np.arange(n), arg] >= t
        rep[found] = kept.rows[arg[found]]
        similarity[found] = cosine64(orphans.units[found], kept.units[arg[found]])
        open_rows = ~found
    left = np.flatnonzero(open_rows)
    left = left[np.argsort(orphan_rank[left])]
    result = greedy_representatives(orphans.units[left], threshold)
    removed = ~result.kept
    rep[left[removed]] = orphans.rows[left[result.representative[removed]]]
    similarity[left[removed]] = cosine64(orphans.units[left[removed]],
                                         orphans.units[left[result.representative[removed]]])
    return rep == orphans.rows, rep, similarity


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2.4's np.unique is ~50x slower on 10M uint64 here)."""
    ordered = np.sort(values)
    if len(ordered) == 0:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def in_sorted(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """np.isin(values, sorted_values) for a sorted second array, by binary search: np.isin builds a table
    over the whole range of the values (row numbers up to the row count) on every call."""
    if len(sorted_values) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[at] == values


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique values, index of each value in them)."""
    unique = sorted_unique(values)
    return unique, np.searchsorted(unique, values)


def connected_components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (a, b) -> (nodes sorted, component of each node = its component's smallest node).

    Union-find in numpy: hook each root onto the smallest root it touches, then compress paths; the
    number of components at least halves every round, so a few rounds suffice.
    """
    nodes, inverse = unique_inverse(np.concatenate([a, b]).astype(np.int64))
    u, v = inverse[: len(a)], inverse[len(a):]
    parent = np.arange(len(nodes), dtype=np.int64)
    while True:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            break
        np.minimum.at(parent, np.maximum(pu[differ], pv[differ]), np.minimum(pu[differ], pv[differ]))
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return nodes, nodes[parent]


def _same_rows(sample_rows: np.ndarray, block_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in block_rows, found) of each sample row: a sorted lookup, not a sample x block mask."""
    order = np.argsort(block_rows, kind="stable")
    pos = np.minimum(np.searchsorted(block_rows[order], sample_rows), len(block_rows) - 1)
    at = order[pos]
    return at, block_rows[at] == sample_rows


def max_similarity_to(sample: np.ndarray, sample_rows: np.ndarray, units: np.ndarray,
                      rows: np.ndarray) -> np.ndarray:
    """For each sample row, the highest float64 cosine to any of `rows` other than itself (-inf: none).

    Blocks of float32 products, re-checked in float64 near the top, so the check is exact."""
    best = np.full(len(sample), -np.inf)
    if len(sample) == 0 or len(units) == 0:
        return best
    for lo in range(0, len(units), 2048):  # 2,000 x 2,048 float32: 16 MB at a time, reused (ae_tf.malloc)
        block, block_rows = units[lo:lo + 2048], rows[lo:lo + 2048]
        sims = sample @ block.T
        at, hit = _same_rows(sample_rows, block_rows)
        sims[np.flatnonzero(hit), at[hit]] = -np.inf  # a sample row is not its own duplicate
        arg = sims.argmax(axis=1)
        exact = cosine64(sample, block[arg])
        exact[sample_rows == block_rows[arg]] = -np.inf
        best = np.maximum(best, np.where(np.isfinite(sims[np.arange(len(sample)), arg]), exact, -np.inf))
    return best
