"""Guest pruning: keep only the guest rows of a partition that can change a decision of its home rows.

On data with few duplicates most rows are kept, and a boundary row is sent as a guest to up to
--max-guests neighbouring partitions, so a partition can hold more guests than home rows while almost
none of them is a duplicate of anything there. Greedy decides a row from its earlier rows at >= threshold
(their own decisions decided the same way), so a home row's decision depends only on the rows joined to
it by a path of such pairs, each row earlier than the next. A guest with no such path to a home row is
dropped: the greedy pass over the rest decides every home row exactly as over all rows (the kept flag and
the representative; `best` of a kept row, a cosine below the threshold, may then miss a dropped guest).

The search is one blocked matrix product of the guests against the later home rows, then a few rounds
against the guests found so far; a margin below the threshold absorbs float32 rounding, so a doubtful
guest is kept. Keeping a guest that is not needed changes no home decision.
"""

from __future__ import annotations

import numpy as np

from ae_tf.vectors.greedy import BLOCK_ENTRIES, decision_margin

MAX_ROUNDS = 32  # rounds of the closure over guests; past them every remaining guest is kept


def _reaches(units: np.ndarray, sources: np.ndarray, targets: np.ndarray, floor: float) -> np.ndarray:
    """For rows at `sources` (positions in priority order, sorted): whether some row at `targets` (sorted)
    later than it has a cosine >= floor. Blocks of sources go against the targets after the block's first
    source, in slices of about BLOCK_ENTRIES products."""
    found = np.zeros(len(sources), dtype=bool)
    if len(sources) == 0 or len(targets) == 0:
        return found
    target_units = np.ascontiguousarray(units[targets].T)
    step = max(256, min(4096, BLOCK_ENTRIES // max(len(targets), 1)))
    for lo in range(0, len(sources), step):
        at = sources[lo:lo + step]
        first = int(np.searchsorted(targets, at[0], side="right"))
        if first == len(targets):
            break
        block = units[at]
        cols = max(1, BLOCK_ENTRIES // len(at))
        best = np.full(len(at), -np.inf, dtype=np.float32)
        for c in range(first, len(targets), cols):
            np.maximum(best, (block @ target_units[:, c:c + cols]).max(axis=1), out=best)
        found[lo:lo + step] = best >= floor
    return found


def needed_guests(units: np.ndarray, home: np.ndarray, threshold: float) -> np.ndarray:
    """Mask over rows in priority order (float32 unit rows; `home`: decided here): the home rows and the
    guests that can change a home row's greedy decision at >= threshold. Guests later than every home
    row, and guests whose pairs lead only to other dropped guests, are left out."""
    keep = home.copy()
    guests = np.flatnonzero(~home)
    if len(guests) == 0:
        return keep
    floor = float(threshold) - decision_margin(units.shape[1])
    frontier = np.flatnonzero(home)
    for _ in range(MAX_ROUNDS):
        reach = _reaches(units, guests, frontier, floor)
        frontier = guests[reach]
        if len(frontier) == 0:
            return keep
        keep[frontier] = True
        guests = guests[~reach]
        if len(guests) == 0:
            return keep
    keep[guests] = True  # still growing: keep the rest (exact, only slower)
    return keep
