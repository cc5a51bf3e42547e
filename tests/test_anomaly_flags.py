"""`ae-tf encode --flag-anomalies`: is_anomaly from the calibrated threshold, a value or a quantile."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import low_rank_rows, read_output

from ae_tf.contracts import ModelMetadata
from ae_tf.embeddings import embedding_array
from ae_tf.model.anomaly import quantile_table, resolve_threshold
from ae_tf.model.export import read_metadata
from pipelines import encode


@pytest.fixture(scope="module")
def mixed_rows(tmp_path_factory):
    """300 normal rows and 20 rows far off the training subspace (ids 300..319)."""
    directory = tmp_path_factory.mktemp("anomaly_input")
    normal = low_rank_rows(300, seed=11)
    odd = np.random.default_rng(5).normal(0, 30, size=(20, normal.shape[1])).astype(np.float32)
    table = pa.table({"id": np.arange(320, dtype=np.int64), "vec": embedding_array(np.vstack([normal, odd]))})
    pq.write_table(table, directory / "mixed.parquet")
    return str(directory)


def test_model_threshold_flags_the_rows_off_the_training_data(vector_model, mixed_rows, tmp_path):
    model_dir, _ = vector_model
    manifest = encode.run(["--model", model_dir, "--input", mixed_rows, "--output", str(tmp_path / "out"),
                           "--flag-anomalies"])
    out = read_output(str(tmp_path / "out"))
    assert out.schema.field("is_anomaly").type == pa.bool_()
    flagged = set(out.filter(out.column("is_anomaly")).column("id").to_pylist())
    assert set(range(300, 320)) <= flagged           # every planted anomaly is flagged
    assert len(flagged - set(range(300, 320))) <= 15  # ~1% of normal rows by construction, with slack
    threshold = read_metadata(model_dir)["anomaly_threshold"]["value"]
    assert manifest["anomalies"]["threshold"] == pytest.approx(threshold)
    assert manifest["anomalies"]["rows_flagged"] == len(flagged)
    scores = out.column("anomaly_score").to_numpy()  # the model's default score, not the plain error
    np.testing.assert_array_equal(out.column("is_anomaly").to_numpy(zero_copy_only=False), scores > threshold)


def test_explicit_threshold_and_quantile(vector_model, mixed_rows, tmp_path):
    model_dir, _ = vector_model
    manifest = encode.run(["--model", model_dir, "--input", mixed_rows, "--output", str(tmp_path / "a"),
                           "--anomaly-threshold", "1e9"])
    assert manifest["anomalies"]["rows_flagged"] == 0 and manifest["anomalies"]["rule"] == "--anomaly-threshold"
    meta = read_metadata(model_dir)
    low, rule = resolve_threshold(ModelMetadata.from_dict(meta), quantile=0.5)
    assert low < meta["anomaly_threshold"]["value"] and "quantile 0.5" in rule
    manifest = encode.run(["--model", model_dir, "--input", mixed_rows, "--output", str(tmp_path / "b"),
                           "--anomaly-quantile", "0.5"])
    assert 100 < manifest["anomalies"]["rows_flagged"] < 250  # about half the normal rows + the anomalies


def test_quantile_table_interpolates_and_bad_quantile_is_refused():
    scores = np.linspace(0, 1, 10001)
    meta = ModelMetadata(model_version="t", code_size=1, feature_spec={},
                         extra={"reconstruction_error": {"quantiles": quantile_table(scores)}})
    assert resolve_threshold(meta, quantile=0.9935)[0] == pytest.approx(0.9935, abs=1e-3)
    with pytest.raises(ValueError, match="--anomaly-quantile must be within"):
        resolve_threshold(meta, quantile=1.5)
    with pytest.raises(ValueError, match="no calibrated threshold"):
        resolve_threshold(ModelMetadata(model_version="t", code_size=1, feature_spec={}))
