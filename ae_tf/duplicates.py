"""Near-duplicate bookkeeping on whole arrays: pairs inside LSH buckets, exact cosine verification,
connected components, which row each cluster keeps, and counts at several thresholds.

Rows are identified by their global row number (int64, input order). Nothing here loops over rows or
pairs in Python; the only Python loops are over oversize buckets and over thresholds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from ae_tf.hashing import mix64

KEEP_POLICIES = ("first", "closest-to-centroid", "random")
EMPTY = np.zeros(0, dtype=np.int64)


@dataclasses.dataclass
class BucketStats:
    """What one partition's buckets looked like (summed into the dedup summary)."""

    entries: int = 0
    shared_buckets: int = 0  # buckets holding two rows or more
    largest_bucket: int = 0
    oversize_buckets: int = 0  # cut into overlapping windows of max_bucket rows
    pair_hits: int = 0  # pairs sharing a bucket (a pair sharing several buckets counts each time)
    sketch_survivors: int = 0  # hits whose sketches are close enough to be verified

    def add(self, other: BucketStats) -> BucketStats:
        return BucketStats(self.entries + other.entries, self.shared_buckets + other.shared_buckets,
                           max(self.largest_bucket, other.largest_bucket),
                           self.oversize_buckets + other.oversize_buckets, self.pair_hits + other.pair_hits,
                           self.sketch_survivors + other.sketch_survivors)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2.4's np.unique is ~50x slower on 10M uint64 here)."""
    ordered = np.sort(values)
    if len(ordered) == 0:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique values, index of each value in them)."""
    unique = sorted_unique(values)
    return unique, np.searchsorted(unique, values)


def row_bits_for(n_rows: int) -> int:
    """Bits that hold any row number below n_rows."""
    return max(1, int(n_rows - 1).bit_length())


def pack_entries(keys: np.ndarray, first_row: int, row_bits: int) -> np.ndarray:
    """Bucket keys [n, bands] of rows first_row.. -> uint64 entries: key's high bits, then the row.

    One uint64 per (row, band) sorts by bucket and then by row. Dropping the key's low bits merges two
    buckets only by a ~2**-(64 - row_bits) chance, which adds candidates (all verified), never loses one.
    """
    rows = np.arange(first_row, first_row + len(keys), dtype=np.uint64)[:, None]
    shift = np.uint64(row_bits)
    return ((keys >> shift) << shift) | rows


def partition_indices(partition: np.ndarray, partitions: int) -> Iterator[tuple[int, np.ndarray]]:
    """(partition, indices of the elements in it) for every non-empty partition, indices in order."""
    small = partition.astype(np.uint16 if partitions <= 1 << 16 else np.int64, copy=False)
    order = np.argsort(small, kind="stable")  # a radix sort for 16-bit keys
    bounds = np.searchsorted(small[order], np.arange(partitions + 1))
    for p in range(partitions):
        if bounds[p + 1] > bounds[p]:
            yield p, order[bounds[p]:bounds[p + 1]]


def route_entries(keys: np.ndarray, sketches: np.ndarray, first_row: int, row_bits: int,
                  partitions: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Split one batch's entries by partition (key % partitions): yields (partition, entries, sketches).

    Entries of one bucket always meet in one partition; each partition gets one array per input batch.
    """
    n, bands = keys.shape
    entries = pack_entries(keys, first_row, row_bits).reshape(-1)
    row_of_entry = np.repeat(np.arange(n), bands)
    for p, chosen in partition_indices(keys.reshape(-1) % np.uint64(partitions), partitions):
        yield p, entries[chosen], sketches[row_of_entry[chosen]]


