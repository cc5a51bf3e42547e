"""Greedy representatives: the core of dedup, on numpy arrays of unit vectors in priority order.

A row is kept unless its cosine to an earlier kept row is >= threshold; a removed row is assigned to the
most similar earlier kept row. So every removed row is at >= threshold to the row kept in its place (no
chaining), and no two kept rows are at >= threshold. Work goes in blocks of rows, each compared with one
matrix product against the rows kept so far; on heavily duplicated data the kept set is small, so this is
far cheaper than all pairs, and memory is linear in rows whatever the cluster sizes.

Decisions are made in float32 with the threshold raised by a bound on float32 rounding (`decision_margin`),
so a removed row's float64 cosine to its representative is never below the threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CHUNK = 1024  # rows resolved among themselves at once (a CHUNK x CHUNK similarity matrix)
BLOCK_ENTRIES = 1 << 22  # block rows x kept rows compared in one matrix product (16 MB of float32)


def decision_margin(width: int) -> float:
    """A bound on the float32 error of a dot product of two unit vectors of `width` floats."""
    return (width + 2) * 6e-8


@dataclasses.dataclass
class GreedyResult:
    """Per row (in the order given): kept, its representative (an index; itself when kept), the float32
    cosine to it, the highest cosine to any earlier kept row (-inf: none), and further kept neighbours."""

    kept: np.ndarray  # bool [n]
    representative: np.ndarray  # int64 [n]
    best: np.ndarray  # float32 [n]
    extra_rows: np.ndarray  # int64 [m]: row index of a removed row ...
    extra_neighbours: np.ndarray  # int64 [m]: ... and another earlier kept row at >= threshold

    @property
    def rows_kept(self) -> int:
        return int(self.kept.sum())


def _resolve_chunk(local: np.ndarray, t: float) -> np.ndarray:
    """Greedy in order among rows that no earlier kept row removed: `local` holds their cosines (the
    diagonal -inf); row i is a duplicate of an earlier row j when local[i, j] >= t. Returns the kept mask.
    Only rows with a pair among them are worked on (on sparse data: none, or a few). Rounds of
    matrix-vector products decide every row whose earlier neighbours are all decided; a chain is resolved
    one link per round, then by a plain loop."""
    m = len(local)
    keep = np.ones(m, dtype=bool)
    similar = local >= t
    involved = np.flatnonzero(similar.any(axis=1))  # symmetric: rows with an earlier or a later pair
    if len(involved) == 0:  # no duplicates among them (the usual case on sparse data)
        return keep
    sub = np.tril(similar[np.ix_(involved, involved)], -1)
    adjacency = sub.astype(np.float32)
    state = np.zeros(len(involved), dtype=np.int8)  # 0 undecided, 1 kept, 2 removed
    for _ in range(64):
        undecided = np.flatnonzero(state == 0)
        if len(undecided) == 0:
            break
        rows = adjacency[undecided]
        has_kept = rows @ (state == 1).astype(np.float32) > 0
        all_decided = rows @ (state == 0).astype(np.float32) == 0
        state[undecided[has_kept]] = 2
        state[undecided[~has_kept & all_decided]] = 1
    for i in np.flatnonzero(state == 0):  # long dependency chains: finish in order
        state[i] = 2 if (sub[i, :i] & (state[:i] == 1)).any() else 1
    keep[involved] = state == 1
    return keep


class _KeptSet:
    """Unit vectors of the rows kept so far, stored transposed (BLAS multiplies by it fastest), grown by
    doubling, and their row indices."""

    def __init__(self, width: int):
        self.columns = np.zeros((width, 256), dtype=np.float32)
        self.rows = np.zeros(256, dtype=np.int64)
        self.size = 0

    def product(self, block: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """block @ kept[lo:hi].T"""
        return block @ self.columns[:, lo:self.size if hi is None else hi]

    def add(self, units: np.ndarray, rows: np.ndarray) -> None:
        need = self.size + len(rows)
        if need > len(self.rows):
            capacity = max(need, 2 * len(self.rows))
            grown = np.zeros((self.columns.shape[0], capacity), dtype=np.float32)
            grown[:, : self.size] = self.columns[:, : self.size]
            self.columns = grown
            self.rows = np.concatenate([self.rows[: self.size], np.zeros(capacity - self.size, dtype=np.int64)])
        self.columns[:, self.size:need] = units.T
        self.rows[self.size:need] = rows
        self.size = need


def _top_extra(similarity: np.ndarray, columns: np.ndarray, rep: np.ndarray, threshold: float,
               limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `limit` most similar columns at >= threshold per row, other than the row's representative."""
    if limit <= 0 or similarity.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sim = np.where(columns[None, :] == rep[:, None], -np.inf, similarity)
    k = min(limit, sim.shape[1])
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < sim.shape[1] else np.tile(np.arange(sim.shape[1]),
                                                                                         (len(sim), 1))
    values = np.take_along_axis(sim, top, axis=1)
    i, j = np.nonzero(values >= threshold)
    return i.astype(np.int64), columns[top[i, j]]


