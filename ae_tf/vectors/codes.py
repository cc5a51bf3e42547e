"""Compact embedding codes: float32 (the default), float16, or int8 with a per-dimension scale and offset.

Why one module: the writer (encode, refresh) and every reader (read_embeddings, reduce, dedup) must agree
on how stored numbers become float32 vectors, so both sides go through `Codec` here and nowhere else.

How a code is stored, in the `embedding` column fixed_size_list<T>[k] of every shard:
  float32   T = float; no codec metadata (the original contract).
  float16   T = halffloat; x̂ = float16(x). Error: |x − x̂| ≤ 2^-11·|x| for |x| ≥ 2^-14 (and ≤ 2^-25 below),
            values beyond ±65504 are clipped to it.
  int8      T = int8; x̂_d = offset_d + scale_d·q_d with q_d = round((x_d − offset_d)/scale_d) in [−127, 127].
            offset_d, scale_d come from a calibration range [lo_d, hi_d] (the encoded values of a sample,
            widened by `MARGIN` of the span on each side): offset = (lo+hi)/2, scale = (hi−lo)/254.
            Error: |x_d − x̂_d| ≤ scale_d/2 for x_d within [lo_d, hi_d]; values outside are clipped to it.
The codec (dtype, scale, offset) is JSON in the Parquet file metadata under `ae_tf.embedding_codec` and
in the run's manifest.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa

from ae_tf.errors import InvalidInput

CODEC_KEY = b"ae_tf.embedding_codec"
DTYPES = ("float32", "float16", "int8")
MARGIN = 0.1  # int8 calibration range widened by 10% of its span on each side
INT8_LEVELS = 127
FLOAT16_MAX = 65504.0


@dataclasses.dataclass(frozen=True)
class Codec:
    """How stored embedding numbers map back to float32; scale/offset are per dimension (int8 only)."""

    dtype: str = "float32"
    scale: tuple[float, ...] = ()
    offset: tuple[float, ...] = ()

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise InvalidInput(f"--embedding-dtype: {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.dtype == "int8" and (not self.scale or len(self.scale) != len(self.offset)):
            raise ValueError("int8 codec needs one scale and one offset per dimension")

    @property
    def arrow_type(self) -> pa.DataType:
        return {"float32": pa.float32(), "float16": pa.float16(), "int8": pa.int8()}[self.dtype]

    @property
    def lo(self) -> np.ndarray:
        return np.asarray(self.offset, np.float64) - INT8_LEVELS * np.asarray(self.scale, np.float64)

    @property
    def hi(self) -> np.ndarray:
        return np.asarray(self.offset, np.float64) + INT8_LEVELS * np.asarray(self.scale, np.float64)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> Codec:
        if not data:
            return cls()
        return cls(data["dtype"], tuple(data.get("scale") or ()), tuple(data.get("offset") or ()))

    def encode(self, matrix: np.ndarray) -> np.ndarray:
        """float [rows, k] -> the stored numbers (float32, float16 or int8 [rows, k])."""
        matrix = np.asarray(matrix, dtype=np.float32)
        if self.dtype == "float32":
            return matrix
        if self.dtype == "float16":
            return np.clip(matrix, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16)
        scale = np.asarray(self.scale, np.float32)
        q = np.rint((matrix - np.asarray(self.offset, np.float32)) / scale)
        return np.clip(q, -INT8_LEVELS, INT8_LEVELS).astype(np.int8)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """The stored numbers -> float32 [rows, k]."""
        if self.dtype == "int8":
            return (stored.astype(np.float32) * np.asarray(self.scale, np.float32)
                    + np.asarray(self.offset, np.float32))
        return stored.astype(np.float32, copy=False)

    def error_bound(self) -> np.ndarray | None:
        """int8: the largest |x − x̂| per dimension for values within the calibration range (None otherwise)."""
        return np.asarray(self.scale, np.float64) / 2 if self.dtype == "int8" else None

    def array(self, matrix: np.ndarray) -> pa.FixedSizeListArray:
        """float [rows, k] -> the `embedding` column in this codec, without a per-row Python object."""
        stored = np.ascontiguousarray(self.encode(matrix))
        width = stored.shape[1] if stored.ndim == 2 else 0
        return pa.FixedSizeListArray.from_arrays(pa.array(stored.reshape(-1), type=self.arrow_type), width)

    def matrix(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """The stored `embedding` column -> float32 [rows, k] (slice-safe: flatten, not .values)."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        width = column.type.list_size
        stored = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width)
        return self.decode(stored)


def calibrate(sample: np.ndarray, dtype: str) -> Codec:
    """The codec for `dtype`; int8 derives its per-dimension range from `sample` (encoded rows)."""
    if dtype != "int8":
        return Codec(dtype)
    sample = np.asarray(sample, dtype=np.float64)
    if sample.size == 0:
        raise InvalidInput("--embedding-dtype int8: no rows to calibrate the scale on")
    lo, hi = sample.min(axis=0), sample.max(axis=0)
    span = hi - lo
    lo, hi = lo - MARGIN * span, hi + MARGIN * span
    scale = np.where(hi > lo, (hi - lo) / (2 * INT8_LEVELS), 1.0)
    return Codec("int8", tuple(float(s) for s in scale), tuple(float(o) for o in (lo + hi) / 2))


def with_codec(schema: pa.Schema, codec: Codec, column: str = "embedding") -> pa.Schema:
    """`schema` whose `column` stores `codec`'s type and whose metadata records the codec."""
    if codec.dtype == "float32":
        return schema
    field = schema.field(column)
    index = schema.get_field_index(column)
    schema = schema.set(index, pa.field(column, pa.list_(codec.arrow_type, field.type.list_size), field.nullable))
    return schema.with_metadata({**(schema.metadata or {}), CODEC_KEY: json.dumps(codec.to_dict()).encode()})


def codec_of(schema: pa.Schema) -> Codec | None:
    """The codec recorded in a file's schema metadata (None: plain float32 numbers)."""
    raw = (schema.metadata or {}).get(CODEC_KEY)
    return Codec.from_dict(json.loads(raw)) if raw else None
