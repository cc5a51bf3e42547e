"""Spherical k-means on a sample, and routing rows to partitions (SemDeDup, NeMo Curator's semantic dedup).

Dedup works inside partitions so that work spreads over workers and each comparison set stays small.
Centroids are fitted on the launch sample after greedy dedup of the sample itself, so a dense blob of
near copies gets one centroid, not many: partitions follow distinct content, not row counts.
A row near a boundary is also sent, as a read-only guest, to the next nearest partitions within a margin,
so that duplicates across the boundary still meet.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ae_tf.vectors.hashing import mix64


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def fit_spherical_kmeans(units: np.ndarray, k: int, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """k unit centroids (float32) of unit rows: k-means++ seeding (seeded, deterministic), then Lloyd
    iterations on cosine; an empty cluster takes the row farthest from its centroid."""
    x = np.asarray(units, dtype=np.float32)
    n = len(x)
    k = max(1, min(k, n))
    rng = np.random.default_rng(int(mix64(np.uint64(seed)) >> np.uint64(1)))
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(n)]
    closest = 1.0 - x @ centres[0]
    for i in range(1, k):  # k-means++ on cosine distance
        weights = np.maximum(closest, 0) ** 2
        total = weights.sum()
        pick = rng.choice(n, p=weights / total) if total > 0 else rng.integers(n)
        centres[i] = x[pick]
        closest = np.minimum(closest, 1.0 - x @ centres[i])
    for _ in range(iterations):
        sims = x @ centres.T
        label = sims.argmax(axis=1)
        sums = np.stack([np.bincount(label, weights=x[:, j], minlength=k) for j in range(x.shape[1])], axis=1)
        counts = np.bincount(label, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            worst = np.argsort(sims[np.arange(n), label])[: len(empty)]
            sums[empty] = x[worst]
        new = _normalise(sums).astype(np.float32)
        if np.allclose(new, centres, atol=1e-6):
            break
        centres = new
    return centres


@dataclasses.dataclass
class Routing:
    """Where each row of a batch goes: its home partition, and guest copies (row index, partition)."""

    home: np.ndarray  # int64 [n]
    home_cosine: np.ndarray  # float32 [n]: cosine to the home centroid
    guest_rows: np.ndarray  # int64 [g]
    guest_partitions: np.ndarray  # int64 [g]


def route_rows(units: np.ndarray, centroids: np.ndarray, margin: float, max_guests: int) -> Routing:
    """Home = nearest centroid by cosine; guests = up to `max_guests` further centroids whose cosine is
    within `margin` of the home centroid's."""
    sims = units @ centroids.T
    home = sims.argmax(axis=1)
    n = len(units)
    top = sims[np.arange(n), home]
    if max_guests <= 0 or centroids.shape[0] < 2 or n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Routing(home.astype(np.int64), top, empty, empty)
    sims[np.arange(n), home] = -np.inf
    # the margin test first: most rows have no or few centroids within it, so the k nearest are sorted
    # out only for the rows with more than max_guests candidates (argpartition over all rows is slow)
    close = sims >= (top - margin)[:, None]
    count = close.sum(axis=1)
    crowded = np.flatnonzero(count > max_guests)
    if len(crowded):
        k = min(max_guests, centroids.shape[0] - 1)
        sub = sims[crowded]
        nearest = np.argpartition(-sub, k - 1, axis=1)[:, :k]
        close[crowded] = False
        close[crowded[:, None], nearest] = True
    rows, partitions = np.nonzero(close)
    return Routing(home.astype(np.int64), top, rows.astype(np.int64), partitions.astype(np.int64))
