"""`ae-tf train --cache auto|memory|none`: decoded training rows held in memory between passes.

Streaming reads and decodes every row again on every pass; for an image dataset that fits in memory that
is wasted work. The cache decodes each file's part of the split once (by the same functions the SavedModel
runs) into one float32 array. Every pass then walks the rows in the order the streaming pipeline would:
the same file order per epoch and the same seeded shuffle buffer, drawn over row indices instead of rows.
So with every row decodable a cached run trains the same model as a streamed one, only without the reads.
`auto` caches when the estimated decoded size (4 bytes x values per row x rows) fits the budget
(`--cache-limit-gb`, default a quarter of physical memory, at most 4 GB); `memory` always caches.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from ae_tf.errors import InvalidInput
from ae_tf.inputs.features import IMAGE, FeatureError, FeatureSpec

log = logging.getLogger(__name__)

AUTO, MEMORY, NONE = "auto", "memory", "none"
CACHE_MODES = (AUTO, MEMORY, NONE)
MAX_DEFAULT_BUDGET = 4 * 2**30
LOAD_BATCH_ROWS = 512


@dataclasses.dataclass(frozen=True)
class CacheDecision:
    """Whether this run caches, and the figures the choice was made on (logged and kept in metadata)."""

    mode: str
    enabled: bool
    estimated_bytes: int
    budget_bytes: int

    def describe(self) -> str:
        size = f"decoded rows ~{self.estimated_bytes / 2**20:,.0f} MB"
        if self.mode == NONE:
            return f"cache: off (--cache none); {size}, read and decoded again every pass"
        if self.mode == MEMORY:
            return f"cache: in memory (--cache memory); {size}"
        verdict = "in memory" if self.enabled else "off, streaming every pass"
        relation = "fit" if self.enabled else "exceed"
        return (f"cache: {verdict} (--cache auto: {size} {relation} the budget of "
                f"{self.budget_bytes / 2**20:,.0f} MB; --cache-limit-gb changes it)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_budget_bytes() -> int:
    """A quarter of physical memory, at most MAX_DEFAULT_BUDGET."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 4 * MAX_DEFAULT_BUDGET
    return int(min(MAX_DEFAULT_BUDGET, physical // 4))


def decoded_row_bytes(spec: FeatureSpec) -> int:
    """Bytes of one prepared row: float32 values (an image after decoding and resizing)."""
    values = spec.image.height * spec.image.width * spec.image.channels if spec.kind == IMAGE else spec.width
    return 4 * int(values)


def decide_cache(mode: str, spec: FeatureSpec, rows: int, limit_gb: float | None = None) -> CacheDecision:
    """The cache choice for `rows` rows (train and validation together) of this feature spec."""
    if mode not in CACHE_MODES:
        raise InvalidInput(f"--cache must be one of {', '.join(CACHE_MODES)}, got {mode!r}")
    budget = int(limit_gb * 2**30) if limit_gb is not None else default_budget_bytes()
    estimated = decoded_row_bytes(spec) * int(rows)
    enabled = mode == MEMORY or (mode == AUTO and estimated <= budget)
    return CacheDecision(mode, enabled, estimated, budget)


@dataclasses.dataclass
class CachedPart:
    """One part of the split (train or validation), decoded, with where each file's rows start."""

    values: np.ndarray  # float32 [rows, ...] as the model takes it
    offsets: list[int]  # file g holds values[offsets[g]:offsets[g + 1]]

    @property
    def rows(self) -> int:
        return len(self.values)

    def order(self, groups: list[int]) -> np.ndarray:
        """Row indices of the files in this order."""
        spans = [np.arange(self.offsets[g], self.offsets[g + 1], dtype=np.int64) for g in groups]
        return np.concatenate(spans) if spans else np.zeros(0, np.int64)


def load_part(source, part: str, expected_rows: int) -> CachedPart:
    """Decode one part of the split into memory, file by file (undecodable images are dropped, as streaming does)."""
    import tensorflow as tf

    from ae_tf.inputs.data import prepare_batches

    values = None
    offsets, filled = [0], 0
    for group in range(source.groups):
        batches = prepare_batches(source.stored_rows(part, [group]), source.spec, LOAD_BATCH_ROWS)
        for batch in batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
            if values is None:
                values = np.empty((max(expected_rows, len(batch)), *batch.shape[1:]), np.float32)
            if filled + len(batch) > len(values):  # more rows than counted: grow (never expected)
                values = np.concatenate([values, np.empty_like(values)])
            values[filled:filled + len(batch)] = batch
            filled += len(batch)
        offsets.append(filled)
    if values is None or filled == 0:
        raise FeatureError(f"{source.inputs[0]}: no {part} rows to cache")
    return CachedPart(values[:filled], offsets)


def cached_dataset(cached: CachedPart, source, batch_size: int, shuffle: bool = False,
                   shuffle_buffer: int = 100_000):
    """A re-iterable tf.data of model-input batches from memory, in the streaming pipeline's order."""
    import tensorflow as tf

    from ae_tf.inputs.data import shuffle_buffer_for

    epoch = {"n": 0}

    def indices():
        if shuffle:
            groups = source.group_order(epoch["n"], shuffle=True)
            epoch["n"] += 1
        else:
            groups = list(range(source.groups))
        yield cached.order(groups)

    table = tf.convert_to_tensor(cached.values)
    ds = tf.data.Dataset.from_generator(indices, output_signature=tf.TensorSpec([None], tf.int64)).unbatch()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer_for(source.spec, shuffle_buffer), seed=source.seed,
                        reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda idx: tf.gather(table, idx), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-cached.rows // batch_size)))
    return ds.prefetch(tf.data.AUTOTUNE)
