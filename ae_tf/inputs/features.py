"""How Parquet columns become model input.

One conversion is shared by training (ae_tf.inputs.data) and serving (pipelines.parts.inference), so both see exactly
the same numbers. It works on whole Arrow batches: no Python object per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ae_tf.errors import InvalidInput

if TYPE_CHECKING:
    from ae_tf.inputs.images import ImageRequest, ImageSpec

VECTOR = "vector"
SCALARS = "scalars"
IMAGE = "image"  # one column of encoded image bytes or pixel arrays; see ae_tf.inputs.images


class FeatureError(InvalidInput):
    """Input data that cannot become model features; the message names the column (and row)."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which columns feed the model and how: one list column of `width` numbers, or `width` scalar columns,
    or one image column (`image` says its geometry and storage; `width` is then height*width*channels)."""

    kind: str
    columns: tuple[str, ...]
    width: int
    image: ImageSpec | None = None

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "columns": list(self.columns), "width": self.width}
        if self.image is not None:
            data["image"] = self.image.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        image = None
        if data.get("image"):
            from ae_tf.inputs.images import ImageSpec

            image = ImageSpec.from_dict(data["image"])
        return cls(kind=data["kind"], columns=tuple(data["columns"]), width=int(data["width"]), image=image)


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
    from ae_tf.inputs import images

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


def _column(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    col = batch.column(name)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def features_to_array(batch: pa.RecordBatch | pa.Table, spec: FeatureSpec, source: str = "input") -> np.ndarray:
    """Arrow batch -> float32 matrix [rows, spec.width]; raises FeatureError naming column and row.

    Image features give what the SavedModel takes: an object array of encoded bytes, or float32 pixels.
    """
    if spec.kind == IMAGE:
        from ae_tf.inputs.images import image_features

        return image_features(_column(batch, spec.columns[0]), spec, source)
    if spec.kind == VECTOR:
        name = spec.columns[0]
        col = _column(batch, name)
        if col.null_count:
            row = _first_bad_row(col.is_null().to_numpy(zero_copy_only=False))
            raise FeatureError(f"{source}: column {name!r} is null at row {row}")
        if not pa.types.is_fixed_size_list(col.type):
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths != spec.width).any():
                row = _first_bad_row(lengths != spec.width)
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
        col = _column(batch, name)
        if col.null_count:
            row = _first_bad_row(col.is_null().to_numpy(zero_copy_only=False))
            raise FeatureError(f"{source}: column {name!r} is null at row {row}")
        values, not_numeric = _numeric_values(col)
        if not_numeric.any():
            raise FeatureError(f"{source}: column {name!r} row {_first_bad_row(not_numeric)} is not a number")
        out[:, j] = values
    return out


def check_finite(matrix: np.ndarray, spec: FeatureSpec, source: str = "input") -> None:
    """NaN or infinite features poison training; name the first offending row and column."""
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        name = spec.columns[0] if spec.kind == VECTOR else spec.columns[col]
        raise FeatureError(f"{source}: column {name!r} row {row} is {matrix[row, col]} (not a finite number)")


@dataclasses.dataclass
class RowCheck:
    """Per-row verdict for one batch: `valid` mask and, for invalid rows, a short reason."""

    valid: np.ndarray
    reasons: np.ndarray  # object array, None where valid

    @property
    def all_valid(self) -> bool:
        return bool(self.valid.all())


def _reject(reasons: np.ndarray, mask: np.ndarray, reason: str) -> None:
    """Record `reason` for rows in `mask` that have no reason yet (the first problem found wins)."""
    reasons[mask & np.equal(reasons, None)] = reason


def _numeric_values(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
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


def validate_rows(batch: pa.RecordBatch | pa.Table, spec: FeatureSpec, decode_images: bool = True) -> RowCheck:
    """Find rows that cannot be encoded (nulls, wrong vector length, NaN/inf, non-numeric text).

    Vectorised per column; only the invalid rows get a per-row reason string. Image bytes are decoded to
    check them unless `decode_images` is False (the model's own decode pass will flag them instead).
    """
    if spec.kind == IMAGE:
        from ae_tf.inputs.image_validity import image_row_validity

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
