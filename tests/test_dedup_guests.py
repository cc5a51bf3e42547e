"""Guest pruning (ae_tf.vectors.guests): dropping guests that cannot change a home decision changes none."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ae_tf.embeddings import embedding_array
from ae_tf.vectors.duplicates import PartitionRows, dedup_partition, priority_keys
from ae_tf.vectors.guests import needed_guests
from ae_tf.vectors.hashing import row_hash
from pipelines import dedup
from pipelines.parts import dedup_plan

DIM = 16
T = 0.95


def near(x: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """Unit rows at exactly `cosine` to the unit rows x, in random directions."""
    d = rng.normal(size=x.shape)
    d -= np.sum(d * x, 1, keepdims=True) * x
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return cosine * x + np.sqrt(1 - cosine**2) * d


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def partition(seed: int = 0):
    """Home rows and guests, numbered in priority order, with: guests that are copies of home rows (earlier
    and later), chains guest -> guest -> home (the first guest is not near the home row, yet decides it),
    guest pairs that meet no home row, and many unrelated guests."""
    rng = np.random.default_rng(seed)
    home = unit(rng.normal(size=(400, DIM)))
    pieces = [(home, True)]
    pieces.append((near(home[:40], 0.97, rng), False))  # guest copies of home rows
    starts = unit(rng.normal(size=(30, DIM)))
    second = near(starts, 0.97, rng)
    third = near(second, 0.97, rng)  # cosine to `starts` about 0.88 < T
    pieces += [(starts, False), (second, False), (third, True)]
    loose = unit(rng.normal(size=(50, DIM)))
    pieces += [(loose, False), (near(loose, 0.98, rng), False)]  # guest pairs with no home row near
    pieces.append((unit(rng.normal(size=(800, DIM))), False))
    units = np.concatenate([p for p, _ in pieces]).astype(np.float32)
    is_home = np.concatenate([np.full(len(p), h) for p, h in pieces])
    order = rng.permutation(len(units))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    # the chains in order: start, then its second row, then the home row, wherever they are placed
    chain = np.sort(rank[440:530].reshape(3, 30), axis=0)
    rank[440:530] = chain.reshape(-1)
    rows = np.empty(len(units), dtype=np.int64)
    rows[:] = rank
    primary, secondary = priority_keys(rows, "first")
    part = PartitionRows(rows, units, primary, secondary, is_home, row_hash(units),
                         np.where(is_home, 0, 1).astype(np.int64))
    return part, (rank[440:470], rank[470:500], rank[500:530]), rank[530:630]


def test_pruning_keeps_every_home_decision():
    part, (starts, seconds, ends), loose = partition()
    full, full_stats = dedup_partition(part, T)
    pruned, stats = dedup_partition(part, T, prune_guests=True)
    for name in ("rows", "kept", "representative", "similarity", "exact", "guest_representative", "fallback"):
        np.testing.assert_array_equal(getattr(pruned, name), getattr(full, name), err_msg=name)
    assert stats.guest_rows == full_stats.guest_rows == int((~part.home).sum())
    assert stats.guest_rows_compared < stats.guest_rows // 4  # most guests meet no home row
    # the chains: a start (kept) removes its second row, so the end row is kept; a pass without the
    # starts would keep the seconds and remove the ends, so the starts are needed though far from home
    assert full.kept[np.searchsorted(full.rows, ends)].mean() > 0.5
    order = np.lexsort((part.rows, part.secondary, part.primary))
    mask = needed_guests(part.units[order], part.home[order], T)
    needed_rows = set(part.rows[order][mask].tolist())
    assert set(starts.tolist()) <= needed_rows and set(seconds.tolist()) <= needed_rows
    assert not set(loose.tolist()) & needed_rows  # guest pairs that meet no home row are dropped


def test_pruning_with_no_guests_or_only_guests_near():
    rng = np.random.default_rng(3)
    units = unit(rng.normal(size=(50, DIM))).astype(np.float32)
    np.testing.assert_array_equal(needed_guests(units, np.ones(50, dtype=bool), T), np.ones(50, dtype=bool))
    guests = near(units.astype(np.float64), 0.99, rng).astype(np.float32)  # every guest is a copy of a home row
    both = np.concatenate([guests, units])
    home = np.r_[np.zeros(50, dtype=bool), np.ones(50, dtype=bool)]
    assert needed_guests(both, home, T).all()
    later = np.concatenate([units, guests])  # guests after every home row: they decide nothing
    np.testing.assert_array_equal(needed_guests(later, home[::-1], T), home[::-1])


def sparse_rows(rows: int, seed: int = 0) -> np.ndarray:
    """Random rows with a few planted near copies: most rows kept, so the planner prunes guests."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(rows - rows // 10, DIM))
    pick = rng.integers(0, len(base), rows // 10)
    copies = near(unit(base[pick]), 0.97, rng) * np.linalg.norm(base[pick], axis=1, keepdims=True)
    x = np.concatenate([base, copies])
    return x[rng.permutation(len(x))].astype(np.float32)


def test_pipeline_decisions_are_the_same_with_and_without_pruning(tmp_path, monkeypatch):
    x = sparse_rows(3000)
    os.makedirs(tmp_path / "in")
    for i, (lo, hi) in enumerate(((0, 1500), (1500, 3000))):
        pq.write_table(pa.table({"id": [f"row-{j}" for j in range(lo, hi)], "embedding": embedding_array(x[lo:hi])}),
                       tmp_path / "in" / f"part-{i}.parquet")
    frames, summaries = [], []
    for fraction in (dedup_plan.SPARSE_KEPT_FRACTION, 2.0):  # 2.0: never prune
        monkeypatch.setattr(dedup_plan, "SPARSE_KEPT_FRACTION", fraction)
        out = tmp_path / f"out-{fraction}"
        summaries.append(dedup.run(["--input", str(tmp_path / "in"), "--output", str(out), "--partitions", "8",
                                    "--margin", "0.2", "--batch-rows", "500", "--progress-interval", "0"]))
        frames.append(pd.read_parquet(out / "annotated").sort_values("id").reset_index(drop=True))
    pruned, full = summaries
    assert pruned["partitions"]["guests_pruned"] and not full["partitions"]["guests_pruned"]
    assert pruned["partitions"]["guest_rows"] == full["partitions"]["guest_rows"] > 0
    assert pruned["partitions"]["guest_rows_compared"] < full["partitions"]["guest_rows_compared"]
    assert 0 < pruned["rows_removed"] == full["rows_removed"]
    for column in ("cluster_id", "keep"):
        np.testing.assert_array_equal(frames[0][column].to_numpy(), frames[1][column].to_numpy(), err_msg=column)
    assert pruned["checks"]["removed_below_threshold"] == 0
