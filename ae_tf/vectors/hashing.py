"""Deterministic, vectorised 64-bit hashing for sampling, tie-breaking and bucket keys.

Python's `hash()` is salted per process and a per-row loop is slow; these are plain numpy over whole
arrays, so a row gets the same number on every worker, in every run, whatever the batch boundaries.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray | int) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 that spreads every input bit over the output."""
    with np.errstate(over="ignore"):  # wrapping around is the point
        z = np.asarray(values).astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        return z ^ (z >> np.uint64(31))


def row_hash(matrix: np.ndarray, seed: int = 0) -> np.ndarray:
    """One uint64 per row of a float32 matrix, from the row's bytes: equal rows hash equally."""
    words = np.ascontiguousarray(matrix, dtype=np.float32).view(np.uint32)
    h = np.full(len(words), mix64(np.uint64(seed)), dtype=np.uint64)
    for j in range(words.shape[1]):
        h = mix64(h ^ words[:, j].astype(np.uint64))
    return h


def unit_interval(hashes: np.ndarray) -> np.ndarray:
    """uint64 hashes -> floats uniform in [0, 1) (53 bits), for sampling with a fraction."""
    return (np.asarray(hashes, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0**-53
