"""Numeric Arrow columns -> float32 matrices: one list column of numbers, or scalar columns (also text that
holds numbers). Shared by ae_tf.inputs.features (vector and scalar features) and ae_tf.inputs.images (images
stored as pixel lists), below both.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ae_tf.inputs.spec import VECTOR, FeatureError, FeatureSpec


def column(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def numeric_features_to_array(batch: pa.RecordBatch | pa.Table, spec: FeatureSpec, source: str = "input") -> np.ndarray:
    """Vector or scalar columns -> float32 matrix [rows, spec.width]; raises FeatureError naming column and row."""
    if spec.kind == VECTOR:
        name = spec.columns[0]
        col = column(batch, name)
        if col.null_count:
            row = first_bad_row(col.is_null().to_numpy(zero_copy_only=False))
            raise FeatureError(f"{source}: column {name!r} is null at row {row}")
        if not pa.types.is_fixed_size_list(col.type):
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths != spec.width).any():
                row = first_bad_row(lengths != spec.width)
                raise FeatureError(
                    f"{source}: column {name!r} row {row} holds {lengths[row]} numbers, expected {spec.width}"
                )
        elif col.type.list_size != spec.width:
            raise FeatureError(f"{source}: column {name!r} holds {col.type.list_size} numbers per row, expected {spec.width}")
        values = col.flatten()
        if values.null_count:
            row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0]) // spec.width
            raise FeatureError(f"{source}: column {name!r} has a null value inside row {row}")
        matrix = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return matrix.reshape(len(col), spec.width)
    out = np.empty((batch.num_rows, spec.width), dtype=np.float32)
    for j, name in enumerate(spec.columns):
        col = column(batch, name)
        if col.null_count:
            row = first_bad_row(col.is_null().to_numpy(zero_copy_only=False))
            raise FeatureError(f"{source}: column {name!r} is null at row {row}")
        values, not_numeric = numeric_values(col)
        if not_numeric.any():
            raise FeatureError(f"{source}: column {name!r} row {first_bad_row(not_numeric)} is not a number")
        out[:, j] = values
    return out


def numeric_values(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Column -> (float64 values, mask of values that are not numbers); strings are parsed."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), np.zeros(len(col), dtype=bool)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = np.full(len(col), np.nan)
            bad = np.zeros(len(col), dtype=bool)
            for i, text in enumerate(col.to_pylist()):  # slow path, only for a batch with a bad string
                try:
                    values[i] = float(text) if text is not None else np.nan
                except ValueError:
                    bad[i] = True
            return values, bad
    values = col.to_numpy(zero_copy_only=False)
    return values.astype(np.float64, copy=False), np.zeros(len(col), dtype=bool)
