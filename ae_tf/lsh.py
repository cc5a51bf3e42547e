"""Random-hyperplane LSH with banding: which rows might be near duplicates, without comparing all pairs.

Every row gets sign bits, one per random hyperplane through the origin. Two vectors at cosine similarity
s fall on the same side of one random hyperplane with probability

    p(s) = 1 - arccos(s) / pi

`bands * rows` bits are cut into `bands` bands of `rows` bits: two vectors share a bucket in a band when
all its bits agree. Each entry also carries a 128-bit sketch (128 more hyperplanes); a pair sharing a
bucket is kept only when its sketches differ in at most `sketch_max_distance` bits, which drops most
pairs that are far from the threshold before they cost a join. So at similarity s

    recall(s) = (1 - (1 - p(s) ** rows) ** bands) * P[Binomial(128, 1 - p(s)) <= sketch_max_distance]

The sketch limit is set so the second factor is >= 1 - 1e-4 at the threshold t, and then
`bands = ceil(log(1 - R') / log(1 - p(t) ** rows))` with R' = R / (that factor) for a target recall R.
Each `rows` gives such a `bands`: larger `rows` means more bands (more work per input row) and fewer
collisions (less work per candidate pair). `choose_banding` picks the cheapest `rows` for the data,
estimating collisions from the pairwise similarities of a sample. Candidates are then verified with the
exact cosine, so LSH decides recall only, never precision.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ae_tf.hashing import mix64

MAX_ROWS_PER_BAND = 40  # a band's bits, plus the band number above them, fit in one uint64 key
MAX_BANDS = 1 << 16
SKETCH_BITS = 128
SKETCH_MISS = 1e-4  # chance that the sketch filter drops a pair exactly at the threshold
# Relative costs in the dedup pipeline, measured on 1M x 32 rows on 2 cores (local runner): one (row,
# band) entry hashed, shuffled (24 bytes) and sorted ~1 us; one pair hit generated in a bucket and
# compared by sketch ~0.1 us; one pair that passes the sketch, deduplicated, joined with both vectors
# and verified ~2 us.
ENTRY_COST = 1.0
HIT_COST = 0.1
SURVIVOR_COST = 2.0


def collision_probability(similarity: float | np.ndarray) -> float | np.ndarray:
    """p(s): chance that one random hyperplane does not separate two vectors at cosine similarity s."""
    return 1.0 - np.arccos(np.clip(similarity, -1.0, 1.0)) / np.pi


def _binomial_cdf(limit: int, n: int, q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return sum(math.comb(n, k) * q**k * (1.0 - q) ** (n - k) for k in range(limit + 1))


def sketch_pass_probability(similarity: float | np.ndarray, max_distance: int) -> float | np.ndarray:
    """Chance that two vectors at similarity s differ in at most `max_distance` of the sketch bits."""
    return _binomial_cdf(max_distance, SKETCH_BITS, 1.0 - collision_probability(similarity))


def sketch_max_distance(threshold: float, miss: float = SKETCH_MISS) -> int:
    """Smallest Hamming limit that keeps a pair at the threshold with probability >= 1 - miss."""
    for limit in range(SKETCH_BITS + 1):
        if sketch_pass_probability(threshold, limit) >= 1.0 - miss:
            return limit
    return SKETCH_BITS


def banding_recall(similarity: float | np.ndarray, bands: int, rows: int,
                   max_distance: int = SKETCH_BITS) -> float | np.ndarray:
    """Chance that a pair at similarity s shares a bucket in some band and passes the sketch filter."""
    band_hit = 1.0 - (1.0 - collision_probability(similarity) ** rows) ** bands
    return band_hit * sketch_pass_probability(similarity, max_distance)


def bands_for_recall(threshold: float, rows: int, recall: float = 0.99) -> int:
    """Fewest bands of `rows` bits that put pairs at `threshold` in a shared bucket with chance `recall`."""
    per_band = float(collision_probability(threshold)) ** rows
    if per_band >= 1.0:
        return 1
    return max(1, math.ceil(math.log(1.0 - recall) / math.log1p(-per_band)))


@dataclasses.dataclass(frozen=True)
class Banding:
    """The LSH parameters and what they promise, recorded in the dedup summary."""

    bands: int
    rows: int
    threshold: float
    sketch_max_distance: int
    recall: float  # at the threshold, by the formula in the module docstring
    expected_hits: float  # (pair, band) bucket collisions expected on the data, from the sample
    expected_survivors: float  # of those, the ones expected to pass the sketch filter

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "sketch_bits": SKETCH_BITS,
                "formula": "recall(s) = (1 - (1 - p(s)**rows)**bands) * P[Binomial(sketch_bits, 1 - p(s)) "
                           "<= sketch_max_distance], p(s) = 1 - arccos(s)/pi"}


def _similarity_histogram(sample_similarities: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, fraction of pairs per bin); no sample means an orthogonal background."""
    if sample_similarities is None or len(sample_similarities) == 0:
        return np.zeros(1), np.ones(1)
    counts, edges = np.histogram(np.clip(sample_similarities, -1, 1), bins=400, range=(-1.0, 1.0))
    return (edges[:-1] + edges[1:]) / 2, counts / counts.sum()


