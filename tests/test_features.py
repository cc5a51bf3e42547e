"""Parquet columns -> model input: both forms, and one-line errors naming column and row."""

import datetime

import numpy as np
import pyarrow as pa
import pytest

from ae_tf.embeddings import embedding_array, embedding_matrix
from ae_tf.inputs.features import (
    SCALARS,
    VECTOR,
    FeatureError,
    FeatureSpec,
    check_finite,
    check_schema,
    features_to_array,
    infer_feature_spec,
    parse_feature_columns,
)


def test_fixed_size_list_becomes_matrix_even_when_sliced():
    x = np.arange(20, dtype=np.float32).reshape(5, 4)
    table = pa.table({"v": embedding_array(x)})
    spec = infer_feature_spec(table.schema, ["v"])
    assert spec == FeatureSpec(VECTOR, ("v",), 4)
    sliced = table.slice(2, 2)  # .values would ignore this offset; flatten must not
    np.testing.assert_array_equal(features_to_array(sliced, spec), x[2:4])
    np.testing.assert_array_equal(embedding_matrix(sliced.column("v")), x[2:4])


def test_variable_list_of_doubles_is_sized_from_sample_and_cast():
    table = pa.table({"v": pa.array([[1.0, 2.0], [3.0, 4.0]], type=pa.list_(pa.float64()))})
    spec = infer_feature_spec(table.schema, ["v"], sample=table)
    assert spec.width == 2
    out = features_to_array(table, spec)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])


def test_scalar_columns_of_mixed_types():
    table = pa.table({"a": pa.array([1, 2], pa.int32()), "b": [0.5, 1.5], "flag": [True, False]})
    spec = infer_feature_spec(table.schema, parse_feature_columns("a, b,flag"))
    assert spec == FeatureSpec(SCALARS, ("a", "b", "flag"), 3)
    np.testing.assert_array_equal(features_to_array(table, spec), [[1, 0.5, 1], [2, 1.5, 0]])


@pytest.mark.parametrize(
    "table, columns, message",
    [
        (pa.table({"a": [1.0]}), ["b"], "feature column 'b' not found"),
        (pa.table({"s": pa.array([datetime.date(2020, 1, 1)])}), ["s"], "column 's' is date32"),
        (pa.table({"v": pa.array([[1.0], [1.0, 2.0]])}), ["v"], "lists of different lengths"),
        (pa.table({"v": pa.array([[1.0]]), "a": [1.0]}), ["v", "a"], "must be the only feature column"),
    ],
)
def test_unusable_columns_are_named(table, columns, message):
    with pytest.raises(FeatureError, match=message):
        infer_feature_spec(table.schema, columns, source="f.parquet", sample=table)


def test_wrong_length_and_nulls_name_the_row():
    spec = FeatureSpec(VECTOR, ("v",), 2)
    with pytest.raises(FeatureError, match="row 1 holds 3 numbers, expected 2"):
        features_to_array(pa.table({"v": pa.array([[1.0, 2.0], [1.0, 2.0, 3.0]])}), spec)
    with pytest.raises(FeatureError, match="is null at row 1"):
        features_to_array(pa.table({"v": pa.array([[1.0, 2.0], None])}), spec)
    with pytest.raises(FeatureError, match="null value inside row 1"):
        features_to_array(pa.table({"v": pa.array([[1.0, 2.0], [None, 2.0]])}), spec)
    scalar = FeatureSpec(SCALARS, ("a",), 1)
    with pytest.raises(FeatureError, match="'a' is null at row 2"):
        features_to_array(pa.table({"a": [1.0, 2.0, None]}), scalar)


def test_non_finite_values_are_reported():
    spec = FeatureSpec(SCALARS, ("a", "b"), 2)
    with pytest.raises(FeatureError, match="column 'b' row 1 is nan"):
        check_finite(np.array([[1, 2], [3, np.nan]], dtype=np.float32), spec, "f.parquet")


def test_check_schema_rejects_other_widths_and_types():
    spec = FeatureSpec(VECTOR, ("v",), 3)
    with pytest.raises(FeatureError, match="holds 2 numbers per row, the model expects 3"):
        check_schema(pa.schema([("v", pa.list_(pa.float32(), 2))]), spec, "x.parquet")
    with pytest.raises(FeatureError, match="x.parquet: column 'v' is string"):
        check_schema(pa.schema([("v", pa.string())]), spec, "x.parquet")
