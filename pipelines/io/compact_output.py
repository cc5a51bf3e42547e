"""The writer side of compact codes (`--embedding-dtype float16|int8` on encode and refresh).

int8 needs its per-dimension range before the first shard is written, and every shard of one output (or
one store version) must share it: it is calibrated at launch, once, by encoding a small sample of the
input with the model in the launching process (ae_tf.vectors.codes says what the range and the error bound are).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ae_tf.errors import InvalidInput
from ae_tf.inputs.features import FeatureSpec, validate_rows
from ae_tf.model.encoder import BatchEncoder
from ae_tf.vectors.codes import Codec, calibrate
from pipelines.io.parquet import ParquetSplit, open_parquet

log = logging.getLogger(__name__)

SAMPLE_ROWS = 8192
SAMPLE_SPLITS = 16


def add_embedding_dtype_flag(parser) -> None:
    parser.add_argument("--embedding-dtype", choices=("float32", "float16", "int8"), default="float32",
                        help="how embeddings are stored: float32 (default), float16 (half the bytes), or int8 "
                             "with a per-dimension scale and offset in the file metadata (a quarter)")


def _sample(splits: Sequence[ParquetSplit], columns: Sequence[str], spec: FeatureSpec) -> list[pa.Table]:
    chosen = np.unique(np.linspace(0, len(splits) - 1, min(SAMPLE_SPLITS, len(splits))).astype(int))
    per_split = max(1, SAMPLE_ROWS // len(chosen))
    tables = []
    for i in chosen:
        split = splits[int(i)]
        reader = open_parquet(split.path)
        for batch in reader.iter_batches(batch_size=per_split, columns=list(columns), row_groups=split.row_groups):
            check = validate_rows(batch, spec)
            tables.append(pa.Table.from_batches([batch if check.all_valid else batch.filter(pa.array(check.valid))]))
            break
    return tables


def resolve_codec(dtype: str, model_dir: str, splits: Sequence[ParquetSplit], columns: Sequence[str],
                  spec: FeatureSpec, given: Codec | None = None) -> Codec | None:
    """None for float32 (the plain contract); a given codec as it is (a store version keeps its own);
    else the codec for `dtype`, int8 calibrated on a sample of the input encoded by the model."""
    if given is not None:
        if given.dtype != dtype:
            raise InvalidInput(f"--embedding-dtype {dtype}: this output is stored as {given.dtype}")
        return given if dtype != "float32" else None
    if dtype == "float32":
        return None
    if dtype == "float16":
        return Codec("float16")
    model = BatchEncoder.load(model_dir)
    parts = [model.encode(t)[0] for t in _sample(splits, columns, spec) if t.num_rows]
    sample = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    sample = sample[np.isfinite(sample).all(axis=1)] if sample.size else sample
    codec = calibrate(sample, "int8")
    log.info("int8 codes calibrated on %d sampled rows: max error %.3g within the range",
             len(sample), max(codec.error_bound()))
    return codec