def greedy_representatives(units: np.ndarray, threshold: float, extra_per_row: int = 0,
                           on_block=None) -> GreedyResult:
    """Greedy representatives of float32 unit rows given in priority order (earliest first).

    `extra_per_row`: also return up to this many further earlier kept rows at >= threshold per removed row.
    `on_block(rows_done)` is called after each block (progress).
    """
    units = np.ascontiguousarray(units, dtype=np.float32)
    n, width = units.shape
    t = float(threshold) + decision_margin(width)
    kept = np.zeros(n, dtype=bool)
    rep = np.arange(n, dtype=np.int64)
    best = np.full(n, -np.inf, dtype=np.float32)
    extra_rows, extra_nbrs = [], []
    kept_set = _KeptSet(width)
    lo = 0
    while lo < n:
        # rows kept inside a block are compared with the block's rows too, so the block stays small while
        # few rows are kept: every product below is at most about BLOCK_ENTRIES entries
        hi = min(n, lo + max(CHUNK, BLOCK_ENTRIES // max(kept_set.size, 4 * CHUNK)))
        block = units[lo:hi]
        before = kept_set.size
        if before:
            sims = kept_set.product(block, 0, before)
            arg = sims.argmax(axis=1)
            best[lo:hi] = sims[np.arange(hi - lo), arg]
            rep[lo:hi] = kept_set.rows[arg]
        else:
            sims = np.zeros((hi - lo, 0), dtype=np.float32)
        open_rows = np.flatnonzero(best[lo:hi] < t)  # block positions no earlier kept row removed
        for c in range(0, len(open_rows), CHUNK):
            chunk = open_rows[c:c + CHUNK]
            added = kept_set.size - before  # kept earlier in this block: may remove rows of this chunk
            if added:
                s = kept_set.product(units[lo + chunk], before)
                a = s.argmax(axis=1)
                value = s[np.arange(len(chunk)), a]
                better = value > best[lo + chunk]
                best[lo + chunk[better]] = value[better]
                rep[lo + chunk[better]] = kept_set.rows[before + a[better]]
                chunk = chunk[value < t]
            if len(chunk) == 0:
                continue
            local = units[lo + chunk] @ units[lo + chunk].T
            np.fill_diagonal(local, -np.inf)
            keep_local = _resolve_chunk(local, t)
            new = chunk[keep_local]
            kept[lo + new] = True
            gone = np.flatnonzero(~keep_local)  # removed by an earlier row of this chunk
            if len(gone):
                columns = np.flatnonzero(keep_local)
                inside = local[np.ix_(gone, columns)]
                inside[columns[None, :] >= gone[:, None]] = -np.inf  # only earlier rows count
                a = inside.argmax(axis=1)
                value = inside[np.arange(len(gone)), a]
                better = value > best[lo + chunk[gone]]
                best[lo + chunk[gone[better]]] = value[better]
                rep[lo + chunk[gone[better]]] = lo + chunk[columns[a[better]]]
            rep[lo + new] = lo + new
            kept_set.add(units[lo + new], lo + new)
        # a row removed by the kept set may be closer still to a row kept later in its block
        added = kept_set.size - before
        removed = np.flatnonzero(~kept[lo:hi])
        if added and len(removed):
            new_rows = kept_set.rows[before:kept_set.size]
            step = max(1, BLOCK_ENTRIES // added)
            for r in range(0, len(removed), step):
                part = removed[r:r + step]
                s = kept_set.product(units[lo + part], before)
                s[new_rows[None, :] >= (lo + part)[:, None]] = -np.inf  # only earlier rows count
                a = s.argmax(axis=1)
                value = s[np.arange(len(part)), a]
                better = value > best[lo + part]
                best[lo + part[better]] = value[better]
                rep[lo + part[better]] = new_rows[a[better]]
        if extra_per_row and len(removed):
            columns = kept_set.rows[:kept_set.size]
            s = kept_set.product(units[lo + removed])
            s[columns[None, :] >= (lo + removed)[:, None]] = -np.inf
            i, j = _top_extra(s, columns, rep[lo + removed], t, extra_per_row)
            extra_rows.append(lo + removed[i])
            extra_nbrs.append(j)
        lo = hi
        if on_block is not None:
            on_block(hi)
    rep[kept] = np.flatnonzero(kept)
    empty = np.zeros(0, dtype=np.int64)
    return GreedyResult(kept, rep, best, np.concatenate(extra_rows) if extra_rows else empty,
                        np.concatenate(extra_nbrs) if extra_nbrs else empty)


def cosine64(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-aligned cosine in float64; zero rows give 0."""
    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    norms = np.linalg.norm(x64, axis=1) * np.linalg.norm(y64, axis=1)
    dot = np.einsum("ij,ij->i", x64, y64)
    return np.divide(dot, norms, out=np.zeros(len(x64)), where=norms > 0)


def unit_rows32(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 unit rows, mask of zero rows); zero rows stay zero."""
    m = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    zero = norms[:, 0] == 0
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0).astype(np.float32), zero