def choose_banding(threshold: float, n_rows: int, sample_similarities: np.ndarray | None = None,
                   recall: float = 0.99, rows: int | None = None, bands: int | None = None) -> Banding:
    """Bands and rows per band with recall >= `recall` at `threshold`, at the lowest estimated cost.

    cost = ENTRY_COST * bands * n_rows + HIT_COST * hits + SURVIVOR_COST * survivors, where hits and
    survivors are estimated from the sample's pairwise similarities. `rows` and/or `bands` given by the
    user are kept (a missing one is derived).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    if not 0.0 < recall < 1.0:
        raise ValueError(f"recall must be between 0 and 1 (exclusive), got {recall}")
    limit = sketch_max_distance(threshold)
    band_recall = min(recall / float(sketch_pass_probability(threshold, limit)), 1.0 - 1e-12)
    centres, weights = _similarity_histogram(sample_similarities)
    p = collision_probability(centres)
    passes = sketch_pass_probability(centres, limit)
    pairs = n_rows * (n_rows - 1) / 2.0

    if rows is not None:
        options = [(rows, bands or bands_for_recall(threshold, rows, band_recall))]
    else:
        options = [(r, bands_for_recall(threshold, r, band_recall)) for r in range(1, MAX_ROWS_PER_BAND + 1)]
        if bands is not None:
            reach = [r for r, b in options if b <= bands]
            options = [(max(reach) if reach else 1, bands)]
        options = [(r, b) for r, b in options if b <= MAX_BANDS] or options[:1]
    best = None
    for r, b in options:
        if not 1 <= r <= MAX_ROWS_PER_BAND or not 1 <= b <= MAX_BANDS:
            raise ValueError(f"rows per band must be 1..{MAX_ROWS_PER_BAND} and bands 1..{MAX_BANDS}, got {r} and {b}")
        per_band = float(np.sum(weights * p**r))
        hits = b * pairs * per_band
        survivors = b * pairs * float(np.sum(weights * p**r * passes))
        cost = ENTRY_COST * b * n_rows + HIT_COST * hits + SURVIVOR_COST * survivors
        if best is None or cost < best[0]:
            achieved = float(banding_recall(threshold, b, r, limit))
            best = (cost, Banding(b, r, threshold, limit, achieved, hits, survivors))
    return best[1]


class BandHasher:
    """Random hyperplanes (from a seed) -> a uint64 bucket key per (row, band) and a 128-bit sketch per row.

    A key holds the band's bits and the band number, passed through a bijective mix: two rows share a key
    exactly when they agree on every bit of that band, and keys spread evenly over partitions.
    """

    def __init__(self, dim: int, bands: int, rows: int, seed: int = 0):
        if not 1 <= rows <= MAX_ROWS_PER_BAND:
            raise ValueError(f"rows per band must be 1..{MAX_ROWS_PER_BAND}, got {rows}")
        self.dim, self.bands, self.rows = dim, bands, rows
        rng = np.random.default_rng(seed)
        self.planes = rng.standard_normal((dim, bands * rows + SKETCH_BITS)).astype(np.float32)
        self._band_tags = np.arange(bands, dtype=np.uint64) << np.uint64(MAX_ROWS_PER_BAND)

    def signatures(self, matrix: np.ndarray, first_band: int = 0, last_band: int | None = None,
                   chunk_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """float [n, dim] -> (keys uint64 [n, bands in first_band..last_band-1], sketches uint64 [n, 2]).

        A band's keys do not depend on which other bands are computed with it; memory is bounded per chunk.
        """
        last_band = self.bands if last_band is None else last_band
        matrix = np.asarray(matrix, dtype=np.float32)
        n, b, r = len(matrix), last_band - first_band, self.rows
        planes = np.concatenate([self.planes[:, first_band * r:last_band * r], self.planes[:, self.bands * r:]], axis=1)
        tags = self._band_tags[first_band:last_band]
        keys = np.empty((n, b), dtype=np.uint64)
        sketches = np.empty((n, SKETCH_BITS // 64), dtype=np.uint64)
        for lo in range(0, n, chunk_rows):
            bits = matrix[lo:lo + chunk_rows] @ planes > 0
            m = len(bits)
            words = np.zeros((m, b, 8), dtype=np.uint8)
            words[:, :, : (r + 7) // 8] = np.packbits(bits[:, : b * r].reshape(m, b, r), axis=2, bitorder="little")
            codes = words.view("<u8").reshape(m, b).astype(np.uint64)
            keys[lo:lo + m] = mix64(codes | tags)
            sketch = np.packbits(bits[:, b * r:], axis=1, bitorder="little")
            sketches[lo:lo + m] = sketch.view("<u8").astype(np.uint64)
        return keys, sketches
