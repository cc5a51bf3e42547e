"""Choosing the newest N partitions of a partitioned dataset (what a scheduled retrain trains on).

A partition is the directory that directly holds Parquet files, e.g. Hive-style `events/dt=2026-06-01/`.
"Newest" is the last in name order, so partition names must sort by time (dt=YYYY-MM-DD, hour=HH, ...):
names are deterministic and cheap to list on any filesystem, unlike modification times on object stores.
"""

from __future__ import annotations

import posixpath

from ae_tf import storage
from ae_tf.errors import InputNotFound, InvalidInput


def _parent(path: str) -> str:
    return posixpath.dirname(path.rstrip("/"))


def newest_partitions(pattern: str, count: int) -> list[str]:
    """The `count` newest partition directories among what `pattern` matches, oldest first.

    `pattern` may match partition directories (`events/dt=*`) or files in them (`events/dt=*/*.parquet`).
    """
    if count < 1:
        raise InvalidInput(f"--latest-partitions must be at least 1, got {count}")
    partitions = set()
    for match in storage.glob(pattern):
        partitions.add(match.rstrip("/") if storage.isdir(match) else _parent(match))
    if not partitions:
        raise InputNotFound(f"{pattern}: no partition matches")
    chosen = sorted(partitions)[-count:]
    return chosen