def _pairs_within_runs(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of positions inside each run [start, start + size)."""
    sizes = sizes.astype(np.int64)
    if len(sizes) == 0:
        return EMPTY, EMPTY
    run_base = np.repeat(np.cumsum(sizes) - sizes, sizes)
    local = np.arange(int(sizes.sum()), dtype=np.int64) - run_base  # position inside its run
    positions = np.repeat(starts.astype(np.int64), sizes) + local
    partners = np.repeat(sizes, sizes) - 1 - local  # later positions in the same run
    first = np.repeat(positions, partners)
    step = np.arange(len(first), dtype=np.int64) - np.repeat(np.cumsum(partners) - partners, partners)
    return first, first + 1 + step


def ordered_unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of each pair, self-pairs dropped, repeats removed, sorted by (a, b)."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    lo, hi = lo[keep].astype(np.int64), hi[keep].astype(np.int64)
    if len(lo) == 0:
        return EMPTY, EMPTY
    if hi.max() < 2**32 and lo.min() >= 0:
        packed = sorted_unique((lo.astype(np.uint64) << np.uint64(32)) | hi.astype(np.uint64))
        return (packed >> np.uint64(32)).astype(np.int64), (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    order = np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])]
    return lo[first], hi[first]


def sketch_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hamming distance between rows of two uint64 [m, words] sketch arrays."""
    return np.bitwise_count(x ^ y).sum(axis=1, dtype=np.int64)


def bucket_pairs(entries: np.ndarray, sketches: np.ndarray, row_bits: int, max_distance: int,
                 max_bucket: int = 256,
                 max_pairs_per_chunk: int = 4_000_000) -> Iterator[tuple[np.ndarray, np.ndarray, BucketStats]]:
    """Candidate pairs (a < b) of rows sharing a bucket whose sketches are within `max_distance` bits.

    `entries` come from `pack_entries` (any order, any number of batches concatenated). Work is done in
    chunks of about `max_pairs_per_chunk` pair hits, so memory is bounded whatever the bucket sizes. A
    bucket of up to `max_bucket` rows yields all its pairs; a bigger one (a hot bucket) is cut into windows
    of `max_bucket` rows, in row order, overlapping by half: work stays linear in its size, and the rows
    of one genuinely dense cluster stay connected through the overlaps.
    """
    stats = BucketStats(entries=len(entries))
    if len(entries) < 2:
        yield EMPTY, EMPTY, stats
        return
    order = np.argsort(entries)
    entries, sketches = entries[order], sketches[order]
    shift = np.uint64(row_bits)
    bucket = entries >> shift
    rows = (entries & ((np.uint64(1) << shift) - np.uint64(1))).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, len(bucket)])
    shared = sizes >= 2
    starts, sizes = starts[shared], sizes[shared]
    stats.shared_buckets = int(len(sizes))
    stats.largest_bucket = int(sizes.max()) if len(sizes) else 0
    oversize = sizes > max_bucket
    stats.oversize_buckets = int(oversize.sum())
    if stats.oversize_buckets:  # rows inside a bucket are already in row order: windows are deterministic
        half = max(1, max_bucket // 2)
        window_starts, window_sizes = [starts[~oversize]], [sizes[~oversize]]
        for start, size in zip(starts[oversize], sizes[oversize], strict=True):
            offsets = np.arange(0, max(size - half, 1), half)
            window_starts.append(start + offsets)
            window_sizes.append(np.minimum(max_bucket, size - offsets))
        starts, sizes = np.concatenate(window_starts), np.concatenate(window_sizes)

    pairs_per_run = sizes.astype(np.int64) * (sizes - 1) // 2
    stats.pair_hits = int(pairs_per_run.sum())
    chunk_of_run = np.cumsum(pairs_per_run) // max(1, max_pairs_per_chunk)
    bounds = np.flatnonzero(np.r_[True, chunk_of_run[1:] != chunk_of_run[:-1], True])
    first = True
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        i, j = _pairs_within_runs(starts[lo:hi], sizes[lo:hi])
        close = sketch_distance(sketches[i], sketches[j]) <= max_distance
        stats_out = stats if first else BucketStats()
        stats_out.sketch_survivors = int(close.sum())
        a, b = ordered_unique_pairs(rows[i[close]], rows[j[close]])
        yield a, b, stats_out
        first = False
    if first:
        yield EMPTY, EMPTY, stats


def pair_similarity(va: np.ndarray, vb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine similarity (float64) of row-aligned vectors, and whether the two are identical.

    Identical vectors have similarity 1.0 (also two zero vectors); a zero vector is 0.0 to anything else.
    """
    a64, b64 = va.astype(np.float64), vb.astype(np.float64)
    dot = np.einsum("ij,ij->i", a64, b64)
    norms = np.sqrt(np.einsum("ij,ij->i", a64, a64) * np.einsum("ij,ij->i", b64, b64))
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(norms > 0, dot / norms, 0.0)
    exact = (va == vb).all(axis=1) if len(va) else np.zeros(0, dtype=bool)
    sim = np.clip(sim, -1.0, 1.0)
    sim[exact] = 1.0
    return sim, exact


def connected_components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges (a, b) -> (nodes sorted, component of each node = its component's smallest node).

    Union-find in numpy: hook each root onto the smallest root it touches, then compress paths; the
    number of components at least halves every round, so a few rounds suffice.
    """
    nodes, inverse = unique_inverse(np.concatenate([a, b]))
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


def _first_per_group(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Index of the lowest score in each group (ties: lowest index); groups need not be sorted."""
    order = np.lexsort((np.arange(len(groups)), scores, groups))
    first = np.r_[True, groups[order][1:] != groups[order][:-1]]
    return order[first]


def choose_kept(rows: np.ndarray, cluster: np.ndarray, policy: str, seed: int = 0,
                unit_vectors: np.ndarray | None = None) -> np.ndarray:
    """Boolean keep mask: exactly one row per cluster, by `policy`.

    first: the row that comes first in the input. random: the row with the smallest seeded hash of its
    row number (same seed, same choice). closest-to-centroid: the row with the highest cosine to the mean
    of the cluster's unit vectors (`unit_vectors` aligned with `rows`); ties go to the first row.
    """
    if policy == "first":
        scores = rows.astype(np.float64)
    elif policy == "random":
        scores = mix64(rows.astype(np.uint64) ^ mix64(np.uint64(seed))).astype(np.float64)
    elif policy == "closest-to-centroid":
        if unit_vectors is None:
            raise ValueError("keep policy closest-to-centroid needs the cluster members' vectors")
        labels, group = unique_inverse(cluster)
        centroids = np.zeros((len(labels), unit_vectors.shape[1]), dtype=np.float64)
        np.add.at(centroids, group, unit_vectors)
        norms = np.linalg.norm(centroids, axis=1)
        norms[norms == 0] = 1.0
        scores = -np.einsum("ij,ij->i", unit_vectors, centroids[group] / norms[group, None])
        scores = np.round(scores, 12)  # ties within rounding go to the first row
    else:
        raise ValueError(f"--keep must be one of {', '.join(KEEP_POLICIES)}, got {policy!r}")
    keep = np.zeros(len(rows), dtype=bool)
    keep[_first_per_group(cluster, scores)] = True
    return keep


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float64); zero rows stay zero."""
    m = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


@dataclasses.dataclass
class DuplicateRows:
    """Per-row result for every row in a verified pair at or above the lowest threshold, sorted by row.

    Rows not listed are alone: their cluster is themselves, they are kept, and no similar row was found.
    """

    rows: np.ndarray  # int64, sorted
    cluster_id: np.ndarray  # int64: smallest row number in the cluster at the main threshold
    keep: np.ndarray  # bool
    max_similarity: np.ndarray  # float32: highest cosine to another row among the verified pairs

    def lookup(self, first_row: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows first_row .. first_row + count - 1 -> (cluster_id, keep, max_similarity, has_similar)."""
        wanted = np.arange(first_row, first_row + count, dtype=np.int64)
        at = np.searchsorted(self.rows, wanted)
        at_clipped = np.minimum(at, max(len(self.rows) - 1, 0))
        found = (at < len(self.rows)) & (self.rows[at_clipped] == wanted) if len(self.rows) else \
            np.zeros(count, dtype=bool)
        idx = at_clipped[found]
        cluster = wanted.copy()
        cluster[found] = self.cluster_id[idx]
        keep = np.ones(count, dtype=bool)
        keep[found] = self.keep[idx]
        similarity = np.zeros(count, dtype=np.float32)
        similarity[found] = self.max_similarity[idx]
        return cluster, keep, similarity, found


def duplicate_counts(a: np.ndarray, b: np.ndarray, n_rows: int) -> dict:
    """Pairs, clusters and rows removed (one row kept per cluster) for one set of duplicate edges."""
    nodes, component = connected_components(a, b)
    clusters = int(len(sorted_unique(component)))
    removed = int(len(nodes)) - clusters
    return {"pairs": int(len(a)), "clusters": clusters, "rows_in_clusters": int(len(nodes)),
            "rows_removed": removed, "rows_kept": n_rows - removed}


def resolve_duplicates(a: np.ndarray, b: np.ndarray, similarity: np.ndarray, exact: np.ndarray, n_rows: int,
                       threshold: float, sweep: Sequence[float] = (), policy: str = "first", seed: int = 0,
                       vector_rows: np.ndarray | None = None,
                       unit_vectors: np.ndarray | None = None) -> tuple[DuplicateRows, dict]:
    """Verified pairs (a < b) -> clusters at `threshold`, kept rows, and counts at every sweep threshold.

    `vector_rows`/`unit_vectors` (sorted by row) are needed only by the closest-to-centroid policy.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    similarity = np.asarray(similarity, dtype=np.float64)
    listed, inverse = unique_inverse(np.concatenate([a, b]))
    best = np.full(len(listed), -np.inf)
    np.maximum.at(best, inverse, np.concatenate([similarity, similarity]))

    main = similarity >= threshold
    nodes, component = connected_components(a[main], b[main])
    cluster_id = listed.copy()
    keep = np.ones(len(listed), dtype=bool)
    if len(nodes):
        at = np.searchsorted(listed, nodes)
        cluster_id[at] = component
        vectors = None
        if policy == "closest-to-centroid":
            if vector_rows is None or unit_vectors is None:
                raise ValueError("keep policy closest-to-centroid needs the cluster members' vectors")
            vectors = unit_vectors[np.searchsorted(vector_rows, nodes)]
        keep[at] = choose_kept(nodes, component, policy, seed, vectors)

    counts = {"threshold": threshold, **duplicate_counts(a[main], b[main], n_rows)}
    by_threshold = [{"threshold": t, **duplicate_counts(a[similarity >= t], b[similarity >= t], n_rows)}
                    for t in sorted(set(sweep))]
    exact_counts = duplicate_counts(a[exact], b[exact], n_rows)
    summary = {"rows": n_rows, **{k: v for k, v in counts.items() if k != "threshold"},
               "threshold": threshold, "keep_policy": policy, "sweep": by_threshold, "exact_duplicates": exact_counts}
    return DuplicateRows(listed, cluster_id, keep, best.astype(np.float32)), summary
