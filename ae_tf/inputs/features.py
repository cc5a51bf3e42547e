"""How Parquet columns become model input.

One conversion is shared by training (ae_tf.inputs.data) and serving (pipelines.parts.inference), so both see exactly
the same numbers. It works on whole Arrow batches: no Python object per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ae_tf.inputs import images
from ae_tf.inputs.arrays import column as _column
from ae_tf.inputs.arrays import numeric_features_to_array
from ae_tf.inputs.arrays import numeric_values as _numeric_values
from ae_tf.inputs.image_validity import image_row_validity
from ae_tf.inputs.images import image_features
from ae_tf.inputs.spec import (
    IMAGE,
    SCALARS,
    VECTOR,
    FeatureError,
    FeatureSpec,
    ImageRequest,
    ImageSpec,
    RowCheck,
)

# The spec types live in ae_tf.inputs.spec (below images and the numeric conversion); these names stay
# importable from here, where every caller has always found them.
__all__ = ["IMAGE", "SCALARS", "VECTOR", "FeatureError", "FeatureSpec", "ImageRequest", "ImageSpec", "RowCheck",
           "check_finite", "check_schema", "features_to_array", "infer_feature_spec", "numeric_features_to_array",
           "parse_feature_columns", "validate_rows"]

def parse_feature_columns(text: str | Sequence[str]) -> list[str]:
    """`--features a,b,c` or a list -> clean column names."""
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise FeatureError("--features names no column")
    if len(set(names)) != len(names):
        raise FeatureError(f"--features repeats a column: {','.join(names)}")
    return names


def _is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype)


def _is_scalar_number(dtype: pa.DataType) -> bool:
    """Numbers, booleans, and text holding numbers (rows whose text is not a number are rejected)."""
    return _is_numeric(dtype) or pa.types.is_boolean(dtype) or pa.types.is_string(dtype) \
        or pa.types.is_large_string(dtype)


def _is_list(dtype: pa.DataType) -> bool:
    return pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype)


def infer_feature_spec(
    schema: pa.Schema, columns: Sequence[str], source: str = "input", sample: pa.Table | None = None,
    image: ImageRequest | None = None,
) -> FeatureSpec:
    """Decide the feature form from the Parquet schema (and a sample batch for variable-length lists).

    A binary (or struct<bytes, path>) column is always an image; `image` asks for an image feature from a
    list column too (a conv model), with the size and channels the user chose.
    """
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise FeatureError(
            f"{source}: feature column {missing[0]!r} not found; columns are: {', '.join(schema.names)}"
        )
    if any(images.is_bytes_type(schema.field(c).type) for c in columns) or image is not None:
        if len(columns) != 1:
            raise FeatureError(f"{source}: an image column must be the only feature column, got {', '.join(columns)}")
        return images.infer_image_spec(schema.field(columns[0]), sample, image, source)
    if len(columns) == 1 and _is_list(schema.field(columns[0]).type):
        name = columns[0]
        dtype = schema.field(name).type
        if not _is_numeric(dtype.value_type):
            raise FeatureError(f"{source}: column {name!r} is {dtype}, expected a list of numbers")
        if pa.types.is_fixed_size_list(dtype):
            width = dtype.list_size
        else:
            if sample is None or sample.num_rows == 0:
                raise FeatureError(f"{source}: column {name!r} is a variable-length list and no rows to size it")
            lengths = pc.list_value_length(sample.column(name)).drop_null()
            if len(lengths) == 0:
                raise FeatureError(f"{source}: column {name!r} has only nulls")
            width = int(pc.min(lengths).as_py())
            if width != int(pc.max(lengths).as_py()) or width == 0:
                raise FeatureError(f"{source}: column {name!r} holds lists of different lengths; a vector must have one length")
        return FeatureSpec(VECTOR, (name,), int(width))
    for name in columns:
        dtype = schema.field(name).type
        if _is_list(dtype):
            raise FeatureError(f"{source}: list column {name!r} must be the only feature column")
        if not _is_scalar_number(dtype):
            raise FeatureError(f"{source}: feature column {name!r} is {dtype}, expected a number")
    return FeatureSpec(SCALARS, tuple(columns), len(columns))


def check_schema(schema: pa.Schema, spec: FeatureSpec, source: str = "input") -> None:
    """Raise a one-line FeatureError when `schema` cannot feed a model built for `spec`."""
    for name in spec.columns:
        if name not in schema.names:
            raise FeatureError(
                f"{source}: feature column {name!r} not found; columns are: {', '.join(schema.names)}"
            )
        dtype = schema.field(name).type
        if spec.kind == IMAGE:
            from ae_tf.inputs.images import check_image_schema

            check_image_schema(schema, spec, source)
        elif spec.kind == VECTOR:
            if not _is_list(dtype) or not _is_numeric(dtype.value_type):
                raise FeatureError(f"{source}: column {name!r} is {dtype}, the model expects a list of {spec.width} numbers")
            if pa.types.is_fixed_size_list(dtype) and dtype.list_size != spec.width:
                raise FeatureError(
                    f"{source}: column {name!r} holds {dtype.list_size} numbers per row, the model expects {spec.width}"
                )
        elif not _is_scalar_number(dtype):
            raise FeatureError(f"{source}: column {name!r} is {dtype}, the model expects a number")


def features_to_array(batch: pa.RecordBatch | pa.Table, spec: FeatureSpec, source: str = "input") -> np.ndarray:
    """Arrow batch -> float32 matrix [rows, spec.width]; raises FeatureError naming column and row.

    Image features give what the SavedModel takes: an object array of encoded bytes, or float32 pixels.
    """
    if spec.kind == IMAGE:
        return image_features(_column(batch, spec.columns[0]), spec, source)
    return numeric_features_to_array(batch, spec, source)


def check_finite(matrix: np.ndarray, spec: FeatureSpec, source: str = "input") -> None:
    """NaN or infinite features poison training; name the first offending row and column."""
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        name = spec.columns[0] if spec.kind == VECTOR else spec.columns[col]
        raise FeatureError(f"{source}: column {name!r} row {row} is {matrix[row, col]} (not a finite number)")


def _reject(reasons: np.ndarray, mask: np.ndarray, reason: str) -> None:
    """Record `reason` for rows in `mask` that have no reason yet (the first problem found wins)."""
    reasons[mask & np.equal(reasons, None)] = reason


def validate_rows(batch: pa.RecordBatch | pa.Table, spec: FeatureSpec, decode_images: bool = True) -> RowCheck:
    """Find rows that cannot be encoded (nulls, wrong vector length, NaN/inf, non-numeric text).

    Vectorised per column; only the invalid rows get a per-row reason string. Image bytes are decoded to
    check them unless `decode_images` is False (the model's own decode pass will flag them instead).
    """
    if spec.kind == IMAGE:
        return image_row_validity(_column(batch, spec.columns[0]), spec, decode=decode_images)
    n = batch.num_rows
    reasons = np.full(n, None, dtype=object)
    if spec.kind == VECTOR:
        name = spec.columns[0]
        col = _column(batch, name)
        is_null = col.is_null().to_numpy(zero_copy_only=False) if col.null_count else np.zeros(n, dtype=bool)
        _reject(reasons, is_null, f"null {name!r}")
        if pa.types.is_fixed_size_list(col.type):
            lengths = np.full(n, col.type.list_size)
        else:
            lengths = pc.fill_null(pc.list_value_length(col), -1).to_numpy(zero_copy_only=False)
        for length in np.unique(lengths[(lengths != spec.width) & ~is_null]):
            _reject(reasons, lengths == length, f"{name!r} has {length} numbers, expected {spec.width}")
        ok = np.equal(reasons, None)
        if ok.all() and pa.types.is_floating(col.type.value_type):
            # Fast path for the common case (no null, right lengths): one cheap row-sum screen, since NaN and
            # inf propagate through a sum; rows it flags are confirmed exactly (a finite sum can overflow).
            values = col.flatten()
            if values.null_count == 0:
                matrix = values.to_numpy(zero_copy_only=False).reshape(n, spec.width)
                with np.errstate(over="ignore", invalid="ignore"):
                    suspect = np.flatnonzero(~np.isfinite(matrix.sum(axis=1)))
                bad = suspect[~np.isfinite(matrix[suspect]).all(axis=1)]
                mask = np.zeros(n, dtype=bool)
                mask[bad] = True
                _reject(reasons, mask, f"null, NaN, infinite or non-numeric value in {name!r}")
                ok = np.zeros(n, dtype=bool)  # done
        if ok.any():
            values = col.filter(pa.array(ok)).flatten()
            matrix_bad = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
            numbers, not_numeric = _numeric_values(values)
            bad_value = ~np.isfinite(numbers) | not_numeric
            if matrix_bad is not None:
                bad_value |= matrix_bad
            per_row = bad_value.reshape(-1, spec.width).any(axis=1)
            rows = np.flatnonzero(ok)[per_row]
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            _reject(reasons, mask, f"null, NaN, infinite or non-numeric value in {name!r}")
    elif spec.kind == SCALARS:
        for name in spec.columns:
            col = _column(batch, name)
            if col.null_count:
                _reject(reasons, col.is_null().to_numpy(zero_copy_only=False), f"null {name!r}")
            numbers, not_numeric = _numeric_values(col)
            _reject(reasons, not_numeric, f"non-numeric value in {name!r}")
            with np.errstate(invalid="ignore"):
                _reject(reasons, ~np.isfinite(numbers) & ~col.is_null().to_numpy(zero_copy_only=False),
                        f"NaN or infinite value in {name!r}")
    valid = np.equal(reasons, None)
    return RowCheck(valid=valid, reasons=reasons)
